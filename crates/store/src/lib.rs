//! Replicated key/value stores. A store is a named map of typed values with one master (which
//! applies every mutation, in one order) and any number of clones (which apply the master's
//! effects in that order and answer reads locally).
//!
//! - [`ops`]: what each operation means (no I/O).
//! - [`backend`]: where a master keeps its map: memory or SQLite.
//! - [`proto`]: the messages between master and clones, as fabric values.
//! - [`master`] and [`replica`]: the master's and the clone's state machines (no I/O); the
//!   property tests drive them through a lossy, reordering network.
//! - [`backup`]: the backup file format.
//! - [`actor`] and [`registry`]: the async shells on a fabric endpoint, and the per-endpoint list
//!   of stores that the gateway and the CLI reach.

pub mod actor;
pub mod backend;
pub mod backup;
pub mod master;
pub mod ops;
pub mod proto;
pub mod registry;
pub mod replica;

pub use actor::{Role, StoreInfo};
pub use backend::{BackendSpec, Synchronous};
pub use ops::{Effect, Entry, Mutation, Query};
pub use registry::{CloneOptions, Stores};

use yard_data::Value;

/// Why a store operation failed. [`StoreError::code`] gives the Broker error name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("type clash: {0}")]
    TypeClash(String),
    #[error("no such key: {}", yard_data::literal::format(.0))]
    NoSuchKey(Value),
    #[error("stale data: {0}")]
    StaleData(String),
    #[error("a master for store {0:?} already exists (on endpoint {1})")]
    MasterExists(String, String),
    #[error("no master for store {0:?} is reachable")]
    NoSuchMaster(String),
    #[error("no store {0:?} is attached on this endpoint")]
    NoSuchStore(String),
    #[error("invalid data: {0}")]
    InvalidData(String),
    #[error("backend failure: {0}")]
    Backend(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("the endpoint is shutting down")]
    Shutdown,
    #[error("not allowed: {0}")]
    NotAllowed(String),
}

impl StoreError {
    /// The error's code on the wire (Broker's `ec` names where Broker has one).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::TypeClash(_) => "type_clash",
            StoreError::NoSuchKey(_) => "no_such_key",
            StoreError::StaleData(_) => "stale_data",
            StoreError::MasterExists(..) => "master_exists",
            StoreError::NoSuchMaster(_) => "no_such_master",
            StoreError::NoSuchStore(_) => "no_such_store",
            StoreError::InvalidData(_) => "invalid_data",
            StoreError::Backend(_) => "backend_failure",
            StoreError::Timeout(_) => "request_timeout",
            StoreError::Shutdown => "shutting_down",
            StoreError::NotAllowed(_) => "forbidden",
        }
    }

    /// Rebuilds an error from its code and message (as carried in a reply).
    pub fn from_code(code: &str, message: String) -> StoreError {
        match code {
            "type_clash" => StoreError::TypeClash(message),
            "no_such_key" => StoreError::NoSuchKey(Value::String(message)),
            "stale_data" => StoreError::StaleData(message),
            "master_exists" => StoreError::MasterExists(message, "?".into()),
            "no_such_master" => StoreError::NoSuchMaster(message),
            "no_such_store" => StoreError::NoSuchStore(message),
            "backend_failure" => StoreError::Backend(message),
            "request_timeout" => StoreError::Timeout(message),
            "shutting_down" => StoreError::Shutdown,
            "forbidden" => StoreError::NotAllowed(message),
            _ => StoreError::InvalidData(message),
        }
    }

    /// The message without the code's prefix, for carrying in a reply.
    pub fn detail(&self) -> String {
        match self {
            StoreError::TypeClash(m)
            | StoreError::StaleData(m)
            | StoreError::NoSuchMaster(m)
            | StoreError::NoSuchStore(m)
            | StoreError::InvalidData(m)
            | StoreError::Backend(m)
            | StoreError::Timeout(m)
            | StoreError::NotAllowed(m) => m.clone(),
            StoreError::NoSuchKey(k) => yard_data::literal::format(k),
            StoreError::MasterExists(name, _) => name.clone(),
            StoreError::Shutdown => String::new(),
        }
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch (what expiries are measured against).
pub use yard_data::time::now_ns;

/// Store names travel in topics: letters, digits, '.', '_', '-', 1..=128 bytes.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidData(format!(
            "store name {name:?}: use 1 to 128 letters, digits, '.', '_' or '-'"
        )))
    }
}
