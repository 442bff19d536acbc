//! `yard node` configuration: one validated struct, from an optional TOML file plus flags.
//!
//! Every field has a default; a file may set any subset; unknown keys are an error. Flags given
//! on the command line override the file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use yard_data::json::JsonOptions;
use yard_data::time::{parse_timespan, TimestampPrecision};
use yard_fabric::{EndpointConfig, OverflowPolicy};
use yard_gateway::GatewayConfig;

/// The default address of the WebSocket/HTTP gateway (Broker's WebSocket port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9997";

/// The `yard node` configuration file. Durations are timespans such as `"5s"` or `"250ms"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeFile {
    /// Address of the WebSocket/HTTP gateway; loopback unless you mean otherwise.
    pub listen: String,
    /// Outbound queue of each WebSocket client, in messages.
    pub client_queue: usize,
    /// disconnect | drop_oldest | drop_newest.
    pub overflow_policy: String,
    /// Largest message a client may send, in bytes.
    pub max_message_size: usize,
    /// Time a client has to send its subscriptions.
    pub handshake_timeout: String,
    /// Interval of keepalive pings; three silent intervals close a client.
    pub ping_interval: String,
    /// Most WebSocket connections at once.
    pub max_clients: usize,
    /// Fraction digits of timestamps in JSON: ms | us | ns.
    pub timestamp_precision: String,
    /// Publications waiting for the router.
    pub data_queue: usize,
}

impl Default for NodeFile {
    fn default() -> Self {
        let g = GatewayConfig::default();
        NodeFile {
            listen: DEFAULT_LISTEN.into(),
            client_queue: g.client_queue,
            overflow_policy: g.overflow_policy.name().into(),
            max_message_size: g.max_message_size,
            handshake_timeout: "10s".into(),
            ping_interval: "5s".into(),
            max_clients: g.max_clients,
            timestamp_precision: "ms".into(),
            data_queue: EndpointConfig::default().data_queue,
        }
    }
}

impl NodeFile {
    pub fn load(path: &Path) -> anyhow::Result<NodeFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// The validated configuration a node runs with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub endpoint: EndpointConfig,
    pub gateway: GatewayConfig,
}

fn duration(field: &str, s: &str) -> anyhow::Result<Duration> {
    let ns = parse_timespan(s).map_err(|e| anyhow::anyhow!("{field}: {e}"))?;
    if ns <= 0 {
        bail!("{field} must be positive, got {s:?}");
    }
    Ok(Duration::from_nanos(ns as u64))
}

impl TryFrom<NodeFile> for NodeConfig {
    type Error = anyhow::Error;
    fn try_from(f: NodeFile) -> anyhow::Result<NodeConfig> {
        let listen: SocketAddr = f.listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "listen: {:?} is not an address such as 127.0.0.1:9997",
                f.listen
            )
        })?;
        let overflow_policy: OverflowPolicy = f
            .overflow_policy
            .parse()
            .map_err(|e: String| anyhow::anyhow!("overflow_policy: {e}"))?;
        let timestamp_precision: TimestampPrecision = f
            .timestamp_precision
            .parse()
            .map_err(|e: String| anyhow::anyhow!("timestamp_precision: {e}"))?;
        let gateway = GatewayConfig {
            client_queue: f.client_queue,
            overflow_policy,
            max_message_size: f.max_message_size,
            handshake_timeout: duration("handshake_timeout", &f.handshake_timeout)?,
            ping_interval: duration("ping_interval", &f.ping_interval)?,
            max_clients: f.max_clients,
            json: JsonOptions {
                timestamp_precision,
            },
            ..GatewayConfig::default()
        };
        gateway.validate().map_err(|e| anyhow::anyhow!(e))?;
        if f.data_queue == 0 {
            bail!("data_queue must be at least 1");
        }
        let endpoint = EndpointConfig {
            data_queue: f.data_queue,
            ..EndpointConfig::default()
        };
        Ok(NodeConfig {
            listen,
            endpoint,
            gateway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = NodeConfig::try_from(NodeFile::default()).unwrap();
        assert!(c.listen.ip().is_loopback());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let e =
            toml::from_str::<NodeFile>("listen = \"127.0.0.1:1\"\nclient_qeue = 5\n").unwrap_err();
        assert!(e.to_string().contains("client_qeue"), "{e}");
        let f: NodeFile = toml::from_str("overflow_policy = \"drop_everything\"").unwrap();
        let e = NodeConfig::try_from(f).unwrap_err();
        assert!(e.to_string().contains("overflow_policy"), "{e}");
        let f: NodeFile = toml::from_str("ping_interval = \"0s\"").unwrap();
        assert!(NodeConfig::try_from(f).is_err());
    }
}
