//! The resource manager's agent: it registers its resources with the master (its cluster's
//! manager, the peer it is connected to), heartbeats, and runs the tasks launched on it, each
//! under the built-in command executor: its own session, its own cgroups ([`container`]), a
//! sandbox directory holding `stdout` and `stderr`.
//!
//! One actor owns the tasks. Task runners report statuses to it; it keeps each task's
//! unacknowledged statuses in order and sends the oldest to the master until the framework's
//! acknowledgement comes back (resent every `update_retry`), so updates arrive in order and at
//! least once. Queues: the fabric inbox from the master (`INBOX_QUEUE` messages, drop newest when
//! full: acknowledgements are resent by frameworks' retries, but a launch dropped there stays
//! STAGING at the master until the framework reconciles; the queue is far above any launch
//! burst the allocator produces), runner events (`EVENT_QUEUE`; runners wait).
//!
//! Its HTTP API (5051 by default): `/version`, `/health`, `/state`, `/monitor/statistics`.

pub mod container;
pub mod executor;
pub mod health;
mod runner;
pub mod spawn;
mod updates;

use crate::RmError;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use yard_auth::account::AccountError;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_auth::http::{Remote, Rule};
use yard_auth::{Guard, Permission};
use yard_fabric::{Client, Endpoint, OverflowPolicy};

use self::container::{Isolation, Limits};
use self::health::HealthCheck;
use self::runner::{ExecutorRunner, Exited, Launch, Runner, UsageSlot};
use crate::master::server::{json_response, parse_body, send_from_drop, text};
use crate::mesos::legacy::{AgentState, FileChunk, SandboxTask};
use crate::mesos::recordio;
use crate::mesos::resources::Resources;
use crate::mesos::{get_id, is_terminal, mid, MESOS_VERSION};
use crate::now_ms;
use crate::proto::{self, Registration, TaskReport, Wire};

pub const INBOX_QUEUE: usize = 16_384;
pub const EVENT_QUEUE: usize = 8192;
/// Terminal tasks kept for `/state`.
pub const MAX_COMPLETED: usize = 200;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub hostname: String,
    pub resources: Resources,
    pub attributes: BTreeMap<String, String>,
    /// Sandboxes live under `<dir>/sandboxes`.
    pub dir: PathBuf,
    /// `None`: tasks run without isolation (only when the operator said so).
    pub isolation: Option<Isolation>,
    pub heartbeat: Duration,
    pub update_retry: Duration,
    /// Where the agent publishes its task list (for the operations center's topology).
    pub tasks: Option<tokio::sync::watch::Sender<Vec<TaskBrief>>>,
    /// Whether tasks and executors may run as root (uid 0): asked for with
    /// `--allow-root-tasks`; otherwise such a launch fails with the reason.
    pub allow_root: bool,
    /// Who may make an executor's calls (`--executor-auth`).
    pub executor_auth: executor::ExecutorAuth,
}

/// Whom a task or executor runs as, as Mesos's `--switch_user` decides: its CommandInfo's
/// `user`, else the framework's. An agent running as root switches to that account (running as
/// root itself must be allowed); an agent running as another user runs everything as itself
/// and refuses a launch for someone else.
pub fn task_user(
    command: &Value,
    framework_info: &Value,
    agent_uid: u32,
    allow_root: bool,
    lookup: impl Fn(&str) -> Result<spawn::Account, AccountError>,
) -> Result<Option<spawn::Account>, AccountError> {
    let name = command
        .get("user")
        .and_then(Value::as_str)
        .or_else(|| framework_info.get("user").and_then(Value::as_str))
        .filter(|u| !u.is_empty())
        .ok_or_else(|| AccountError::Unnamed {
            what: "task".into(),
            hint: "FrameworkInfo.user or CommandInfo.user".into(),
        })?;
    yard_auth::account::run_as(
        "task",
        name,
        agent_uid,
        allow_root,
        "--allow-root-tasks",
        lookup,
    )
}

/// A task as the agent lists it for others (the operations center's topology).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskBrief {
    pub task_id: String,
    pub framework_id: String,
    /// The framework's name, when it gave one.
    pub framework: String,
    pub state: String,
    pub healthy: Option<bool>,
}

/// (framework id, task id).
pub(crate) type Key = (String, String);
/// (framework id, executor id).
pub(crate) type ExecKey = (String, String);

/// Records queued to one executor's event stream; when it is full the executor has stopped
/// reading: its stream is closed (it may subscribe again).
pub const EXEC_STREAM_QUEUE: usize = 1024;
/// How long an executor has between SHUTDOWN and the kill (`MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`).
pub const EXECUTOR_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct TaskEntry {
    framework_id: String,
    framework_info: Value,
    info: Value,
    state: String,
    latest: Value,
    /// Statuses on their way to the master, in order ([`updates`]).
    updates: updates::Updates,
    kill: Option<mpsc::Sender<u64>>,
    sandbox: PathBuf,
    container_id: String,
    pid: Option<u32>,
    usage: Option<UsageSlot>,
    /// A custom executor's id; `None` for command tasks.
    executor: Option<String>,
}

/// A custom executor: its process, its event stream once it subscribed, the tasks given to it.
struct ExecEntry {
    info: Value,
    framework_info: Value,
    container_id: String,
    sandbox: PathBuf,
    limits: Limits,
    /// (generation, sender) of the current subscription.
    stream: Option<(u64, mpsc::Sender<Bytes>)>,
    /// Tasks launched before it subscribed.
    queued: Vec<Value>,
    /// Its tasks that are not terminal yet.
    tasks: BTreeSet<String>,
    stop: mpsc::Sender<u64>,
    shutting_down: bool,
    pid: Option<u32>,
    slot: UsageSlot,
    /// Its credential for the executor API (in its environment, never logged).
    token: String,
    /// The account it runs as.
    uid: u32,
}

/// The agent's answer to an executor call.
pub(crate) enum ExecAnswer {
    Status(u16, String),
    Stream(mpsc::Receiver<Bytes>, u64),
}

pub(crate) enum Event {
    Status(Key, Value),
    Pid(Key, u32),
    ExecutorPid(ExecKey, u32),
    ExecutorExited(ExecKey, Exited),
    ExecutorCall(
        executor::Addressed,
        executor::Proof,
        oneshot::Sender<ExecAnswer>,
    ),
    ExecutorStreamClosed(ExecKey, u64),
    Registered(Result<Wire, String>),
    Beat(Result<Wire, String>),
    Read(
        Box<dyn FnOnce(&Actor) -> Value + Send>,
        oneshot::Sender<Value>,
    ),
}

pub struct Actor {
    cfg: AgentConfig,
    ep: Endpoint,
    inbox: Arc<Client>,
    events: mpsc::Sender<Event>,
    agent_id: Option<String>,
    master: Option<String>,
    registering: bool,
    beating: bool,
    tasks: HashMap<Key, TaskEntry>,
    executors: HashMap<ExecKey, ExecEntry>,
    stream_generation: u64,
    /// The task list changed since it was last published.
    tasks_changed: bool,
    completed: VecDeque<SandboxTask>,
    port: u16,
    /// `ip:port` of this API as tasks and executors reach it.
    api_endpoint: String,
    uuid_seed: u64,
    uuid_count: AtomicU64,
}

/// Starts the agent; `listener` serves its Mesos agent API.
pub async fn start<L: yard_auth::http::RemoteListener>(
    cfg: AgentConfig,
    ep: Endpoint,
    listener: L,
    guard: Arc<Guard>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, RmError> {
    let sandboxes = cfg.dir.join("sandboxes");
    std::fs::create_dir_all(&sandboxes).map_err(|e| RmError::Dir {
        action: "create",
        path: sandboxes.clone(),
        why: e.to_string(),
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| RmError::Listener(e.to_string()))?;
    let port = local.port();
    let api_ip = if local.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        local.ip()
    };
    let api_endpoint = std::net::SocketAddr::new(api_ip, port).to_string();
    let inbox = ep
        .attach(
            "rm-agent",
            vec![proto::inbox(ep.id())],
            INBOX_QUEUE,
            OverflowPolicy::DropNewest,
        )
        .await
        .map_err(|e| RmError::Inbox("agent's", e.to_string()))?;
    // Tasks must not outlive their agent, even a killed one: a reaper process, told by the
    // kernel when the agent dies, kills what is left in the agent's cgroups.
    let reaper = match &cfg.isolation {
        Some(iso) => Some(spawn_reaper(iso.parent())?),
        None => None,
    };
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&yard_fabric::id::random_uuid().as_bytes()[..8]);
    let actor = Actor {
        cfg,
        ep,
        inbox: Arc::new(inbox),
        events: tx.clone(),
        agent_id: None,
        master: None,
        registering: false,
        beating: false,
        tasks: HashMap::new(),
        executors: HashMap::new(),
        stream_generation: 0,
        tasks_changed: true,
        completed: VecDeque::new(),
        port,
        api_endpoint,
        uuid_seed: u64::from_le_bytes(seed) ^ now_ms(),
        uuid_count: AtomicU64::new(0),
    };
    let app = guard.wrap(
        Router::new().fallback(http).with_state(tx),
        Arc::new(classify),
    );
    let http_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<Remote>(),
        )
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!("agent API server failed: {e}");
        }
    });
    Ok(tokio::spawn(async move {
        actor.run(rx, shutdown).await;
        let _ = server.await;
        if let Some(mut r) = reaper {
            // It removes the agent's cgroups, then exits.
            container::signal_group(r.id(), libc::SIGTERM);
            let _ = tokio::task::spawn_blocking(move || r.wait()).await;
        }
    }))
}

/// Starts `yard reap-tasks PARENT`: it waits for its parent (this agent) to die, then reaps.
fn spawn_reaper(parent: &str) -> Result<std::process::Child, RmError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .map_err(|e| RmError::Reaper(format!("cannot find the yard binary: {e}")))?;
    let mut c = std::process::Command::new(exe);
    c.args(["reap-tasks", parent])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: setpgid and prctl are async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    c.spawn().map_err(|e| RmError::Reaper(e.to_string()))
}

/// `yard reap-tasks PARENT`: until this process's parent dies (or SIGTERM), then kill and remove
/// every container under the cgroup `PARENT`.
pub async fn reap_tasks(parent: &str) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    // The agent may have died before PDEATHSIG was set.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != 1 {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    let parent = parent.to_string();
    let _ = tokio::task::spawn_blocking(move || Isolation::reap(&parent)).await;
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat = 0u64;
        let inbox = self.inbox.clone();
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(ev) = rx.recv() => self.event(ev).await,
                r = inbox.recv_batch(&mut batch, 256) => {
                    if let Err(e) = r {
                        tracing::error!("the agent's inbox closed: {e:?}");
                        break;
                    }
                    for m in std::mem::take(&mut batch) {
                        match Wire::decode(&m.value) {
                            Ok(w) => self.handle_master(w).await,
                            Err(e) => tracing::warn!("from {}: {e}", m.topic),
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = now_ms();
                    if self.master.is_none() {
                        self.master = self.find_master().await;
                    }
                    if self.agent_id.is_none() {
                        self.register();
                    } else if now.saturating_sub(last_beat) >= self.cfg.heartbeat.as_millis() as u64 {
                        last_beat = now;
                        self.beat();
                    }
                    self.resend(now).await;
                    self.publish_tasks();
                }
            }
        }
        // Tasks and executors stop with the agent.
        let running: Vec<_> = self.tasks.values().filter_map(|t| t.kill.clone()).collect();
        for k in running {
            let _ = k.send(0).await;
        }
        let executors: Vec<ExecKey> = self.executors.keys().cloned().collect();
        for ek in executors {
            self.shutdown_executor(&ek, Duration::ZERO);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while (self.tasks.values().any(|t| !is_terminal(&t.state)) || !self.executors.is_empty())
            && tokio::time::Instant::now() < deadline
        {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev @ (Event::Status(..) | Event::ExecutorExited(..)))) => {
                    self.event(ev).await
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }

    async fn find_master(&self) -> Option<String> {
        let snap = self.ep.snapshot().await.ok()?;
        snap.peers
            .into_iter()
            .find(|p| p.state == "connected" && !p.id.is_empty())
            .map(|p| p.id)
    }

    fn registration(&self) -> Registration {
        Registration {
            agent_id: self.agent_id.clone(),
            name: self.cfg.name.clone(),
            hostname: self.cfg.hostname.clone(),
            port: self.port,
            endpoint: self.ep.id().to_string(),
            resources: self.cfg.resources.to_string(),
            attributes: self.cfg.attributes.clone(),
            tasks: self
                .tasks
                .values()
                .filter(|t| !is_terminal(&t.state))
                .map(|t| TaskReport {
                    framework_id: t.framework_id.clone(),
                    framework_info: t.framework_info.clone(),
                    task: t.info.clone(),
                    status: t.latest.clone(),
                })
                .collect(),
        }
    }

    /// Sends `msg` to the master; its answer (or why there is none) comes back as `done`.
    /// Every call gets its `done`, a master or not: the caller's in-flight flag (`beating`,
    /// `registering`) is cleared only there. (A heartbeat due while the manager was away set
    /// its flag and got no answer, and the agent never beat again once the manager was back.)
    fn request(&self, msg: Wire, done: fn(Result<Wire, String>) -> Event) {
        let tx = self.events.clone();
        let Some(master) = self.master.clone() else {
            tokio::spawn(async move {
                let _ = tx.send(done(Err("no master is known yet".into()))).await;
            });
            return;
        };
        let ep = self.ep.clone();
        tokio::spawn(async move {
            let topic = format!("{}agent", proto::inbox(&master));
            let r = match ep
                .request_system(topic, msg.encode(), Duration::from_secs(5))
                .await
            {
                Ok(m) => Wire::decode(&m.value).map_err(String::from),
                Err(e) => Err(format!("{}: {e}", e.code())),
            };
            let _ = tx.send(done(r)).await;
        });
    }

    fn register(&mut self) {
        if self.registering || self.master.is_none() {
            return;
        }
        self.registering = true;
        let mut r = self.registration();
        // A known id is kept when re-registering (set by Registered).
        r.agent_id = self.agent_id.clone();
        self.request(Wire::Register(r), Event::Registered);
    }

    fn beat(&mut self) {
        if self.beating {
            return;
        }
        let Some(id) = self.agent_id.clone() else {
            return;
        };
        self.beating = true;
        self.request(Wire::Heartbeat { agent_id: id }, Event::Beat);
    }

    async fn event(&mut self, ev: Event) {
        match ev {
            Event::Status(k, s) => self.status(k, s),
            Event::Pid(k, pid) => {
                if let Some(t) = self.tasks.get_mut(&k) {
                    t.pid = Some(pid);
                }
            }
            Event::Registered(r) => {
                self.registering = false;
                match r {
                    Ok(Wire::Registered { agent_id, kill }) => {
                        if self.agent_id.as_deref() != Some(&agent_id) {
                            tracing::info!(id = %agent_id, "registered with the master");
                        }
                        self.agent_id = Some(agent_id);
                        for (f, t) in kill {
                            if let Some(k) = self.tasks.get(&(f, t)).and_then(|t| t.kill.clone()) {
                                let _ = k.send(0).await;
                            }
                        }
                        // Everything unacknowledged goes again now.
                        for t in self.tasks.values_mut() {
                            t.updates.resend_now();
                        }
                    }
                    Ok(Wire::Refused { message }) => {
                        tracing::error!("the master refused this agent: {message}")
                    }
                    Ok(other) => tracing::warn!("unexpected answer to a registration: {other:?}"),
                    Err(e) => {
                        tracing::debug!("registration not answered: {e}");
                        self.master = None;
                    }
                }
            }
            Event::Beat(r) => {
                self.beating = false;
                match r {
                    Ok(Wire::HeartbeatAck { known: true }) => {}
                    Ok(Wire::HeartbeatAck { known: false }) => {
                        tracing::warn!("the master does not know this agent (it restarted, or lost us): registering again");
                        self.registering = false;
                        let id = self.agent_id.clone();
                        self.registering = true;
                        let mut reg = self.registration();
                        reg.agent_id = id;
                        self.request(Wire::Register(reg), Event::Registered);
                    }
                    Ok(other) => tracing::warn!("unexpected answer to a heartbeat: {other:?}"),
                    Err(e) => {
                        tracing::debug!("heartbeat not answered: {e}");
                        // The manager may have moved: look it up again.
                        self.master = None;
                    }
                }
            }
            Event::Read(f, reply) => {
                let _ = reply.send(f(self));
            }
            Event::ExecutorPid(ek, pid) => {
                if let Some(x) = self.executors.get_mut(&ek) {
                    x.pid = Some(pid);
                }
            }
            Event::ExecutorExited(ek, ex) => self.executor_exited(ek, ex).await,
            Event::ExecutorCall(call, proof, reply) => {
                let answer = self.executor_call(call, proof).await;
                let _ = reply.send(answer);
            }
            Event::ExecutorStreamClosed(ek, generation) => {
                if let Some(x) = self.executors.get_mut(&ek) {
                    if x.stream.as_ref().is_some_and(|(g, _)| *g == generation) {
                        tracing::info!(executor = %ek.1, "the executor's stream closed");
                        x.stream = None;
                    }
                }
            }
        }
    }

    /// Publishes the task list when it changed (at most once per tick).
    fn publish_tasks(&mut self) {
        let Some(tx) = &self.cfg.tasks else {
            return;
        };
        if !self.tasks_changed {
            return;
        }
        self.tasks_changed = false;
        let mut list: Vec<TaskBrief> = self
            .tasks
            .iter()
            .filter(|(_, t)| !is_terminal(&t.state))
            .map(|((f, id), t)| TaskBrief {
                task_id: id.clone(),
                framework_id: f.clone(),
                framework: t.framework_info["name"].as_str().unwrap_or(f).to_string(),
                state: t.state.clone(),
                healthy: t.latest.get("healthy").and_then(Value::as_bool),
            })
            .collect();
        list.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        tx.send_replace(list);
    }

    fn new_uuid(&self) -> String {
        let n = self.uuid_count.fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.uuid_seed.to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// A task's status (from a runner, an executor or the agent itself): stamped (an
    /// executor's own uuid is kept: it is acknowledged with it), queued for the master in order.
    fn status(&mut self, k: Key, mut s: Value) {
        if !s.get("uuid").is_some_and(Value::is_string) {
            s["uuid"] = json!(self.new_uuid());
        }
        if let Some(id) = &self.agent_id {
            s["agent_id"] = mid(id);
        }
        let Some(t) = self.tasks.get_mut(&k) else {
            return;
        };
        t.state = s["state"].as_str().unwrap_or("").to_string();
        t.latest = s.clone();
        self.tasks_changed = true;
        if is_terminal(&t.state) {
            t.kill = None;
            if let Some(x) = t
                .executor
                .as_ref()
                .and_then(|e| self.executors.get_mut(&(k.0.clone(), e.clone())))
            {
                x.tasks.remove(&k.1);
            }
        }
        t.updates.push(s);
    }

    async fn resend(&mut self, now: u64) {
        let (Some(master), Some(agent_id)) = (self.master.clone(), self.agent_id.clone()) else {
            return;
        };
        let retry = self.cfg.update_retry.as_millis() as u64;
        let topic = format!("{}agent", proto::inbox(&master));
        let mut sends = Vec::new();
        for t in self.tasks.values_mut() {
            let Some(head) = t.updates.due(now, retry) else {
                continue;
            };
            let mut status = head.clone();
            status["agent_id"] = mid(&agent_id);
            sends.push(Wire::Update {
                agent_id: agent_id.clone(),
                framework_id: t.framework_id.clone(),
                status,
            });
        }
        for w in sends {
            if let Err(e) = self.inbox.publish_system(topic.clone(), w.encode()).await {
                tracing::debug!("cannot send an update: {e}");
            }
        }
    }

    async fn handle_master(&mut self, w: Wire) {
        match w {
            Wire::Launch {
                framework_id,
                framework_info,
                tasks,
            } => {
                for info in tasks {
                    let tid = get_id(&info, "task_id").unwrap_or("").to_string();
                    if self
                        .tasks
                        .contains_key(&(framework_id.clone(), tid.clone()))
                    {
                        tracing::warn!(task = %tid, "launch of a task this agent already runs: ignored");
                    } else if info.get("executor").is_some_and(Value::is_object) {
                        self.launch_on_executor(&framework_id, &framework_info, info);
                    } else {
                        self.launch(&framework_id, &framework_info, info);
                    }
                }
                self.resend(now_ms()).await;
            }
            Wire::Kill {
                framework_id,
                task_id,
                grace_ms,
            } => {
                let k = (framework_id.clone(), task_id.clone());
                match self.tasks.get(&k) {
                    Some(t) if t.executor.is_some() => {
                        let ek = (framework_id.clone(), t.executor.clone().expect("checked"));
                        self.kill_on_executor(&ek, &task_id, grace_ms);
                    }
                    Some(t) => {
                        if let Some(kill) = t.kill.clone() {
                            let _ = kill.send(grace_ms).await;
                        }
                    }
                    None => {
                        // Unknown here: tell the framework, through the usual update path.
                        self.tasks.insert(
                            k.clone(),
                            self.entry(
                                &framework_id,
                                &Value::Null,
                                json!({"task_id": mid(&task_id)}),
                            ),
                        );
                        let s = json!({"task_id": mid(&task_id), "state": "TASK_LOST", "source": "SOURCE_AGENT",
                            "reason": "REASON_TASK_UNKNOWN", "message": "the agent does not run this task", "timestamp": now_ms() as f64 / 1000.0});
                        self.status(k, s);
                    }
                }
            }
            Wire::Ack {
                framework_id,
                task_id,
                uuid,
            } => {
                let k = (framework_id, task_id);
                let Some(t) = self.tasks.get_mut(&k) else {
                    return;
                };
                if let Some(acked) = t.updates.ack(&uuid) {
                    // The executor hears of acknowledgements of its own updates.
                    if acked["source"] == "SOURCE_EXECUTOR" {
                        if let Some(e) = t.executor.clone() {
                            let ack = executor::event(
                                "ACKNOWLEDGED",
                                Some(json!({"task_id": mid(&k.1), "uuid": uuid})),
                            );
                            self.send_executor(&(k.0.clone(), e), &ack);
                        }
                    }
                }
                let Some(t) = self.tasks.get_mut(&k) else {
                    return;
                };
                if t.updates.is_empty() && is_terminal(&t.state) {
                    let t = self.tasks.remove(&k).expect("present");
                    self.tasks_changed = true;
                    self.completed.push_back(SandboxTask {
                        id: k.1,
                        framework_id: k.0,
                        state: t.state,
                        sandbox: t.sandbox,
                        detail: [("latest".to_string(), t.latest)].into_iter().collect(),
                    });
                    if self.completed.len() > MAX_COMPLETED {
                        self.completed.pop_front();
                    }
                }
                self.resend(now_ms()).await;
            }
            Wire::ShutdownFramework { framework_id } => {
                let kills: Vec<_> = self
                    .tasks
                    .values()
                    .filter(|t| t.framework_id == framework_id)
                    .filter_map(|t| t.kill.clone())
                    .collect();
                for k in kills {
                    let _ = k.send(3000).await;
                }
                let executors: Vec<ExecKey> = self
                    .executors
                    .keys()
                    .filter(|(f, _)| *f == framework_id)
                    .cloned()
                    .collect();
                for ek in executors {
                    self.shutdown_executor(&ek, EXECUTOR_SHUTDOWN_GRACE);
                }
            }
            Wire::ShutdownExecutor {
                framework_id,
                executor_id,
            } => self.shutdown_executor(&(framework_id, executor_id), EXECUTOR_SHUTDOWN_GRACE),
            Wire::FrameworkMessage {
                framework_id,
                executor_id,
                data,
            } => {
                let ek = (framework_id, executor_id);
                let subscribed = self.executors.get(&ek).is_some_and(|x| x.stream.is_some());
                if subscribed {
                    self.send_executor(
                        &ek,
                        &executor::event("MESSAGE", Some(json!({"data": data}))),
                    );
                } else {
                    tracing::info!(framework = %ek.0, executor = %ek.1, "framework message dropped: no such executor is subscribed here (command tasks have none)");
                }
            }
            other => tracing::warn!("unexpected message from the master: {other:?}"),
        }
    }

    fn entry(&self, framework_id: &str, framework_info: &Value, info: Value) -> TaskEntry {
        TaskEntry {
            framework_id: framework_id.to_string(),
            framework_info: framework_info.clone(),
            info,
            state: "TASK_STAGING".into(),
            latest: Value::Null,
            updates: Default::default(),
            kill: None,
            sandbox: PathBuf::new(),
            container_id: String::new(),
            pid: None,
            usage: None,
            executor: None,
        }
    }

    fn launch(&mut self, framework_id: &str, framework_info: &Value, info: Value) {
        let tid = get_id(&info, "task_id").unwrap_or("").to_string();
        let k = (framework_id.to_string(), tid.clone());
        let container_id = yard_fabric::id::random_uuid();
        let sandbox = self
            .cfg
            .dir
            .join("sandboxes")
            .join(framework_id)
            .join(format!("{tid}-{}", &container_id[..8]));
        let (kill_tx, kill_rx) = mpsc::channel(4);
        let mut e = self.entry(framework_id, framework_info, info.clone());
        let kill_tx_health = kill_tx.clone();
        e.kill = Some(kill_tx);
        e.sandbox = sandbox.clone();
        e.container_id = container_id.clone();
        let slot = Arc::new(std::sync::Mutex::new(None));
        e.usage = Some(slot.clone());
        self.tasks.insert(k.clone(), e);
        let mut env = vec![
            ("MESOS_SANDBOX", sandbox.display().to_string()),
            ("MESOS_DIRECTORY", sandbox.display().to_string()),
            ("MESOS_TASK_ID", tid.clone()),
            ("MESOS_FRAMEWORK_ID", framework_id.to_string()),
            ("MESOS_EXECUTOR_ID", tid.clone()),
            ("MESOS_AGENT_ENDPOINT", self.api_endpoint.clone()),
        ];
        if let Some(id) = &self.agent_id {
            env.push(("MESOS_AGENT_ID", id.clone()));
        }
        let res =
            Resources::from_json(info.get("resources").unwrap_or(&json!([]))).unwrap_or_default();
        let health = info
            .get("health_check")
            .and_then(|h| HealthCheck::parse(h).ok());
        let killing_state = framework_info
            .get("capabilities")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c["type"] == "TASK_KILLING_STATE"));
        let run = Runner {
            health,
            killing_state,
            kill: kill_tx_health,
            health_kill_grace_ms: kill_grace_ms(&info),
            key: k,
            launch: Launch {
                sandbox,
                container_id,
                iso: self.cfg.isolation.clone(),
                limits: Limits {
                    cpus_milli: res.scalar("cpus"),
                    mem_milli: res.scalar("mem"),
                },
                user: self.user_for(&info["command"], framework_info),
                command: info["command"].clone(),
                env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            },
            events: self.events.clone(),
            slot,
        };
        tokio::spawn(run.run(kill_rx));
    }

    fn user_for(
        &self,
        command: &Value,
        framework_info: &Value,
    ) -> Result<Option<spawn::Account>, AccountError> {
        let uid = yard_auth::account::current_uid();
        task_user(
            command,
            framework_info,
            uid,
            self.cfg.allow_root,
            spawn::lookup_user,
        )
    }

    /// A task with an ExecutorInfo: started on its executor, which is started first if it is
    /// not running here yet. The task reaches the executor once it has subscribed.
    fn launch_on_executor(&mut self, framework_id: &str, framework_info: &Value, info: Value) {
        let tid = get_id(&info, "task_id").unwrap_or("").to_string();
        let k = (framework_id.to_string(), tid.clone());
        let ei = info["executor"].clone();
        let eid = get_id(&ei, "executor_id").unwrap_or("").to_string();
        let ek = (framework_id.to_string(), eid.clone());
        let task_res =
            Resources::from_json(info.get("resources").unwrap_or(&json!([]))).unwrap_or_default();
        let mut e = self.entry(framework_id, framework_info, info.clone());
        e.executor = Some(eid.clone());
        if let Some(x) = self.executors.get_mut(&ek) {
            // Its container grows by the task's resources.
            x.limits.cpus_milli += task_res.scalar("cpus");
            x.limits.mem_milli += task_res.scalar("mem");
            if let Some(ct) = x.slot.lock().expect("usage slot").as_ref() {
                if let Err(err) = ct.resize(x.limits) {
                    tracing::warn!(executor = %eid, "cannot grow the executor's limits: {err}");
                }
            }
        } else {
            self.start_executor(&ek, &ei, framework_info, &task_res);
        }
        let x = self.executors.get_mut(&ek).expect("started above");
        e.sandbox = x.sandbox.clone();
        e.container_id = x.container_id.clone();
        e.usage = Some(x.slot.clone());
        x.tasks.insert(tid);
        self.tasks.insert(k, e);
        if self.executors[&ek].stream.is_some() {
            let launch = executor::event(
                "LAUNCH",
                Some(
                    json!({"task": info, "framework_info": self.framework_info_with_id(framework_id, framework_info)}),
                ),
            );
            self.send_executor(&ek, &launch);
        } else {
            self.executors
                .get_mut(&ek)
                .expect("started above")
                .queued
                .push(info);
        }
    }

    fn framework_info_with_id(&self, framework_id: &str, info: &Value) -> Value {
        let mut fi = if info.is_object() {
            info.clone()
        } else {
            json!({})
        };
        fi["id"] = mid(framework_id);
        fi
    }

    fn start_executor(
        &mut self,
        ek: &ExecKey,
        ei: &Value,
        framework_info: &Value,
        task: &Resources,
    ) {
        let container_id = yard_fabric::id::random_uuid();
        let sandbox = self.cfg.dir.join("sandboxes").join(&ek.0).join(format!(
            "executor-{}-{}",
            ek.1,
            &container_id[..8]
        ));
        let mut res =
            Resources::from_json(ei.get("resources").unwrap_or(&json!([]))).unwrap_or_default();
        res.add(task);
        let limits = Limits {
            cpus_milli: res.scalar("cpus"),
            mem_milli: res.scalar("mem"),
        };
        let token = yard_auth::secret::random_hex(32);
        let env = executor::environment(&executor::EnvInput {
            framework_id: &ek.0,
            executor_id: &ek.1,
            agent_id: self.agent_id.as_deref().unwrap_or(""),
            agent_endpoint: &self.api_endpoint,
            sandbox: &sandbox.display().to_string(),
            shutdown_grace_secs: EXECUTOR_SHUTDOWN_GRACE.as_secs(),
            token: &token,
        });
        let user = self.user_for(ei.get("command").unwrap_or(&Value::Null), framework_info);
        let agent_uid = yard_auth::account::current_uid();
        let uid = match &user {
            Ok(Some(a)) => a.uid,
            _ => agent_uid,
        };
        let (stop_tx, stop_rx) = mpsc::channel(4);
        let slot: UsageSlot = Arc::new(std::sync::Mutex::new(None));
        tracing::info!(framework = %ek.0, executor = %ek.1, "starting an executor");
        let run = ExecutorRunner {
            key: ek.clone(),
            launch: Launch {
                sandbox: sandbox.clone(),
                container_id: container_id.clone(),
                iso: self.cfg.isolation.clone(),
                limits,
                user,
                command: ei.get("command").cloned().unwrap_or(json!({})),
                env,
            },
            events: self.events.clone(),
            slot: slot.clone(),
        };
        tokio::spawn(run.run(stop_rx));
        self.executors.insert(
            ek.clone(),
            ExecEntry {
                info: ei.clone(),
                framework_info: framework_info.clone(),
                container_id,
                sandbox,
                limits,
                stream: None,
                queued: Vec::new(),
                tasks: BTreeSet::new(),
                stop: stop_tx,
                shutting_down: false,
                pid: None,
                slot,
                token,
                uid,
            },
        );
    }

    /// Queues an event on an executor's stream; a full stream is closed.
    fn send_executor(&mut self, ek: &ExecKey, event: &Value) {
        let Some(x) = self.executors.get_mut(ek) else {
            return;
        };
        let Some((_, tx)) = &x.stream else {
            return;
        };
        if tx.try_send(Bytes::from(recordio::record(event))).is_err() {
            tracing::warn!(executor = %ek.1, "the executor's stream is full or gone ({EXEC_STREAM_QUEUE} records): closing it");
            x.stream = None;
        }
    }

    fn kill_on_executor(&mut self, ek: &ExecKey, task_id: &str, grace_ms: u64) {
        let Some(x) = self.executors.get_mut(ek) else {
            return;
        };
        if let Some(i) = x
            .queued
            .iter()
            .position(|t| get_id(t, "task_id") == Some(task_id))
        {
            // Never reached the executor: killed here.
            x.queued.remove(i);
            let s = json!({"task_id": mid(task_id), "state": "TASK_KILLED", "source": "SOURCE_AGENT",
                "executor_id": mid(&ek.1), "message": "Killed before it was delivered to its executor",
                "timestamp": now_ms() as f64 / 1000.0});
            self.status((ek.0.clone(), task_id.to_string()), s);
        } else if x.stream.is_some() {
            let kill = executor::event(
                "KILL",
                Some(json!({"task_id": mid(task_id),
                    "kill_policy": {"grace_period": {"nanoseconds": grace_ms.saturating_mul(1_000_000)}}})),
            );
            self.send_executor(ek, &kill);
        } else {
            // Its executor is not connected: the kill takes the executor down with the task.
            tracing::info!(executor = %ek.1, task = %task_id, "kill for a task whose executor is not subscribed: shutting the executor down");
            self.shutdown_executor(ek, Duration::ZERO);
        }
    }

    /// SHUTDOWN to the executor, then its processes are killed after `grace` (at once when it
    /// is not subscribed).
    fn shutdown_executor(&mut self, ek: &ExecKey, grace: Duration) {
        let subscribed = match self.executors.get_mut(ek) {
            Some(x) => {
                x.shutting_down = true;
                x.stream.is_some()
            }
            None => return,
        };
        self.send_executor(ek, &executor::event("SHUTDOWN", None));
        let stop = self.executors[ek].stop.clone();
        let grace = if subscribed { grace } else { Duration::ZERO };
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // SIGTERM, and SIGKILL a second later if still there.
            let _ = stop.send(1000).await;
        });
    }

    /// An executor's process ended: its unfinished tasks end with it, and its framework hears.
    async fn executor_exited(&mut self, ek: ExecKey, ex: Exited) {
        let Some(x) = self.executors.remove(&ek) else {
            return;
        };
        tracing::info!(framework = %ek.0, executor = %ek.1, "{}", ex.message);
        let (state, reason) = if ex.oom {
            ("TASK_FAILED", "REASON_CONTAINER_LIMITATION_MEMORY")
        } else if ex.launch_failed {
            ("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED")
        } else if x.shutting_down {
            ("TASK_KILLED", "REASON_EXECUTOR_TERMINATED")
        } else {
            ("TASK_FAILED", "REASON_EXECUTOR_TERMINATED")
        };
        for tid in &x.tasks {
            let mut s = json!({"task_id": mid(tid), "state": state, "source": "SOURCE_AGENT", "reason": reason,
                "executor_id": mid(&ek.1), "message": ex.message, "timestamp": now_ms() as f64 / 1000.0});
            if ex.oom {
                s["limitation"] = runner::oom_status(x.limits)["limitation"].clone();
            }
            self.status((ek.0.clone(), tid.clone()), s);
        }
        if let (Some(master), Some(agent_id)) = (self.master.clone(), self.agent_id.clone()) {
            let w = Wire::ExecutorExited {
                agent_id,
                framework_id: ek.0.clone(),
                executor_id: ek.1.clone(),
                status: ex.status,
            };
            let topic = format!("{}agent", proto::inbox(&master));
            if let Err(e) = self.inbox.publish_system(topic, w.encode()).await {
                tracing::debug!("cannot report an executor's exit: {e}");
            }
        }
        self.resend(now_ms()).await;
    }

    async fn executor_call(
        &mut self,
        a: executor::Addressed,
        proof: executor::Proof,
    ) -> ExecAnswer {
        let ek = (a.framework_id.clone(), a.executor_id.clone());
        let Some(x) = self.executors.get_mut(&ek) else {
            let known = self.executors.keys().any(|(f, _)| *f == a.framework_id);
            let what = if known { "Executor" } else { "Framework" };
            return ExecAnswer::Status(400, format!("{what} cannot be found"));
        };
        if let Err(why) = executor::admit(self.cfg.executor_auth, &x.token, x.uid, &proof) {
            tracing::warn!(framework = %ek.0, executor = %ek.1, "executor call refused: {why}");
            return ExecAnswer::Status(401, why.to_string());
        }
        match a.call {
            executor::Call::Subscribe => {
                self.stream_generation += 1;
                let generation = self.stream_generation;
                let (tx, rx) = mpsc::channel(EXEC_STREAM_QUEUE);
                x.stream = Some((generation, tx));
                let queued = std::mem::take(&mut x.queued);
                let shutting_down = x.shutting_down;
                let agent_info = json!({"id": mid(self.agent_id.as_deref().unwrap_or("")),
                    "hostname": self.cfg.hostname, "port": self.port,
                    "resources": self.cfg.resources.to_json(None),
                    "attributes": crate::mesos::resources::attributes_json(&self.cfg.attributes)});
                let x = &self.executors[&ek];
                let sub = executor::subscribed(
                    &x.info,
                    &ek.0,
                    &x.framework_info,
                    agent_info,
                    &x.container_id,
                );
                let fi = self.framework_info_with_id(&ek.0, &x.framework_info);
                tracing::info!(framework = %ek.0, executor = %ek.1, "executor subscribed");
                self.send_executor(&ek, &sub);
                for task in queued {
                    let launch = executor::event(
                        "LAUNCH",
                        Some(json!({"task": task, "framework_info": fi})),
                    );
                    self.send_executor(&ek, &launch);
                }
                if shutting_down {
                    self.send_executor(&ek, &executor::event("SHUTDOWN", None));
                }
                ExecAnswer::Stream(rx, generation)
            }
            _ if x.stream.is_none() => ExecAnswer::Status(403, "Executor is not subscribed".into()),
            executor::Call::Heartbeat => ExecAnswer::Status(202, String::new()),
            executor::Call::Update(mut status) => {
                let tid = get_id(&status, "task_id").unwrap_or("").to_string();
                let ours = self
                    .tasks
                    .get(&(ek.0.clone(), tid.clone()))
                    .is_some_and(|t| t.executor.as_deref() == Some(&ek.1));
                if !ours {
                    return ExecAnswer::Status(
                        400,
                        format!("Task '{tid}' was not launched on executor '{}'", ek.1),
                    );
                }
                status["executor_id"] = mid(&ek.1);
                status["container_status"] =
                    json!({"container_id": mid(&x.container_id), "executor_pid": x.pid});
                self.status((ek.0.clone(), tid), status);
                self.resend(now_ms()).await;
                ExecAnswer::Status(202, String::new())
            }
            executor::Call::Message(data) => {
                let (Some(master), Some(agent_id)) = (self.master.clone(), self.agent_id.clone())
                else {
                    return ExecAnswer::Status(503, "the agent has no master right now".into());
                };
                let w = Wire::ExecutorMessage {
                    agent_id,
                    framework_id: ek.0,
                    executor_id: ek.1,
                    data,
                };
                let topic = format!("{}agent", proto::inbox(&master));
                match self.inbox.publish_system(topic, w.encode()).await {
                    Ok(()) => ExecAnswer::Status(202, String::new()),
                    Err(e) => ExecAnswer::Status(503, format!("cannot reach the master: {e}")),
                }
            }
        }
    }
}

/// A task's kill grace: its `kill_policy.grace_period`, or Mesos's 3 s.
fn kill_grace_ms(info: &Value) -> u64 {
    info.pointer("/kill_policy/grace_period/nanoseconds")
        .and_then(crate::mesos::resources::number)
        .map(|ns| (ns / 1e6).max(0.0) as u64)
        .unwrap_or(3000)
}

// ---------------------------------------------------------------- HTTP

// The executor API and sandbox files answer only clients on this host (loopback, or a
// connection to this host's own address from itself), since executors run here; sandbox files
// need the outputs permission besides.

/// The route a request path names: trailing slashes, the `/slave(1)` prefix and the `.json`
/// suffix removed, as Mesos accepts them.
fn route_path(raw: &str) -> String {
    let path = raw.trim_end_matches('/');
    let path = path.strip_prefix("/slave(1)").unwrap_or(path);
    let path = path.trim_end_matches('/');
    path.strip_suffix(".json").unwrap_or(path).to_string()
}

/// The rule of each agent route (aliases removed first, as the dispatch sees them).
pub fn classify(method: &Method, raw: &str) -> Option<Rule> {
    let route = route_path(raw);
    let read = *method == Method::GET || *method == Method::HEAD;
    match route.as_str() {
        "/version" | "/health" if read => Some(Rule::new(Permission::Open)),
        "/state" | "/monitor/statistics" if read => Some(Rule::new(Permission::Read)),
        // Executors run on this host and prove themselves with their own token or, for those
        // that send none (pymesos's driver), with the account their socket belongs to: the
        // handler checks both (`executor::admit`), after the same-host rule.
        "/api/v1/executor" => Some(Rule::new(Permission::Open).own_credential()),
        "/files/read" if read => Some(Rule::new(Permission::Outputs)),
        _ => None,
    }
}

/// Routes that answer clients on this host only.
fn local_only(route: &str) -> bool {
    matches!(route, "/api/v1/executor" | "/files/read")
}

async fn http(
    State(tx): State<mpsc::Sender<Event>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<Remote>,
    req: Request,
) -> Response {
    // The same-host rule is checked on the path the dispatch below uses, aliases removed, so
    // `/files/read.json` and `/slave(1)/files/read` cannot slip past it.
    let path = route_path(req.uri().path());
    if local_only(&path) && !peer.same_host() {
        return text(
            403,
            format!(
                "{path} answers only clients on the agent's own host (you are {})",
                peer.addr.ip()
            ),
        );
    }
    let exec_tx = tx.clone();
    let read = |f: Box<dyn FnOnce(&Actor) -> Value + Send>| async move {
        let (reply, answer) = oneshot::channel();
        if tx.send(Event::Read(f, reply)).await.is_err() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is shutting down",
            )
                .into_response();
        }
        match answer.await {
            Ok(v) => json_response(200, &v),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is shutting down",
            )
                .into_response(),
        }
    };
    match path.as_str() {
        "/version" => json_response(200, &crate::master::views::version()),
        "/health" => (StatusCode::OK, "").into_response(),
        "/state" => read(Box::new(state_view)).await,
        "/monitor/statistics" => read(Box::new(statistics)).await,
        "/api/v1/executor" => executor_api(exec_tx, peer, req).await,
        "/files/read" => files_read(exec_tx, req.uri().query().unwrap_or("")).await,
        other => (
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint: {other} (see /state, /monitor/statistics, /version, /health)"
            ),
        )
            .into_response(),
    }
}

/// Most bytes `/files/read` returns at once.
pub const FILES_READ_MAX: u64 = 4 << 20;

/// `GET /files/read?path=P&offset=O&length=L`, as Mesos answers it (`{"data", "offset"}`;
/// `offset=-1` gives the file's size): files of task sandboxes only.
async fn files_read(tx: mpsc::Sender<Event>, query: &str) -> Response {
    let q: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), yard_auth::url::decode_query_value(v)))
        .collect();
    let Some(path) = q.get("path") else {
        return text(400, "Expecting 'path=' in the query");
    };
    let num = |k: &str, d: i64| -> Result<i64, String> {
        q.get(k).map_or(Ok(d), |v| {
            v.parse::<i64>()
                .map_err(|_| format!("Failed to parse '{k}': {v:?} is not an integer"))
        })
    };
    let (offset, length) = match (num("offset", 0), num("length", -1)) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(e), _) | (_, Err(e)) => return text(400, e),
    };
    let (reply, answer) = oneshot::channel();
    let f: Box<dyn FnOnce(&Actor) -> Value + Send> =
        Box::new(|a| json!(a.cfg.dir.join("sandboxes")));
    if tx.send(Event::Read(f, reply)).await.is_err() {
        return text(503, "the agent is shutting down");
    }
    let Ok(Value::String(root)) = answer.await else {
        return text(503, "the agent is shutting down");
    };
    let path = path.clone();
    let r = tokio::task::spawn_blocking(move || read_sandbox_file(&root, &path, offset, length))
        .await
        .unwrap_or_else(|e| Err((500, format!("the read failed: {e}"))));
    match r {
        Ok(v) => json_response(200, &v),
        Err((code, msg)) => text(code, msg),
    }
}

/// `path` relative to `root` once `.` and `..` are resolved by name; `None` when it is not
/// under `root`.
fn beneath(root: &std::path::Path, path: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => parts.clear(),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(n) => parts.push(n),
        }
    }
    let normal: std::path::PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
        .chain(parts)
        .collect();
    let rel = normal.strip_prefix(root).ok()?.to_path_buf();
    (!rel.as_os_str().is_empty()).then_some(rel)
}

/// Opens `rel` read-only beneath `root` with `openat2(RESOLVE_BENEATH)`: the kernel refuses
/// any step (symbolic link, `..`, magic link) that would leave `root`.
fn open_beneath(root: &std::path::Path, rel: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::ffi::CString;
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let dir = std::fs::File::open(root)?;
    let rel = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    /// `struct open_how` of linux/openat2.h (libc's is not constructible).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: `rel` is a NUL-terminated string and `how` a valid open_how that outlive the
    // call; the returned descriptor is owned by the File from here on.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd as i32) })
}

/// Reads part of a file under `root` (the sandboxes) as `/files/read` answers.
fn read_sandbox_file(
    root: &str,
    path: &str,
    offset: i64,
    length: i64,
) -> Result<Value, (u16, String)> {
    use std::io::{Read, Seek};
    let not_found = || (404, format!("No such file: {path}"));
    let outside = || (403, format!("{path} is not in a task sandbox"));
    // The path, normalised before any check: `.` and `..` are resolved by name, and it must
    // name something under the sandboxes. The open itself then stays beneath them (no
    // symbolic link, `..` or mount leads out), so a task cannot race a check.
    // The sandboxes as configured (made absolute) or as the kernel names them: a client may
    // have either from the agent's state.
    let given = std::path::absolute(root).map_err(|_| not_found())?;
    let real = std::fs::canonicalize(root).map_err(|_| not_found())?;
    let rel = [&given, &real]
        .into_iter()
        .find_map(|r| beneath(r, std::path::Path::new(path)))
        .ok_or_else(outside)?;
    let mut f = open_beneath(&real, &rel).map_err(|e| match e.raw_os_error() {
        Some(libc::EXDEV) | Some(libc::ELOOP) => outside(),
        _ => not_found(),
    })?;
    let meta = f.metadata().map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err((400, format!("{path} is a directory")));
    }
    let size = meta.len();
    if offset == -1 {
        return Ok(chunk(String::new(), size));
    }
    if offset < 0 {
        return Err((400, "Negative offset provided".into()));
    }
    let start = (offset as u64).min(size);
    let want = if length < 0 {
        size - start
    } else {
        length as u64
    };
    let n = want.min(size - start).min(FILES_READ_MAX);
    let mut buf = vec![0u8; n as usize];
    let io = |e: std::io::Error| (500, format!("cannot read {path}: {e}"));
    f.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
    f.read_exact(&mut buf).map_err(io)?;
    Ok(chunk(String::from_utf8_lossy(&buf).into_owned(), start))
}

fn chunk(data: String, offset: u64) -> Value {
    serde_json::to_value(FileChunk { data, offset }).expect("a chunk serializes")
}

/// `POST /api/v1/executor`.
async fn executor_api(tx: mpsc::Sender<Event>, peer: Remote, req: Request) -> Response {
    if req.method() != axum::http::Method::POST {
        return text(405, "Expecting POST");
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return text(400, "cannot read the request body (16 MiB at most)");
    };
    let v = match parse_body(&parts.headers, &body, "executor::Call") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let call = match executor::parse(&v) {
        Ok(c) => c,
        Err(e) => return text(400, e),
    };
    let token = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    // Without a token, the kernel names the caller's account (a scan of its socket table).
    let uid = match token {
        Some(_) => None,
        None => tokio::task::spawn_blocking(move || peer.owner())
            .await
            .ok()
            .flatten(),
    };
    let proof = executor::Proof { token, uid };
    let ek = (call.framework_id.clone(), call.executor_id.clone());
    let (reply, answer) = oneshot::channel();
    if tx
        .send(Event::ExecutorCall(call, proof, reply))
        .await
        .is_err()
    {
        return text(503, "the agent is shutting down");
    }
    match answer.await {
        Ok(ExecAnswer::Status(code, msg)) => text(code, msg),
        Ok(ExecAnswer::Stream(rx, generation)) => {
            let guard = ExecStreamGuard {
                rx,
                tx,
                key: ek,
                generation,
            };
            let body = futures_util::stream::unfold(guard, |mut g| async move {
                let b = g.rx.recv().await?;
                Some((Ok::<Bytes, std::convert::Infallible>(b), g))
            });
            Response::builder()
                .status(200)
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from_stream(body))
                .expect("valid response")
        }
        Err(_) => text(503, "the agent is shutting down"),
    }
}

/// Tells the actor when an executor's stream ends (the executor went away).
struct ExecStreamGuard {
    rx: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Event>,
    key: ExecKey,
    generation: u64,
}

impl Drop for ExecStreamGuard {
    fn drop(&mut self) {
        let ev = Event::ExecutorStreamClosed(std::mem::take(&mut self.key), self.generation);
        send_from_drop(&self.tx, ev);
    }
}

fn state_view(a: &Actor) -> Value {
    let tasks = a
        .tasks
        .iter()
        .map(|((f, t), e)| SandboxTask {
            id: t.clone(),
            framework_id: f.clone(),
            state: e.state.clone(),
            sandbox: e.sandbox.clone(),
            detail: [
                ("container_id", json!(e.container_id)),
                ("pid", json!(e.pid)),
                ("unacknowledged_updates", json!(e.updates.len())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        })
        .collect();
    let executors: Vec<Value> = a
        .executors
        .iter()
        .map(|((f, e), x)| json!({"id": e, "framework_id": f, "container_id": x.container_id, "directory": x.sandbox,
                                   "pid": x.pid, "subscribed": x.stream.is_some(), "tasks": x.tasks, "queued_tasks": x.queued.len()}))
        .collect();
    let view = AgentState {
        id: a.agent_id.clone(),
        name: a.cfg.name.clone(),
        hostname: a.cfg.hostname.clone(),
        pid: format!("slave(1)@{}:{}", a.cfg.hostname, a.port),
        version: MESOS_VERSION.to_string(),
        master_hostname: a.master.clone(),
        resources: a.cfg.resources.summary(),
        attributes: a.cfg.attributes.clone(),
        isolation: if a.cfg.isolation.is_some() {
            "cgroups/cpu,cgroups/mem,cgroups/pids"
        } else {
            "none"
        }
        .to_string(),
        executors,
        tasks,
        completed_tasks: a.completed.iter().cloned().collect(),
    };
    serde_json::to_value(view).expect("the state serializes")
}

fn statistics(a: &Actor) -> Value {
    let list: Vec<Value> = a
        .tasks
        .iter()
        .filter_map(|((f, t), e)| {
            let slot = e.usage.as_ref()?.lock().ok()?;
            let u = slot.as_ref()?.usage();
            Some(json!({"executor_id": t, "framework_id": f, "container_id": e.container_id, "statistics": {
                "cpus_time_secs": u.cpus_time_secs, "cpus_quota_secs": if u.cpus_quota_us > 0 { u.cpus_quota_us as f64 / 1e6 } else { 0.0 },
                "cpus_period_secs": u.cpus_period_us as f64 / 1e6, "mem_rss_bytes": u.mem_usage_bytes, "mem_limit_bytes": u.mem_limit_bytes,
                "processes": u.processes, "oom_kills": u.oom_kills, "timestamp": now_ms() as f64 / 1000.0}}))
        })
        .collect();
    Value::Array(list)
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_as_the_user_they_name_and_root_only_when_allowed() {
        let accounts = |name: &str| match name {
            "root" => Ok(spawn::Account {
                name: name.into(),
                uid: 0,
                gid: 0,
            }),
            "alice" => Ok(spawn::Account {
                name: name.into(),
                uid: 1000,
                gid: 1000,
            }),
            _ => Err(AccountError::Unknown(name.into())),
        };
        let fw = |u: &str| json!({"user": u, "name": "f"});
        // The command's user wins over the framework's.
        let got = task_user(&json!({"user": "alice"}), &fw("root"), 0, false, accounts);
        assert_eq!(got.unwrap().unwrap().uid, 1000);
        assert_eq!(
            task_user(&json!({}), &fw("alice"), 0, false, accounts)
                .unwrap()
                .unwrap()
                .name,
            "alice"
        );
        // Root must be asked for.
        let e = task_user(&json!({}), &fw("root"), 0, false, accounts).unwrap_err();
        assert!(e.to_string().contains("--allow-root-tasks"), "{e}");
        assert_eq!(
            task_user(&json!({}), &fw("root"), 0, true, accounts)
                .unwrap()
                .unwrap()
                .uid,
            0
        );
        // Unknown users and missing names fail with the reason.
        assert_eq!(
            task_user(&json!({}), &fw("mallory"), 0, true, accounts),
            Err(AccountError::Unknown("mallory".into()))
        );
        assert!(matches!(
            task_user(&json!({}), &json!({}), 0, true, accounts),
            Err(AccountError::Unnamed { .. })
        ));
        // An agent that is not root runs tasks as itself, and only for its own user.
        assert_eq!(
            task_user(&json!({}), &fw("alice"), 1000, false, accounts),
            Ok(None)
        );
        assert!(matches!(
            task_user(&json!({}), &fw("root"), 1000, true, accounts),
            Err(AccountError::CannotSwitch { uid: 0, .. })
        ));
    }

    #[test]
    fn executor_api_and_files_are_for_this_host_only() {
        let peer = |remote: &str, local: &str| Remote {
            addr: remote.parse().unwrap(),
            local: Some(local.parse().unwrap()),
            cert: None,
        };
        assert!(peer("127.0.0.1:40000", "127.0.0.1:5051").same_host());
        assert!(
            peer("10.0.0.1:40000", "10.0.0.1:5051").same_host(),
            "from this host to its own address"
        );
        assert!(
            !peer("10.0.0.7:40000", "10.0.0.1:5051").same_host(),
            "another host"
        );
        assert!(!Remote {
            addr: "10.0.0.7:1".parse().unwrap(),
            local: None,
            cert: None,
        }
        .same_host());
    }

    /// Hole 5 of the trust issue: the same-host rule was checked on the raw path, so
    /// `/files/read.json` and `/slave(1)/files/read` served sandbox files to other hosts.
    #[test]
    fn the_same_host_rule_covers_every_alias_of_a_route() {
        for raw in [
            "/files/read",
            "/files/read/",
            "/files/read.json",
            "/slave(1)/files/read",
            "/slave(1)/files/read.json",
            "/slave(1)/files/read/",
            "/api/v1/executor",
            "/api/v1/executor.json",
            "/slave(1)/api/v1/executor",
            "/slave(1)/api/v1/executor.json",
        ] {
            assert!(local_only(&route_path(raw)), "{raw}");
        }
        for raw in [
            "/state",
            "/slave(1)/state.json",
            "/monitor/statistics.json",
            "/health",
        ] {
            assert!(!local_only(&route_path(raw)), "{raw}");
        }
        assert_eq!(route_path("/slave(1)/state.json"), "/state");
    }

    #[test]
    fn files_read_serves_sandboxes_only() {
        let dir = std::env::temp_dir().join(format!("yard-files-{}", std::process::id()));
        let sb = dir.join("sandboxes/f/t");
        std::fs::create_dir_all(&sb).unwrap();
        std::fs::write(sb.join("stdout"), "hello world").unwrap();
        std::fs::write(dir.join("secret"), "no").unwrap();
        let root = dir.join("sandboxes").display().to_string();
        let out = sb.join("stdout").display().to_string();
        assert_eq!(
            read_sandbox_file(&root, &out, 0, -1).unwrap(),
            json!({"data": "hello world", "offset": 0})
        );
        assert_eq!(
            read_sandbox_file(&root, &out, 6, 3).unwrap(),
            json!({"data": "wor", "offset": 6})
        );
        assert_eq!(
            read_sandbox_file(&root, &out, -1, -1).unwrap(),
            json!({"data": "", "offset": 11})
        );
        assert_eq!(
            read_sandbox_file(&root, &out, 50, -1).unwrap(),
            json!({"data": "", "offset": 11})
        );
        let escape = format!("{root}/f/t/../../../secret");
        assert_eq!(read_sandbox_file(&root, &escape, 0, -1).unwrap_err().0, 403);
        // A task links its sandbox to a file outside: the open refuses to follow it.
        std::os::unix::fs::symlink(dir.join("secret"), sb.join("link")).unwrap();
        let link = sb.join("link").display().to_string();
        assert_eq!(read_sandbox_file(&root, &link, 0, -1).unwrap_err().0, 403);
        std::os::unix::fs::symlink("/", sb.join("up")).unwrap();
        let through = format!("{}/up/etc/passwd", sb.display());
        assert_eq!(
            read_sandbox_file(&root, &through, 0, -1).unwrap_err().0,
            403
        );
        assert_eq!(
            read_sandbox_file(&root, &format!("{root}/nope"), 0, -1)
                .unwrap_err()
                .0,
            404
        );
        assert_eq!(read_sandbox_file(&root, &out, -2, -1).unwrap_err().0, 400);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
