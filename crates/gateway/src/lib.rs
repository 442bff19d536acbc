//! The gateways of one endpoint, on one HTTP listener.
//!
//! - `/v1/messages/json`: the WebSocket JSON API, wire-compatible with Zeek Broker's v1 ([`ws`]).
//! - `/v1/status/json`: the endpoint's status as JSON ([`status`]).
//! - `/metrics`: Prometheus text exposition ([`status`]).
//!
//! Any other path answers 404; a WebSocket upgrade on another path gets Broker's `invalid_uri`
//! error and a 1008 close.

pub mod status;
pub mod ws;

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use yard_data::json::JsonOptions;
use yard_fabric::{Endpoint, OverflowPolicy};

/// Settings of the WebSocket gateway. [`GatewayConfig::validate`] checks them.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Outbound queue of each WebSocket client, in messages.
    pub client_queue: usize,
    /// What happens when a client's outbound queue is full.
    pub overflow_policy: OverflowPolicy,
    /// The largest message (and frame) a client may send, in bytes.
    pub max_message_size: usize,
    /// How long a client has to send its subscriptions after connecting.
    pub handshake_timeout: Duration,
    /// How often the server pings each client; a client silent for three intervals is closed.
    pub ping_interval: Duration,
    /// The most WebSocket connections at once (handshakes included).
    pub max_clients: usize,
    /// JSON encoder settings.
    pub json: JsonOptions,
    /// The version string sent in every ack.
    pub version: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            client_queue: 8192,
            overflow_policy: OverflowPolicy::Disconnect,
            max_message_size: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            max_clients: 10_000,
            json: JsonOptions::default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.client_queue == 0 {
            return Err("client_queue must be at least 1".into());
        }
        if self.max_message_size < 1024 {
            return Err("max_message_size must be at least 1024 bytes".into());
        }
        if self.ping_interval.is_zero() || self.handshake_timeout.is_zero() {
            return Err("ping_interval and handshake_timeout must be greater than zero".into());
        }
        if self.max_clients == 0 {
            return Err("max_clients must be at least 1".into());
        }
        Ok(())
    }
}

/// Counters of the gateway itself.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    /// WebSocket connections accepted (upgrade done).
    pub connections: AtomicU64,
    /// Connections that ended before a valid handshake.
    pub handshake_failures: AtomicU64,
    /// Client messages rejected (malformed, invalid data, reserved topic).
    pub rejected_messages: AtomicU64,
    /// Client messages accepted and published.
    pub received_messages: AtomicU64,
    /// Connections refused because `max_clients` were connected.
    pub refused_connections: AtomicU64,
    /// Connections open now.
    pub open: AtomicUsize,
}

/// What every handler shares.
pub struct Gateway {
    pub endpoint: Endpoint,
    pub config: GatewayConfig,
    pub counters: GatewayCounters,
    pub shutdown: CancellationToken,
    /// Every WebSocket connection task; `serve` waits for them at shutdown (axum's graceful
    /// shutdown does not cover upgraded connections).
    pub connections: TaskTracker,
}

/// How long shutdown waits for WebSocket clients to receive their close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves the gateways on `listener` until `shutdown` is cancelled; open WebSocket clients are
/// sent a 1001 close, and this returns once they have it (or after a grace period).
pub async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(Gateway {
        endpoint,
        config,
        counters: GatewayCounters::default(),
        shutdown: shutdown.clone(),
        connections: TaskTracker::new(),
    });
    let app = Router::new()
        .route(ws::PATH, get(ws::upgrade))
        .route("/v1/status/json", get(status::status_json))
        .route("/metrics", get(status::metrics))
        .fallback(ws::fallback)
        .with_state(state.clone());
    // Messages are small and latency matters: no Nagle delay on any connection.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    state.connections.close();
    if tokio::time::timeout(CLOSE_GRACE, state.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = state.connections.len(),
            "WebSocket clients did not take their close frame within {CLOSE_GRACE:?}; dropping them"
        );
    }
    served
}
