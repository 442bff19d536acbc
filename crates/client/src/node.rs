//! A node's own routes (its gateway), typed with the types the gateway serves. So far: peers.

use yard_gateway::peers::PeerRow;

use crate::http::{self, Request};
use crate::ClientError;

/// A node's gateway at `addr`, reached with `authorization` (the whole header value).
#[derive(Clone)]
pub struct Node {
    addr: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("authorized", &self.authorization.is_some())
            .finish()
    }
}

impl Node {
    pub fn new(addr: impl Into<String>, authorization: Option<String>) -> Node {
        Node {
            addr: addr.into(),
            authorization,
        }
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<Vec<PeerRow>, ClientError> {
        let path = "/v1/peers";
        let r = Request::get(path).authorized(self.authorization.as_deref());
        let answer = http::request(&self.addr, r).await?.ok("GET", path)?;
        serde_json::from_slice(&answer.body).map_err(|e| ClientError::Decode {
            what: format!("GET {path}"),
            why: e.to_string(),
        })
    }
}
