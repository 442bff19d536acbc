//! `GET /v1/audit` of any yard listener (a node's gateway, the center, a manager): the audit
//! records it keeps, typed with `yard-auth`'s own [`AuditRecord`].

use yard_auth::AuditRecord;

use crate::http::{self, Request};
use crate::ClientError;

/// The records at `addr` matching `query` (the route's query string: `limit=…&principal=…`),
/// oldest first as the listener answers.
pub async fn records(
    addr: &str,
    authorization: Option<&str>,
    query: &str,
) -> Result<Vec<AuditRecord>, ClientError> {
    let path = format!("/v1/audit?{query}");
    let r = Request::get(&path).authorized(authorization);
    let answer = http::request(addr, r).await?.ok("GET", &path)?;
    serde_json::from_slice(&answer.body).map_err(|e| ClientError::Decode {
        what: format!("GET {path}"),
        why: e.to_string(),
    })
}
