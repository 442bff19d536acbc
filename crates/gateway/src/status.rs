//! `GET /v1/status/json` and `GET /metrics` (Prometheus text exposition format 0.0.4).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::peers::PeerRow;
use crate::Gateway;

/// `GET /v1/status/json`: the endpoint, its clients and peers, and its counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatusView {
    pub endpoint: String,
    pub version: String,
    pub uptime_seconds: f64,
    pub clients: Vec<ClientRow>,
    /// Distinct subscription prefixes.
    pub subscriptions: u64,
    pub messages: MessageCounts,
    pub overflow_disconnects: u64,
    pub peers: Vec<PeerRow>,
    /// Endpoint ids reachable through the mesh, peers included.
    pub reachable: Vec<String>,
    pub mesh: MeshCounts,
    pub websocket: WebSocketCounts,
}

/// One local subscriber (a WebSocket client, a store, the log sink).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClientRow {
    pub id: u64,
    pub kind: String,
    /// `<endpoint>-<kind>-<id>`: the name a reply to this client is addressed to.
    pub endpoint: String,
    pub subscriptions: Vec<String>,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub overflow_policy: String,
    pub drops: u64,
}

/// The router's message counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageCounts {
    pub published: u64,
    pub delivered: u64,
    pub dropped: u64,
}

/// The mesh's counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeshCounts {
    pub forwarded: u64,
    pub peer_dropped: u64,
    pub from_peers: u64,
    pub duplicates: u64,
    pub refused_peers: u64,
    pub forged_replies: u64,
    pub withheld: u64,
    pub ttl_expired: u64,
    pub requests: u64,
    pub request_timeouts: u64,
}

/// The WebSocket listener's counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebSocketCounts {
    pub open: u64,
    pub connections: u64,
    pub handshake_failures: u64,
    pub refused_connections: u64,
    pub received_messages: u64,
    pub rejected_messages: u64,
}

/// The endpoint's status as JSON.
pub async fn status_json(State(gw): State<Arc<Gateway>>) -> Response {
    let Ok(snapshot) = gw.endpoint.snapshot().await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "endpoint is shutting down\n",
        )
            .into_response();
    };
    let stats = gw.endpoint.stats();
    let c = &gw.counters;
    let view = StatusView {
        endpoint: gw.endpoint.id().to_string(),
        version: gw.config.version.to_string(),
        uptime_seconds: gw.endpoint.uptime().as_secs_f64(),
        clients: snapshot
            .clients
            .iter()
            .map(|cl| ClientRow {
                id: cl.id,
                kind: cl.name.clone(),
                endpoint: format!("{}-{}-{}", gw.endpoint.id(), cl.name, cl.id),
                subscriptions: cl.subscriptions.clone(),
                queue_depth: cl.queue_depth,
                queue_capacity: cl.queue_capacity,
                overflow_policy: cl.policy.name().to_string(),
                drops: cl.drops,
            })
            .collect(),
        subscriptions: stats.subscriptions,
        messages: MessageCounts {
            published: stats.published,
            delivered: stats.delivered,
            dropped: stats.dropped,
        },
        overflow_disconnects: stats.overflow_disconnects,
        peers: snapshot.peers.iter().map(PeerRow::from).collect(),
        reachable: snapshot.reachable,
        mesh: MeshCounts {
            forwarded: stats.forwarded,
            peer_dropped: stats.peer_dropped,
            from_peers: stats.from_peers,
            duplicates: stats.duplicates,
            refused_peers: stats.refused_peers,
            forged_replies: stats.forged_replies,
            withheld: stats.withheld,
            ttl_expired: stats.ttl_expired,
            requests: stats.requests,
            request_timeouts: stats.request_timeouts,
        },
        websocket: WebSocketCounts {
            open: c.open.load(Ordering::Relaxed) as u64,
            connections: c.connections.load(Ordering::Relaxed),
            handshake_failures: c.handshake_failures.load(Ordering::Relaxed),
            refused_connections: c.refused_connections.load(Ordering::Relaxed),
            received_messages: c.received_messages.load(Ordering::Relaxed),
            rejected_messages: c.rejected_messages.load(Ordering::Relaxed),
        },
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&view).expect("a status serializes"),
    )
        .into_response()
}

pub use yard_auth::exposition::{family, label};

/// Prometheus text exposition.
pub async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let snapshot = gw.endpoint.snapshot().await.unwrap_or_default();
    let s = gw.endpoint.stats();
    let c = &gw.counters;
    let one = |v: u64| vec![(String::new(), v as f64)];
    let mut out = String::new();
    family(
        &mut out,
        "yard_uptime_seconds",
        "gauge",
        "Seconds since the endpoint started.",
        &[(String::new(), gw.endpoint.uptime().as_secs_f64())],
    );
    family(
        &mut out,
        "yard_messages_published_total",
        "counter",
        "Publications accepted by the router.",
        &one(s.published),
    );
    family(
        &mut out,
        "yard_messages_delivered_total",
        "counter",
        "Message copies queued to subscribers.",
        &one(s.delivered),
    );
    family(
        &mut out,
        "yard_messages_dropped_total",
        "counter",
        "Message copies dropped by overflow policies.",
        &one(s.dropped),
    );
    family(
        &mut out,
        "yard_overflow_disconnects_total",
        "counter",
        "Subscribers disconnected because their queue overflowed.",
        &one(s.overflow_disconnects),
    );
    family(
        &mut out,
        "yard_clients",
        "gauge",
        "Subscribers attached to the endpoint.",
        &one(s.clients),
    );
    family(
        &mut out,
        "yard_subscriptions",
        "gauge",
        "Distinct subscription prefixes.",
        &one(s.subscriptions),
    );
    family(
        &mut out,
        "yard_websocket_open",
        "gauge",
        "WebSocket connections open, handshakes included.",
        &one(c.open.load(Ordering::Relaxed) as u64),
    );
    family(
        &mut out,
        "yard_websocket_connections_total",
        "counter",
        "WebSocket connections accepted.",
        &one(c.connections.load(Ordering::Relaxed)),
    );
    family(
        &mut out,
        "yard_websocket_handshake_failures_total",
        "counter",
        "WebSocket connections that ended before a valid handshake.",
        &one(c.handshake_failures.load(Ordering::Relaxed)),
    );
    if gw.config.tls.is_some() {
        family(
            &mut out,
            "yard_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out (a certificate of another authority, TLS 1.2 or older, garbage).",
            &one(c.tls_handshake_failures.load(Ordering::Relaxed)),
        );
        family(
            &mut out,
            "yard_tls_plain_refused_total",
            "counter",
            "Plain-text connections refused by a listener that speaks TLS only.",
            &one(c.plain_refused.load(Ordering::Relaxed)),
        );
    }
    family(
        &mut out,
        "yard_websocket_refused_total",
        "counter",
        "WebSocket connections refused at max_clients.",
        &one(c.refused_connections.load(Ordering::Relaxed)),
    );
    family(
        &mut out,
        "yard_websocket_received_total",
        "counter",
        "Client messages accepted.",
        &one(c.received_messages.load(Ordering::Relaxed)),
    );
    family(
        &mut out,
        "yard_websocket_rejected_total",
        "counter",
        "Client messages rejected with an error frame.",
        &one(c.rejected_messages.load(Ordering::Relaxed)),
    );
    let per_client = |f: &dyn Fn(&yard_fabric::ClientInfo) -> f64| -> Vec<(String, f64)> {
        snapshot
            .clients
            .iter()
            .map(|cl| {
                (
                    format!("{{client=\"{}\",kind=\"{}\"}}", cl.id, label(&cl.name)),
                    f(cl),
                )
            })
            .collect()
    };
    family(
        &mut out,
        "yard_client_queue_depth",
        "gauge",
        "Messages waiting in a subscriber's outbound queue.",
        &per_client(&|cl| cl.queue_depth as f64),
    );
    family(
        &mut out,
        "yard_client_dropped_total",
        "counter",
        "Messages dropped for one subscriber.",
        &per_client(&|cl| cl.drops as f64),
    );
    for (name, help, v) in [
        ("yard_peers", "Peer links up.", s.peers),
        (
            "yard_reachable_endpoints",
            "Endpoints reachable through the mesh.",
            snapshot.reachable.len() as u64,
        ),
    ] {
        family(&mut out, name, "gauge", help, &one(v));
    }
    for (name, help, v) in [
        (
            "yard_mesh_forwarded_total",
            "Message copies queued to peers.",
            s.forwarded,
        ),
        (
            "yard_mesh_peer_dropped_total",
            "Message copies dropped by peers' overflow policies.",
            s.peer_dropped,
        ),
        (
            "yard_mesh_received_total",
            "Publications received from peers.",
            s.from_peers,
        ),
        (
            "yard_mesh_duplicates_total",
            "Publications from peers discarded as already seen.",
            s.duplicates,
        ),
        (
            "yard_mesh_refused_peers_total",
            "Peering handshakes refused: the peer could not prove the mesh key.",
            s.refused_peers,
        ),
        (
            "yard_forged_replies_total",
            "Answers dropped: a client replied to an address it was never given.",
            s.forged_replies,
        ),
        (
            "yard_withheld_total",
            "Reserved (control) messages kept from clients without the grant.",
            s.withheld,
        ),
        (
            "yard_mesh_ttl_expired_total",
            "Publications that ran out of hops.",
            s.ttl_expired,
        ),
        (
            "yard_requests_total",
            "Requests sent from this endpoint.",
            s.requests,
        ),
        (
            "yard_request_timeouts_total",
            "Requests that got no answer in time.",
            s.request_timeouts,
        ),
    ] {
        family(&mut out, name, "counter", help, &one(v));
    }
    let linked: Vec<&yard_fabric::PeerInfo> = snapshot
        .peers
        .iter()
        .filter(|p| p.state == "connected")
        .collect();
    let per_peer = |f: &dyn Fn(&yard_fabric::PeerInfo) -> f64| -> Vec<(String, f64)> {
        linked
            .iter()
            .map(|p| {
                (
                    format!(
                        "{{peer=\"{}\",address=\"{}\"}}",
                        label(&p.id),
                        label(&p.address)
                    ),
                    f(p),
                )
            })
            .collect()
    };
    family(
        &mut out,
        "yard_peer_queue_depth",
        "gauge",
        "Messages waiting in a peer's outbound queue.",
        &per_peer(&|p| p.queue_depth as f64),
    );
    family(
        &mut out,
        "yard_peer_dropped_total",
        "counter",
        "Messages dropped for one peer by its overflow policy.",
        &per_peer(&|p| p.drops as f64),
    );
    family(
        &mut out,
        "yard_peer_sent_total",
        "counter",
        "Publications written to one peer.",
        &per_peer(&|p| p.sent as f64),
    );
    family(
        &mut out,
        "yard_peer_received_total",
        "counter",
        "Publications received from one peer.",
        &per_peer(&|p| p.received as f64),
    );
    gw.guard.metrics(&mut out);
    if let Some(extra) = &gw.extra_metrics {
        extra(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `GET /v1/audit?principal=&result=&action=&since=&limit=`: the decisions this daemon
/// recorded, newest first (at most `limit`, 100 by default, 10,000 at most).
pub async fn audit(
    State(gw): State<Arc<Gateway>>,
    q: Result<
        axum::extract::Query<yard_auth::audit::AuditFilter>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    let mut filter = match q {
        Ok(axum::extract::Query(f)) => f,
        Err(e) => {
            return yard_auth::http::refusal(
                axum::http::StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{e}: the filters are principal, result, action, since (ms) and limit"),
            )
        }
    };
    filter.limit = Some(filter.limit.unwrap_or(100).min(10_000));
    let records = gw.guard.audit.query(&filter);
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&records).unwrap_or_else(|_| "[]".into()),
    )
        .into_response()
}

/// `GET /v1/health`: 200 `{"status":"ok"}` while the endpoint's router answers, 503 otherwise.
/// It tells nothing else, so it needs no credential (health checks, load balancers).
pub async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    let (code, status) = match gw.endpoint.snapshot().await {
        Ok(_) => (axum::http::StatusCode::OK, "ok"),
        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "stopping"),
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"status\":\"{status}\"}}"),
    )
        .into_response()
}
