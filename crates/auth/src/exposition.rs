//! Prometheus's text exposition format, written by every listener's `/metrics` (the gateway's
//! own families and those a daemon adds through [`crate::http::Extension::metrics`]).

use std::fmt::Write;

/// Writes one metric family: its `# HELP` and `# TYPE` lines, then one line per sample
/// (`labels` is the sample's `{k="v",…}` text, empty for none).
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// A label value escaped as the format asks (backslash, double quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_its_help_type_and_samples() {
        let mut out = String::new();
        let samples = [
            (String::new(), 1.0),
            (format!("{{node=\"{}\"}}", label("a\"b\\c\nd")), 2.5),
        ];
        family(&mut out, "yard_x", "gauge", "An x.", &samples);
        assert_eq!(
            out,
            "# HELP yard_x An x.\n# TYPE yard_x gauge\nyard_x 1\nyard_x{node=\"a\\\"b\\\\c\\nd\"} 2.5\n"
        );
    }
}
