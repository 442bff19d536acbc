//! Switchyard's trust layer, shared by every listener (the node gateway, the center, the
//! managers, the agents and the Mesos shells).
//!
//! - [`secret`]: random secrets, hashing, constant-time comparison, the peering proof.
//! - [`paths`]: paths callers name stay under the operator's directories.
//! - [`policy`]: principals, roles, permissions and custom policies: what a caller may do.
//! - [`tokens`]: bearer tokens and the registry that holds their hashes (never the tokens).
//! - [`home`]: where credentials live on disk (`./yard-data`, `$YARD_HOME`, `~/.config/yard`).
//! - [`http`]: the guard every HTTP listener wraps its routes in (credentials, Host, Origin,
//!   content types, security headers, 401/403, audit, slow-down of failed credentials).
//! - [`account`]: local accounts (whom tasks and nodes run as).
//! - [`owner`]: which local account holds the caller's end of a connection from this host.
//! - [`audit`]: the append-only, rotated audit log and its queries.
//!
//! Nothing here is a daemon: the guard is a value each listener owns, and the registry and the
//! audit log are shared by the listeners of one process.

pub mod account;
pub mod audit;
pub mod exposition;
pub mod home;
pub mod http;
pub mod logfile;
pub mod login;
pub mod owner;
pub mod paths;
pub mod policy;
pub mod secret;
pub mod tokens;
pub mod url;

pub use audit::{AuditLog, AuditRecord};
pub use home::Home;
pub use http::{Caller, Guard, GuardConfig};
pub use policy::{Permission, Policy, Principal, Role};
pub use tokens::{Registry, TokenRecord};
