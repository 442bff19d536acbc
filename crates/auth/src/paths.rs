//! Paths callers name: they stay under the directory the operator configured.

use std::path::{Component, Path};

/// Whether `path` is relative and made of plain names only (no root, no `.`, no `..`, not
/// empty), so that joining it to a directory cannot leave that directory by name.
pub fn is_plain_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::is_plain_relative;
    use std::path::Path;

    #[test]
    fn only_plain_relative_paths_pass() {
        for ok in ["a", "a/b.db", "deploy/app"] {
            assert!(is_plain_relative(Path::new(ok)), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert!(!is_plain_relative(Path::new(bad)), "{bad}");
        }
    }
}
