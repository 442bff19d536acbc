//! The resource manager's errors: what a caller of this crate can match on.
//!
//! Mesos's own validation messages keep Mesos's wording (clients and operators know them);
//! [`Invalid`] carries those. The shells map each error to its HTTP code.

use std::path::PathBuf;
use std::time::Duration;

/// A call, a spec or a message that is not valid as sent (HTTP 400), in Mesos's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<Invalid> for String {
    fn from(e: Invalid) -> String {
        e.0
    }
}

impl From<ProbeError> for String {
    fn from(e: ProbeError) -> String {
        e.to_string()
    }
}

/// Why the master or an agent did not start.
#[derive(Debug, thiserror::Error)]
pub enum RmError {
    #[error("cannot {action} {}: {why}", path.display())]
    Dir {
        action: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("cannot open the resource manager's store: {0}")]
    Store(String),
    #[error("cannot open the {0} inbox: {1}")]
    Inbox(&'static str, String),
    #[error("the listener has no address: {0}")]
    Listener(String),
    #[error("cannot start the task reaper: {0}")]
    Reaper(String),
    #[error(transparent)]
    Container(#[from] ContainerError),
}

impl From<RmError> for String {
    fn from(e: RmError) -> String {
        e.to_string()
    }
}

/// Why a container's cgroups could not be made or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    #[error("cgroups v1 controller {controller:?} is not mounted at {} (needed for task isolation)", dir.display())]
    NotMounted { controller: String, dir: PathBuf },
    #[error("cannot {action} {}: {why}", path.display())]
    Io {
        action: String,
        path: PathBuf,
        why: String,
    },
}

impl From<ContainerError> for String {
    fn from(e: ContainerError) -> String {
        e.to_string()
    }
}

/// Why a services request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("no service named {0}")]
    NotFound(String),
    #[error("service {0} is being removed: wait until it is gone")]
    Removing(String),
}

impl ServiceError {
    /// The HTTP status the services API answers with.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Invalid(_) => 400,
            ServiceError::NotFound(_) => 404,
            ServiceError::Removing(_) => 409,
        }
    }
}

/// Why an operator's kill names no single task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    #[error("no running task {0}")]
    NoTask(String),
    #[error("task id {task} is in several frameworks ({}): give the framework", frameworks.join(", "))]
    Ambiguous {
        task: String,
        frameworks: Vec<String>,
    },
}

impl KillError {
    /// The HTTP status the kill route answers with.
    pub fn status(&self) -> u16 {
        match self {
            KillError::NoTask(_) => 404,
            KillError::Ambiguous { .. } => 409,
        }
    }
}

/// Why an executor's call is not taken as the executor's (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorRefusal {
    #[error("the token is not this executor's (MESOS_EXECUTOR_AUTHENTICATION_TOKEN of the executor the call names)")]
    ForeignToken,
    #[error("this agent needs the executor's token: send MESOS_EXECUTOR_AUTHENTICATION_TOKEN as Authorization: Bearer")]
    TokenRequired,
    #[error("a call without the executor's token must come from its account (uid {expected}); this one comes from uid {got}")]
    WrongAccount { expected: u32, got: u32 },
    #[error("a call without the executor's token must come from this host, from the executor's account: this caller's socket cannot be found")]
    UnknownSocket,
}

/// Why a task's health probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("no result within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}
