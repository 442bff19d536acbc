//! The operations center's API (docs/openapi.json), typed with the types the center serves.

use serde::de::DeserializeOwned;
use yard_ops::center::{
    CommandList, CommandRecord, LinkRequest, LoginLink, NodeList, SeriesList, SeriesPoints,
    StartRequest, Started, Stats, TopologyView, Uploaded,
};

use crate::http::{self, escape, Request};
use crate::ClientError;

/// A center at `addr`, reached with `authorization` (the whole header value) or anonymously.
#[derive(Clone)]
pub struct Center {
    addr: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Center")
            .field("addr", &self.addr)
            .field("authorized", &self.authorization.is_some())
            .finish()
    }
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        what: what.to_string(),
        why: e.to_string(),
    })
}

/// A node, named as the center names it.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    pub cluster: &'a str,
    pub agent: &'a str,
    pub node: &'a str,
}

/// One read of a node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    pub text: String,
    /// Where the next read carries on.
    pub next: Option<String>,
    /// `text` follows the read that ended at the `after` given; false when it is the tail
    /// afresh (the first read, or the log rotated or ran on past what one read holds).
    pub continued: bool,
}

/// `path`, narrowed to one cluster when one is given.
fn for_cluster(path: &str, cluster: Option<&str>) -> String {
    match cluster {
        Some(c) => format!("{path}?cluster={}", escape(c, false)),
        None => path.to_string(),
    }
}

impl Center {
    pub fn new(addr: impl Into<String>, authorization: Option<String>) -> Center {
        Center {
            addr: addr.into(),
            authorization,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn send(&self, r: Request<'_>) -> Result<Vec<u8>, ClientError> {
        let (method, path) = (r.method, r.path);
        let r = r.authorized(self.authorization.as_deref());
        Ok(http::request(&self.addr, r).await?.ok(method, path)?.body)
    }

    pub async fn topology(&self) -> Result<TopologyView, ClientError> {
        decode(
            "GET /v1/topology",
            &self.send(Request::get("/v1/topology")).await?,
        )
    }

    pub async fn commands(&self) -> Result<CommandList, ClientError> {
        decode(
            "GET /v1/commands",
            &self.send(Request::get("/v1/commands")).await?,
        )
    }

    /// One command; with `after`, the center answers once the command's version passes it or
    /// `wait_ms` passed (a long poll).
    pub async fn command(
        &self,
        id: &str,
        after: Option<u64>,
        wait_ms: u64,
    ) -> Result<CommandRecord, ClientError> {
        let mut path = format!("/v1/commands/{}", escape(id, false));
        if let Some(v) = after {
            path.push_str(&format!("?after={v}&wait_ms={wait_ms}"));
        }
        decode(
            &format!("GET {path}"),
            &self.send(Request::get(&path)).await?,
        )
    }

    /// A one-time login code for the dashboard (an admin's call).
    pub async fn login_link(&self, req: &LinkRequest) -> Result<LoginLink, ClientError> {
        let body = serde_json::to_vec(req).expect("a request serializes");
        let answer = self
            .send(Request::json("POST", "/v1/login/links", &body))
            .await?;
        decode("POST /v1/login/links", &answer)
    }

    /// A join token for new hosts (`POST /v1/join/tokens`; admin).
    pub async fn join_token(
        &self,
        req: &yard_ops::joins::TokenRequest,
    ) -> Result<yard_ops::joins::TokenMade, ClientError> {
        let body = serde_json::to_vec(req).expect("a request serializes");
        let answer = self
            .send(Request::json("POST", "/v1/join/tokens", &body))
            .await?;
        decode("POST /v1/join/tokens", &answer)
    }

    /// The join tokens, with their uses left and who joined (`GET /v1/join/tokens`; admin).
    pub async fn join_tokens(&self) -> Result<Vec<yard_tls::join::TokenRecord>, ClientError> {
        let answer = self.send(Request::get("/v1/join/tokens")).await?;
        decode("GET /v1/join/tokens", &answer)
    }

    /// Removes a join token (`DELETE /v1/join/tokens/ID`; admin).
    pub async fn revoke_join_token(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/join/tokens/{}", escape(id, false));
        self.send(Request::json("DELETE", &path, &[])).await?;
        Ok(())
    }

    /// Starts a command; its id.
    pub async fn start(&self, req: &StartRequest) -> Result<String, ClientError> {
        let body = serde_json::to_vec(req).expect("a request serializes");
        let answer = self
            .send(Request::json("POST", "/v1/commands", &body))
            .await?;
        Ok(decode::<Started>("POST /v1/commands", &answer)?.id)
    }

    /// Uploads an artifact; the center refuses it when `sha256` is given and differs.
    pub async fn upload(
        &self,
        bytes: &[u8],
        sha256: Option<&str>,
    ) -> Result<Uploaded, ClientError> {
        let path = match sha256 {
            Some(s) => format!("/v1/artifacts?sha256={}", escape(s, false)),
            None => "/v1/artifacts".to_string(),
        };
        let r = Request {
            method: "POST",
            path: &path,
            body: bytes,
            content_type: Some("application/octet-stream"),
            authorization: None,
        };
        decode(&format!("POST {path}"), &self.send(r).await?)
    }

    async fn get_typed<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(
            &format!("GET {path}"),
            &self.send(Request::get(path)).await?,
        )
    }

    /// Every node (of one cluster).
    pub async fn nodes(&self, cluster: Option<&str>) -> Result<NodeList, ClientError> {
        self.get_typed(&for_cluster("/v1/nodes", cluster)).await
    }

    /// The end of a node's log (`stream`: stdout or stderr), at most `max_bytes`.
    /// The last `max_bytes` of a node's log, or with `after` (a [`LogRead::next`]) what was
    /// written since.
    pub async fn logs(
        &self,
        node: &NodeRef<'_>,
        stream: &str,
        max_bytes: u64,
        after: Option<&str>,
    ) -> Result<LogRead, ClientError> {
        let mut path = format!(
            "/v1/logs/{}/{}/{}?stream={}&max_bytes={max_bytes}",
            escape(node.cluster, false),
            escape(node.agent, false),
            escape(node.node, false),
            escape(stream, false)
        );
        if let Some(a) = after {
            path.push_str(&format!("&after={}", escape(a, false)));
        }
        let r = Request::get(&path).authorized(self.authorization.as_deref());
        let a = http::request(&self.addr, r).await?.ok("GET", &path)?;
        Ok(LogRead {
            text: a.text(),
            next: a.header("x-yard-log-next").map(str::to_string),
            continued: a.header("x-yard-log-continued") == Some("true"),
        })
    }

    /// Figures per cluster (of one cluster) and their total.
    pub async fn stats(&self, cluster: Option<&str>) -> Result<Stats, ClientError> {
        self.get_typed(&for_cluster("/v1/stats", cluster)).await
    }

    /// A series' history: `since` back from now (`1h`, `7d`…), at `resolution` (`raw`, `1m`,
    /// `1h` or `auto`).
    pub async fn query(
        &self,
        series: &str,
        since: &str,
        resolution: &str,
    ) -> Result<SeriesPoints, ClientError> {
        let path = format!(
            "/v1/metrics/query?series={}&since={}&resolution={}",
            escape(series, true),
            escape(since, false),
            escape(resolution, false)
        );
        self.get_typed(&path).await
    }

    /// The series names starting with `prefix`.
    pub async fn series(&self, prefix: &str) -> Result<SeriesList, ClientError> {
        self.get_typed(&format!(
            "/v1/metrics/series?prefix={}",
            escape(prefix, true)
        ))
        .await
    }
}
