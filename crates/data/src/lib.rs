//! Typed values and their encodings, with no I/O.
//!
//! - [`value`]: the 15 Broker value types and their total order.
//! - [`time`]: timestamps and timespans in text form.
//! - [`json`]: Broker's WebSocket JSON v1 format (strict output, lenient input).
//! - [`binary`]: Switchyard's own compact, versioned binary encoding.
//! - [`literal`]: the human-readable literal syntax of the CLI (`yard pub`, `yard sub`).
//! - [`zeek`]: helpers for Zeek's event layout `[1, 1, [name, args, metadata?]]`.
//! - [`topic`]: topic validation (reserved `<$>` topics).

pub mod binary;
pub mod json;
mod json_fast;
pub mod literal;
pub mod time;
pub mod topic;
pub mod value;
pub mod zeek;

pub use value::{Address, Port, Protocol, Subnet, Value, ValueType};
