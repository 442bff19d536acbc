//! Artifacts: content-addressed files (named by their SHA-256), and the agent's deployments
//! (a link switched atomically from one version to the next, with the history kept for
//! rollbacks).
//!
//! Every write lands in a temporary file that is hashed as it is written and renamed into place
//! only when the hash matches: a store never holds a file under a wrong name.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Versions kept per deployment path.
pub const KEEP_VERSIONS: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArtifactError {
    #[error("checksum mismatch: expected sha256 {expected}, the bytes hash to {actual}")]
    Mismatch { expected: String, actual: String },
    #[error("{0:?} is not a SHA-256 (64 hex digits)")]
    BadDigest(String),
    #[error("no artifact {0}")]
    Unknown(String),
    #[error("nothing to roll back to at {0}: it has only one version")]
    NoPrevious(String),
    #[error("nothing deployed{0}")]
    NothingDeployed(String),
    #[error("{0}")]
    Io(String),
    #[error(
        "deployment path {0:?}: give a path relative to the agent's deploy directory, without `..`"
    )]
    Outside(String),
}

fn io(what: &str, p: &Path, e: std::io::Error) -> ArtifactError {
    ArtifactError::Io(format!("{what} {}: {e}", p.display()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn check_digest(s: &str) -> Result<(), ArtifactError> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ArtifactError::BadDigest(s.to_string()))
    }
}

/// A directory of files named by their SHA-256.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
}

impl ArtifactStore {
    pub fn new(dir: PathBuf) -> ArtifactStore {
        ArtifactStore { dir }
    }

    pub fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(sha)
    }

    pub fn has(&self, sha: &str) -> bool {
        check_digest(sha).is_ok() && self.path(sha).is_file()
    }

    /// Stores `bytes`, refusing them when `expected` is given and differs.
    pub fn put(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, ArtifactError> {
        let mut w = self.writer(expected.unwrap_or(""))?;
        w.write(bytes)?;
        w.finish()
    }

    /// A writer for an artifact arriving in pieces; `expected` may be empty (any digest).
    pub fn writer(&self, expected: &str) -> Result<ArtifactWriter, ArtifactError> {
        if !expected.is_empty() {
            check_digest(expected)?;
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io("cannot create", &self.dir, e))?;
        let tmp = self.dir.join(format!(
            ".incoming-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        Ok(ArtifactWriter {
            store: self.clone(),
            tmp,
            file,
            hash: Sha256::new(),
            expected: expected.to_string(),
            len: 0,
        })
    }

    /// Up to `len` bytes from `offset`, and the artifact's size.
    pub fn read_chunk(
        &self,
        sha: &str,
        offset: u64,
        len: u64,
    ) -> Result<(Vec<u8>, u64), ArtifactError> {
        check_digest(sha)?;
        let p = self.path(sha);
        let mut f = std::fs::File::open(&p).map_err(|_| ArtifactError::Unknown(sha.into()))?;
        let total = f.metadata().map_err(|e| io("cannot stat", &p, e))?.len();
        f.seek(SeekFrom::Start(offset.min(total)))
            .map_err(|e| io("cannot seek", &p, e))?;
        let mut buf = Vec::new();
        f.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| io("cannot read", &p, e))?;
        Ok((buf, total))
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct ArtifactWriter {
    store: ArtifactStore,
    tmp: PathBuf,
    file: std::fs::File,
    hash: Sha256,
    expected: String,
    len: u64,
}

impl ArtifactWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ArtifactError> {
        self.hash.update(bytes);
        self.len += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| io("cannot write", &self.tmp, e))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Verifies and moves the file into place; returns its digest.
    pub fn finish(self) -> Result<String, ArtifactError> {
        let actual = hex(&self.hash.clone().finalize());
        if !self.expected.is_empty() && self.expected != actual {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(ArtifactError::Mismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| io("cannot sync", &self.tmp, e))?;
        let dest = self.store.path(&actual);
        std::fs::rename(&self.tmp, &dest).map_err(|e| io("cannot move into", &dest, e))?;
        Ok(actual)
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        // Finished writers have renamed it already; abandoned ones leave nothing behind.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Refuses a deployment path that could leave the deploy directory (absolute, `..`, empty).
pub fn check_relative(path: &str) -> Result<(), ArtifactError> {
    if yard_auth::paths::is_plain_relative(Path::new(path)) {
        Ok(())
    } else {
        Err(ArtifactError::Outside(path.to_string()))
    }
}

/// An agent's deployments: for each path, the digests deployed there, newest last.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct History {
    paths: BTreeMap<String, Vec<String>>,
    /// The path of the newest deployment (the default for a rollback).
    last: Option<String>,
}

pub struct Deployments {
    /// Relative paths are placed here.
    root: PathBuf,
    store: ArtifactStore,
    history_file: PathBuf,
}

/// What a deployment step changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Switched {
    pub path: PathBuf,
    pub from: Option<String>,
    pub to: String,
}

impl Deployments {
    pub fn new(dir: &Path, store: ArtifactStore) -> Deployments {
        Deployments {
            root: dir.join("deploy"),
            store,
            history_file: dir.join("deployments.json"),
        }
    }

    /// Where a deployment of `name` at `path` lands: `path` under the deploy directory, or
    /// `deploy/NAME` by default.
    /// Nothing lands outside that directory: absolute paths and `..` are refused.
    pub fn resolve(&self, path: Option<&str>, name: &str) -> Result<PathBuf, ArtifactError> {
        let rel = path.unwrap_or(name);
        check_relative(rel)?;
        Ok(self.root.join(rel))
    }

    fn load(&self) -> History {
        std::fs::read(&self.history_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, h: &History) -> Result<(), ArtifactError> {
        let tmp = self.history_file.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(h).expect("history serializes"),
        )
        .map_err(|e| io("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, &self.history_file)
            .map_err(|e| io("cannot write", &self.history_file, e))
    }

    /// Points `path` at the stored artifact `sha`, atomically.
    pub fn install(&self, path: &Path, sha: &str) -> Result<Switched, ArtifactError> {
        if !self.store.has(sha) {
            return Err(ArtifactError::Unknown(sha.into()));
        }
        let mut h = self.load();
        let key = path.display().to_string();
        let versions = h.paths.entry(key.clone()).or_default();
        let from = versions.last().cloned();
        switch_link(path, &self.store.path(sha))?;
        versions.retain(|v| v != sha);
        versions.push(sha.to_string());
        if versions.len() > KEEP_VERSIONS {
            versions.remove(0);
        }
        h.last = Some(key);
        self.save(&h)?;
        Ok(Switched {
            path: path.to_path_buf(),
            from,
            to: sha.to_string(),
        })
    }

    /// Switches `path` (the newest deployment's when `None`) back to its previous version.
    pub fn rollback(&self, path: Option<&Path>) -> Result<Switched, ArtifactError> {
        let mut h = self.load();
        let key = match path {
            Some(p) => p.display().to_string(),
            None => h
                .last
                .clone()
                .ok_or_else(|| ArtifactError::NothingDeployed(String::new()))?,
        };
        let versions = h
            .paths
            .get_mut(&key)
            .ok_or_else(|| ArtifactError::NothingDeployed(format!(" at {key}")))?;
        if versions.len() < 2 {
            return Err(ArtifactError::NoPrevious(key));
        }
        let from = versions.pop().expect("two versions");
        let to = versions.last().expect("one left").clone();
        switch_link(Path::new(&key), &self.store.path(&to))?;
        self.save(&h)?;
        Ok(Switched {
            path: PathBuf::from(key),
            from: Some(from),
            to,
        })
    }
}

/// Replaces `link` by a symlink to `target` with one rename (readers see the old or the new
/// version, never neither).
fn switch_link(link: &Path, target: &Path) -> Result<(), ArtifactError> {
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    }
    let tmp = link.with_file_name(format!(
        ".{}.switch-{}",
        link.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| io("cannot link", &tmp, e))?;
    std::fs::rename(&tmp, link).map_err(|e| io("cannot switch", link, e))
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployments").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ArtifactWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactWriter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("yard-art-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_mismatched_digest_is_refused_and_leaves_nothing() {
        let d = dir("mismatch");
        let s = ArtifactStore::new(d.join("a"));
        let good = sha256_hex(b"v1");
        let e = s.put(b"v1 tampered", Some(&good)).unwrap_err();
        assert!(matches!(e, ArtifactError::Mismatch { .. }), "{e}");
        assert!(!s.has(&good));
        assert_eq!(std::fs::read_dir(d.join("a")).unwrap().count(), 0);
        assert_eq!(s.put(b"v1", Some(&good)).unwrap(), good);
        assert_eq!(s.read_chunk(&good, 1, 10).unwrap(), (b"1".to_vec(), 2));
        assert!(matches!(
            s.put(b"x", Some("../etc")),
            Err(ArtifactError::BadDigest(_))
        ));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn deployments_switch_and_roll_back() {
        let d = dir("deploy");
        let s = ArtifactStore::new(d.join("artifacts"));
        let deps = Deployments::new(&d, s.clone());
        let v1 = s.put(b"one", None).unwrap();
        let v2 = s.put(b"two", None).unwrap();
        let p = deps.resolve(None, "app.bin").unwrap();
        for bad in ["/etc/passwd", "../x", "a/../../x", ""] {
            assert!(
                matches!(deps.resolve(Some(bad), "n"), Err(ArtifactError::Outside(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            deps.rollback(None),
            Err(ArtifactError::NothingDeployed(_))
        ));
        deps.install(&p, &v1).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert!(matches!(
            deps.rollback(None),
            Err(ArtifactError::NoPrevious(_))
        ));
        let sw = deps.install(&p, &v2).unwrap();
        assert_eq!(
            (sw.from.as_deref(), sw.to.as_str()),
            (Some(v1.as_str()), v2.as_str())
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let back = deps.rollback(None).unwrap();
        assert_eq!(back.to, v1);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert!(s.has(&v2), "the newer version is kept");
        std::fs::remove_dir_all(d).unwrap();
    }
}
