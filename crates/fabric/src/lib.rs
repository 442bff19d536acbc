//! The fabric: who receives what, and the endpoint runtime that moves it.
//!
//! - [`subs`]: the subscription table (sans-I/O): raw-prefix matching, per-client collapse of
//!   covered prefixes, exactly-once recipient lists.
//! - [`outbox`]: the bounded per-client queue and its overflow policies.
//! - [`endpoint`]: the router actor that owns the table and the handles clients use.
//! - [`id`]: endpoint identifiers.
//! - [`wire`]: the native peering protocol (preamble, frames, streaming decoder), no I/O.

pub mod endpoint;
pub mod id;
pub mod outbox;
pub mod routing;
pub mod subs;
pub mod wire;

pub use endpoint::{
    Client, ClientInfo, Endpoint, EndpointConfig, EndpointError, Message, Snapshot, Stats,
};
pub use outbox::{CloseReason, Outbox, OverflowPolicy};
