//! `/v1/peers`: list the peers (`GET`), peer with an address (`POST {"address":…}`), unpeer
//! (`DELETE /v1/peers?address=…`).
//!
//! Peering changes the system, so `POST` and `DELETE` need credentials once the gateway listens
//! beyond loopback: with a token configured, `Authorization: Bearer <token>`; without one they are
//! refused with 403 on a non-loopback listener.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use yard_fabric::{EndpointError, PeerInfo};

use crate::Gateway;

/// One peer as `GET /v1/peers` (and the status's `peers`) shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerRow {
    /// The peer's endpoint id (empty while it was never reached).
    pub id: String,
    pub address: String,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// `connected`, or `connecting` for a dialed address without a link.
    pub state: String,
    pub listen: String,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub overflow_policy: String,
    pub drops: u64,
    pub sent: u64,
    pub received: u64,
    pub connected_seconds: u64,
    pub last_error: Option<String>,
}

impl From<&PeerInfo> for PeerRow {
    fn from(p: &PeerInfo) -> PeerRow {
        PeerRow {
            id: p.id.clone(),
            address: p.address.clone(),
            direction: p.direction.to_string(),
            state: p.state.to_string(),
            listen: p.listen.clone(),
            queue_depth: p.queue_depth,
            queue_capacity: p.queue_capacity,
            overflow_policy: p.policy.name().to_string(),
            drops: p.drops,
            sent: p.sent,
            received: p.received,
            connected_seconds: p.connected_secs,
            last_error: p.last_error.clone(),
        }
    }
}

/// The body of `POST /v1/peers`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerRequest {
    /// `host:port` of the other endpoint.
    pub address: String,
}

/// The answer to `POST /v1/peers`: `connected` (200, with the peer's id), or `connecting`
/// (202, with why the first attempt failed; the endpoint keeps re-dialing).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Peered {
    pub address: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// The answer to `DELETE /v1/peers?address=…`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unpeered {
    pub address: String,
    /// Always `removed`.
    pub state: String,
}

fn typed(status: StatusCode, body: &impl serde::Serialize) -> Response {
    answer(
        status,
        serde_json::to_value(body).expect("an answer serializes"),
    )
}

pub fn peers_json(peers: &[PeerInfo]) -> Json {
    serde_json::to_value(peers.iter().map(PeerRow::from).collect::<Vec<_>>())
        .expect("rows serialize")
}

pub(crate) fn answer(status: StatusCode, body: Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn error(status: StatusCode, code: &str, context: &str) -> Response {
    answer(status, json!({"code": code, "context": context}))
}

pub async fn list(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.endpoint.snapshot().await {
        Ok(s) => answer(StatusCode::OK, peers_json(&s.peers)),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.code(), &e.to_string()),
    }
}

pub async fn add(State(gw): State<Arc<Gateway>>, body: String) -> Response {
    let address = match serde_json::from_str::<Json>(&body) {
        Ok(Json::Object(o)) => match o.get("address") {
            Some(Json::String(a)) => a.clone(),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_message",
                    "the body needs \"address\": \"host:port\"",
                )
            }
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                "the body must be a JSON object such as {\"address\":\"127.0.0.1:9998\"}",
            )
        }
    };
    match gw.endpoint.peer(&address).await {
        Ok(Ok(id)) => typed(
            StatusCode::OK,
            &Peered {
                address,
                state: "connected".into(),
                id: Some(id),
                error: None,
                context: None,
            },
        ),
        Ok(Err(e)) => typed(
            StatusCode::ACCEPTED,
            &Peered {
                address,
                state: "connecting".into(),
                id: None,
                error: Some(e.to_string()),
                context: Some(
                    "the first attempt failed; the endpoint keeps re-dialing with backoff".into(),
                ),
            },
        ),
        Err(e @ EndpointError::AlreadyPeering(_)) => {
            error(StatusCode::CONFLICT, e.code(), &e.to_string())
        }
        Err(e @ EndpointError::BadAddress(_)) => {
            error(StatusCode::BAD_REQUEST, e.code(), &e.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.code(), &e.to_string()),
    }
}

#[derive(serde::Deserialize, Debug)]
pub struct Target {
    address: String,
}

pub async fn remove(State(gw): State<Arc<Gateway>>, Query(target): Query<Target>) -> Response {
    match gw.endpoint.unpeer(&target.address).await {
        Ok(()) => typed(
            StatusCode::OK,
            &Unpeered {
                address: target.address,
                state: "removed".into(),
            },
        ),
        Err(e @ EndpointError::UnknownPeer(_)) => {
            error(StatusCode::NOT_FOUND, e.code(), &e.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.code(), &e.to_string()),
    }
}
