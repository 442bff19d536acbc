//! The services framework's shell: one actor owns the [`Controller`]. It subscribes to the
//! master in process, through the same scheduler API (and the same allocator) as any framework:
//! its events arrive as the RecordIO records an HTTP framework would read, its calls go in as
//! calls. Service specs and its framework id live in the resource manager's store, so a manager
//! restart brings the services back and reconciliation adopts their running instances.
//!
//! Select priorities (`biased`): shutdown, then the API's requests, then master events, then
//! the 250 ms tick. Queues: API requests (`API_QUEUE`; handlers wait when full); master events
//! (the master's `STREAM_QUEUE` per framework: if this actor fell that far behind, the master
//! disconnects it and it subscribes again and reconciles).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use yard_store::Stores;

use crate::master::server::{subscribe_via, Input};
use crate::master::{Call, SchedulerCall};
use crate::now_ms;
use crate::services::{Cmd, Controller, Deployed, Removing, Scale, ServiceList, ServiceSpec};

pub const API_QUEUE: usize = 256;
/// How long the master keeps the services framework's tasks while it is away (a week).
const FAILOVER_TIMEOUT_S: f64 = 7.0 * 24.0 * 3600.0;
const FRAMEWORK_KEY: &str = "services/framework_id";
pub const FRAMEWORK_NAME: &str = "yard-services";

#[derive(Debug)]
pub enum Request {
    Deploy(Value),
    Scale(String, u32),
    Remove(String),
    List,
    Status(String),
}

/// The answer: an HTTP status and a JSON body.
pub type Answer = (u16, Value);

#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<(Request, oneshot::Sender<Answer>)>,
}

impl Handle {
    pub async fn ask(&self, r: Request) -> Answer {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((r, reply)).await.is_err() {
            return (
                503,
                json!({"error": "the services controller is shutting down"}),
            );
        }
        answer.await.unwrap_or((
            503,
            json!({"error": "the services controller is shutting down"}),
        ))
    }
}

struct Actor {
    c: Controller,
    master: mpsc::Sender<Input>,
    stores: Arc<Stores>,
    store: String,
    framework_id: Option<String>,
    stream: Option<String>,
}

/// Starts the services framework against the master's input queue.
pub(crate) async fn start(
    master: mpsc::Sender<Input>,
    stores: Arc<Stores>,
    store: String,
    shutdown: CancellationToken,
) -> Handle {
    let mut specs = Vec::new();
    let mut placements = std::collections::HashMap::new();
    let mut framework_id = None;
    if let Ok(entries) = stores.entries(&store).await {
        for (k, e) in entries {
            let (Some(k), Some(v)) = (k.as_str(), e.value.as_str()) else {
                continue;
            };
            if k == FRAMEWORK_KEY {
                framework_id = serde_json::from_str::<String>(v).ok();
            } else if k.starts_with("service/") {
                match serde_json::from_str::<ServiceSpec>(v) {
                    Ok(s) => specs.push(s),
                    Err(e) => tracing::warn!("stored service {k} cannot be read: {e}"),
                }
            } else if let Some(id) = k.strip_prefix("instance/") {
                match serde_json::from_str::<crate::services::Placement>(v) {
                    Ok(p) => {
                        placements.insert(id.to_string(), p);
                    }
                    Err(e) => tracing::warn!("stored placement {k} cannot be read: {e}"),
                }
            }
        }
    }
    let mut c = Controller::new(now_ms());
    if !specs.is_empty() {
        tracing::info!(services = specs.len(), "services recovered from the store");
    }
    c.recover(specs, placements);
    let (tx, rx) = mpsc::channel(API_QUEUE);
    let actor = Actor {
        c,
        master,
        stores,
        store,
        framework_id,
        stream: None,
    };
    tokio::spawn(actor.run(rx, shutdown));
    Handle { tx }
}

/// A record as the master streams it (`<length>\n<json>`).
fn decode(record: &[u8]) -> Option<Value> {
    let nl = record.iter().position(|b| *b == b'\n')?;
    serde_json::from_slice(&record[nl + 1..]).ok()
}

impl Actor {
    async fn run(
        mut self,
        mut api: mpsc::Receiver<(Request, oneshot::Sender<Answer>)>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events: Option<mpsc::Receiver<Bytes>> = None;
        let mut retry_at = 0u64;
        loop {
            if events.is_none() && now_ms() >= retry_at {
                events = self.subscribe().await;
                if events.is_none() {
                    retry_at = now_ms() + 1000;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some((req, reply)) = api.recv() => {
                    let offers = match req {
                        Request::List | Request::Status(_) => self.offer_wait().await,
                        _ => None,
                    };
                    let a = self.request(req, offers.as_deref());
                    let _ = reply.send(a);
                }
                r = async { events.as_mut().expect("guarded").recv().await }, if events.is_some() => match r {
                    Some(b) => match decode(&b) {
                        Some(e) => self.c.event(&e, now_ms()),
                        None => tracing::warn!("undecodable record from the master"),
                    },
                    None => {
                        tracing::warn!("the services framework's stream ended: subscribing again");
                        events = None;
                        self.stream = None;
                    }
                },
                _ = tick.tick() => self.c.tick(now_ms()),
            }
            self.flush().await;
        }
    }

    async fn subscribe(&mut self) -> Option<mpsc::Receiver<Bytes>> {
        let mut info = json!({"user": "root", "name": FRAMEWORK_NAME, "failover_timeout": FAILOVER_TIMEOUT_S,
                              "capabilities": [{"type": "TASK_KILLING_STATE"}]});
        if let Some(id) = &self.framework_id {
            info["id"] = json!({"value": id});
        }
        let call = Call {
            framework_id: self.framework_id.clone(),
            call: SchedulerCall::Subscribe {
                framework_info: info,
                suppressed_roles: vec![],
            },
        };
        match subscribe_via(&self.master, call).await {
            Ok((stream, fid, rx)) => {
                if self.framework_id.as_deref() != Some(&fid) {
                    tracing::info!(framework = %fid, "the services framework subscribed");
                    self.framework_id = Some(fid.clone());
                    self.persist(FRAMEWORK_KEY.into(), Some(Value::String(fid)))
                        .await;
                }
                self.stream = Some(stream);
                Some(rx)
            }
            Err(None) => None,
            Err(Some(e)) => {
                tracing::warn!("the services framework cannot subscribe: {e}");
                if self.framework_id.take().is_some() {
                    // Its framework is gone (removed after its failover timeout): a new one.
                    tracing::warn!("subscribing the services framework anew");
                }
                None
            }
        }
    }

    /// Why the master offers this framework nothing now, if it does not.
    async fn offer_wait(&self) -> Option<String> {
        let fid = self.framework_id.clone()?;
        let (reply, answer) = oneshot::channel();
        let f = Box::new(move |m: &crate::master::Master, _now: f64| {
            let w = m.frameworks.get(&fid).and_then(|f| f.waiting.clone());
            (200, w.map(Value::String).unwrap_or(Value::Null))
        });
        self.master.send(Input::Read { f, reply }).await.ok()?;
        match answer.await.ok()? {
            (_, Value::String(w)) => Some(w),
            _ => None,
        }
    }

    fn request(&mut self, r: Request, offers: Option<&str>) -> Answer {
        let now = now_ms();
        match r {
            Request::Deploy(v) => {
                let spec: ServiceSpec = match serde_json::from_value(v) {
                    Ok(s) => s,
                    Err(e) => return (400, json!({"error": format!("not a service spec: {e}")})),
                };
                let name = spec.name.clone();
                match self.c.deploy(spec) {
                    Ok(version) => (200, view(Deployed { name, version })),
                    Err(e) => (e.status(), json!({"error": e.to_string()})),
                }
            }
            Request::Scale(name, n) => match self.c.scale(&name, n) {
                Ok(()) => (
                    200,
                    view(Scale {
                        name: Some(name),
                        instances: n,
                    }),
                ),
                Err(e) => (e.status(), json!({"error": e.to_string()})),
            },
            Request::Remove(name) => match self.c.remove(&name) {
                Ok(()) => (
                    200,
                    view(Removing {
                        name,
                        removing: true,
                    }),
                ),
                Err(e) => (e.status(), json!({"error": e.to_string()})),
            },
            Request::List => {
                let services = self
                    .c
                    .services
                    .keys()
                    .filter_map(|n| self.c.status(n, now, offers))
                    .collect();
                (200, view(ServiceList { services }))
            }
            Request::Status(name) => match self.c.status(&name, now, offers) {
                Some(s) => (200, view(s)),
                None => (404, json!({"error": format!("no service named {name}")})),
            },
        }
    }

    async fn flush(&mut self) {
        for cmd in self.c.take_out() {
            match cmd {
                Cmd::Persist(k, v) => self.persist(k, v).await,
                Cmd::Call(call) => {
                    let (Some(fid), Some(stream)) = (&self.framework_id, &self.stream) else {
                        continue;
                    };
                    let kind = call.kind();
                    let call = Call::new(fid, call);
                    let (reply, answer) = oneshot::channel();
                    let input = Input::Call {
                        call,
                        stream: Some(stream.clone()),
                        reply,
                    };
                    if self.master.send(input).await.is_err() {
                        return;
                    }
                    if let Ok(Err(e)) = answer.await {
                        tracing::warn!("the services framework's {kind} failed: {e}");
                    }
                }
            }
        }
    }

    async fn persist(&self, key: String, value: Option<Value>) {
        crate::master::server::record(&self.stores, &self.store, &key, value).await;
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

/// A typed answer as the JSON the master's shell sends.
fn view(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("an answer serializes")
}
