//! Where a host's credentials live. A home directory (mode 0700) holds:
//!
//! - `tokens.json`: the token registry (hashes only), read by every daemon started with it;
//! - `credentials`: the first admin token, for the CLI run beside it (mode 0600);
//! - `mesh.key`: the secret peers prove they hold, by HMAC, when they peer (mode 0600).
//!
//! Which home: the directory a caller names (`yard up`'s data directory), else `$YARD_HOME`,
//! else `./yard-data` once it holds credentials (what `yard up` creates), else
//! `$XDG_CONFIG_HOME/yard` or `~/.config/yard`. A home is made on first use; two processes
//! making it at once agree on one admin token and one key.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::policy::Role;
use crate::secret;
use crate::tokens::{write_private, Registry, RegistryError};

#[derive(Debug, Clone)]
pub struct Home {
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot prepare the credentials directory {dir}: {why}")]
    Dir { dir: PathBuf, why: String },
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("{path} is not a yard secret: {why}")]
    Bad { path: PathBuf, why: String },
}

/// The home chosen by the rules above (not created).
pub fn resolve(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("YARD_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let here = PathBuf::from("yard-data");
    if here.join("tokens.json").exists() || here.join("credentials").exists() {
        return here;
    }
    config_dir()
}

/// `$XDG_CONFIG_HOME/yard` or `~/.config/yard`.
pub fn config_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(x).join("yard");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".config").join("yard")
}

/// Writes `bytes` to `path` (0600) unless it exists; returns whether this call wrote it.
fn create_once(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let tmp = path.with_extension(format!("new-{}", secret::random_hex(6)));
    write_private(&tmp, bytes)?;
    let won = match std::fs::hard_link(&tmp, path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let _ = std::fs::remove_file(&tmp);
    Ok(won)
}

impl Home {
    /// Opens the home at `dir`, making it (and its admin token and mesh key) when missing.
    pub fn open_or_init(dir: impl Into<PathBuf>) -> Result<Home, HomeError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = dir.into();
        let shown = dir.clone();
        let fail = |why: String| HomeError::Dir {
            dir: shown.clone(),
            why,
        };
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(e.to_string()))?;
        }
        let home = Home { dir };
        let key = home.dir.join("mesh.key");
        if !key.exists() {
            create_once(&key, format!("{}\n", secret::random_hex(32)).as_bytes())
                .map_err(|e| fail(e.to_string()))?;
        }
        let creds = home.credentials_path();
        if !creds.exists() {
            // Whoever links the credentials file first registers its token; the others wait
            // for the registry to hold it.
            let registry = home.registry()?;
            // The marker stays: a later process finds the credentials, or waits for them.
            let pending = home.dir.join(".init");
            let mine = format!("pending-{}", secret::random_hex(8));
            if create_once(&pending, mine.as_bytes()).map_err(|e| fail(e.to_string()))? {
                let (_, token) = registry.create("admin", Role::Admin, None, None)?;
                create_once(&creds, format!("{token}\n").as_bytes())
                    .map_err(|e| fail(e.to_string()))?;
            } else {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !creds.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if !creds.exists() {
                    return Err(fail(format!(
                        "another process began making it and did not finish; remove {} and try again",
                        pending.display()
                    )));
                }
            }
        }
        Ok(home)
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.dir.join("credentials")
    }

    pub fn registry(&self) -> Result<Registry, RegistryError> {
        Registry::open(self.dir.join("tokens.json"))
    }

    /// The cluster's certificate authority (`yard ca`, `yard cert`).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// Where `yard cert issue` writes certificates unless told otherwise.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The mesh key peers prove they hold.
    pub fn mesh_key(&self) -> Result<String, HomeError> {
        read_secret(&self.dir.join("mesh.key"))
    }

    /// The admin token written at creation (for the CLI beside it).
    pub fn admin_token(&self) -> Result<String, HomeError> {
        read_secret(&self.credentials_path())
    }
}

/// Reads a one-line secret file.
pub fn read_secret(path: &Path) -> Result<String, HomeError> {
    let text = std::fs::read_to_string(path).map_err(|e| HomeError::Bad {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let s = text.trim().to_string();
    if s.is_empty() || s.contains(char::is_whitespace) {
        return Err(HomeError::Bad {
            path: path.to_path_buf(),
            why: "expected one line holding the secret".into(),
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_is_made_once_with_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = yard_testkit::TempDir::new("home");
        let dir = tmp.join("home");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let d = dir.clone();
                std::thread::spawn(move || Home::open_or_init(d).unwrap())
            })
            .collect();
        let homes: Vec<Home> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let token = homes[0].admin_token().unwrap();
        for h in &homes {
            assert_eq!(h.admin_token().unwrap(), token);
        }
        let reg = homes[0].registry().unwrap();
        assert_eq!(reg.records().len(), 1, "one admin token");
        assert_eq!(
            reg.authenticate(None, &token).unwrap().to_string(),
            "operator:admin"
        );
        for f in ["credentials", "mesh.key", "tokens.json"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(homes[0].mesh_key().unwrap().len(), 64);
    }
}
