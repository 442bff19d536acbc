//! Stores over HTTP and WebSocket (see docs/STORES.md).
//!
//! HTTP:
//! - `GET /v1/stores`: the stores attached here; `POST /v1/stores` attaches one
//!   (`{"name":…,"role":"master"|"clone","backend":…}`); `DELETE /v1/stores/NAME` detaches.
//! - `GET|PUT|DELETE /v1/stores/NAME/keys/KEY` (a string key; the value is a JSON v1 value
//!   object, `?expiry=30s` optional), `GET /v1/stores/NAME/keys?prefix=P`.
//! - `POST /v1/stores/NAME/ops`: any operation, in the WebSocket envelope.
//! - `GET /v1/stores/NAME/backup`, `POST /v1/stores/NAME/restore`, `GET /v1/stores/NAME/dump`
//!   (JSON lines).
//!
//! WebSocket: `{"type":"store","id":…,"store":…,"op":…,…}` answered by
//! `{"type":"store-result","id":…,"result":{value}}` (or `"buffered":true`) or an `error` with
//! the id.
//!
//! Anything that changes a store needs credentials once the gateway listens beyond loopback
//! (the same rule and token as peering).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query as UrlQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value as Json};
use tokio::sync::oneshot;
use yard_data::json::StoreFields;
use yard_data::json::{self, JsonOptions};
use yard_data::time::parse_timespan;
use yard_data::Value;
use yard_store::actor::{Command, Outcomes, StoreHandle, StoreOp};
use yard_store::replica::WriteOutcome;
use yard_store::{BackendSpec, Mutation, Query, Role, StoreError, Stores};

use crate::peers::{answer, error};
use crate::Gateway;
use yard_auth::{Caller, Permission};

/// A parsed store operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Write(Mutation),
    Read(Query),
    AwaitIdle(Duration),
}

impl Op {
    pub fn changes(&self) -> bool {
        matches!(self, Op::Write(_))
    }
}

/// Why a store request was not read (answered as `invalid_message`, HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("a store operation needs an id (any JSON value, echoed in the answer)")]
    NoId,
    #[error("a store operation needs \"store\": the store's name")]
    NoStore,
    #[error("a store operation needs \"op\" (put, get, erase, increment, …)")]
    NoOp,
    #[error("unknown store operation {0:?}: put, put_unique, erase, clear, increment, decrement, append, insert_into, remove_from, push, pop, get, exists, keys, get_index_from_value, await_idle")]
    UnknownOp(String),
    #[error("this operation needs \"{0}\" (a value object such as {{\"@data-type\":\"string\",\"data\":\"x\"}})")]
    Missing(String),
    /// A value field that is not a JSON v1 value.
    #[error("{field}: {why}")]
    BadValue { field: String, why: String },
    /// An expiry or timeout that is not a positive span.
    #[error("{field}: {why}")]
    BadSpan { field: String, why: String },
}

fn needs(field: &str) -> RequestError {
    RequestError::Missing(field.to_string())
}

fn value_field(obj: &Map<String, Json>, field: &str) -> Result<Value, RequestError> {
    let j = obj.get(field).ok_or_else(|| needs(field))?;
    json::decode_value(j).map_err(|e| RequestError::BadValue {
        field: field.to_string(),
        why: e.to_string(),
    })
}

fn span_field(field: &str, j: Option<&Json>) -> Result<Option<i64>, RequestError> {
    let bad = |why: String| {
        Err(RequestError::BadSpan {
            field: field.to_string(),
            why,
        })
    };
    match j {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => match parse_timespan(s) {
            Ok(ns) if ns > 0 => Ok(Some(ns)),
            _ => bad(format!("{s:?} is not a positive timespan such as \"30s\"")),
        },
        Some(Json::Number(n)) => match n.as_f64() {
            Some(secs) if secs > 0.0 && secs < 1e9 => Ok(Some((secs * 1e9) as i64)),
            _ => bad(format!("{n} is not a positive number of seconds")),
        },
        Some(other) => bad(format!(
            "expected a timespan string or seconds, got {other}"
        )),
    }
}

/// The fields of a store envelope, from a JSON object (HTTP, and WebSocket envelopes the fast
/// decoder did not take) or from the fast decoder.
pub trait Fields {
    fn op(&self) -> Option<&str>;
    fn has(&self, field: &str) -> bool;
    /// Takes a value field (`key`, `value`, `amount`, `index`).
    fn value(&mut self, field: &str) -> Result<Value, RequestError>;
    /// A timespan field (`expiry`, `timeout`).
    fn span(&self, field: &str) -> Result<Option<i64>, RequestError>;
}

impl Fields for Map<String, Json> {
    fn op(&self) -> Option<&str> {
        self.get("op").and_then(Json::as_str)
    }
    fn has(&self, field: &str) -> bool {
        self.contains_key(field)
    }
    fn value(&mut self, field: &str) -> Result<Value, RequestError> {
        value_field(self, field)
    }
    fn span(&self, field: &str) -> Result<Option<i64>, RequestError> {
        span_field(field, self.get(field))
    }
}

impl Fields for StoreFields {
    fn op(&self) -> Option<&str> {
        Some(&self.op)
    }
    fn has(&self, field: &str) -> bool {
        match field {
            "key" => self.key.is_some(),
            "value" => self.value.is_some(),
            "amount" => self.amount.is_some(),
            "index" => self.index.is_some(),
            _ => false,
        }
    }
    fn value(&mut self, field: &str) -> Result<Value, RequestError> {
        let slot = match field {
            "key" => &mut self.key,
            "value" => &mut self.value,
            "amount" => &mut self.amount,
            "index" => &mut self.index,
            _ => return Err(needs(field)),
        };
        slot.take().ok_or_else(|| needs(field))
    }
    fn span(&self, field: &str) -> Result<Option<i64>, RequestError> {
        let j = match field {
            "expiry" => self.expiry.as_ref(),
            "timeout" => self.timeout.as_ref(),
            _ => None,
        };
        span_field(field, j)
    }
}

/// Reads the operation of an envelope: `op` plus `key`, `value`, `amount`, `index`, `expiry`
/// as the operation needs.
pub fn parse_op(f: &mut impl Fields) -> Result<Op, RequestError> {
    let op = match f.op() {
        Some(s) => s.to_string(),
        None => return Err(RequestError::NoOp),
    };
    Ok(match op.as_str() {
        "put" => Op::Write(Mutation::Put {
            key: f.value("key")?,
            value: f.value("value")?,
            expiry: f.span("expiry")?,
        }),
        "put_unique" => Op::Write(Mutation::PutUnique {
            key: f.value("key")?,
            value: f.value("value")?,
            expiry: f.span("expiry")?,
        }),
        "erase" => Op::Write(Mutation::Erase {
            key: f.value("key")?,
        }),
        "clear" => Op::Write(Mutation::Clear),
        "increment" => Op::Write(Mutation::Increment {
            key: f.value("key")?,
            amount: f.value("amount")?,
            expiry: f.span("expiry")?,
        }),
        "decrement" => Op::Write(Mutation::Decrement {
            key: f.value("key")?,
            amount: f.value("amount")?,
            expiry: f.span("expiry")?,
        }),
        "append" => Op::Write(Mutation::Append {
            key: f.value("key")?,
            value: f.value("value")?,
            expiry: f.span("expiry")?,
        }),
        "insert_into" => Op::Write(Mutation::InsertInto {
            key: f.value("key")?,
            index: f.value("index")?,
            value: if f.has("value") {
                Some(f.value("value")?)
            } else {
                None
            },
            expiry: f.span("expiry")?,
        }),
        "remove_from" => Op::Write(Mutation::RemoveFrom {
            key: f.value("key")?,
            index: f.value("index")?,
            expiry: f.span("expiry")?,
        }),
        "push" => Op::Write(Mutation::Push {
            key: f.value("key")?,
            value: f.value("value")?,
            expiry: f.span("expiry")?,
        }),
        "pop" => Op::Write(Mutation::Pop {
            key: f.value("key")?,
            expiry: f.span("expiry")?,
        }),
        "get" => Op::Read(Query::Get {
            key: f.value("key")?,
        }),
        "exists" => Op::Read(Query::Exists {
            key: f.value("key")?,
        }),
        "keys" => Op::Read(Query::Keys),
        "get_index_from_value" => Op::Read(Query::GetIndexFromValue {
            key: f.value("key")?,
            index: f.value("index")?,
        }),
        "await_idle" => Op::AwaitIdle(Duration::from_nanos(
            f.span("timeout")?.unwrap_or(15_000_000_000) as u64,
        )),
        other => return Err(RequestError::UnknownOp(other.to_string())),
    })
}

/// Writes an operation as the fields [`parse_op`] reads: `"op":…` and the operation's own
/// fields, spans in nanoseconds (`"1500000000ns"`), no braces (the caller adds `id`, `store`).
pub fn write_op(out: &mut String, op: &Op, opts: JsonOptions) {
    fn field(out: &mut String, name: &str, v: &Value, opts: JsonOptions) {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        json::write_value(out, v, opts);
    }
    fn span(out: &mut String, name: &str, ns: Option<i64>) {
        if let Some(ns) = ns {
            out.push_str(&format!(",\"{name}\":\"{ns}ns\""));
        }
    }
    let name = |out: &mut String, n: &str| {
        out.push_str("\"op\":\"");
        out.push_str(n);
        out.push('"');
    };
    match op {
        Op::Write(m) => match m {
            Mutation::Put { key, value, expiry } | Mutation::PutUnique { key, value, expiry } => {
                let n = if matches!(m, Mutation::Put { .. }) {
                    "put"
                } else {
                    "put_unique"
                };
                name(out, n);
                field(out, "key", key, opts);
                field(out, "value", value, opts);
                span(out, "expiry", *expiry);
            }
            Mutation::Erase { key } => {
                name(out, "erase");
                field(out, "key", key, opts);
            }
            Mutation::Clear => name(out, "clear"),
            Mutation::Increment {
                key,
                amount,
                expiry,
            }
            | Mutation::Decrement {
                key,
                amount,
                expiry,
            } => {
                let n = if matches!(m, Mutation::Increment { .. }) {
                    "increment"
                } else {
                    "decrement"
                };
                name(out, n);
                field(out, "key", key, opts);
                field(out, "amount", amount, opts);
                span(out, "expiry", *expiry);
            }
            Mutation::Append { key, value, expiry } | Mutation::Push { key, value, expiry } => {
                let n = if matches!(m, Mutation::Append { .. }) {
                    "append"
                } else {
                    "push"
                };
                name(out, n);
                field(out, "key", key, opts);
                field(out, "value", value, opts);
                span(out, "expiry", *expiry);
            }
            Mutation::InsertInto {
                key,
                index,
                value,
                expiry,
            } => {
                name(out, "insert_into");
                field(out, "key", key, opts);
                field(out, "index", index, opts);
                if let Some(v) = value {
                    field(out, "value", v, opts);
                }
                span(out, "expiry", *expiry);
            }
            Mutation::RemoveFrom { key, index, expiry } => {
                name(out, "remove_from");
                field(out, "key", key, opts);
                field(out, "index", index, opts);
                span(out, "expiry", *expiry);
            }
            Mutation::Pop { key, expiry } => {
                name(out, "pop");
                field(out, "key", key, opts);
                span(out, "expiry", *expiry);
            }
        },
        Op::Read(q) => match q {
            Query::Get { key } => {
                name(out, "get");
                field(out, "key", key, opts);
            }
            Query::Exists { key } => {
                name(out, "exists");
                field(out, "key", key, opts);
            }
            Query::Keys => name(out, "keys"),
            Query::GetIndexFromValue { key, index } => {
                name(out, "get_index_from_value");
                field(out, "key", key, opts);
                field(out, "index", index, opts);
            }
        },
        Op::AwaitIdle(t) => {
            name(out, "await_idle");
            span(
                out,
                "timeout",
                Some(t.as_nanos().min(i64::MAX as u128) as i64),
            );
        }
    }
}

/// The body of `POST /v1/stores/NAME/ops` for `op`.
pub fn op_body(op: &Op, opts: JsonOptions) -> String {
    let mut s = String::from("{");
    write_op(&mut s, op, opts);
    s.push('}');
    s
}

/// The body of `POST /v1/stores`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachRequest {
    pub name: String,
    pub role: Role,
    /// `memory` or `sqlite:PATH` (a master's; a clone keeps its copy in memory).
    pub backend: String,
}

/// The answer to `POST /v1/stores` (201).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attached {
    pub name: String,
    pub role: Role,
}

/// The answer to `DELETE /v1/stores/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Detached {
    pub name: String,
    /// Always `detached`.
    pub state: String,
}

/// The answer to `POST /v1/stores/NAME/restore`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Restored {
    pub name: String,
    pub entries: u64,
}

/// An operation's outcome as the envelope's answer.
#[derive(Debug)]
pub enum Outcome {
    Value(Value),
    Buffered,
    Idle(bool),
    Failed(StoreError),
}

impl From<Result<WriteOutcome, StoreError>> for Outcome {
    fn from(r: Result<WriteOutcome, StoreError>) -> Outcome {
        match r {
            Ok(WriteOutcome::Done(Ok(v))) => Outcome::Value(v),
            Ok(WriteOutcome::Done(Err(e))) | Err(e) => Outcome::Failed(e),
            Ok(WriteOutcome::Buffered) => Outcome::Buffered,
        }
    }
}

/// `{"type":"store-result","id":…,"result":{…}}` and its variants.
pub fn encode_outcome(id: &Json, o: &Outcome, opts: JsonOptions) -> String {
    let head = format!("{{\"type\":\"store-result\",\"id\":{id},");
    match o {
        Outcome::Value(v) => {
            let mut s = head;
            s.push_str("\"result\":");
            json::write_value(&mut s, v, opts);
            s.push('}');
            s
        }
        Outcome::Buffered => format!("{head}\"buffered\":true}}"),
        Outcome::Idle(idle) => format!("{head}\"idle\":{idle}}}"),
        Outcome::Failed(e) => json::encode_request_error(id, e.code(), &e.to_string()),
    }
}

/// An operation under way; resolves to its outcome.
pub type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The most operations handed to a store in one batch.
pub const MAX_RUN: usize = 32;

/// Answers a client waits for, in its order.
pub enum Answer {
    One(Json, Pending),
    /// A batch handed over together ([`Run`]); the ids in order.
    Many(Vec<Json>, oneshot::Receiver<Outcomes>),
}

/// Consecutive reads and writes of one client on one store attached here, collected while
/// the client's frames keep arriving and handed to the store's owner in one command.
pub struct Run {
    name: String,
    handle: StoreHandle,
    ids: Vec<Json>,
    ops: Vec<StoreOp>,
}

impl Run {
    /// Starts a run with `op` when it can join one (a read or a write on a store attached
    /// here); gives the operation back otherwise.
    pub fn start(
        stores: &Stores,
        name: String,
        id: Json,
        op: Op,
    ) -> Result<Run, Box<(String, Json, Op)>> {
        let Some(handle) = stores.local_handle(&name) else {
            return Err(Box::new((name, id, op)));
        };
        let mut run = Run {
            name,
            handle,
            ids: Vec::new(),
            ops: Vec::new(),
        };
        match run.push(id, op) {
            Ok(()) => Ok(run),
            Err(back) => Err(Box::new((run.name, back.0, back.1))),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds an operation on this run's store; gives back one that cannot join (await_idle).
    pub fn push(&mut self, id: Json, op: Op) -> Result<(), Box<(Json, Op)>> {
        self.ops.push(match op {
            Op::Write(m) => StoreOp::Write(m),
            Op::Read(q) => StoreOp::Read(q),
            other => return Err(Box::new((id, other))),
        });
        self.ids.push(id);
        Ok(())
    }

    /// Queues the run at its store (waiting while the store's queue is full).
    pub async fn hand_over(self) -> Answer {
        let (tx, rx) = oneshot::channel();
        // If the store is gone, the reply is dropped with the command and every operation of
        // the run answers `shutdown`.
        let _ = self
            .handle
            .send(Command::Ops {
                ops: self.ops,
                reply: tx,
            })
            .await;
        Answer::Many(self.ids, rx)
    }
}

/// The answers of a batch as envelopes, in order.
pub async fn finish_many(
    ids: Vec<Json>,
    rx: oneshot::Receiver<Outcomes>,
) -> impl Iterator<Item = (Json, Outcome)> {
    let outcomes = rx.await.unwrap_or_default();
    let mut outcomes = outcomes.into_iter();
    ids.into_iter().map(move |id| {
        let o = match outcomes.next() {
            Some(o) => Ok(o).into(),
            None => Outcome::Failed(StoreError::Shutdown),
        };
        (id, o)
    })
}

/// An operation that does not join a run (a store not attached here, reached at its master, or
/// `await_idle`). It is carried out when the connection's answer pump reaches it, after every
/// operation sent before it has been answered, so the client's order holds; the reader does not
/// wait for it.
pub fn start(stores: &Arc<Stores>, name: String, op: Op) -> Pending {
    let stores = stores.clone();
    match op {
        Op::Write(m) => Box::pin(async move { stores.write(&name, m).await.into() }),
        Op::Read(q) => Box::pin(async move {
            match stores.read(&name, q).await {
                Ok(v) => Outcome::Value(v),
                Err(e) => Outcome::Failed(e),
            }
        }),
        Op::AwaitIdle(t) => Box::pin(async move {
            match stores.await_idle(&name, t).await {
                Ok(idle) => Outcome::Idle(idle),
                Err(e) => Outcome::Failed(e),
            }
        }),
    }
}

/// Parses a WebSocket or HTTP envelope: its id, store and operation.
pub fn parse_envelope(obj: &mut Map<String, Json>) -> (Json, Result<(String, Op), RequestError>) {
    let id = obj.get("id").cloned().unwrap_or(Json::Null);
    let parsed = (|| {
        if !obj.contains_key("id") {
            return Err(RequestError::NoId);
        }
        let store = match obj.get("store") {
            Some(Json::String(s)) => s.clone(),
            _ => return Err(RequestError::NoStore),
        };
        Ok((store, parse_op(obj)?))
    })();
    (id, parsed)
}

/// The same for an envelope the fast decoder read.
pub fn parse_fields(mut f: StoreFields) -> (Json, Result<(String, Op), RequestError>) {
    let id = std::mem::take(&mut f.id);
    let store = std::mem::take(&mut f.store);
    let parsed = parse_op(&mut f).map(|op| (store, op));
    (id, parsed)
}

fn status_of(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NoSuchKey(_) | StoreError::NoSuchStore(_) | StoreError::NoSuchMaster(_) => {
            StatusCode::NOT_FOUND
        }
        StoreError::TypeClash(_) | StoreError::InvalidData(_) => StatusCode::BAD_REQUEST,
        StoreError::MasterExists(..) => StatusCode::CONFLICT,
        StoreError::StaleData(_) | StoreError::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        StoreError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
        StoreError::NotAllowed(_) => StatusCode::FORBIDDEN,
    }
}

fn failed(e: &StoreError) -> Response {
    error(status_of(e), e.code(), &e.to_string())
}

fn value_json(v: &Value, opts: JsonOptions) -> Json {
    serde_json::from_str(&json::encode_value(v, opts)).unwrap_or(Json::Null)
}

fn outcome_response(o: Outcome, opts: JsonOptions) -> Response {
    match o {
        Outcome::Value(v) => answer(StatusCode::OK, value_json(&v, opts)),
        Outcome::Buffered => answer(
            StatusCode::ACCEPTED,
            json!({"buffered": true, "context": "the master is out of reach: the write is buffered and replayed when it returns (within mutation_buffer_interval)"}),
        ),
        Outcome::Idle(idle) => answer(StatusCode::OK, json!({"idle": idle})),
        Outcome::Failed(e) => failed(&e),
    }
}

// ---- handlers ---------------------------------------------------------------------------------

pub async fn list(State(gw): State<Arc<Gateway>>) -> Response {
    answer(StatusCode::OK, json!(gw.stores.list().await))
}

/// Why a store was not attached over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Spec(#[from] yard_store::backend::SpecError),
    #[error("this endpoint has no store directory: SQLite stores are attached with --master NAME=sqlite:PATH at start")]
    NoStoreDir,
    #[error("sqlite:{}: give a path relative to the store directory, without `..` (it is placed under {})", path.display(), dir.display())]
    NotRelative {
        path: std::path::PathBuf,
        dir: std::path::PathBuf,
    },
    #[error("cannot create {}: {why}", dir.display())]
    CreateDir {
        dir: std::path::PathBuf,
        why: String,
    },
}

impl AttachError {
    /// The caller's mistake, or this endpoint's.
    pub fn status(&self) -> StatusCode {
        match self {
            AttachError::CreateDir { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A store file attached over HTTP stays under the operator's store directory: its path is
/// relative, without `..`, and taken from there (an absolute path, or none configured, is
/// refused), so no caller creates or opens a database anywhere else.
pub fn confine(
    dir: Option<&std::path::Path>,
    spec: BackendSpec,
) -> Result<BackendSpec, AttachError> {
    let BackendSpec::Sqlite {
        path,
        synchronous,
        integrity_check,
    } = spec
    else {
        return Ok(spec);
    };
    let Some(dir) = dir else {
        return Err(AttachError::NoStoreDir);
    };
    use std::path::Component;
    if path.as_os_str().is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(AttachError::NotRelative {
            path,
            dir: dir.to_path_buf(),
        });
    }
    let full = dir.join(&path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).map_err(|e| AttachError::CreateDir {
            dir: parent.to_path_buf(),
            why: e.to_string(),
        })?;
    }
    Ok(BackendSpec::Sqlite {
        path: full,
        synchronous,
        integrity_check,
    })
}

pub async fn attach(State(gw): State<Arc<Gateway>>, body: String) -> Response {
    let parsed: Result<(String, Role, String), String> = (|| {
        let Ok(Json::Object(o)) = serde_json::from_str::<Json>(&body) else {
            return Err("the body must be a JSON object such as {\"name\":\"users\",\"role\":\"master\",\"backend\":\"memory\"}".into());
        };
        let field = |k: &str| o.get(k).and_then(Json::as_str).map(str::to_string);
        let name = field("name").ok_or("the body needs \"name\"")?;
        let role = field("role").ok_or("the body needs \"role\": \"master\" or \"clone\"")?;
        Ok((
            name,
            role.parse::<Role>()?,
            field("backend").unwrap_or_else(|| "memory".into()),
        ))
    })();
    let (name, role, backend) = match parsed {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_message", &e),
    };
    let result = match role {
        Role::Master => match backend
            .parse()
            .map_err(AttachError::from)
            .and_then(|spec| confine(gw.config.store_dir.as_deref(), spec))
        {
            Ok(spec) => gw.stores.attach_master(&name, spec).await,
            Err(e) => {
                let code = match e.status() {
                    StatusCode::BAD_REQUEST => "invalid_message",
                    _ => "backend_failure",
                };
                return error(e.status(), code, &e.to_string());
            }
        },
        Role::Clone => {
            gw.stores
                .attach_clone(&name, gw.clone_options.clone())
                .await
        }
    };
    match result {
        Ok(()) => answer(StatusCode::CREATED, json!(Attached { name, role })),
        Err(e) => failed(&e),
    }
}

pub async fn detach(State(gw): State<Arc<Gateway>>, Path(name): Path<String>) -> Response {
    match gw.stores.detach(&name) {
        Ok(()) => answer(
            StatusCode::OK,
            json!(Detached {
                name,
                state: "detached".into()
            }),
        ),
        Err(e) => failed(&e),
    }
}

pub async fn info(State(gw): State<Arc<Gateway>>, Path(name): Path<String>) -> Response {
    match gw.stores.info(&name).await {
        Ok(i) => answer(StatusCode::OK, json!(i)),
        Err(e) => failed(&e),
    }
}

#[derive(serde::Deserialize, Debug)]
pub struct KeysQuery {
    prefix: Option<String>,
    /// At most this many keys (a page); without it, every key.
    limit: Option<usize>,
    /// The cursor of the previous page (its `x-yard-next`): the JSON v1 form of its last key.
    after: Option<String>,
}

/// The most keys one page holds.
pub const KEYS_PAGE_MAX: usize = 1000;

/// One page of `keys` (sorted as the store sorts them): the keys matching `prefix` after
/// `after`, at most `limit` of them, the number matching in all, and the cursor of the next page
/// when there is more.
pub fn page_keys<'a>(
    keys: &'a BTreeSet<Value>,
    prefix: Option<&str>,
    after: Option<&Value>,
    limit: usize,
) -> (Vec<&'a Value>, usize, Option<&'a Value>) {
    let matches = |k: &Value| match prefix {
        None => true,
        Some(p) => k.as_str().is_some_and(|s| s.starts_with(p)),
    };
    let total = keys.iter().filter(|k| matches(k)).count();
    use std::ops::Bound;
    let start = match after {
        Some(a) => Bound::Excluded(a),
        None => Bound::Unbounded,
    };
    let mut rest = keys
        .range::<Value, _>((start, Bound::Unbounded))
        .filter(|k| matches(k));
    let page: Vec<&Value> = rest.by_ref().take(limit).collect();
    let next = match rest.next() {
        Some(_) => page.last().copied(),
        None => None,
    };
    (page, total, next)
}

/// `GET /v1/stores/NAME/keys?prefix=P&limit=N&after=CURSOR`: a JSON array of keys. With
/// `limit`, the answer is one page: `x-yard-total` says how many keys match in all and
/// `x-yard-next` carries the cursor of the next page (absent on the last), so a listing never
/// looks complete when it is not.
pub async fn keys(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
    UrlQuery(q): UrlQuery<KeysQuery>,
) -> Response {
    let after = match q.after.as_deref().map(decode_cursor) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                &format!("after must be the x-yard-next of the previous page: {e}"),
            )
        }
    };
    let limit = match q.limit {
        Some(0) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                &format!("limit must be 1 to {KEYS_PAGE_MAX}"),
            )
        }
        Some(n) => n.min(KEYS_PAGE_MAX),
        None => usize::MAX,
    };
    let keys = match gw.stores.read(&name, Query::Keys).await {
        Ok(Value::Set(s)) => s,
        Ok(_) => BTreeSet::new(),
        Err(e) => return failed(&e),
    };
    let opts = gw.config.json;
    let (page, total, next) = page_keys(&keys, q.prefix.as_deref(), after.as_ref(), limit);
    let out: Vec<Json> = page.into_iter().map(|k| value_json(k, opts)).collect();
    let mut r = answer(StatusCode::OK, Json::Array(out));
    let h = r.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&total.to_string()) {
        h.insert(header::HeaderName::from_static("x-yard-total"), v);
    }
    if let Some(n) = next {
        let v = header::HeaderValue::from_str(&encode_cursor(n, opts))
            .expect("base64url is a valid header value");
        h.insert(header::HeaderName::from_static("x-yard-next"), v);
    }
    r
}

/// A page cursor: the key's JSON v1 text in base64url (any key, any characters, one header).
pub fn encode_cursor(key: &Value, opts: JsonOptions) -> String {
    use base64::Engine;
    let mut text = String::new();
    json::write_value(&mut text, key, opts);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The key a cursor of [`encode_cursor`] names.
pub fn decode_cursor(cursor: &str) -> Result<Value, String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|e| format!("not base64url ({e})"))?;
    json::decode_value_bytes(&raw).map_err(|e| e.to_string())
}

pub async fn get_key(
    State(gw): State<Arc<Gateway>>,
    Path((name, key)): Path<(String, String)>,
) -> Response {
    let q = Query::Get {
        key: Value::String(key),
    };
    outcome_response(
        match gw.stores.read(&name, q).await {
            Ok(v) => Outcome::Value(v),
            Err(e) => Outcome::Failed(e),
        },
        gw.config.json,
    )
}

#[derive(serde::Deserialize, Debug)]
pub struct PutQuery {
    expiry: Option<String>,
}

pub async fn put_key(
    State(gw): State<Arc<Gateway>>,
    Path((name, key)): Path<(String, String)>,
    UrlQuery(q): UrlQuery<PutQuery>,
    body: Bytes,
) -> Response {
    let value = match json::decode_value_bytes(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                e.code(),
                &format!("the body must be one JSON v1 value such as {{\"@data-type\":\"count\",\"data\":1}}: {e}"),
            )
        }
    };
    let expiry = match q.expiry.as_deref().map(parse_timespan) {
        None => None,
        Some(Ok(ns)) if ns > 0 => Some(ns),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                "expiry must be a positive timespan such as 30s",
            )
        }
    };
    let m = Mutation::Put {
        key: Value::String(key),
        value,
        expiry,
    };
    outcome_response(gw.stores.write(&name, m).await.into(), gw.config.json)
}

pub async fn erase_key(
    State(gw): State<Arc<Gateway>>,
    Path((name, key)): Path<(String, String)>,
) -> Response {
    let m = Mutation::Erase {
        key: Value::String(key),
    };
    outcome_response(gw.stores.write(&name, m).await.into(), gw.config.json)
}

/// `POST /v1/stores/NAME/ops`: one operation in the envelope (`store` may be left out).
pub async fn op(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(Json::Object(mut obj)) = serde_json::from_slice::<Json>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_message", "the body must be a JSON object such as {\"op\":\"get\",\"key\":{\"@data-type\":\"string\",\"data\":\"a\"}}");
    };
    obj.insert("store".into(), Json::String(name));
    obj.entry("id").or_insert(Json::Null);
    let (_, parsed) = parse_envelope(&mut obj);
    let (name, op) = match parsed {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_message", &e.to_string()),
    };
    if op.changes() {
        if let Err(r) = gw
            .guard
            .require(&caller, &Permission::StoreWrite(name.clone()))
        {
            return *r;
        }
    }
    outcome_response(start(&gw.stores, name, op).await, gw.config.json)
}

pub async fn backup(State(gw): State<Arc<Gateway>>, Path(name): Path<String>) -> Response {
    match gw.stores.backup(&name).await {
        Ok((bytes, n)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static("x-yard-entries"),
                    n.to_string(),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => failed(&e),
    }
}

pub async fn restore(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    match gw.stores.restore(&name, body.to_vec()).await {
        Ok(n) => answer(StatusCode::OK, json!(Restored { name, entries: n })),
        Err(e) => failed(&e),
    }
}

/// Every entry as a JSON line `{"key":{…},"value":{…},"expiry":"…"|null}`.
pub async fn dump(State(gw): State<Arc<Gateway>>, Path(name): Path<String>) -> Response {
    let entries = match gw.stores.entries(&name).await {
        Ok(e) => e,
        Err(e) => return failed(&e),
    };
    let opts = gw.config.json;
    let mut out = String::new();
    for (k, e) in entries {
        out.push_str("{\"key\":");
        json::write_value(&mut out, &k, opts);
        out.push_str(",\"value\":");
        json::write_value(&mut out, &e.value, opts);
        out.push_str(",\"expiry\":");
        match e.expiry {
            Some(t) => {
                out.push('"');
                yard_data::time::write_timestamp(&mut out, t, opts.timestamp_precision);
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str("}\n");
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yard_data::json::ClientMessage;

    /// What the reference path makes of an envelope: a serde_json object read field by field.
    fn reference(text: &str) -> String {
        let Json::Object(mut obj) = serde_json::from_str(text).unwrap() else {
            panic!("not an object: {text}")
        };
        format!("{:?}", parse_envelope(&mut obj))
    }

    #[test]
    fn key_pages_count_everything_and_say_where_the_next_one_starts() {
        let keys: BTreeSet<Value> = ["a/1", "a/2", "a/3", "b/1", "é/ü"]
            .into_iter()
            .map(Value::string)
            .chain([Value::Count(7)])
            .collect();
        let names = |p: &[&Value]| -> Vec<String> { p.iter().map(|k| format!("{k:?}")).collect() };
        let (page, total, next) = page_keys(&keys, Some("a/"), None, 2);
        assert_eq!(total, 3);
        assert_eq!(
            names(&page),
            names(&[&Value::string("a/1"), &Value::string("a/2")])
        );
        assert_eq!(next, Some(&Value::string("a/2")));
        let (page, total, next) = page_keys(&keys, Some("a/"), next, 2);
        assert_eq!(
            (names(&page), total, next),
            (names(&[&Value::string("a/3")]), 3, None)
        );
        // Without a prefix every key counts, strings or not; a page that ends exactly at the
        // end has no next.
        let (page, total, next) = page_keys(&keys, None, None, 6);
        assert_eq!((page.len(), total, next), (6, 6, None));
        // A cursor survives any characters and round-trips through its header form.
        let opts = JsonOptions::default();
        let last = Value::string("é/ü");
        assert_eq!(decode_cursor(&encode_cursor(&last, opts)).unwrap(), last);
        assert!(decode_cursor("not a cursor!")
            .unwrap_err()
            .contains("base64url"));
    }

    #[test]
    fn the_fast_decoder_reads_envelopes_as_the_reference_does() {
        let key = r#""key":{"@data-type":"string","data":"k"}"#;
        let values = [
            r#"{"@data-type":"count","data":7}"#,
            r#"{"@data-type":"vector","data":[{"@data-type":"integer","data":-1},{"@data-type":"string","data":"x\"y"}]}"#,
            r#"{"@data-type":"table","data":[{"key":{"@data-type":"address","data":"10.0.0.1"},"value":{"@data-type":"none","data":{}}}]}"#,
            r#"{"data":1.5,"@data-type":"real"}"#,
        ];
        let mut texts = Vec::new();
        for (i, v) in values.iter().enumerate() {
            for op in ["put", "put_unique", "append", "push"] {
                texts.push(format!(
                    r#"{{"type":"store","id":{i},"store":"s","op":"{op}",{key},"value":{v}}}"#
                ));
                texts.push(format!(r#"{{"type":"store","id":"x{i}","store":"s","op":"{op}",{key},"value":{v},"expiry":"30s"}}"#));
            }
            texts.push(format!(r#"{{"type":"store","id":[{i}],"store":"s","op":"increment",{key},"amount":{v},"expiry":2.5}}"#));
            texts.push(format!(
                r#"{{"type":"store","id":{i},"store":"s","op":"insert_into",{key},"index":{v}}}"#
            ));
            texts.push(format!(r#"{{"type":"store","id":{i},"store":"s","op":"get_index_from_value",{key},"index":{v}}}"#));
        }
        for op in ["get", "exists", "erase", "pop", "keys", "clear"] {
            texts.push(format!(
                r#"{{"type":"store","id":null,"store":"s","op":"{op}",{key}}}"#
            ));
        }
        // Well-formed JSON that the operation refuses: the same error either way.
        texts.push(format!(
            r#"{{"type":"store","id":1,"store":"s","op":"put",{key}}}"#
        ));
        texts.push(format!(
            r#"{{"type":"store","id":1,"store":"s","op":"frob",{key}}}"#
        ));
        texts.push(format!(
            r#"{{"type":"store","id":1,"store":"s","op":"put",{key},"value":{},"expiry":"soon"}}"#,
            values[0]
        ));
        texts.push(
            r#"{"type":"store","id":1,"store":"s","op":"await_idle","timeout":"2s"}"#.to_string(),
        );
        let mut fast = 0;
        for text in &texts {
            let (id, parsed) = match json::decode_client_message(text.as_bytes()).unwrap() {
                ClientMessage::StoreFields(f) => {
                    fast += 1;
                    parse_fields(f)
                }
                ClientMessage::Store(mut obj) => parse_envelope(&mut obj),
                other => panic!("{text} decoded as {other:?}"),
            };
            assert_eq!(format!("{:?}", (id, parsed)), reference(text), "{text}");
        }
        // All but those with `data` before `@data-type`, which the fast decoder leaves to the
        // reference one.
        let late_type = texts
            .iter()
            .filter(|t| t.contains(r#"{"data":1.5"#))
            .count();
        assert_eq!(
            fast,
            texts.len() - late_type,
            "the others take the fast path"
        );
    }

    #[test]
    fn envelopes_the_fast_decoder_declines_get_the_reference_answer() {
        for text in [
            // A value that is not a value object, an unknown key, a key twice, a non-string op,
            // a missing id.
            r#"{"type":"store","id":1,"store":"s","op":"get","key":5}"#,
            r#"{"type":"store","id":1,"store":"s","op":"get","key":{"@data-type":"string","data":"k"},"extra":1}"#,
            r#"{"type":"store","id":1,"id":2,"store":"s","op":"get","key":{"@data-type":"string","data":"k"}}"#,
            r#"{"type":"store","id":1,"store":"s","op":7}"#,
            r#"{"type":"store","store":"s","op":"get"}"#,
        ] {
            match json::decode_client_message(text.as_bytes()) {
                Ok(ClientMessage::Store(mut obj)) => {
                    assert_eq!(format!("{:?}", parse_envelope(&mut obj)), reference(text))
                }
                Ok(other) => panic!("{text} decoded as {other:?}"),
                // Duplicate keys: serde_json's object keeps the last one; the reference decoder
                // refuses nothing here, so an error would be a change of behaviour.
                Err(e) => panic!("{text}: {e}"),
            }
        }
    }

    #[test]
    fn every_operation_written_reads_back_equal() {
        let k = || Value::String("k".into());
        let v = || Value::Vector(vec![Value::Count(7), Value::String("x\"y".into())]);
        let ops = [
            Op::Write(Mutation::Put {
                key: k(),
                value: v(),
                expiry: None,
            }),
            Op::Write(Mutation::Put {
                key: k(),
                value: v(),
                expiry: Some(1_500_000_000),
            }),
            Op::Write(Mutation::PutUnique {
                key: k(),
                value: v(),
                expiry: Some(1),
            }),
            Op::Write(Mutation::Erase {
                key: Value::Integer(-3),
            }),
            Op::Write(Mutation::Clear),
            Op::Write(Mutation::Increment {
                key: k(),
                amount: Value::Count(2),
                expiry: None,
            }),
            Op::Write(Mutation::Decrement {
                key: k(),
                amount: Value::Real(0.5),
                expiry: Some(9),
            }),
            Op::Write(Mutation::Append {
                key: k(),
                value: Value::String("s".into()),
                expiry: None,
            }),
            Op::Write(Mutation::InsertInto {
                key: k(),
                index: Value::Count(0),
                value: Some(v()),
                expiry: None,
            }),
            Op::Write(Mutation::InsertInto {
                key: k(),
                index: v(),
                value: None,
                expiry: Some(5),
            }),
            Op::Write(Mutation::RemoveFrom {
                key: k(),
                index: Value::Count(1),
                expiry: None,
            }),
            Op::Write(Mutation::Push {
                key: k(),
                value: v(),
                expiry: None,
            }),
            Op::Write(Mutation::Pop {
                key: k(),
                expiry: Some(2),
            }),
            Op::Read(Query::Get { key: v() }),
            Op::Read(Query::Exists { key: k() }),
            Op::Read(Query::Keys),
            Op::Read(Query::GetIndexFromValue {
                key: k(),
                index: Value::Count(3),
            }),
            Op::AwaitIdle(Duration::from_millis(2500)),
        ];
        let opts = JsonOptions {
            timestamp_precision: yard_data::time::TimestampPrecision::Nanos,
        };
        for op in ops {
            let body = op_body(&op, opts);
            let Json::Object(mut obj) = serde_json::from_str(&body).expect(&body) else {
                panic!("not an object: {body}")
            };
            obj.insert("id".into(), Json::Null);
            obj.insert("store".into(), Json::String("s".into()));
            let (_, parsed) = parse_envelope(&mut obj);
            assert_eq!(parsed, Ok(("s".to_string(), op)), "{body}");
        }
    }
}
