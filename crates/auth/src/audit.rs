//! The audit log: one JSON line per decision worth keeping (every change, every command, every
//! credential that failed, every policy denial), appended to `audit.jsonl` in the daemon's
//! data directory and rotated by size (`audit.jsonl.1` … `.N`, the oldest dropped). Records are
//! never rewritten. [`AuditLog::query`] reads them back, newest first.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::logfile::{numbered, RotatingFile, Rotation};

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the epoch.
    pub ts: u64,
    /// `operator:alice`, `app:ingest`, `anonymous`.
    pub principal: String,
    /// The caller's address.
    pub remote: String,
    /// `POST /v1/commands`, `subscribe <$>/ops/`, …
    pub action: String,
    /// `ok`, `failed` (the action ran and failed), `denied` (no permission), `unauthenticated`
    /// (a bad or missing credential).
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Which records a query wants.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub result: Option<String>,
    /// Records whose action contains this text.
    pub action: Option<String>,
    /// Milliseconds since the epoch.
    pub since: Option<u64>,
    pub limit: Option<usize>,
}

impl AuditFilter {
    fn keeps(&self, r: &AuditRecord) -> bool {
        self.principal.as_ref().is_none_or(|p| &r.principal == p)
            && self.result.as_ref().is_none_or(|x| &r.result == x)
            && self
                .action
                .as_ref()
                .is_none_or(|a| r.action.contains(a.as_str()))
            && self.since.is_none_or(|s| r.ts >= s)
    }
}

/// A daemon's audit log.
pub struct AuditLog {
    path: Option<PathBuf>,
    keep: usize,
    /// The file (none for a log in memory); held only while one line is written (never across
    /// `.await`).
    writer: Mutex<Option<RotatingFile>>,
    /// Records by result, for `/metrics`.
    counts: Mutex<BTreeMap<String, u64>>,
    /// Records kept in memory when there is no file (tests, bench daemons).
    memory: Mutex<Vec<AuditRecord>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

pub use yard_data::time::now_ms;

/// The most records held by an in-memory log (the oldest go first).
const MEMORY_MAX: usize = 10_000;

impl AuditLog {
    /// A log at `dir/audit.jsonl`, rotated past `max_bytes`, keeping `keep` old files.
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        let path = dir.join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: max_bytes.max(4096),
            keep: keep.max(1),
        };
        let file = RotatingFile::open_with_mode(path.clone(), rotation, 0o600)?;
        Ok(AuditLog {
            path: Some(path),
            keep: rotation.keep,
            writer: Mutex::new(Some(file)),
            counts: Mutex::new(BTreeMap::new()),
            memory: Mutex::new(vec![]),
        })
    }

    /// A log kept in memory only.
    pub fn in_memory() -> AuditLog {
        AuditLog {
            path: None,
            keep: 1,
            writer: Mutex::new(None),
            counts: Mutex::new(BTreeMap::new()),
            memory: Mutex::new(vec![]),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends a record. A log that cannot be written is reported, and the decision stands.
    pub fn record(&self, r: AuditRecord) {
        *self
            .counts
            .lock()
            .expect("audit counts")
            .entry(r.result.clone())
            .or_insert(0) += 1;
        let Some(path) = &self.path else {
            let mut m = self.memory.lock().expect("audit memory");
            if m.len() >= MEMORY_MAX {
                m.remove(0);
            }
            m.push(r);
            return;
        };
        let mut line = serde_json::to_vec(&r).expect("records serialize");
        line.push(b'\n');
        let mut w = self.writer.lock().expect("audit writer");
        if let Some(f) = w.as_mut() {
            if let Err(e) = f.write(&line) {
                tracing::error!("audit log {}: {e}", path.display());
            }
        }
    }

    /// Records by result since start.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("audit counts").clone()
    }

    /// The records that pass `filter`, newest first (at most `limit`, 100 by default).
    pub fn query(&self, filter: &AuditFilter) -> Vec<AuditRecord> {
        let limit = filter.limit.unwrap_or(100).min(10_000);
        let Some(path) = &self.path else {
            let m = self.memory.lock().expect("audit memory");
            return m
                .iter()
                .rev()
                .filter(|r| filter.keeps(r))
                .take(limit)
                .cloned()
                .collect();
        };
        let mut out = Vec::new();
        for i in 0..=self.keep {
            let p = numbered(path, i);
            let Ok(f) = std::fs::File::open(&p) else {
                continue;
            };
            let mut records: Vec<AuditRecord> = std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str(&l).ok())
                .collect();
            records.reverse();
            for r in records {
                if filter.keeps(&r) {
                    out.push(r);
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64, result: &str) -> AuditRecord {
        AuditRecord {
            ts: i,
            principal: if i.is_multiple_of(2) {
                "operator:a"
            } else {
                "anonymous"
            }
            .into(),
            remote: "127.0.0.1:1".into(),
            action: format!("POST /v1/commands #{i}"),
            result: result.into(),
            status: Some(202),
            detail: String::new(),
        }
    }

    #[test]
    fn records_rotate_and_read_back_newest_first() {
        let tmp = yard_testkit::TempDir::new("audit");
        let dir = tmp.join("d");
        let log = AuditLog::open(&dir, 4096, 2).unwrap();
        for i in 0..100 {
            log.record(rec(i, if i % 10 == 0 { "denied" } else { "ok" }));
        }
        assert!(dir.join("audit.jsonl.1").exists());
        assert!(!dir.join("audit.jsonl.3").exists(), "only `keep` old files");
        let newest = log.query(&AuditFilter {
            limit: Some(3),
            ..Default::default()
        });
        assert_eq!(
            newest.iter().map(|r| r.ts).collect::<Vec<_>>(),
            vec![99, 98, 97]
        );
        let denied = log.query(&AuditFilter {
            result: Some("denied".into()),
            since: Some(60),
            ..Default::default()
        });
        assert_eq!(
            denied.iter().map(|r| r.ts).collect::<Vec<_>>(),
            vec![90, 80, 70, 60]
        );
        assert_eq!(log.counts()["denied"], 10);
        assert_eq!(log.counts()["ok"], 90);
    }
}
