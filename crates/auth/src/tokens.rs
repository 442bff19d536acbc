//! Bearer tokens and the registry of their hashes.
//!
//! A token reads `yard_<id>_<secret>`: the id finds its record, the secret is checked against
//! the record's SHA-256 in constant time. The registry file (`tokens.json`, mode 0600) holds
//! records, never tokens; every daemon that shares it notices a change within
//! [`RELOAD_EVERY`] (so a revocation takes effect everywhere within about a second). Static
//! principals (`--mesos-credentials PRINCIPAL:SECRET`) are kept hashed in memory only.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::policy::{Kind, Policy, Principal, Role};
use crate::secret;

/// How often the registry looks at its file for changes.
pub const RELOAD_EVERY: Duration = Duration::from_millis(500);

/// One credential, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Public part of the token: finds the record.
    pub id: String,
    /// Who holds it (shown in the audit log).
    pub name: String,
    pub role: Role,
    /// Replaces the role's policy when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// SHA-256 of the secret part, hex.
    pub hash: String,
    /// Seconds since the epoch.
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
}

impl TokenRecord {
    pub fn principal(&self) -> Principal {
        Principal {
            kind: match (self.role, &self.policy) {
                (Role::App, _) | (_, Some(_)) => Kind::App,
                _ => Kind::Operator,
            },
            name: self.name.clone(),
            policy: self.policy.clone().unwrap_or_else(|| self.role.policy()),
        }
    }

    pub fn state(&self, now: u64) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
        } else if self.expires.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<TokenRecord>,
}

/// Why a credential was not accepted (the caller is told, in these words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("the credential is not a yard token (expected yard_<id>_<secret>)")]
    Malformed,
    #[error("no such token (unknown id {0})")]
    Unknown(String),
    #[error("token {0} was revoked")]
    Revoked(String),
    #[error("token {0} has expired")]
    Expired(String),
    #[error("the secret of token {0} is wrong")]
    Wrong(String),
    #[error("the user name {given:?} is not the name of token {id} ({name:?})")]
    WrongName {
        given: String,
        id: String,
        name: String,
    },
    #[error("wrong principal or secret")]
    WrongStatic,
    #[error("the certificate of operator:{0} has no active token named {0} here to give it a role (`yard token create {0} --role …` on this host)")]
    NoCertificateRole(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read {path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("cannot write {path}: {why}")]
    Write { path: PathBuf, why: String },
    #[error("{0}")]
    Invalid(String),
}

struct Cache {
    records: Vec<TokenRecord>,
    /// The stamp of the file the records were read from.
    seen: Stamp,
    checked: Instant,
}

/// The tokens one process checks. One per process, shared by its listeners.
pub struct Registry {
    path: Option<PathBuf>,
    /// Guarded by a std mutex, never held across `.await`: reads are short.
    cache: Mutex<Cache>,
    /// `(principal, SHA-256 of the secret, role)` from flags.
    statics: Vec<(String, String, Role)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .field("statics", &self.statics.len())
            .finish()
    }
}

pub use yard_data::time::now_secs;

/// A file's inode, modification time and length, to notice changes. Every write replaces the
/// file by a rename, so a new inode says "changed" even when the time and length do not.
type Stamp = Option<(u64, SystemTime, u64)>;

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Some((meta.ino(), meta.modified().ok()?, meta.len()))
}

/// The stamp of whatever `path` is now (none when it is missing).
fn stamp_of(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().as_ref().and_then(stamp)
}

/// Reads the records and the stamp of the one file it read them from: the stamp comes from the
/// open handle, so a file replaced between the read and a second `stat` is not mistaken for the
/// one already read.
fn read_file(path: &Path) -> Result<(Vec<TokenRecord>, Stamp), RegistryError> {
    use std::io::Read;
    let failed = |e: std::io::Error| RegistryError::Read {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], None)),
        Err(e) => return Err(failed(e)),
    };
    let seen = f.metadata().ok().as_ref().and_then(stamp);
    let mut bytes = vec![];
    f.read_to_end(&mut bytes).map_err(failed)?;
    let file: File = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Read {
        path: path.to_path_buf(),
        why: format!("not a token registry: {e}"),
    })?;
    Ok((file.tokens, seen))
}

/// Holds an exclusive lock on `<registry>.lock` while a change reads, edits and replaces the
/// file, so that two processes (two `yard token create` at once, or a CLI beside a daemon)
/// cannot lose each other's records. Released when dropped.
struct ChangeLock {
    _file: std::fs::File,
}

impl ChangeLock {
    fn take(path: &Path) -> Result<ChangeLock, RegistryError> {
        use std::os::unix::fs::OpenOptionsExt;
        let lock = path.with_extension("lock");
        let failed = |e: std::io::Error| RegistryError::Write {
            path: lock.clone(),
            why: format!("cannot lock the registry: {e}"),
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock)
            .map_err(failed)?;
        f.lock().map_err(failed)?;
        Ok(ChangeLock { _file: f })
    }
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", secret::random_hex(6)));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Registry {
    /// A registry backed by `path` (missing means empty).
    pub fn open(path: impl Into<PathBuf>) -> Result<Registry, RegistryError> {
        let path = path.into();
        let (records, seen) = read_file(&path)?;
        Ok(Registry {
            path: Some(path),
            cache: Mutex::new(Cache {
                records,
                seen,
                checked: Instant::now(),
            }),
            statics: vec![],
        })
    }

    /// A registry with no file (tests, and daemons given static principals only).
    pub fn in_memory(records: Vec<TokenRecord>) -> Registry {
        Registry {
            path: None,
            cache: Mutex::new(Cache {
                records,
                seen: None,
                checked: Instant::now(),
            }),
            statics: vec![],
        }
    }

    /// Adds a principal from a flag (`NAME:SECRET`), checked in constant time, never written.
    pub fn with_static(mut self, name: &str, secret_text: &str, role: Role) -> Registry {
        self.statics.push((
            name.to_string(),
            secret::sha256_hex(secret_text.as_bytes()),
            role,
        ));
        self
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the file if it changed; looks at most every [`RELOAD_EVERY`] unless `force`.
    fn refresh(&self, cache: &mut Cache, force: bool) {
        let Some(path) = &self.path else { return };
        if !force && cache.checked.elapsed() < RELOAD_EVERY {
            return;
        }
        cache.checked = Instant::now();
        if stamp_of(path) != cache.seen {
            match read_file(path) {
                Ok((records, seen)) => {
                    cache.records = records;
                    cache.seen = seen;
                }
                // A half-written or broken file keeps the last good records (fail closed on
                // new tokens, not open).
                Err(e) => tracing::warn!("token registry not reloaded: {e}"),
            }
        }
    }

    /// The records now.
    pub fn records(&self) -> Vec<TokenRecord> {
        let mut cache = self.cache.lock().expect("registry");
        self.refresh(&mut cache, false);
        cache.records.clone()
    }

    /// The principal of an operator's certificate (`operator:NAME`, checked by the TLS
    /// handshake against the cluster's root and its revocation list): the active token named
    /// NAME gives it its role or policy, and revoking that token takes the certificate's
    /// rights too. The newest such token, when there are several.
    pub fn certificate(&self, name: &str) -> Result<Principal, AuthFailure> {
        let now = now_secs();
        let find = |records: &[TokenRecord]| {
            records
                .iter()
                .filter(|r| r.name == name && r.state(now) == "active")
                .max_by_key(|r| r.created)
                .map(TokenRecord::principal)
        };
        let mut cache = self.cache.lock().expect("registry");
        self.refresh(&mut cache, false);
        if let Some(p) = find(&cache.records) {
            return Ok(p);
        }
        // A token made a moment ago counts at once (one stat when nothing changed).
        self.refresh(&mut cache, true);
        find(&cache.records).ok_or_else(|| AuthFailure::NoCertificateRole(name.to_string()))
    }

    /// Checks a bearer token; `user` is the name given with it (HTTP Basic), if any.
    pub fn authenticate(&self, user: Option<&str>, token: &str) -> Result<Principal, AuthFailure> {
        if let Some(name) = user {
            if let Some((n, _, role)) = self.statics.iter().find(|(n, h, _)| {
                n == name
                    && secret::ct_eq(
                        h.as_bytes(),
                        secret::sha256_hex(token.as_bytes()).as_bytes(),
                    )
            }) {
                return Ok(Principal {
                    kind: Kind::Operator,
                    name: n.clone(),
                    policy: role.policy(),
                });
            }
        }
        let Some((id, secret_part)) = parse(token) else {
            return Err(if user.is_some() && !self.statics.is_empty() {
                AuthFailure::WrongStatic
            } else {
                AuthFailure::Malformed
            });
        };
        let now = now_secs();
        let record = {
            let mut cache = self.cache.lock().expect("registry");
            self.refresh(&mut cache, false);
            if !cache.records.iter().any(|r| r.id == id) {
                // A token made a moment ago works at once (one stat when nothing changed).
                self.refresh(&mut cache, true);
            }
            cache.records.iter().find(|r| r.id == id).cloned()
        };
        let Some(r) = record else {
            return Err(AuthFailure::Unknown(id.to_string()));
        };
        let hash = secret::sha256_hex(secret_part.as_bytes());
        if !secret::ct_eq(hash.as_bytes(), r.hash.as_bytes()) {
            return Err(AuthFailure::Wrong(r.id));
        }
        match r.state(now) {
            "revoked" => return Err(AuthFailure::Revoked(r.id)),
            "expired" => return Err(AuthFailure::Expired(r.id)),
            _ => {}
        }
        if let Some(given) = user {
            if !given.is_empty() && given != r.name {
                return Err(AuthFailure::WrongName {
                    given: given.to_string(),
                    id: r.id,
                    name: r.name,
                });
            }
        }
        Ok(r.principal())
    }

    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<TokenRecord>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut cache = self.cache.lock().expect("registry");
        let _held = match &self.path {
            Some(p) => Some(ChangeLock::take(p)?),
            None => None,
        };
        let mut records = match &self.path {
            Some(p) => read_file(p)?.0,
            None => cache.records.clone(),
        };
        let out = change(&mut records)?;
        if let Some(path) = &self.path {
            let text = serde_json::to_vec_pretty(&File {
                tokens: records.clone(),
            })
            .expect("records serialize");
            write_private(path, &text).map_err(|e| RegistryError::Write {
                path: path.clone(),
                why: e.to_string(),
            })?;
            cache.seen = stamp_of(path);
        }
        cache.records = records;
        Ok(out)
    }

    /// Creates a token; returns its record and the token itself (shown once, never stored).
    pub fn create(
        &self,
        name: &str,
        role: Role,
        policy: Option<Policy>,
        ttl: Option<Duration>,
    ) -> Result<(TokenRecord, String), RegistryError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            return Err(RegistryError::Invalid(format!(
                "token name {name:?}: use 1 to 64 letters, digits or -_.@"
            )));
        }
        let id = secret::random_hex(6);
        let secret_part = secret::random_hex(24);
        let now = now_secs();
        let record = TokenRecord {
            id: id.clone(),
            name: name.to_string(),
            role,
            policy,
            hash: secret::sha256_hex(secret_part.as_bytes()),
            created: now,
            expires: ttl.map(|t| now + t.as_secs().max(1)),
            revoked: None,
        };
        let r = record.clone();
        self.update(move |records| {
            records.push(r);
            Ok(())
        })?;
        Ok((record, format!("yard_{id}_{secret_part}")))
    }

    /// Revokes every active token whose id or name is `which`; returns their ids.
    pub fn revoke(&self, which: &str) -> Result<Vec<String>, RegistryError> {
        let now = now_secs();
        self.update(|records| {
            let mut ids = vec![];
            for r in records.iter_mut() {
                if (r.id == which || r.name == which) && r.revoked.is_none() {
                    r.revoked = Some(now);
                    ids.push(r.id.clone());
                }
            }
            if ids.is_empty() {
                return Err(RegistryError::Invalid(format!(
                    "no active token has the id or name {which:?} (yard token list shows them)"
                )));
            }
            Ok(ids)
        })
    }
}

/// Splits `yard_<id>_<secret>`.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("yard_")?;
    let (id, secret_part) = rest.split_once('_')?;
    (!id.is_empty() && !secret_part.is_empty()).then_some((id, secret_part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_until_revoked() {
        let dir = yard_testkit::TempDir::new("auth");
        let path = dir.join("tokens.json");
        let reg = Registry::open(&path).unwrap();
        let (rec, token) = reg.create("alice", Role::Operator, None, None).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(parse(&token).unwrap().1),
            "the secret is not stored"
        );
        let p = reg.authenticate(None, &token).unwrap();
        assert_eq!(p.to_string(), "operator:alice");
        assert_eq!(reg.authenticate(Some("alice"), &token).unwrap(), p);
        assert!(matches!(
            reg.authenticate(Some("bob"), &token),
            Err(AuthFailure::WrongName { .. })
        ));
        let forged = format!("yard_{}_{}", rec.id, "0".repeat(48));
        assert_eq!(
            reg.authenticate(None, &forged),
            Err(AuthFailure::Wrong(rec.id.clone()))
        );
        assert_eq!(reg.authenticate(None, "nope"), Err(AuthFailure::Malformed));
        // A second process sharing the file sees the revocation after its reload interval.
        let other = Registry::open(&path).unwrap();
        assert!(other.authenticate(None, &token).is_ok());
        reg.revoke("alice").unwrap();
        std::thread::sleep(RELOAD_EVERY + Duration::from_millis(50));
        assert_eq!(
            other.authenticate(None, &token),
            Err(AuthFailure::Revoked(rec.id.clone()))
        );
        assert!(reg.revoke("alice").is_err(), "nothing left to revoke");
    }

    /// Two processes creating tokens at once (as parallel `yard token create` calls do) keep
    /// every record: before the change lock, the last writer dropped the other's tokens.
    #[test]
    fn concurrent_writers_lose_no_token() {
        let dir = yard_testkit::TempDir::new("auth");
        let path = dir.join("tokens.json");
        let made: Vec<String> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let path = &path;
                    s.spawn(move || {
                        // Its own registry: only the file is shared, as between processes.
                        let reg = Registry::open(path).unwrap();
                        (0..25)
                            .map(|i| {
                                let name = format!("w{w}-{i}");
                                reg.create(&name, Role::Viewer, None, None).unwrap().1
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            writers
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let reader = Registry::open(&path).unwrap();
        assert_eq!(reader.records().len(), 100);
        for token in &made {
            assert!(reader.authenticate(None, token).is_ok(), "{token}");
        }
    }

    #[test]
    fn expired_tokens_and_static_principals() {
        let reg = Registry::in_memory(vec![]).with_static("fw", "sekrit", Role::Operator);
        let (_, token) = reg
            .create("short", Role::Viewer, None, Some(Duration::from_secs(1)))
            .unwrap();
        assert!(reg.authenticate(None, &token).is_ok());
        assert_eq!(
            reg.authenticate(Some("fw"), "sekrit").unwrap().to_string(),
            "operator:fw"
        );
        assert_eq!(
            reg.authenticate(Some("fw"), "wrong"),
            Err(AuthFailure::WrongStatic)
        );
        std::thread::sleep(Duration::from_millis(2100));
        assert!(matches!(
            reg.authenticate(None, &token),
            Err(AuthFailure::Expired(_))
        ));
    }
}
