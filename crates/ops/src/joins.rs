//! The center's join routes: the public root (`GET /v1/ca`) and revocation list
//! (`GET /v1/ca/crl`), a host's join (`POST /v1/join`, its token's secret the credential), a
//! holder's renewal (`POST /v1/renew`, its TLS certificate the credential), and the admin's
//! tokens (`/v1/join/tokens`). The desk itself (the book of tokens and the authority) is
//! [`yard_tls::join::Joins`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use yard_auth::http::{AuditDetail, Remote};
use yard_tls::join::{JoinError, JoinRequest, Joins, RenewRequest, TokenRecord};

use crate::center::{error, json_request, Center};

/// `POST /v1/join/tokens`: what a token allows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRequest {
    /// The subject pattern: `manager:C`, `agent:C/A`, `agent:C/*`, `node:N`, `node:*`.
    pub allows: String,
    /// How many hosts may join with it (1 unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// How long it is good for, in seconds (3600 unless given; at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// The center's address as the new hosts reach it [default: the request's Host].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<String>,
}

/// A token made: its text (shown once) and its record.
#[derive(Serialize, Deserialize)]
pub struct TokenMade {
    pub token: String,
    pub record: TokenRecord,
}

impl std::fmt::Debug for TokenMade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMade")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

fn desk(c: &Center) -> Result<&Arc<Joins>, Box<Response>> {
    c.cfg.joins.as_ref().ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            "no_authority",
            "this center holds no certificate authority (start it with one: `yard ca init`, or `yard up`)",
        ))
    })
}

fn refused(e: JoinError) -> Response {
    match e {
        JoinError::Refused => error(StatusCode::UNAUTHORIZED, "join_refused", e.to_string()),
        JoinError::NotAllowed(..) => {
            error(StatusCode::FORBIDDEN, "join_not_allowed", e.to_string())
        }
        JoinError::Renewal(_) => error(StatusCode::FORBIDDEN, "renewal_refused", e.to_string()),
        JoinError::Bad(_) | JoinError::Ca(yard_tls::CaError::Request(_)) => {
            error(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
        }
        other => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "authority_error",
            other.to_string(),
        ),
    }
}

/// `GET /v1/ca`: the root certificate, PEM.
pub(crate) async fn root(State(c): State<Arc<Center>>) -> Response {
    match desk(&c) {
        Ok(d) => (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            d.ca().cert_pem().to_string(),
        )
            .into_response(),
        Err(r) => *r,
    }
}

/// `GET /v1/ca/crl`: the authority's revocation list, DER (signed by the root).
pub(crate) async fn crl(State(c): State<Arc<Center>>) -> Response {
    let d = match desk(&c) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    match tokio::task::spawn_blocking(move || d.ca().crl(SystemTime::now())).await {
        Ok(Ok(der)) => ([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "authority_error",
            e.to_string(),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "authority_error",
            e.to_string(),
        ),
    }
}

/// `POST /v1/renew`: the holder of a certificate of this authority (presented over TLS) gets a
/// new one for a new key, same subject and hosts.
pub(crate) async fn renew(
    State(c): State<Arc<Center>>,
    ConnectInfo(remote): ConnectInfo<Remote>,
    body: Bytes,
) -> Response {
    let d = match desk(&c) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    let Some(cert) = remote.cert.clone() else {
        return error(
            StatusCode::UNAUTHORIZED,
            "certificate_required",
            "a renewal is asked with the certificate to renew, presented over TLS",
        );
    };
    let req: RenewRequest = match json_request(&body, "a renewal request") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let serial = cert.serial.clone();
    let who = cert.principal.clone().unwrap_or_else(|| "?".into());
    let answer =
        tokio::task::spawn_blocking(move || d.renew(&serial, &req, SystemTime::now())).await;
    let audited = |mut r: Response, detail: String| {
        r.extensions_mut().insert(AuditDetail(detail));
        r
    };
    match answer {
        Ok(Ok(renewed)) => {
            tracing::info!(subject = %renewed.subject, serial = %renewed.serial, "a certificate was renewed");
            let detail = format!(
                "renewed {who}: certificate {} replaces {}",
                renewed.serial, cert.serial
            );
            audited(Json(renewed).into_response(), detail)
        }
        Ok(Err(e)) => {
            tracing::warn!(subject = %who, "a renewal was refused: {e}");
            audited(refused(e), format!("renewal of {who} ({})", cert.serial))
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "authority_error",
            e.to_string(),
        ),
    }
}

/// `POST /v1/join`: a host proves its token and gets a certificate for its key.
pub(crate) async fn join(State(c): State<Arc<Center>>, body: Bytes) -> Response {
    let d = match desk(&c) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    let req: JoinRequest = match json_request(&body, "a join request") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let subject = req.subject.to_string();
    let token = req.id.clone();
    let answer = tokio::task::spawn_blocking(move || d.join(&req, SystemTime::now())).await;
    let audited = |mut r: Response, detail: String| {
        r.extensions_mut().insert(AuditDetail(detail));
        r
    };
    match answer {
        Ok(Ok(joined)) => {
            tracing::info!(%subject, serial = %joined.serial, "a host joined");
            let detail = format!(
                "joined as {subject} with token {token}, certificate {}",
                joined.serial
            );
            audited(Json(joined).into_response(), detail)
        }
        Ok(Err(e)) => {
            tracing::warn!(%subject, "a join was refused: {e}");
            audited(refused(e), format!("as {subject} with token {token:.8}"))
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "authority_error",
            e.to_string(),
        ),
    }
}

/// `POST /v1/join/tokens`: a new token.
pub(crate) async fn create(
    State(c): State<Arc<Center>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let d = match desk(&c) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    let req: TokenRequest = match json_request(&body, "a token request") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let center = req.center.clone().or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    let Some(center) = center else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name the center's address as the new hosts reach it (center)",
        );
    };
    let uses = req.uses.unwrap_or(1);
    let ttl = Duration::from_secs(req.ttl_s.unwrap_or(3600));
    let made = tokio::task::spawn_blocking(move || {
        d.create(&req.allows, uses, ttl, &center, SystemTime::now())
    })
    .await;
    match made {
        Ok(Ok((record, token))) => Json(TokenMade {
            token: token.to_string(),
            record,
        })
        .into_response(),
        Ok(Err(e)) => refused(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "authority_error",
            e.to_string(),
        ),
    }
}

/// `GET /v1/join/tokens`: the tokens, with what each allows, its uses left and who joined.
pub(crate) async fn list(State(c): State<Arc<Center>>) -> Response {
    match desk(&c) {
        Ok(d) => Json(d.list()).into_response(),
        Err(r) => *r,
    }
}

/// `DELETE /v1/join/tokens/ID`.
pub(crate) async fn revoke(State(c): State<Arc<Center>>, Path(id): Path<String>) -> Response {
    let d = match desk(&c) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    match tokio::task::spawn_blocking(move || d.revoke(&id)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => error(StatusCode::NOT_FOUND, "unknown_token", "no such join token"),
        Ok(Err(e)) => refused(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "authority_error",
            e.to_string(),
        ),
    }
}
