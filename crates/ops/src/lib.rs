//! The operations center: one center over many clusters, a manager per cluster, an agent per
//! host. All three are fabric endpoints; they talk over fabric topics ([`proto`]) and keep their
//! state in stores and files under their data directories.
//!
//! - [`center`]: topology of every cluster (persisted in a store), commands relayed through
//!   managers, metrics history ([`tsdb`]), the HTTP API.
//! - [`manager`]: registers its cluster with the center, tracks its agents (loss within a bound),
//!   distributes the cluster config, carries out commands on its agents.
//! - [`agent`]: supervises nodes ([`supervisor`]), samples metrics ([`sample`]), installs
//!   artifacts ([`artifacts`]), runs operations.
//!
//! Pure parts (no I/O, no clock): [`topology`], [`commands`] (the center's commands),
//! [`rollout`] (a command on one cluster),
//! [`nodes`] (config), [`proto`].

pub mod agent;
pub mod artifacts;
pub mod center;
pub mod cluster;
pub mod commands;
pub mod error;
pub mod health;
pub mod joins;
/// Size-rotated log files (the one rotation, in the HTTP/auth kit).
pub use yard_auth::logfile;
pub mod manager;
pub mod nodes;
pub mod proto;
pub mod rm_proxy;
pub mod rollout;
pub mod rpc;
pub mod sample;
pub mod stream;
pub mod supervisor;
pub mod topology;
pub mod tsdb;

pub use error::{ConfigError, OpsError, RestartError, Unhealthy};

/// Unix milliseconds now.
pub use yard_data::time::now_ms;

/// Where a shell reads the time: [`SystemClock`] in a daemon, [`ManualClock`] in a test. The
/// cores never read one: the time comes in with their events.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// A clock a test sets and moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicU64::new(now_ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Opens a daemon's own store `name` (a master in the SQLite file `file`) and returns the JSON
/// text of each record it kept before a restart (string keys and values only).
pub(crate) async fn open_own_store(
    stores: &yard_store::Stores,
    name: &str,
    file: &std::path::Path,
    owner: &'static str,
) -> Result<Vec<String>, OpsError> {
    let failed = |e: yard_store::StoreError| OpsError::Store {
        owner,
        why: e.to_string(),
    };
    let spec = yard_store::BackendSpec::Sqlite {
        path: file.to_path_buf(),
        synchronous: yard_store::Synchronous::Normal,
        integrity_check: false,
    };
    stores.attach_master(name, spec).await.map_err(failed)?;
    let entries = stores.entries(name).await.map_err(failed)?;
    Ok(entries
        .into_iter()
        .filter(|(k, _)| k.as_str().is_some())
        .filter_map(|(_, e)| e.value.as_str().map(str::to_string))
        .collect())
}

/// Creates a daemon's state directory and returns its absolute path (links and logs made there
/// stay valid whatever the working directory).
pub fn absolute_dir(dir: &std::path::Path) -> Result<std::path::PathBuf, OpsError> {
    let failed = |action: &'static str| {
        move |e: std::io::Error| OpsError::Dir {
            action,
            path: dir.to_path_buf(),
            why: e.to_string(),
        }
    };
    std::fs::create_dir_all(dir).map_err(failed("create"))?;
    std::fs::canonicalize(dir).map_err(failed("resolve"))
}
