//! A node's own routes (its gateway: status, peers, stores), typed with the types the gateway
//! serves.

use serde::de::DeserializeOwned;
use yard_data::json::{self, JsonOptions};
use yard_data::time::TimestampPrecision;
use yard_data::Value;
use yard_gateway::peers::{PeerRequest, PeerRow, Peered, Unpeered};
use yard_gateway::status::StatusView;
use yard_gateway::stores::{op_body, AttachRequest, Attached, Detached, Op, Restored};
use yard_store::StoreInfo;

use crate::http::{self, escape, Answer, Request};
use crate::ClientError;

/// Values go out with all nine digits of their timestamps: nothing is lost on the way in.
const LOSSLESS: JsonOptions = JsonOptions {
    timestamp_precision: TimestampPrecision::Nanos,
};

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

/// The outcome of a store operation.
#[derive(Debug, Clone, PartialEq)]
pub enum OpAnswer {
    /// The operation's result (`none` for most writes).
    Value(Value),
    /// A clone's write while its master is out of reach: kept and replayed when it returns.
    Buffered,
    /// `await_idle`: whether the store went idle within the timeout.
    Idle(bool),
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        what: what.to_string(),
        why: e.to_string(),
    })
}

fn store_path(store: &str, rest: &str) -> String {
    format!("/v1/stores/{}{rest}", escape(store, false))
}

impl Node {
    pub fn new(addr: impl Into<String>, authorization: Option<String>) -> Node {
        Node {
            addr: addr.into(),
            authorization,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `r` with this node's credential; a 2xx answer, else the refusal.
    async fn send(&self, r: Request<'_>) -> Result<Answer, ClientError> {
        let (method, path) = (r.method, r.path);
        let r = r.authorized(self.authorization.as_deref());
        http::request(&self.addr, r).await?.ok(method, path)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let answer = self.send(Request::get(path)).await?;
        decode(&format!("GET {path}"), &answer.body)
    }

    /// `GET /v1/status/json`.
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/v1/status/json").await
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<Vec<PeerRow>, ClientError> {
        self.get("/v1/peers").await
    }

    /// `POST /v1/peers`: `connected` with the peer's id, or `connecting` when the first attempt
    /// failed (the node keeps re-dialing).
    pub async fn peer(&self, address: &str) -> Result<Peered, ClientError> {
        let body = serde_json::to_vec(&PeerRequest {
            address: address.to_string(),
        })
        .expect("a request serializes");
        let answer = self.send(Request::json("POST", "/v1/peers", &body)).await?;
        decode("POST /v1/peers", &answer.body)
    }

    /// `DELETE /v1/peers?address=…`.
    pub async fn unpeer(&self, address: &str) -> Result<Unpeered, ClientError> {
        let path = format!("/v1/peers?address={}", escape(address, false));
        let answer = self.send(Request::json("DELETE", &path, &[])).await?;
        decode(&format!("DELETE {path}"), &answer.body)
    }

    /// `GET /v1/stores`: the stores attached here, by name.
    pub async fn stores(&self) -> Result<Vec<StoreInfo>, ClientError> {
        self.get("/v1/stores").await
    }

    /// `GET /v1/stores/NAME`.
    pub async fn store_info(&self, store: &str) -> Result<StoreInfo, ClientError> {
        self.get(&store_path(store, "")).await
    }

    /// `POST /v1/stores`.
    pub async fn attach(&self, req: &AttachRequest) -> Result<Attached, ClientError> {
        let body = serde_json::to_vec(req).expect("a request serializes");
        let answer = self
            .send(Request::json("POST", "/v1/stores", &body))
            .await?;
        decode("POST /v1/stores", &answer.body)
    }

    /// `DELETE /v1/stores/NAME`.
    pub async fn detach(&self, store: &str) -> Result<Detached, ClientError> {
        let path = store_path(store, "");
        let answer = self.send(Request::json("DELETE", &path, &[])).await?;
        decode(&format!("DELETE {path}"), &answer.body)
    }

    /// `GET /v1/stores/NAME/backup`: the backup file's bytes.
    pub async fn backup(&self, store: &str) -> Result<Vec<u8>, ClientError> {
        Ok(self
            .send(Request::get(&store_path(store, "/backup")))
            .await?
            .body)
    }

    /// `POST /v1/stores/NAME/restore` with a backup file's bytes.
    pub async fn restore(&self, store: &str, backup: &[u8]) -> Result<Restored, ClientError> {
        let path = store_path(store, "/restore");
        let r = Request {
            content_type: Some("application/octet-stream"),
            ..Request::json("POST", &path, backup)
        };
        let answer = self.send(r).await?;
        decode(&format!("POST {path}"), &answer.body)
    }

    /// `GET /v1/stores/NAME/dump`: every entry as a JSON line.
    pub async fn dump(&self, store: &str) -> Result<String, ClientError> {
        let answer = self.send(Request::get(&store_path(store, "/dump"))).await?;
        Ok(answer.text())
    }

    /// `GET /v1/stores/NAME/keys[?prefix=P]`.
    pub async fn keys(&self, store: &str, prefix: Option<&str>) -> Result<Vec<Value>, ClientError> {
        let path = match prefix {
            Some(p) => store_path(store, &format!("/keys?prefix={}", escape(p, true))),
            None => store_path(store, "/keys"),
        };
        let raw: Vec<serde_json::Value> = self.get(&path).await?;
        raw.iter()
            .map(|k| {
                json::decode_value(k).map_err(|e| ClientError::Decode {
                    what: format!("GET {path}"),
                    why: e.to_string(),
                })
            })
            .collect()
    }

    /// `POST /v1/stores/NAME/ops`: one operation, here or at the store's master.
    pub async fn run(&self, store: &str, op: &Op) -> Result<OpAnswer, ClientError> {
        let path = store_path(store, "/ops");
        let body = op_body(op, LOSSLESS);
        let answer = self
            .send(Request::json("POST", &path, body.as_bytes()))
            .await?;
        let what = || format!("POST {path}");
        if answer.status == 202 {
            return Ok(OpAnswer::Buffered);
        }
        let j: serde_json::Value = decode(&what(), &answer.body)?;
        if let Some(idle) = j.get("idle") {
            return match idle.as_bool() {
                Some(b) => Ok(OpAnswer::Idle(b)),
                None => Err(ClientError::Decode {
                    what: what(),
                    why: format!("\"idle\" is {idle}, not a boolean"),
                }),
            };
        }
        json::decode_value(&j)
            .map(OpAnswer::Value)
            .map_err(|e| ClientError::Decode {
                what: what(),
                why: e.to_string(),
            })
    }
}
