//! The fabric: who receives what, and the endpoint runtime that moves it.
//!
//! - [`subs`]: the subscription table (sans-I/O): raw-prefix matching, per-client collapse of
//!   covered prefixes, exactly-once recipient lists.
//! - [`outbox`]: the bounded per-client queue and its overflow policies.
//! - [`endpoint`]: the handles clients, gateways and peers use; `router` is the actor behind
//!   them, the single owner of the table, the outboxes, the peer links and the routes.
//! - [`routing`]: mesh routing (sans-I/O): adverts, per-origin trees, forwarding tables.
//! - `peer`: peer connections (handshake, reader, writer, dialer).
//! - [`status`]: status and error events as values.
//! - [`id`]: endpoint identifiers.
//! - [`wire`]: the native peering protocol (preamble, frames, streaming decoder), no I/O.

pub mod endpoint;
pub mod guard;
pub mod id;
pub mod outbox;
mod peer;
mod router;
pub mod routing;
pub mod status;
pub mod subs;
pub mod transport;
pub mod wire;

pub use endpoint::{
    Client, ClientInfo, DialFailed, Endpoint, EndpointConfig, EndpointError, Message, PeerInfo,
    RequestError, Snapshot, Stats,
};
pub use outbox::{CloseReason, Outbox, OverflowPolicy, UnknownPolicy};
pub use peer::{proof as peering_proof, Backoff};
