//! The operations center's errors: what a caller of this crate can match on.
//!
//! Each has the sentence an operator reads (`Display`), and the shells map them to HTTP codes
//! or to a row's detail. [`crate::rpc::CallError`] is the error of one request over the fabric.

use std::path::PathBuf;
use std::time::Duration;

/// Why a cluster config, a node spec or a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read cluster config {}: {why}", path.display())]
    Read { path: PathBuf, why: String },
    /// The file is not TOML of the expected shape (the parser's message, with its position).
    #[error("{why}")]
    Syntax { why: String },
    /// An error in the file at `path`.
    #[error("{}: {inner}", path.display())]
    In {
        path: PathBuf,
        inner: Box<ConfigError>,
    },
    #[error("{what} name {name:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'")]
    Name { what: &'static str, name: String },
    /// A node spec that cannot run as written.
    #[error("node {name:?}: {problem}")]
    Node { name: String, problem: String },
}

/// Why a daemon of the operations center (center, manager, agent) did not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot {action} {}: {why}", path.display())]
    Dir {
        action: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("cannot open the {owner}'s store: {why}")]
    Store { owner: &'static str, why: String },
    #[error("cannot open the {owner}'s metrics database: {why}")]
    Metrics { owner: &'static str, why: String },
    /// A client of the daemon's own endpoint (an inbox, a publisher).
    #[error("cannot open the {name} inbox: {why}")]
    Inbox { name: String, why: String },
}

impl From<OpsError> for String {
    fn from(e: OpsError) -> String {
        e.to_string()
    }
}

impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}

/// Why a node's restart did not end healthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    #[error("no node {0:?} on this agent")]
    NoSuchNode(String),
    #[error("unhealthy after restart")]
    Unhealthy,
    /// The new generation ended in this state (`backoff`, `failed`, `exited`, `stopped`).
    #[error("{0} after restart")]
    Ended(String),
    #[error("the node was removed")]
    Removed,
    #[error("not healthy within {0:?}")]
    Timeout(Duration),
}

/// Why a health check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot run {program:?}: {why}")]
    Spawn { program: String, why: String },
    #[error("{program:?} exited with {status}")]
    Exit { program: String, status: String },
    #[error("tcp {addr}: {why}")]
    Tcp { addr: String, why: String },
    #[error("http {url}: {why}")]
    Http { url: String, why: String },
}
