//! Status and error events as data, in Broker's shapes (no I/O).
//!
//! - statuses on `<$>/local/data/statuses`: `["status", enum code, endpoint_info, message]`;
//! - errors on `<$>/local/data/errors`: `["error", enum code, [endpoint_info, message]]`;
//! - `endpoint_info` is `[id, network]`, with `network` `[address, port]` when known and nil
//!   otherwise (and `id` nil when the other side never said who it is).

use std::net::SocketAddr;

use yard_data::Value;

/// Broker's status codes, with the messages Broker emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    PeerAdded,
    PeerRemoved,
    PeerLost,
    EndpointDiscovered,
    EndpointUnreachable,
}

impl StatusCode {
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::PeerAdded => "peer_added",
            StatusCode::PeerRemoved => "peer_removed",
            StatusCode::PeerLost => "peer_lost",
            StatusCode::EndpointDiscovered => "endpoint_discovered",
            StatusCode::EndpointUnreachable => "endpoint_unreachable",
        }
    }

    /// Broker's message for the code.
    pub fn message(self) -> &'static str {
        match self {
            StatusCode::PeerAdded => "handshake successful",
            StatusCode::PeerRemoved => "removed connection to remote peer",
            StatusCode::PeerLost => "lost connection to remote peer",
            StatusCode::EndpointDiscovered => "found a new peer in the network",
            StatusCode::EndpointUnreachable => "lost the last path",
        }
    }
}

/// `[id, [address, port]]`, with nil for what is unknown.
pub fn endpoint_info(id: Option<&str>, addr: Option<SocketAddr>) -> Value {
    let id = id.map(Value::string).unwrap_or(Value::None);
    let network = addr
        .map(|a| {
            Value::Vector(vec![
                Value::string(a.ip().to_string()),
                Value::Count(u64::from(a.port())),
            ])
        })
        .unwrap_or(Value::None);
    Value::Vector(vec![id, network])
}

pub fn status(code: StatusCode, info: Value, message: &str) -> Value {
    Value::Vector(vec![
        Value::string("status"),
        Value::Enum(code.name().to_string()),
        info,
        Value::string(message),
    ])
}

pub fn error(code: &str, info: Value, message: &str) -> Value {
    Value::Vector(vec![
        Value::string("error"),
        Value::Enum(code.to_string()),
        Value::Vector(vec![info, Value::string(message)]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use yard_data::json::{encode_value, JsonOptions};

    #[test]
    fn shapes_match_broker() {
        let info = endpoint_info(Some("e1"), Some("127.0.0.1:9999".parse().unwrap()));
        let v = status(StatusCode::PeerAdded, info, StatusCode::PeerAdded.message());
        let json = encode_value(&v, JsonOptions::default());
        assert!(
            json.contains(r#"{"@data-type":"enum-value","data":"peer_added"}"#),
            "{json}"
        );
        assert!(json.contains(r#""handshake successful""#), "{json}");
        let e = error(
            "peer_unavailable",
            endpoint_info(None, None),
            "unable to connect",
        );
        let items = e.as_vector().unwrap();
        assert_eq!(items[1], Value::Enum("peer_unavailable".into()));
        assert_eq!(
            items[2].as_vector().unwrap()[0],
            Value::Vector(vec![Value::None, Value::None])
        );
    }
}
