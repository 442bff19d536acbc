//! The credential a client sends when it is given none, found the way the CLI finds it:
//! `--credentials FILE` (set once with [`use_file`]) or `YARD_CREDENTIALS`, else the
//! `credentials` file of the home [`yard_auth::home::resolve`] picks (`./yard-data` beside
//! `yard up`, `$YARD_HOME`, `~/.config/yard`). No file: anonymous.

use std::path::PathBuf;
use std::sync::OnceLock;

static FILE: OnceLock<PathBuf> = OnceLock::new();

/// Makes [`found`] read `path` (call it before the first request).
pub fn use_file(path: PathBuf) {
    let _ = FILE.set(path);
}

/// The credential found, read once per process. A file named explicitly that is missing or
/// unreadable is said on stderr (the caller then goes anonymous, and the server says what
/// that may not do).
pub fn found() -> Option<String> {
    static FOUND: OnceLock<Option<String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let given = FILE.get().cloned().or_else(|| {
                std::env::var_os("YARD_CREDENTIALS")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            });
            let explicit = given.is_some();
            let path = given.unwrap_or_else(|| yard_auth::home::resolve(None).join("credentials"));
            if explicit && !path.exists() {
                eprintln!(
                    "yard: the credentials file {} does not exist",
                    path.display()
                );
            }
            match yard_auth::home::read_secret(&path) {
                Ok(t) => Some(t),
                Err(e) => {
                    if path.exists() {
                        eprintln!("yard: ignoring {}: {e}", path.display());
                    }
                    None
                }
            }
        })
        .clone()
}

/// The `Authorization` value for `token`, or for the credential [`found`].
pub fn bearer(token: Option<&str>) -> Option<String> {
    token
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .or_else(found)
        .map(|t| format!("Bearer {t}"))
}
