//! The dashboard's files, embedded in the binary so that `cargo build` alone gives a `yard`
//! that serves them (no Node, no build step, no download): plain ES modules, a stylesheet and
//! the vendored files listed, pinned and hashed in `assets/vendor/MANIFEST`.
//!
//! [`get`] finds a file by its path under `/ui/`; [`headers`] are what every answer of the
//! dashboard carries: a Content-Security-Policy that allows this origin only (no inline script,
//! no other host), no framing, no sniffing, and revalidation by ETag.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its path under `/ui/` (`index.html`, `views/topology.js`, ...).
    pub path: &'static str,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

macro_rules! file {
    ($path:literal, $ctype:literal) => {
        Asset {
            path: $path,
            bytes: include_bytes!(concat!("../assets/", $path)),
            content_type: $ctype,
        }
    };
}

/// Every file of the dashboard (a test checks that this list is the `assets` directory).
static ASSETS: &[Asset] = &[
    file!("app.js", "text/javascript; charset=utf-8"),
    file!("index.html", "text/html; charset=utf-8"),
    file!("lib/api.js", "text/javascript; charset=utf-8"),
    file!("lib/chart.js", "text/javascript; charset=utf-8"),
    file!("lib/dom.js", "text/javascript; charset=utf-8"),
    file!("lib/stream.js", "text/javascript; charset=utf-8"),
    file!("lib/value.js", "text/javascript; charset=utf-8"),
    file!("style.css", "text/css; charset=utf-8"),
    file!("vendor/MANIFEST", "text/plain; charset=utf-8"),
    file!("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
    file!("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    file!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
    file!("views/agent.js", "text/javascript; charset=utf-8"),
    file!("views/cluster.js", "text/javascript; charset=utf-8"),
    file!("views/data.js", "text/javascript; charset=utf-8"),
    file!("views/metrics.js", "text/javascript; charset=utf-8"),
    file!("views/overview.js", "text/javascript; charset=utf-8"),
    file!("views/resources.js", "text/javascript; charset=utf-8"),
    file!("views/settings.js", "text/javascript; charset=utf-8"),
    file!("views/topology.js", "text/javascript; charset=utf-8"),
];

/// The file at `path` (relative to `/ui/`; empty means `index.html`).
pub fn get(path: &str) -> Option<Served> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path).map(|a| Served {
        asset: a,
        etag: etag(a.bytes),
    })
}

/// A file and its validator.
#[derive(Debug)]
pub struct Served {
    pub asset: &'static Asset,
    /// A strong validator: FNV-1a of the contents, in quotes.
    pub etag: String,
}

/// The paths of every embedded file.
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

/// `"<fnv-1a 64 of the bytes, hex>"`.
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

/// The Content-Security-Policy of every dashboard answer: this origin only, for scripts,
/// styles, images (and `data:` ones), fonts and connections; no plugins, no framing, no
/// `<base>`; forms post here only.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers every dashboard answer carries (besides its type and ETag).
pub fn headers() -> [(&'static str, &'static str); 5] {
    [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-cache"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::path::Path;

    fn on_disk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                on_disk(&p, base, out);
            } else {
                out.push(
                    p.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }

    #[test]
    fn every_file_of_the_assets_directory_is_embedded_and_nothing_else() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut disk = vec![];
        on_disk(&base, &base, &mut disk);
        disk.sort();
        let mut embedded: Vec<String> = paths().map(String::from).collect();
        embedded.sort();
        assert_eq!(embedded, disk);
        for a in ASSETS {
            assert_eq!(
                a.bytes,
                std::fs::read(base.join(a.path)).unwrap(),
                "{}",
                a.path
            );
        }
    }

    #[test]
    fn every_vendored_file_matches_its_pinned_hash_and_names_its_licence() {
        let manifest = get("vendor/MANIFEST").unwrap().asset.bytes;
        let text = std::str::from_utf8(manifest).unwrap();
        let mut listed = vec![];
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                f.len(),
                6,
                "file, package, version, source, sha256, licence: {line:?}"
            );
            let file = get(&format!("vendor/{}", f[0]))
                .unwrap_or_else(|| panic!("{} is not embedded", f[0]));
            let sum: String = Sha256::digest(file.asset.bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(sum, f[4], "{}: the file is not the pinned one", f[0]);
            assert!(!f[5].is_empty() && !f[2].is_empty());
            listed.push(format!("vendor/{}", f[0]));
        }
        listed.push("vendor/MANIFEST".into());
        listed.sort();
        let mut vendored: Vec<String> = paths()
            .filter(|p| p.starts_with("vendor/"))
            .map(String::from)
            .collect();
        vendored.sort();
        assert_eq!(vendored, listed, "every vendored file is in the manifest");
    }

    #[test]
    fn the_index_is_served_for_the_root_and_unknown_paths_are_not() {
        let i = get("").unwrap();
        assert_eq!(i.asset.path, "index.html");
        assert!(i.asset.content_type.starts_with("text/html"));
        assert_eq!(
            get("app.js").unwrap().asset.content_type,
            "text/javascript; charset=utf-8"
        );
        assert!(get("../Cargo.toml").is_none());
        assert!(get("nope.js").is_none());
        assert_eq!(get("app.js").unwrap().etag, get("app.js").unwrap().etag);
        assert_ne!(get("app.js").unwrap().etag, get("style.css").unwrap().etag);
    }

    #[test]
    fn no_page_loads_anything_from_another_host() {
        for a in ASSETS.iter().filter(|a| !a.path.starts_with("vendor/")) {
            // The SVG namespace is a name that nothing fetches (createElementNS).
            let text = std::str::from_utf8(a.bytes)
                .unwrap()
                .replace("\"http://www.w3.org/2000/svg\"", "SVG_NS");
            for bad in [
                "http://",
                "https://",
                "//cdn",
                "<script>",
                "innerHTML",
                "eval(",
            ] {
                assert!(!text.contains(bad), "{} contains {bad:?}", a.path);
            }
        }
    }
}
