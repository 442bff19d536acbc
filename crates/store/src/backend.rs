//! Where a master keeps its map. Both backends do the same things; the conformance suite
//! (`tests/conformance.rs`) runs against each.
//!
//! - **memory**: a `BTreeMap`, gone when the process ends.
//! - **sqlite**: one table `store(key BLOB PRIMARY KEY, value BLOB, expiry INTEGER)` holding
//!   keys and values in the binary encoding, WAL journal, `synchronous` configurable (NORMAL by
//!   default), an optional integrity check at open. A batch of mutations is one transaction: the
//!   master answers and replicates only after it commits.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::{params, Connection, OptionalExtension};
use yard_data::{binary, Value};

use crate::ops::{Effect, Entry};
use crate::StoreError;

/// SQLite's `synchronous` setting. With WAL, NORMAL loses nothing when the process dies (kill
/// -9): a commit is in the operating system's hands. It may lose the last commits when the
/// machine itself crashes or loses power. FULL syncs every commit to disk and loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Off,
    Normal,
    Full,
    Extra,
}

/// Why a backend spec was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("synchronous {0:?}: expected off, normal, full or extra")]
    Synchronous(String),
    #[error("backend {0:?}: expected memory or sqlite:PATH[?synchronous=normal|full&integrity_check=true]")]
    Kind(String),
    #[error("backend sqlite: give a file path, e.g. sqlite:./data/users.db")]
    NoPath,
    #[error("integrity_check={0}: expected true or false")]
    IntegrityCheck(String),
    #[error("backend option {0:?}: known options are synchronous=… and integrity_check=…")]
    Option(String),
}

impl From<SpecError> for String {
    fn from(e: SpecError) -> String {
        e.to_string()
    }
}

impl FromStr for Synchronous {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Synchronous::Off),
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            "extra" => Ok(Synchronous::Extra),
            _ => Err(SpecError::Synchronous(s.to_string())),
        }
    }
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// Which backend a master uses: `memory`, or `sqlite:PATH` with optional settings
/// `sqlite:PATH?synchronous=full&integrity_check=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    Memory,
    Sqlite {
        path: PathBuf,
        synchronous: Synchronous,
        integrity_check: bool,
    },
}

impl FromStr for BackendSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        if s == "memory" {
            return Ok(BackendSpec::Memory);
        }
        let Some(rest) = s.strip_prefix("sqlite:") else {
            return Err(SpecError::Kind(s.to_string()));
        };
        let (path, options) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(SpecError::NoPath);
        }
        let mut synchronous = Synchronous::Normal;
        let mut integrity_check = false;
        for opt in options.split('&').filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("synchronous", v)) => synchronous = v.parse()?,
                Some(("integrity_check", v)) => {
                    integrity_check = match v {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(SpecError::IntegrityCheck(v.to_string())),
                    }
                }
                _ => return Err(SpecError::Option(opt.to_string())),
            }
        }
        Ok(BackendSpec::Sqlite {
            path: PathBuf::from(path),
            synchronous,
            integrity_check,
        })
    }
}

impl std::fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendSpec::Memory => f.write_str("memory"),
            BackendSpec::Sqlite { path, .. } => write!(f, "sqlite:{}", path.display()),
        }
    }
}

impl BackendSpec {
    /// Opens (creating if needed) the backend for store `name`.
    pub fn open(&self, name: &str) -> Result<Box<dyn Backend>, StoreError> {
        Ok(match self {
            BackendSpec::Memory => Box::new(Memory::default()),
            BackendSpec::Sqlite {
                path,
                synchronous,
                integrity_check,
            } => Box::new(Sqlite::open(path, name, *synchronous, *integrity_check)?),
        })
    }
}

/// A consistent view of a map, read page by page (a backup reads one while writes continue).
pub trait SnapshotSource: Send {
    /// The next up to `limit` entries; empty at the end.
    fn next_page(&mut self, limit: usize) -> Result<Vec<(Value, Entry)>, StoreError>;
}

/// A master's storage. Mutations happen between [`Backend::begin`] and [`Backend::commit`];
/// reads inside a transaction see its writes.
pub trait Backend: Send {
    fn begin(&mut self) -> Result<(), StoreError>;
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Undoes everything since `begin` (after a failed commit or apply).
    fn rollback(&mut self);
    fn get(&mut self, key: &Value) -> Result<Option<Entry>, StoreError>;
    fn apply(&mut self, effect: &Effect) -> Result<(), StoreError>;
    fn keys(&mut self) -> Result<Vec<Value>, StoreError>;
    fn count(&mut self) -> Result<u64, StoreError>;
    /// Up to `limit` entries after `after` in the backend's own stable order.
    fn page(
        &mut self,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<Vec<(Value, Entry)>, StoreError>;
    /// Every key with an expiry (read at open to rebuild the expiry schedule).
    fn expiries(&mut self) -> Result<Vec<(Value, i64)>, StoreError>;
    /// A consistent view as of now that stays valid while writes continue.
    fn snapshot(&mut self) -> Result<Box<dyn SnapshotSource>, StoreError>;
    /// Replaces the whole map atomically (restore).
    fn replace(&mut self, entries: Vec<(Value, Entry)>) -> Result<(), StoreError>;
}

// ---- memory -----------------------------------------------------------------------------------

/// The in-memory backend. Its transactions are trivial: nothing in it can fail.
#[derive(Default)]
pub struct Memory {
    map: BTreeMap<Value, Entry>,
}

impl Backend for Memory {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn rollback(&mut self) {}
    fn get(&mut self, key: &Value) -> Result<Option<Entry>, StoreError> {
        Ok(self.map.get(key).cloned())
    }
    fn apply(&mut self, effect: &Effect) -> Result<(), StoreError> {
        apply_to_map(&mut self.map, effect);
        Ok(())
    }
    fn keys(&mut self) -> Result<Vec<Value>, StoreError> {
        Ok(self.map.keys().cloned().collect())
    }
    fn count(&mut self) -> Result<u64, StoreError> {
        Ok(self.map.len() as u64)
    }
    fn page(
        &mut self,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<Vec<(Value, Entry)>, StoreError> {
        Ok(page_of(&self.map, after, limit))
    }
    fn expiries(&mut self) -> Result<Vec<(Value, i64)>, StoreError> {
        Ok(self
            .map
            .iter()
            .filter_map(|(k, e)| e.expiry.map(|x| (k.clone(), x)))
            .collect())
    }
    fn snapshot(&mut self) -> Result<Box<dyn SnapshotSource>, StoreError> {
        // A copy: O(n) in the actor, then read at leisure.
        Ok(Box::new(MapSnapshot {
            map: self.map.clone(),
            after: None,
        }))
    }
    fn replace(&mut self, entries: Vec<(Value, Entry)>) -> Result<(), StoreError> {
        self.map = entries.into_iter().collect();
        Ok(())
    }
}

/// Applies an effect to an in-memory map (the memory backend and every clone).
pub fn apply_to_map(map: &mut BTreeMap<Value, Entry>, effect: &Effect) {
    match effect {
        Effect::Put { key, value, expiry } => {
            map.insert(
                key.clone(),
                Entry {
                    value: value.clone(),
                    expiry: *expiry,
                },
            );
        }
        Effect::Erase { key } | Effect::Expire { key } => {
            map.remove(key);
        }
        Effect::Clear => map.clear(),
    }
}

/// Up to `limit` entries of `map` after `after`.
pub fn page_of(
    map: &BTreeMap<Value, Entry>,
    after: Option<&Value>,
    limit: usize,
) -> Vec<(Value, Entry)> {
    let lower = match after {
        Some(k) => Bound::Excluded(k),
        None => Bound::Unbounded,
    };
    map.range((lower, Bound::Unbounded))
        .take(limit)
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect()
}

struct MapSnapshot {
    map: BTreeMap<Value, Entry>,
    after: Option<Value>,
}

impl SnapshotSource for MapSnapshot {
    fn next_page(&mut self, limit: usize) -> Result<Vec<(Value, Entry)>, StoreError> {
        let page = page_of(&self.map, self.after.as_ref(), limit);
        if let Some((k, _)) = page.last() {
            self.after = Some(k.clone());
        }
        Ok(page)
    }
}

// ---- SQLite -----------------------------------------------------------------------------------

/// The SQLite backend.
pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
    in_txn: bool,
}

/// The schema's version, kept in the `meta` table.
const SCHEMA_VERSION: i64 = 1;

fn db_err(context: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{context}: {e}"))
}

fn decode_row(key: &[u8], value: &[u8], expiry: Option<i64>) -> Result<(Value, Entry), StoreError> {
    let key = binary::decode(key)
        .map_err(|e| StoreError::Backend(format!("corrupt key in the database: {e}")))?;
    let value = binary::decode(value)
        .map_err(|e| StoreError::Backend(format!("corrupt value in the database: {e}")))?;
    Ok((key, Entry { value, expiry }))
}

impl Sqlite {
    /// Opens or creates the database at `path` for store `name`. Refuses a database that
    /// belongs to another store, one from a newer schema, and (with `integrity_check`) one that
    /// SQLite finds damaged.
    pub fn open(
        path: &Path,
        name: &str,
        synchronous: Synchronous,
        integrity_check: bool,
    ) -> Result<Sqlite, StoreError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path).map_err(db_err(&shown))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path = %shown, %mode, "SQLite refused the WAL journal");
            }
            conn.execute_batch(&format!("PRAGMA synchronous={}", synchronous.pragma()))?;
            Ok(())
        };
        setup().map_err(|e| {
            StoreError::Backend(format!("{shown}: not a usable SQLite database: {e}"))
        })?;
        if integrity_check {
            let verdict: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(db_err(&shown))?;
            if verdict != "ok" {
                return Err(StoreError::Backend(format!(
                    "{shown} failed SQLite's integrity check: {verdict}"
                )));
            }
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value ANY) STRICT;
             CREATE TABLE IF NOT EXISTS store(key BLOB PRIMARY KEY, value BLOB NOT NULL, expiry INTEGER) WITHOUT ROWID;",
        )
        .map_err(|e| StoreError::Backend(format!("{shown}: not a usable SQLite database: {e}")))?;
        let owner: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE name='store'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err(&shown))?;
        match owner {
            Some(o) if o != name => {
                return Err(StoreError::Backend(format!(
                    "{shown} holds store {o:?}, not {name:?}; give each store its own file"
                )))
            }
            Some(_) => {
                let version: i64 = conn
                    .query_row("SELECT value FROM meta WHERE name='schema'", [], |r| {
                        r.get(0)
                    })
                    .map_err(db_err(&shown))?;
                if version > SCHEMA_VERSION {
                    return Err(StoreError::Backend(format!(
                        "{shown} has schema version {version}; this yard understands {SCHEMA_VERSION}"
                    )));
                }
            }
            None => {
                conn.execute(
                    "INSERT INTO meta(name, value) VALUES ('store', ?1), ('schema', ?2)",
                    params![name, SCHEMA_VERSION],
                )
                .map_err(db_err(&shown))?;
            }
        }
        Ok(Sqlite {
            conn,
            path: path.to_path_buf(),
            in_txn: false,
        })
    }
}

impl Backend for Sqlite {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(db_err("begin"))?;
        self.in_txn = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.in_txn = false;
        self.conn.execute_batch("COMMIT").map_err(db_err("commit"))
    }

    fn rollback(&mut self) {
        if self.in_txn || !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.in_txn = false;
    }

    fn get(&mut self, key: &Value) -> Result<Option<Entry>, StoreError> {
        let k = binary::encode(key);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value, expiry FROM store WHERE key = ?1")
            .map_err(db_err("get"))?;
        let row: Option<(Vec<u8>, Option<i64>)> = stmt
            .query_row([&k], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db_err("get"))?;
        match row {
            None => Ok(None),
            Some((v, expiry)) => decode_row(&k, &v, expiry).map(|(_, e)| Some(e)),
        }
    }

    fn apply(&mut self, effect: &Effect) -> Result<(), StoreError> {
        match effect {
            Effect::Put { key, value, expiry } => {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO store(key, value, expiry) VALUES (?1, ?2, ?3)
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value, expiry = excluded.expiry",
                    )
                    .map_err(db_err("put"))?;
                stmt.execute(params![binary::encode(key), binary::encode(value), expiry])
                    .map_err(db_err("put"))?;
            }
            Effect::Erase { key } | Effect::Expire { key } => {
                let mut stmt = self
                    .conn
                    .prepare_cached("DELETE FROM store WHERE key = ?1")
                    .map_err(db_err("erase"))?;
                stmt.execute([binary::encode(key)])
                    .map_err(db_err("erase"))?;
            }
            Effect::Clear => {
                self.conn
                    .execute("DELETE FROM store", [])
                    .map_err(db_err("clear"))?;
            }
        }
        Ok(())
    }

    fn keys(&mut self) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key FROM store")
            .map_err(db_err("keys"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(db_err("keys"))?;
        let mut keys = Vec::new();
        for k in rows {
            let k = k.map_err(db_err("keys"))?;
            keys.push(
                binary::decode(&k).map_err(|e| {
                    StoreError::Backend(format!("corrupt key in the database: {e}"))
                })?,
            );
        }
        Ok(keys)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM store", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(db_err("count"))
    }

    fn page(
        &mut self,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<Vec<(Value, Entry)>, StoreError> {
        read_page(&self.conn, after.map(binary::encode), limit)
    }

    fn expiries(&mut self) -> Result<Vec<(Value, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, expiry FROM store WHERE expiry IS NOT NULL")
            .map_err(db_err("expiries"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
            .map_err(db_err("expiries"))?;
        let mut out = Vec::new();
        for row in rows {
            let (k, x) = row.map_err(db_err("expiries"))?;
            let k = binary::decode(&k)
                .map_err(|e| StoreError::Backend(format!("corrupt key in the database: {e}")))?;
            out.push((k, x));
        }
        Ok(out)
    }

    fn snapshot(&mut self) -> Result<Box<dyn SnapshotSource>, StoreError> {
        // A second connection with a read transaction started now: WAL keeps its view fixed
        // while the master goes on committing.
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err("snapshot"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err("snapshot"))?;
        conn.execute_batch("BEGIN").map_err(db_err("snapshot"))?;
        conn.query_row("SELECT count(*) FROM store", [], |r| r.get::<_, i64>(0))
            .map_err(db_err("snapshot"))?;
        Ok(Box::new(SqliteSnapshot { conn, after: None }))
    }

    fn replace(&mut self, entries: Vec<(Value, Entry)>) -> Result<(), StoreError> {
        self.begin()?;
        let result = (|| {
            self.apply(&Effect::Clear)?;
            for (key, e) in entries {
                self.apply(&Effect::Put {
                    key,
                    value: e.value,
                    expiry: e.expiry,
                })?;
            }
            self.commit()
        })();
        if result.is_err() {
            self.rollback();
        }
        result
    }
}

fn read_page(
    conn: &Connection,
    after: Option<Vec<u8>>,
    limit: usize,
) -> Result<Vec<(Value, Entry)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT key, value, expiry FROM store WHERE ?1 IS NULL OR key > ?1 ORDER BY key LIMIT ?2",
        )
        .map_err(db_err("page"))?;
    let rows = stmt
        .query_map(params![after, limit as i64], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(db_err("page"))?;
    let mut out = Vec::new();
    for row in rows {
        let (k, v, x) = row.map_err(db_err("page"))?;
        out.push(decode_row(&k, &v, x)?);
    }
    Ok(out)
}

struct SqliteSnapshot {
    conn: Connection,
    after: Option<Vec<u8>>,
}

impl SnapshotSource for SqliteSnapshot {
    fn next_page(&mut self, limit: usize) -> Result<Vec<(Value, Entry)>, StoreError> {
        let page = read_page(&self.conn, self.after.clone(), limit)?;
        if let Some((k, _)) = page.last() {
            self.after = Some(binary::encode(k));
        }
        Ok(page)
    }
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").finish_non_exhaustive()
    }
}
