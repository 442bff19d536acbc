//! Everything one endpoint serves, on one TCP listener. The first byte of each connection tells
//! the two protocols apart: an HTTP request starts with an upper-case method letter, a native
//! peering connection with the `Y` of its `YARD` preamble; anything else is handed to the peering
//! code too, which answers a stranger with a clear `wrong_magic_number` goodbye.
//!
//! - `/v1/messages/json`: the WebSocket JSON API, wire-compatible with Zeek Broker's v1 ([`ws`]).
//! - `/v1/status/json`: the endpoint's status as JSON ([`status`]).
//! - `/v1/health`: `{"status":"ok"}` while the router runs; open to anyone (health checks).
//! - `/v1/peers`: list, add and remove peers ([`peers`]).
//! - `/v1/stores/…`: the replicated stores ([`stores`]).
//! - `/metrics`: Prometheus text exposition ([`status`]).
//! - `/v1/audit`: this daemon's audit log, newest first, filtered ([`status::audit`]).
//!
//! Any other path answers 404; a WebSocket upgrade on another path gets Broker's `invalid_uri`
//! error and a 1008 close.
//!
//! Every route goes through one [`yard_auth::Guard`] and [`classify`] (plus the daemon's own
//! classifier for its routes): a route no classifier names is refused.

/// The node's remote-log sink (`yard node --log-dir`).
pub mod logs;
pub mod peers;
pub mod status;
pub mod stores;
pub mod tls;
pub mod ws;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::http::Method;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use yard_auth::http::{Classifier, Remote, RemoteListener, Rule};
use yard_auth::{AuditLog, Guard, GuardConfig, Permission, Registry};
use yard_data::json::JsonOptions;
use yard_fabric::{Endpoint, OverflowPolicy};
use yard_store::{CloneOptions, Stores};

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
    /// Whether the listener is on loopback (decides what anonymous callers may do).
    pub loopback: bool,
    /// The guard of this listener (credentials, policies, audit); `None` makes one that knows
    /// no credential (anonymous callers only).
    pub guard: Option<Arc<Guard>>,
    /// Where SQLite stores attached over HTTP live (relative paths only); `None` refuses them.
    pub store_dir: Option<std::path::PathBuf>,
    /// TLS on this listener (`None`: plain).
    pub tls: Option<tls::GatewayTls>,
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
            loopback: true,
            guard: None,
            store_dir: None,
            tls: None,
        }
    }
}

/// A gateway setting outside its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} must be {rule}")]
pub struct InvalidSetting {
    pub setting: &'static str,
    pub rule: &'static str,
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let check = |ok: bool, setting, rule| {
            if ok {
                Ok(())
            } else {
                Err(InvalidSetting { setting, rule })
            }
        };
        check(self.client_queue > 0, "client_queue", "at least 1")?;
        check(
            self.max_message_size >= 1024,
            "max_message_size",
            "at least 1024 bytes",
        )?;
        check(
            !self.ping_interval.is_zero(),
            "ping_interval",
            "greater than zero",
        )?;
        check(
            !self.handshake_timeout.is_zero(),
            "handshake_timeout",
            "greater than zero",
        )?;
        check(
            self.tls.as_ref().is_none_or(|t| !t.plain || self.loopback),
            "tls plain",
            "off on a listener beyond loopback (plain text is for local clients that cannot speak TLS)",
        )?;
        check(self.max_clients > 0, "max_clients", "at least 1")
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
    /// TLS handshakes that failed or timed out (a bad certificate, an old protocol, garbage).
    pub tls_handshake_failures: AtomicU64,
    /// Plain connections refused by a listener that speaks TLS only.
    pub plain_refused: AtomicU64,
}

/// What every handler shares.
pub struct Gateway {
    pub endpoint: Endpoint,
    pub stores: Arc<Stores>,
    /// Settings of clones attached over HTTP.
    pub clone_options: CloneOptions,
    pub config: GatewayConfig,
    pub counters: GatewayCounters,
    pub shutdown: CancellationToken,
    /// Every WebSocket connection task; `serve` waits for them at shutdown (axum's graceful
    /// shutdown does not cover upgraded connections).
    pub connections: TaskTracker,
    /// More Prometheus families from the daemon this endpoint belongs to (center, manager, agent).
    pub extra_metrics: Option<MetricsHook>,
    /// Who may do what on this listener.
    pub guard: Arc<Guard>,
}

/// What a daemon adds to its endpoint's gateway, from the HTTP kit ([`yard_auth::http`]).
pub use yard_auth::http::{Extension, MetricsHook};

/// The rule of each gateway route; `None` for paths it does not serve.
pub fn classify(method: &Method, path: &str) -> Option<Rule> {
    use Permission::*;
    let seg: Vec<String> = path
        .strip_prefix('/')?
        .split('/')
        .map(yard_auth::url::decode_segment)
        .collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    let m = method.as_str();
    let rule = match (seg.as_slice(), m) {
        (["v1", "messages", "json"], "GET") => Rule::new(Stream),
        (["v1", "audit"], _) if read => Rule::new(Admin),
        (["v1", "health"], _) if read => Rule::new(Open),
        (["v1", "status", "json"], _) | (["metrics"], _) if read => Rule::new(Metrics),
        (["v1", "peers"], _) if read => Rule::new(Read),
        (["v1", "peers"], "POST" | "DELETE") => Rule::new(Peer),
        (["v1", "stores"], _) if read => Rule::new(Read),
        (["v1", "stores"], "POST") => Rule::new(Stores),
        (["v1", "stores", n], _) if read => Rule::new(StoreRead(n.to_string())),
        (["v1", "stores", _], "DELETE") => Rule::new(Stores),
        (["v1", "stores", n, "keys" | "dump" | "backup"], _) if read => {
            Rule::new(StoreRead(n.to_string()))
        }
        (["v1", "stores", n, "keys", _], _) if read => Rule::new(StoreRead(n.to_string())),
        (["v1", "stores", n, "keys", _], "PUT" | "DELETE") => Rule::new(StoreWrite(n.to_string())),
        // Reads and writes: the handler asks for store_write when an operation changes.
        (["v1", "stores", n, "ops"], "POST") => Rule::new(StoreRead(n.to_string())),
        (["v1", "stores", _, "restore"], "POST") => Rule::bytes(Stores),
        _ => return None,
    };
    Some(rule)
}

/// How long shutdown waits for WebSocket clients to receive their close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves the gateways on `listener` until `shutdown` is cancelled; open WebSocket clients are
/// sent a 1001 close, and this returns once they have it (or after a grace period).
pub async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    stores: Arc<Stores>,
    clone_options: CloneOptions,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(
        listener,
        endpoint,
        stores,
        clone_options,
        config,
        Extension::default(),
        shutdown,
    )
    .await
}

/// [`serve`] with a daemon's own routes and metrics.
pub async fn serve_with(
    listener: TcpListener,
    endpoint: Endpoint,
    stores: Arc<Stores>,
    clone_options: CloneOptions,
    config: GatewayConfig,
    extension: Extension,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let guard = config.guard.clone().unwrap_or_else(|| {
        Guard::new(
            GuardConfig {
                loopback: config.loopback,
                ..GuardConfig::default()
            },
            Arc::new(Registry::in_memory(vec![])),
            Arc::new(AuditLog::in_memory()),
        )
    });
    let state = Arc::new(Gateway {
        endpoint,
        stores,
        clone_options,
        config,
        counters: GatewayCounters::default(),
        shutdown: shutdown.clone(),
        connections: TaskTracker::new(),
        extra_metrics: extension.metrics,
        guard: guard.clone(),
    });
    let app = Router::new()
        .route(ws::PATH, get(ws::upgrade))
        .route("/v1/status/json", get(status::status_json))
        .route("/v1/health", get(status::health))
        .route("/metrics", get(status::metrics))
        .route(
            "/v1/peers",
            get(peers::list).post(peers::add).delete(peers::remove),
        )
        .route("/v1/stores", get(stores::list).post(stores::attach))
        .route(
            "/v1/stores/{name}",
            get(stores::info).delete(stores::detach),
        )
        .route("/v1/stores/{name}/keys", get(stores::keys))
        .route(
            "/v1/stores/{name}/keys/{key}",
            get(stores::get_key)
                .put(stores::put_key)
                .delete(stores::erase_key),
        )
        .route("/v1/stores/{name}/ops", axum::routing::post(stores::op))
        .route("/v1/stores/{name}/backup", get(stores::backup))
        .route(
            "/v1/stores/{name}/restore",
            axum::routing::post(stores::restore),
        )
        .route("/v1/stores/{name}/dump", get(stores::dump))
        .route("/v1/audit", get(status::audit))
        .fallback(ws::fallback)
        .with_state(state.clone());
    let app = match extension.routes {
        Some(routes) => routes.merge(app),
        None => app,
    };
    let theirs = extension.classify;
    let rules: Classifier = Arc::new(move |m: &Method, p: &str| {
        theirs
            .as_ref()
            .and_then(|c| c(m, p))
            .or_else(|| classify(m, p))
    });
    let app = guard.wrap_routes(app, rules);
    let local = listener.local_addr()?;
    let (http_tx, http_rx) = mpsc::channel(1024);
    let demux = tokio::spawn(demultiplex(
        listener,
        http_tx,
        state.clone(),
        shutdown.clone(),
    ));
    let served = axum::serve(
        HttpConnections { rx: http_rx, local },
        app.into_make_service_with_connect_info::<Remote>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await;
    demux.abort();
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

/// The HTTP side of the shared listener, as axum sees it.
struct HttpConnections {
    rx: mpsc::Receiver<(tls::Conn, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpConnections {
    type Io = tls::Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (tls::Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor stopped: shutdown is under way; graceful shutdown ends `serve`.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl RemoteListener for HttpConnections {}

/// Whether a connection whose first byte is `b` speaks HTTP (methods are upper-case ASCII;
/// none starts with the `Y` of the peering preamble).
pub fn is_http(b: u8) -> bool {
    b.is_ascii_uppercase() && b != b'Y'
}

/// Accepts connections and hands each to HTTP or to peering by its first byte (and, inside
/// TLS, by ALPN).
async fn demultiplex(
    listener: TcpListener,
    http: mpsc::Sender<(tls::Conn, SocketAddr)>,
    gw: Arc<Gateway>,
    shutdown: CancellationToken,
) {
    let first_byte_timeout = gw.config.handshake_timeout;
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = yard_tls::listen::accept(&listener) => c,
        };
        // Messages are small and latency matters: no Nagle delay on any connection.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let http = http.clone();
        let gw = gw.clone();
        tokio::spawn(async move {
            let (endpoint, counters) = (&gw.endpoint, &gw.counters);
            let mut first = [0u8; 1];
            let b = match tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)).await {
                Ok(Ok(1)) => first[0],
                // Closed, failed or silent: nothing to serve.
                _ => return,
            };
            let failed = || {
                counters
                    .tls_handshake_failures
                    .fetch_add(1, Ordering::Relaxed)
            };
            match &gw.config.tls {
                Some(t) if yard_tls::config::is_tls(b) => {
                    match tokio::time::timeout(first_byte_timeout, tls::accept(t, stream)).await {
                        Ok(Ok(tls::Accepted::Http(conn))) => {
                            let _ = http.send((conn, remote)).await;
                        }
                        Ok(Ok(tls::Accepted::Peer(s))) => endpoint.accept_peer_stream(s, remote),
                        Ok(Err(e)) => {
                            failed();
                            tracing::debug!(%remote, "TLS handshake failed: {e}");
                        }
                        Err(_) => {
                            failed();
                            tracing::debug!(%remote, "TLS handshake timed out");
                        }
                    }
                }
                Some(t) if !t.plain => {
                    counters.plain_refused.fetch_add(1, Ordering::Relaxed);
                    tls::refuse_plain(stream, is_http(b), remote).await
                }
                _ if is_http(b) => {
                    let _ = http.send((tls::Conn::Plain(stream), remote)).await;
                }
                _ => endpoint.accept_peer(stream, remote),
            }
        });
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}
