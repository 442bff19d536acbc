//! The center's embedded time-series store, in one SQLite file.
//!
//! Three tiers per series: raw samples (exact, kept for `raw` retention), one-minute and one-hour
//! rollups (min, max, sum, count; kept for `minute` and `hour` retention). Rollups are updated
//! as samples arrive, so a query at any resolution is one indexed range scan. A sample that
//! repeats a series' timestamp is ignored (raw and rollups alike), so a replayed batch does not
//! skew the rollups.
//!
//! Blocking: callers run it on a blocking thread.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::proto::Sample;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub raw: Duration,
    pub minute: Duration,
    pub hour: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw: Duration::from_secs(6 * 3600),
            minute: Duration::from_secs(14 * 86400),
            hour: Duration::from_secs(365 * 86400),
        }
    }
}

/// Which tier a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Raw,
    Minute,
    Hour,
}

impl Resolution {
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "raw" => Some(Resolution::Raw),
            "1m" | "minute" => Some(Resolution::Minute),
            "1h" | "hour" => Some(Resolution::Hour),
            _ => None,
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Resolution::Raw => 0,
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
        }
    }
}

/// One point of a query's answer: a raw sample has `value`; a rollup has the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Unix milliseconds (a rollup's bucket start).
    pub ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("metrics database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("metrics database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Unix milliseconds as SQLite stores them (its integers are signed).
fn sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// An SQLite integer read back as Unix milliseconds.
fn unix(v: i64) -> u64 {
    v.max(0) as u64
}

pub struct Tsdb {
    conn: Connection,
    ids: HashMap<String, i64>,
    pub retention: Retention,
}

impl Tsdb {
    pub fn open(path: &Path, retention: Retention) -> Result<Tsdb, TsdbError> {
        let open = |e| TsdbError::Open {
            path: path.display().to_string(),
            source: e,
        };
        let conn = Connection::open(path).map_err(open)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
             CREATE TABLE IF NOT EXISTS raw(series INTEGER NOT NULL, ts INTEGER NOT NULL,
                 value REAL NOT NULL, PRIMARY KEY(series, ts)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS rollup(series INTEGER NOT NULL, res INTEGER NOT NULL,
                 bucket INTEGER NOT NULL, min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL,
                 count INTEGER NOT NULL, PRIMARY KEY(series, res, bucket)) WITHOUT ROWID;",
        )
        .map_err(open)?;
        let mut ids = HashMap::new();
        {
            let mut st = conn.prepare("SELECT name, id FROM series")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for r in rows {
                let (n, i) = r?;
                ids.insert(n, i);
            }
        }
        Ok(Tsdb {
            conn,
            ids,
            retention,
        })
    }

    /// Stores samples in one transaction; returns how many were new.
    pub fn insert(&mut self, samples: &[Sample]) -> Result<usize, TsdbError> {
        let tx = self.conn.transaction()?;
        let mut added = 0;
        {
            let mut new_series = tx.prepare_cached("INSERT INTO series(name) VALUES (?1)")?;
            let mut raw = tx.prepare_cached(
                "INSERT OR IGNORE INTO raw(series, ts, value) VALUES (?1, ?2, ?3)",
            )?;
            let mut roll = tx.prepare_cached(
                "INSERT INTO rollup(series, res, bucket, min, max, sum, count)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?4, 1)
                 ON CONFLICT(series, res, bucket) DO UPDATE SET
                   min = min(min, excluded.min), max = max(max, excluded.max),
                   sum = sum + excluded.sum, count = count + 1",
            )?;
            for s in samples {
                if !s.value.is_finite() {
                    continue;
                }
                let id = match self.ids.get(&s.series) {
                    Some(id) => *id,
                    None => {
                        new_series.execute(params![s.series])?;
                        let id = tx.last_insert_rowid();
                        self.ids.insert(s.series.clone(), id);
                        id
                    }
                };
                let ts = sql(s.ts);
                if raw.execute(params![id, ts, s.value])? == 0 {
                    continue;
                }
                added += 1;
                for res in [Resolution::Minute, Resolution::Hour] {
                    let width = res.seconds() * 1000;
                    roll.execute(params![
                        id,
                        res.seconds(),
                        ts.div_euclid(width) * width,
                        s.value
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// The tier a query over `[from, to]` reads when none is asked for: the finest one that
    /// still holds `from`.
    pub fn auto_resolution(&self, from: u64, now: u64) -> Resolution {
        let age = Duration::from_millis(now.saturating_sub(from));
        if age <= self.retention.raw {
            Resolution::Raw
        } else if age <= self.retention.minute {
            Resolution::Minute
        } else {
            Resolution::Hour
        }
    }

    /// Points of `series` with `from <= ts <= to`, oldest first.
    pub fn query(
        &self,
        series: &str,
        from: u64,
        to: u64,
        res: Resolution,
    ) -> Result<Vec<Point>, TsdbError> {
        let Some(id) = self.ids.get(series) else {
            return Ok(Vec::new());
        };
        if res == Resolution::Raw {
            let mut st = self.conn.prepare_cached(
                "SELECT ts, value FROM raw WHERE series = ?1 AND ts BETWEEN ?2 AND ?3 ORDER BY ts",
            )?;
            let rows = st.query_map(params![id, sql(from), sql(to)], |r| {
                Ok(Point {
                    ts: unix(r.get(0)?),
                    value: Some(r.get(1)?),
                    min: None,
                    max: None,
                    avg: None,
                    count: None,
                })
            })?;
            return Ok(rows.collect::<Result<_, _>>()?);
        }
        let width = res.seconds() * 1000;
        let mut st = self.conn.prepare_cached(
            "SELECT bucket, min, max, sum, count FROM rollup
             WHERE series = ?1 AND res = ?2 AND bucket BETWEEN ?3 AND ?4 ORDER BY bucket",
        )?;
        let rows = st.query_map(
            params![
                id,
                res.seconds(),
                sql(from).div_euclid(width) * width,
                sql(to)
            ],
            |r| {
                let sum: f64 = r.get(3)?;
                let count: i64 = r.get(4)?;
                Ok(Point {
                    ts: unix(r.get(0)?),
                    value: None,
                    min: Some(r.get(1)?),
                    max: Some(r.get(2)?),
                    avg: Some(sum / count.max(1) as f64),
                    count: Some(count as u64),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Series names starting with `prefix`, sorted.
    pub fn series(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ids
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// The newest raw sample of a series.
    pub fn last(&self, series: &str) -> Result<Option<(u64, f64)>, TsdbError> {
        let Some(id) = self.ids.get(series) else {
            return Ok(None);
        };
        Ok(self
            .conn
            .prepare_cached("SELECT ts, value FROM raw WHERE series = ?1 ORDER BY ts DESC LIMIT 1")?
            .query_row(params![id], |r| Ok((unix(r.get(0)?), r.get(1)?)))
            .optional()?)
    }

    /// Deletes what is older than each tier's retention; returns the rows deleted.
    pub fn prune(&mut self, now: u64) -> Result<usize, TsdbError> {
        let ms = |d: Duration| sql(now.saturating_sub(d.as_millis() as u64));
        let mut n = self.conn.execute(
            "DELETE FROM raw WHERE ts < ?1",
            params![ms(self.retention.raw)],
        )?;
        for (res, keep) in [
            (Resolution::Minute, self.retention.minute),
            (Resolution::Hour, self.retention.hour),
        ] {
            n += self.conn.execute(
                "DELETE FROM rollup WHERE res = ?1 AND bucket < ?2",
                params![res.seconds(), ms(keep)],
            )?;
        }
        Ok(n)
    }
}

impl std::fmt::Debug for Tsdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tsdb").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(tag: &str) -> (Tsdb, std::path::PathBuf) {
        let p = std::env::temp_dir().join(format!("yard-tsdb-{tag}-{}.db", std::process::id()));
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", p.display()));
        }
        (Tsdb::open(&p, Retention::default()).unwrap(), p)
    }

    fn sample(series: &str, ts: u64, value: f64) -> Sample {
        Sample {
            series: series.into(),
            ts,
            value,
        }
    }

    #[test]
    fn raw_queries_return_exactly_the_samples_stored_and_rollups_keep_min_max_avg() {
        let (mut t, p) = db("exact");
        // Two minutes of samples every 5 s, with known values; another series interleaved.
        let base = 1_700_000_040_000u64; // a minute boundary
        let mut want = Vec::new();
        let mut batch = Vec::new();
        for i in 0..24 {
            let v = (i * 7 % 11) as f64 + 0.25;
            want.push((base + i * 5000, v));
            batch.push(sample("c/a/cpu", base + i * 5000, v));
            batch.push(sample("c/b/cpu", base + i * 5000, -v));
        }
        assert_eq!(t.insert(&batch).unwrap(), 48);
        // A replayed batch adds nothing and does not skew rollups.
        assert_eq!(t.insert(&batch).unwrap(), 0);
        let got = t
            .query("c/a/cpu", base, base + 200_000, Resolution::Raw)
            .unwrap();
        let got: Vec<(u64, f64)> = got.iter().map(|p| (p.ts, p.value.unwrap())).collect();
        assert_eq!(got, want);
        let part = t
            .query("c/a/cpu", base + 5000, base + 15_000, Resolution::Raw)
            .unwrap();
        assert_eq!(part.len(), 3);
        let mins = t
            .query("c/a/cpu", base, base + 200_000, Resolution::Minute)
            .unwrap();
        assert_eq!(mins.len(), 2);
        for (k, m) in mins.iter().enumerate() {
            let vals: Vec<f64> = want[k * 12..(k + 1) * 12].iter().map(|w| w.1).collect();
            assert_eq!(m.ts, base + k as u64 * 60_000);
            assert_eq!(m.count, Some(12));
            assert_eq!(m.min, vals.iter().cloned().reduce(f64::min));
            assert_eq!(m.max, vals.iter().cloned().reduce(f64::max));
            let avg = vals.iter().sum::<f64>() / 12.0;
            assert!((m.avg.unwrap() - avg).abs() < 1e-9);
        }
        let hours = t
            .query("c/a/cpu", base, base + 200_000, Resolution::Hour)
            .unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].count, Some(24));
        assert_eq!(t.series("c/"), ["c/a/cpu", "c/b/cpu"]);
        assert_eq!(
            t.last("c/b/cpu").unwrap(),
            Some((base + 23 * 5000, -want[23].1))
        );
        // Reopened: the same answers.
        drop(t);
        let t = Tsdb::open(&p, Retention::default()).unwrap();
        assert_eq!(
            t.query("c/a/cpu", base, base + 200_000, Resolution::Raw)
                .unwrap()
                .len(),
            24
        );
        assert!(t
            .query("nope", 0, u64::MAX, Resolution::Raw)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn retention_prunes_each_tier_and_auto_resolution_follows_it() {
        let (mut t, _p) = db("prune");
        t.retention = Retention {
            raw: Duration::from_secs(3600),
            minute: Duration::from_secs(86400),
            hour: Duration::from_secs(30 * 86400),
        };
        let now = 100 * 86_400_000u64;
        let old = now - 2 * 3_600_000; // past raw retention, within the minute tier
        t.insert(&[sample("s", old, 1.0), sample("s", now - 1000, 2.0)])
            .unwrap();
        t.prune(now).unwrap();
        let raw = t.query("s", 0, now, Resolution::Raw).unwrap();
        assert_eq!(raw.len(), 1, "the old raw sample is gone");
        let mins = t.query("s", 0, now, Resolution::Minute).unwrap();
        assert_eq!(mins.len(), 2, "its minute rollup is kept");
        assert_eq!(t.auto_resolution(now - 1000, now), Resolution::Raw);
        assert_eq!(t.auto_resolution(old, now), Resolution::Minute);
        assert_eq!(
            t.auto_resolution(now - 3 * 86_400_000, now),
            Resolution::Hour
        );
    }
}
