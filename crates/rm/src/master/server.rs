//! The master's async shell: one actor owns the [`Master`] core; the Mesos HTTP API (its own
//! listener, 5050 by default) and the agents' fabric messages feed it through bounded queues.
//!
//! Actor loop priorities (`biased` select): shutdown, then HTTP inputs, then agent messages,
//! then the 50 ms tick (offer, agent and framework timeouts; allocation when something changed,
//! and every `allocation_interval` regardless; scheduler heartbeats).
//!
//! Queues and their overflow policies:
//! - HTTP inputs: `INPUT_QUEUE`; when full, handlers wait (backpressure on the clients).
//! - each framework's event stream: `STREAM_QUEUE` records; a framework that does not read its
//!   stream and lets it fill is disconnected (its stream ends, as if the connection broke): it
//!   subscribes again and reconciles, and its failover timeout protects its tasks meanwhile.
//! - agents' messages: the fabric inbox (`AGENT_QUEUE`, drop newest): agents resend
//!   registrations, heartbeats and unacknowledged updates, so a drop delays, never loses.
//! - store writes: `PERSIST_QUEUE`, written in order by one task; when full the actor waits.

use crate::RmError;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_fabric::{Client, Endpoint, Message, OverflowPolicy};
use yard_store::{BackendSpec, Mutation, Stores};

use yard_auth::http::Rule;
use yard_auth::{Guard, Permission};

use crate::master::views::{self, TaskQuery};
use crate::master::{Call, CallError, Master, MasterConfig, Out, SchedulerCall};
use crate::mesos::recordio;
use crate::mesos::scheduler::Event;
use crate::now_ms;
use crate::proto::{self, Wire};
use crate::services::actor::{self as service_actor, Request as SvcRequest};

pub const INPUT_QUEUE: usize = 4096;
pub const STREAM_QUEUE: usize = 4096;
pub const AGENT_QUEUE: usize = 16_384;
pub const PERSIST_QUEUE: usize = 65_536;

/// Its `Debug` never shows the Mesos secret.
#[derive(Clone)]
pub struct ServerConfig {
    pub master: MasterConfig,
    /// The store holding frameworks, agents and tasks (`sqlite:PATH`).
    pub store: String,
    pub backend: BackendSpec,
    pub allocation_interval: Duration,
    /// `principal:secret`: a Mesos principal (operator role) besides the home's tokens, for
    /// clients that send HTTP Basic credentials (pymesos, mesos-cli). The shell gives it to the
    /// listener's guard.
    pub credentials: Option<String>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let principal = self
            .credentials
            .as_deref()
            .map(|c| c.split_once(':').map_or("?", |(p, _)| p));
        f.debug_struct("ServerConfig")
            .field("master", &self.master)
            .field("store", &self.store)
            .field("backend", &self.backend)
            .field("allocation_interval", &self.allocation_interval)
            .field("credentials", &principal.map(|p| format!("{p}:[redacted]")))
            .finish()
    }
}

type Reader = Box<dyn FnOnce(&Master, f64) -> (u16, Value) + Send>;
type Operation = Box<dyn FnOnce(&mut Master, u64) -> (u16, Value) + Send>;

pub(crate) enum Input {
    Subscribe {
        call: Call,
        stream: String,
        tx: mpsc::Sender<Bytes>,
        reply: oneshot::Sender<Result<String, CallError>>,
    },
    Call {
        call: Call,
        stream: Option<String>,
        reply: oneshot::Sender<Result<u16, CallError>>,
    },
    Closed {
        framework: String,
        stream: String,
    },
    Read {
        f: Reader,
        reply: oneshot::Sender<(u16, Value)>,
    },
    /// An operator's change.
    Operate {
        f: Operation,
        reply: oneshot::Sender<(u16, Value)>,
    },
}

#[derive(Clone)]
struct Shared {
    tx: mpsc::Sender<Input>,
    services: service_actor::Handle,
    leader: String,
}

/// Starts the master on `listener`; the handle resolves after shutdown.
pub async fn start<L: yard_auth::http::RemoteListener>(
    cfg: ServerConfig,
    ep: Endpoint,
    stores: Arc<Stores>,
    listener: L,
    guard: Arc<Guard>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, RmError> {
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| RmError::Listener(e.to_string()))?;
    stores
        .attach_master(&cfg.store, cfg.backend.clone())
        .await
        .map_err(|e| RmError::Store(e.to_string()))?;
    let mut records = Vec::new();
    for (k, e) in stores
        .entries(&cfg.store)
        .await
        .map_err(|e| RmError::Store(e.to_string()))?
    {
        if let (Some(k), Some(v)) = (k.as_str(), e.value.as_str()) {
            if let Ok(v) = serde_json::from_str::<Value>(v) {
                records.push((k.to_string(), v));
            }
        }
    }
    let mut master = Master::new(cfg.master.clone(), now_ms());
    if !records.is_empty() {
        master.recover(records, now_ms());
        tracing::info!(
            frameworks = master.frameworks.len(),
            agents = master.agents.len(),
            tasks = master.tasks.len(),
            "resource manager state recovered from the store"
        );
    }
    let inbox = ep
        .attach(
            "rm-master",
            vec![proto::inbox(ep.id())],
            AGENT_QUEUE,
            OverflowPolicy::DropNewest,
        )
        .await
        .map_err(|e| RmError::Inbox("resource manager's", e.to_string()))?;
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let (ptx, prx) = mpsc::channel(PERSIST_QUEUE);
    let services = service_actor::start(
        tx.clone(),
        stores.clone(),
        cfg.store.clone(),
        shutdown.clone(),
    )
    .await;
    let shared = Shared {
        tx: tx.clone(),
        services,
        leader: format!("{}:{}", cfg.master.hostname, addr.port()),
    };
    let app = Router::new()
        .route("/api/v1/scheduler", post(scheduler))
        .route("/api/v1", post(operator))
        .route("/api/v1/", post(operator))
        .route("/services", get(services_list).post(services_deploy))
        .route(
            "/services/{name}",
            get(services_status).delete(services_remove),
        )
        .route("/services/{name}/scale", post(services_scale))
        .route("/yard/tasks/kill", post(operator_kill))
        .fallback(legacy)
        .with_state(shared);
    let app = guard.wrap(app, Arc::new(classify));
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!("Mesos API server failed: {e}");
        }
    });
    let persister = tokio::spawn(persist(stores, cfg.store.clone(), prx));
    let actor = Actor {
        master,
        streams: HashMap::new(),
        inbox: Arc::new(inbox),
        persist: ptx,
        cfg,
        wanted: true,
    };
    let task = tokio::spawn(async move {
        actor.run(rx, shutdown.clone()).await;
        let _ = http.await;
        persister.abort();
    });
    tracing::info!(%addr, "Mesos API listening (scheduler http://{addr}/api/v1/scheduler, state http://{addr}/master/state)");
    Ok(task)
}

async fn persist(
    stores: Arc<Stores>,
    store: String,
    mut rx: mpsc::Receiver<(String, Option<Value>)>,
) {
    while let Some((key, value)) = rx.recv().await {
        record(&stores, &store, &key, value).await;
    }
}

/// Writes `key` = the JSON text of `value` into the resource manager's store (`None` erases).
pub(crate) async fn record(stores: &Stores, store: &str, key: &str, value: Option<Value>) {
    let k = yard_data::Value::string(key.to_string());
    let m = match value {
        Some(v) => Mutation::Put {
            key: k,
            value: yard_data::Value::string(v.to_string()),
            expiry: None,
        },
        None => Mutation::Erase { key: k },
    };
    if let Err(e) = stores.write(store, m).await {
        tracing::warn!("cannot record {key}: {e}");
    }
}

/// Subscribes a framework through the master's actor: its stream id, its framework id and its
/// event queue. `Err(None)`: the master is shutting down.
pub(crate) async fn subscribe_via(
    master: &mpsc::Sender<Input>,
    call: Call,
) -> Result<(String, String, mpsc::Receiver<Bytes>), Option<CallError>> {
    let stream = yard_fabric::id::random_uuid();
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let (reply, answer) = oneshot::channel();
    let input = Input::Subscribe {
        call,
        stream: stream.clone(),
        tx,
        reply,
    };
    master.send(input).await.map_err(|_| None)?;
    match answer.await {
        Ok(Ok(fid)) => Ok((stream, fid, rx)),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// Sends from a `Drop` (no await there): at once when the queue has room, else from a task.
pub(crate) fn send_from_drop<T: Send + 'static>(tx: &mpsc::Sender<T>, v: T) {
    if let Err(mpsc::error::TrySendError::Full(v)) = tx.try_send(v) {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(v).await;
        });
    }
}

struct Actor {
    master: Master,
    /// Framework id → (stream id, its queue).
    streams: HashMap<String, (String, mpsc::Sender<Bytes>)>,
    inbox: Arc<Client>,
    persist: mpsc::Sender<(String, Option<Value>)>,
    cfg: ServerConfig,
    /// Something changed that may let the allocator offer more.
    wanted: bool,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_alloc = 0u64;
        let mut last_beat = now_ms();
        let beat_ms = (self.cfg.master.heartbeat_interval_s * 1000.0) as u64;
        let inbox = self.inbox.clone();
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(input) = rx.recv() => self.input(input),
                r = inbox.recv_batch(&mut batch, 256) => {
                    if r.is_err() {
                        break;
                    }
                    for msg in std::mem::take(&mut batch) {
                        self.handle_agent(&msg).await;
                    }
                }
                _ = tick.tick() => {
                    let now = now_ms();
                    self.master.tick(now);
                    if self.wanted || now.saturating_sub(last_alloc) >= self.cfg.allocation_interval.as_millis() as u64 {
                        let started = std::time::Instant::now();
                        self.master.allocate(now);
                        self.master.last_allocation_ms = started.elapsed().as_secs_f64() * 1e3;
                        last_alloc = now;
                        self.wanted = false;
                    }
                    if now.saturating_sub(last_beat) >= beat_ms {
                        last_beat = now;
                        let beat = Bytes::from(recordio::record(&Event::Heartbeat.to_json()));
                        let ids: Vec<String> = self.streams.keys().cloned().collect();
                        for f in ids {
                            self.send(&f, beat.clone());
                        }
                    }
                }
            }
            self.flush().await;
        }
        // Streams end with the master.
        self.streams.clear();
    }

    fn input(&mut self, input: Input) {
        let now = now_ms();
        if !matches!(input, Input::Read { .. }) {
            self.wanted = true;
        }
        match input {
            Input::Subscribe {
                call,
                stream,
                tx,
                reply,
            } => match self.master.subscribe(&call, &stream, now) {
                Ok(fid) => {
                    // The previous stream (if any) ends when its sender is replaced.
                    self.streams.insert(fid.clone(), (stream, tx));
                    let _ = reply.send(Ok(fid));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Input::Call {
                call,
                stream,
                reply,
            } => {
                let answer = self.master.call(&call, stream.as_deref(), now);
                let _ = reply.send(answer.map(|()| call.call.success_status()));
            }
            Input::Closed { framework, stream } => {
                if self
                    .streams
                    .get(&framework)
                    .is_some_and(|(s, _)| *s == stream)
                {
                    self.streams.remove(&framework);
                }
                self.master.disconnected(&framework, &stream, now);
            }
            Input::Read { f, reply } => {
                let _ = reply.send(f(&self.master, now as f64 / 1000.0));
            }
            Input::Operate { f, reply } => {
                let _ = reply.send(f(&mut self.master, now));
            }
        }
    }

    async fn handle_agent(&mut self, msg: &Message) {
        let now = now_ms();
        let wire = match Wire::decode(&msg.value) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("from {}: {e}", msg.topic);
                self.answer(
                    msg,
                    Wire::Refused {
                        message: e.to_string(),
                    },
                )
                .await;
                return;
            }
        };
        match wire {
            Wire::Register(r) => {
                self.wanted = true;
                let name = r.name.clone();
                let answer = match self.master.register_agent(r, now) {
                    Ok(w) => {
                        if let Wire::Registered { agent_id, .. } = &w {
                            tracing::info!(agent = %name, id = %agent_id, "agent registered");
                        }
                        w
                    }
                    Err(e) => Wire::Refused {
                        message: format!("registration refused: {e}"),
                    },
                };
                self.answer(msg, answer).await;
            }
            Wire::Heartbeat { agent_id } => {
                let a = self.master.heartbeat(&agent_id, now);
                self.answer(msg, a).await;
            }
            Wire::Update {
                agent_id,
                framework_id,
                status,
            } => {
                self.wanted = true;
                self.master
                    .agent_update(&agent_id, &framework_id, status, now);
            }
            Wire::ExecutorMessage {
                agent_id,
                framework_id,
                executor_id,
                data,
            } => self
                .master
                .executor_message(&agent_id, &framework_id, &executor_id, &data),
            Wire::ExecutorExited {
                agent_id,
                framework_id,
                executor_id,
                status,
            } => self
                .master
                .executor_exited(&agent_id, &framework_id, &executor_id, status),
            other => tracing::warn!("unexpected message from an agent: {other:?}"),
        }
    }

    async fn answer(&self, request: &Message, w: Wire) {
        if request.reply_to.is_some() {
            if let Err(e) = self.inbox.reply(request, w.encode()).await {
                tracing::debug!("cannot answer {}: {e}", request.topic);
            }
        }
    }

    /// Queues a record on a framework's stream; a full stream disconnects the framework.
    fn send(&mut self, framework: &str, record: Bytes) {
        let Some((stream, tx)) = self.streams.get(framework) else {
            return;
        };
        if tx.try_send(record).is_err() {
            let stream = stream.clone();
            tracing::warn!(%framework, "the framework's event stream is full or gone ({STREAM_QUEUE} records): disconnecting it");
            self.streams.remove(framework);
            self.master.disconnected(framework, &stream, now_ms());
        }
    }

    async fn flush(&mut self) {
        loop {
            let outs = self.master.take_out();
            if outs.is_empty() {
                return;
            }
            for o in outs {
                match o {
                    Out::Event { framework, event } => {
                        self.send(&framework, Bytes::from(recordio::record(&event.to_json())))
                    }
                    Out::Close { framework } => {
                        self.streams.remove(&framework);
                    }
                    Out::Agent { endpoint, msg } => {
                        let topic = format!("{}{}", proto::inbox(&endpoint), "master");
                        if let Err(e) = self.inbox.publish_system(topic, msg.encode()).await {
                            tracing::warn!(%endpoint, "cannot send to the agent: {e}");
                        }
                    }
                    Out::Persist { key, value } => {
                        let _ = self.persist.send((key, value)).await;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- HTTP

pub(crate) fn text(status: u16, body: impl Into<String>) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.into(),
    )
        .into_response()
}

/// The rule of each master route: state reads need `read`; frameworks, services and kills
/// need `command` (a `--mesos-credentials` principal has the operator role).
pub fn classify(method: &Method, raw: &str) -> Option<Rule> {
    use Permission::*;
    let read = *method == Method::GET || *method == Method::HEAD;
    let path = raw.trim_end_matches('/');
    let path = path.strip_suffix(".json").unwrap_or(path);
    let route = path
        .strip_prefix("/master")
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let seg: Vec<&str> = route.split('/').skip(1).collect();
    let rule = match (seg.as_slice(), method.as_str()) {
        (["version"] | ["health"] | ["redirect"], _) if read => Rule::new(Open),
        (["state"] | ["slaves"] | ["frameworks"] | ["tasks"] | ["metrics", "snapshot"], _)
            if read =>
        {
            Rule::new(Read)
        }
        (["services"] | ["services", _], _) if read => Rule::new(Read),
        // The operator API's calls are all reads (GET_STATE, GET_AGENTS, …).
        (["api", "v1"], "POST") => Rule::new(Read),
        (["api", "v1", "scheduler"], "POST") => Rule::new(Command),
        (["services"] | ["services", _, "scale"], "POST") => Rule::new(Command),
        (["services", _], "DELETE") => Rule::new(Command),
        (["yard", "tasks", "kill"], "POST") => Rule::new(Command),
        _ => return None,
    };
    Some(rule)
}

/// A JSON body (ASCII-only, as Mesos clients expect) with its content type.
pub(crate) fn json_response(status: u16, v: &Value) -> Response {
    let mut r = text(status, recordio::ascii_json(v));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Content type and JSON body checks shared by the POST APIs.
pub(crate) fn parse_body(
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<Value, Box<Response>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match ct.map(|c| c.split(';').next().unwrap_or("").trim()) {
        None => {
            return Err(Box::new(text(
                400,
                "Expecting 'Content-Type' to be present",
            )))
        }
        Some("application/json") => {}
        Some("application/x-protobuf") => {
            return Err(Box::new(text(
                415,
                "protobuf bodies are not supported: send application/json",
            )))
        }
        Some(other) => {
            return Err(Box::new(text(
                415,
                format!("Expecting 'Content-Type' of application/json; got '{other}'"),
            )))
        }
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Box::new(text(400, format!("Failed to parse body into JSON: {e}"))))?;
    if !v.is_object() {
        return Err(Box::new(text(
            400,
            format!("Failed to convert JSON into {what} protobuf: expected an object"),
        )));
    }
    Ok(v)
}

/// Sends the framework's `Closed` when the HTTP body (the stream) is dropped.
struct StreamGuard {
    rx: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Input>,
    framework: String,
    stream: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let input = Input::Closed {
            framework: std::mem::take(&mut self.framework),
            stream: std::mem::take(&mut self.stream),
        };
        send_from_drop(&self.tx, input);
    }
}

async fn scheduler(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let call = match parse_body(&headers, &body, "scheduler::Call") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let call = match Call::parse(&call) {
        Ok(c) => c,
        Err(e) => return text(e.status(), e.to_string()),
    };
    let stream_header = headers
        .get("Mesos-Stream-Id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if matches!(call.call, SchedulerCall::Subscribe { .. }) {
        if stream_header.is_some() {
            return text(
                400,
                "Subscribe calls should not include the 'Mesos-Stream-Id' header",
            );
        }
        if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
            if !accept.split(',').any(|a| {
                matches!(
                    a.split(';').next().unwrap_or("").trim(),
                    "application/json" | "*/*" | "application/*"
                )
            }) {
                return text(
                    406,
                    format!("Expecting 'Accept' to allow application/json; got '{accept}'"),
                );
            }
        }
        let (stream, framework, rx) = match subscribe_via(&s.tx, call).await {
            Ok(x) => x,
            Err(Some(e)) => return text(e.status(), e.to_string()),
            Err(None) => return text(503, "the master is shutting down"),
        };
        let guard = StreamGuard {
            rx,
            tx: s.tx.clone(),
            framework,
            stream: stream.clone(),
        };
        let body = futures_util::stream::unfold(guard, |mut g| async move {
            let b = g.rx.recv().await?;
            Some((Ok::<Bytes, Infallible>(b), g))
        });
        return Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/json")
            .header("Mesos-Stream-Id", stream)
            .body(Body::from_stream(body))
            .expect("valid response");
    }
    let (reply, answer) = oneshot::channel();
    if s.tx
        .send(Input::Call {
            call,
            stream: stream_header,
            reply,
        })
        .await
        .is_err()
    {
        return text(503, "the master is shutting down");
    }
    match answer.await {
        Ok(Ok(code)) => text(code, ""),
        Ok(Err(e)) => text(e.status(), e.to_string()),
        Err(_) => text(503, "the master is shutting down"),
    }
}

async fn read(s: &Shared, f: Reader) -> Response {
    let (reply, answer) = oneshot::channel();
    if s.tx.send(Input::Read { f, reply }).await.is_err() {
        return text(503, "the master is shutting down");
    }
    match answer.await {
        Ok((200, v)) => json_response(200, &v),
        Ok((code, v)) => text(
            code,
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        ),
        Err(_) => text(503, "the master is shutting down"),
    }
}

async fn operator(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let call = match parse_body(&headers, &body, "master::Call") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    read(&s, Box::new(move |m, now| views::operator(m, &call, now))).await
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A typed view as the JSON the read closure hands back.
fn view(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("a view serializes")
}

// ---------------------------------------------------------------- services API

async fn services_list(State(s): State<Shared>) -> Response {
    let (code, v) = s.services.ask(SvcRequest::List).await;
    json_response(code, &v)
}

async fn services_status(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let (code, v) = s.services.ask(SvcRequest::Status(name)).await;
    json_response(code, &v)
}

async fn services_deploy(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let spec = match parse_body(&headers, &body, "service spec") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let (code, v) = s.services.ask(SvcRequest::Deploy(spec)).await;
    json_response(code, &v)
}

async fn services_scale(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v = match parse_body(&headers, &body, "scale request") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(n) = v
        .get("instances")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
    else {
        return json_response(
            400,
            &json!({"error": "expecting {\"instances\": N} with N a whole number ≥ 0"}),
        );
    };
    let (code, v) = s.services.ask(SvcRequest::Scale(name, n)).await;
    json_response(code, &v)
}

async fn services_remove(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let (code, v) = s.services.ask(SvcRequest::Remove(name)).await;
    json_response(code, &v)
}

/// `POST /yard/tasks/kill` `{"task_id": T, "framework_id": F?}`: an operator's kill (the
/// framework id may be left out when one framework has a task of that id).
async fn operator_kill(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let v = match parse_body(&headers, &body, "kill request") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(task) = v.get("task_id").and_then(Value::as_str).map(str::to_string) else {
        return json_response(400, &json!({"error": "expecting {\"task_id\": ID}"}));
    };
    let framework = v
        .get("framework_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (reply, answer) = oneshot::channel();
    let f: Operation =
        Box::new(
            move |m, now| match m.operator_kill(&task, framework.as_deref(), now) {
                Ok((framework_id, task_id)) => (
                    202,
                    view(crate::mesos::legacy::Killing {
                        framework_id,
                        task_id,
                        killing: true,
                    }),
                ),
                Err(e) => (e.status(), json!({"error": e.to_string()})),
            },
        );
    if s.tx.send(Input::Operate { f, reply }).await.is_err() {
        return text(503, "the master is shutting down");
    }
    match answer.await {
        Ok((code, v)) => json_response(code, &v),
        Err(_) => text(503, "the master is shutting down"),
    }
}

/// The legacy read endpoints: `/master/X` and `/X` alike, with or without a trailing `/` or
/// `.json`.
async fn legacy(State(s): State<Shared>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            405,
            format!("{} is not supported on {}", req.method(), req.uri().path()),
        );
    }
    let uri = req.uri().clone();
    let path = uri.path().trim_end_matches('/');
    let path = path.strip_suffix(".json").unwrap_or(path);
    let path = path
        .strip_prefix("/master")
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let q = query_map(&uri);
    match path {
        "/version" => json_response(200, &views::version()),
        "/health" => text(200, ""),
        "/redirect" => Response::builder()
            .status(307)
            .header(header::LOCATION, format!("//{}", s.leader))
            .body(Body::empty())
            .expect("valid response"),
        "/state" => read(&s, Box::new(|m, now| (200, views::state(m, now)))).await,
        "/slaves" => read(&s, Box::new(|m, _| (200, view(views::slaves(m))))).await,
        "/frameworks" => {
            let only = q.get("framework_id").cloned();
            read(&s, Box::new(move |m, _| (200, view(views::frameworks(m, only.as_deref()))))).await
        }
        "/tasks" => {
            let tq = TaskQuery {
                limit: q.get("limit").and_then(|v| v.parse().ok()),
                offset: q.get("offset").and_then(|v| v.parse().ok()),
                order: q.get("order").cloned(),
                framework_id: q.get("framework_id").cloned(),
                task_id: q.get("task_id").cloned(),
            };
            read(&s, Box::new(move |m, _| (200, view(views::tasks(m, &tq))))).await
        }
        "/metrics/snapshot" => read(&s, Box::new(|m, now| (200, views::metrics(m, now)))).await,
        _ => text(404, format!("no such endpoint: {} (see /master/state, /slaves, /master/frameworks, /tasks, /metrics/snapshot, /api/v1/scheduler, /api/v1)", uri.path())),
    }
}
