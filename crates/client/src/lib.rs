//! The client side of every yard listener, for the CLI's verbs, the benchmarks and programs
//! of our users:
//!
//! - [`audit`]: any listener's audit records;
//! - [`credential`]: the credential sent when none is given (the CLI's rule);
//! - [`http`]: one HTTP/1.1 exchange (`Connection: close`, fixed-length or chunked answers);
//! - [`node`]: a node's own routes (status, peers, stores), typed with the gateway's types;
//! - [`join`]: a new host's side of joining (the root checked against its token, then its
//!   certificate);
//! - [`mesos`]: a manager's Mesos and services API and its agents', typed with `yard-rm`'s;
//! - [`trust`]: which addresses are TLS, and the CA their certificates are checked against;
//! - [`ws`]: the WebSocket API's handshake (subscribe, wait for the ack);
//! - [`center`]: the operations center's API, its answers typed with the `yard-ops` types
//!   that the center serializes ([`yard_ops::topology::ClusterRecord`],
//!   [`yard_ops::center::CommandRecord`]…).
//!
//! Errors are a [`ClientError`]: a listener that is not there, an answer that is not HTTP, a
//! refusal with its status and the server's `code` and `context`, or a body that is not what
//! the route documents.

pub mod audit;
pub mod center;
pub mod credential;
mod error;
pub mod http;
pub mod join;
pub mod mesos;
pub mod node;
pub mod trust;
pub mod ws;

pub use error::ClientError;
