//! Remote logging, the receiving side: `yard node --log-dir DIR` subscribes to `yard/logs/` and
//! appends every record of stream `S`, from anywhere in the mesh, to `DIR/S.log` as one JSON line:
//! `{"ts":…,"origin":…,"stream":…,"@data-type":…,"data":…}`.
//!
//! Rotation is by size ([`yard_auth::logfile`], the one rotation): a record that would take
//! `S.log` past `max_bytes` first renames `S.log` to `S.log.1` (and `.1` to `.2`, …, keeping
//! `keep` old files, the oldest deleted). Records on
//! invalid stream names are refused with an error line on the node's log and counted. The writer
//! is a client with a bounded queue (`drop_newest`: when the disk cannot keep up, new records are
//! dropped and counted, never the endpoint slowed).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use yard_auth::logfile::{RotatingFile, Rotation};
use yard_data::json::{self, JsonOptions};
use yard_data::time::{write_timestamp, TimestampPrecision};
use yard_fabric::{Endpoint, OverflowPolicy};

use yard_data::topic::{check_stream, LOG_ROOT};

/// Where and how log records are kept.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub keep: usize,
}

/// The files of all streams (no async: callers run it where blocking is fine).
#[derive(Debug)]
pub struct LogFiles {
    config: LogConfig,
    open: HashMap<String, RotatingFile>,
}

impl LogFiles {
    pub fn new(config: LogConfig) -> std::io::Result<LogFiles> {
        std::fs::create_dir_all(&config.dir)?;
        Ok(LogFiles {
            config,
            open: HashMap::new(),
        })
    }

    /// Appends one line (without its newline) to a stream's file, rotating first if needed.
    pub fn append(&mut self, stream: &str, line: &str) -> std::io::Result<()> {
        if !self.open.contains_key(stream) {
            let path = self.config.dir.join(format!("{stream}.log"));
            let rotation = Rotation {
                max_bytes: self.config.max_bytes,
                keep: self.config.keep,
            };
            self.open
                .insert(stream.to_string(), RotatingFile::open(path, rotation)?);
        }
        let file = self.open.get_mut(stream).expect("opened above");
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        file.write(&buf)
    }
}

/// One record as a JSON line.
pub fn record_line(ts_ns: i64, origin: &str, stream: &str, msg: &yard_fabric::Message) -> String {
    let mut s = String::from("{\"ts\":\"");
    write_timestamp(&mut s, ts_ns, TimestampPrecision::Micros);
    s.push_str("\",\"origin\":");
    json::write_json_string(&mut s, origin);
    s.push_str(",\"stream\":");
    json::write_json_string(&mut s, stream);
    s.push(',');
    json::write_value_fields(&mut s, &msg.value, JsonOptions::default());
    s.push('}');
    s
}

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot create the log directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot subscribe the log writer: {0}")]
    Attach(String),
}

/// Runs the writer until the endpoint shuts down.
pub async fn run(endpoint: Endpoint, config: LogConfig) -> Result<(), LogError> {
    let mut files = LogFiles::new(config.clone()).map_err(|source| LogError::Dir {
        dir: config.dir.clone(),
        source,
    })?;
    let client = endpoint
        .attach(
            "log-writer",
            vec![LOG_ROOT.to_string()],
            65_536,
            OverflowPolicy::DropNewest,
        )
        .await
        .map_err(|e| LogError::Attach(e.to_string()))?;
    tracing::info!(dir = %config.dir.display(), "writing remote log streams");
    let mut batch = Vec::new();
    while client.recv_batch(&mut batch, 1024).await.is_ok() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        // The batch is written in one go on a blocking thread: disks may be slow.
        let msgs = std::mem::take(&mut batch);
        let joined = tokio::task::spawn_blocking(move || {
            let mut result = Ok(());
            for m in &msgs {
                let stream = &m.topic[LOG_ROOT.len()..];
                if let Err(e) = check_stream(stream) {
                    tracing::warn!(origin = %m.origin, "log record refused: {e}");
                    continue;
                }
                if let Err(e) = files.append(stream, &record_line(now, &m.origin, stream, m)) {
                    result = Err(e);
                    break;
                }
            }
            (files, result)
        })
        .await;
        let Ok((back, result)) = joined else {
            tracing::error!("the log writer's thread failed: stopping it");
            return Ok(());
        };
        files = back;
        if let Err(e) = result {
            tracing::error!("cannot write log records to {}: {e}", config.dir.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_newest_files_within_the_size() {
        let tmp = yard_testkit::TempDir::new("logs");
        let dir = tmp.join("d");
        let mut files = LogFiles::new(LogConfig {
            dir: dir.clone(),
            max_bytes: 100,
            keep: 2,
        })
        .unwrap();
        for i in 0..20 {
            files.append("app", &format!("{{\"n\":{i:04}}}")).unwrap();
        }
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        // Each line is 11 bytes with its newline: 9 fit in 100 bytes.
        assert_eq!(read("app.log").lines().count(), 2);
        assert_eq!(read("app.log.1").lines().count(), 9);
        assert!(read("app.log.1").len() <= 100);
        assert!(read("app.log").ends_with("{\"n\":0019}\n"));
        assert!(read("app.log.2").starts_with("{\"n\":0000}"));
        assert!(!dir.join("app.log.3").exists());
    }
}
