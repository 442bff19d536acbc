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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_fabric::{Client, Endpoint, OverflowPolicy};

use crate::container::{self, Container, Isolation, Limits};
use crate::master::{get_id, is_terminal, mid, MESOS_VERSION};
use crate::now_ms;
use crate::proto::{self, Registration, TaskReport, Wire};
use crate::resources::Resources;
use crate::server::json_response;

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
}

type Key = (String, String);

struct TaskEntry {
    framework_id: String,
    framework_info: Value,
    info: Value,
    state: String,
    latest: Value,
    /// Statuses not yet acknowledged, oldest first; the first is in flight.
    pending: VecDeque<Value>,
    sent_at_ms: Option<u64>,
    kill: Option<mpsc::Sender<u64>>,
    sandbox: PathBuf,
    container_id: String,
    pid: Option<u32>,
    usage: Option<Arc<std::sync::Mutex<Option<Container>>>>,
}

enum Event {
    Status(Key, Value),
    Pid(Key, u32),
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
    completed: VecDeque<Value>,
    port: u16,
    uuid_seed: u64,
    uuid_count: AtomicU64,
}

/// Starts the agent; `listener` serves its Mesos agent API.
pub async fn start(
    cfg: AgentConfig,
    ep: Endpoint,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    std::fs::create_dir_all(cfg.dir.join("sandboxes"))
        .map_err(|e| format!("cannot create {}: {e}", cfg.dir.display()))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let inbox = ep
        .attach(
            "rm-agent",
            vec![proto::inbox(ep.id())],
            INBOX_QUEUE,
            OverflowPolicy::DropNewest,
        )
        .await
        .map_err(|e| format!("cannot open the agent's inbox: {e}"))?;
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
        completed: VecDeque::new(),
        port,
        uuid_seed: u64::from_le_bytes(seed) ^ now_ms(),
        uuid_count: AtomicU64::new(0),
    };
    let app = Router::new().fallback(http).with_state(tx);
    let http_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app)
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
fn spawn_reaper(parent: &str) -> Result<std::process::Child, String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the yard binary for the task reaper: {e}"))?;
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
    c.spawn()
        .map_err(|e| format!("cannot start the task reaper: {e}"))
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
                }
            }
        }
        // Tasks stop with the agent.
        let running: Vec<_> = self.tasks.values().filter_map(|t| t.kill.clone()).collect();
        for k in running {
            let _ = k.send(0).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.tasks.values().any(|t| !is_terminal(&t.state))
            && tokio::time::Instant::now() < deadline
        {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Event::Status(k, s))) => self.status(k, s),
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

    fn request(&self, msg: Wire, done: fn(Result<Wire, String>) -> Event) {
        let Some(master) = self.master.clone() else {
            return;
        };
        let ep = self.ep.clone();
        let tx = self.events.clone();
        tokio::spawn(async move {
            let topic = format!("{}agent", proto::inbox(&master));
            let r = match ep
                .request_system(topic, msg.encode(), Duration::from_secs(5))
                .await
            {
                Ok(m) => Wire::decode(&m.value),
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
                            t.sent_at_ms = None;
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
        }
    }

    fn new_uuid(&self) -> String {
        let n = self.uuid_count.fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.uuid_seed.to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// A runner's status: stamped, queued for the master in order.
    fn status(&mut self, k: Key, mut s: Value) {
        s["uuid"] = json!(self.new_uuid());
        if let Some(id) = &self.agent_id {
            s["agent_id"] = mid(id);
        }
        let Some(t) = self.tasks.get_mut(&k) else {
            return;
        };
        t.state = s["state"].as_str().unwrap_or("").to_string();
        t.latest = s.clone();
        if is_terminal(&t.state) {
            t.kill = None;
        }
        t.pending.push_back(s);
    }

    async fn resend(&mut self, now: u64) {
        let (Some(master), Some(agent_id)) = (self.master.clone(), self.agent_id.clone()) else {
            return;
        };
        let retry = self.cfg.update_retry.as_millis() as u64;
        let topic = format!("{}agent", proto::inbox(&master));
        let mut sends = Vec::new();
        for t in self.tasks.values_mut() {
            let Some(head) = t.pending.front() else {
                continue;
            };
            if t.sent_at_ms
                .is_some_and(|at| now.saturating_sub(at) < retry)
            {
                continue;
            }
            t.sent_at_ms = Some(now);
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
                    self.launch(&framework_id, &framework_info, info);
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
                if t.pending
                    .front()
                    .and_then(|s| s.get("uuid"))
                    .and_then(Value::as_str)
                    == Some(uuid.as_str())
                {
                    t.pending.pop_front();
                    t.sent_at_ms = None;
                }
                if t.pending.is_empty() && is_terminal(&t.state) {
                    let t = self.tasks.remove(&k).expect("present");
                    self.completed.push_back(json!({"id": k.1, "framework_id": k.0, "state": t.state, "latest": t.latest, "sandbox": t.sandbox}));
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
            }
            Wire::FrameworkMessage {
                framework_id,
                executor_id,
                ..
            } => {
                tracing::info!(%framework_id, %executor_id, "framework message dropped: command tasks have no executor to deliver it to");
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
            pending: VecDeque::new(),
            sent_at_ms: None,
            kill: None,
            sandbox: PathBuf::new(),
            container_id: String::new(),
            pid: None,
            usage: None,
        }
    }

    fn launch(&mut self, framework_id: &str, framework_info: &Value, info: Value) {
        let tid = get_id(&info, "task_id").unwrap_or("").to_string();
        let k = (framework_id.to_string(), tid.clone());
        if self.tasks.contains_key(&k) {
            tracing::warn!(task = %tid, "launch of a task this agent already runs: ignored");
            return;
        }
        let container_id = yard_fabric::id::random_uuid();
        let sandbox = self
            .cfg
            .dir
            .join("sandboxes")
            .join(framework_id)
            .join(format!("{tid}-{}", &container_id[..8]));
        let (kill_tx, kill_rx) = mpsc::channel(4);
        let mut e = self.entry(framework_id, framework_info, info.clone());
        e.kill = Some(kill_tx);
        e.sandbox = sandbox.clone();
        e.container_id = container_id.clone();
        let slot = Arc::new(std::sync::Mutex::new(None));
        e.usage = Some(slot.clone());
        self.tasks.insert(k.clone(), e);
        let run = Runner {
            key: k,
            info,
            sandbox,
            container_id,
            iso: self.cfg.isolation.clone(),
            events: self.events.clone(),
            agent_endpoint: format!("{}:{}", self.cfg.hostname, self.port),
            slot,
        };
        tokio::spawn(run.run(kill_rx));
    }
}

struct Runner {
    key: Key,
    info: Value,
    sandbox: PathBuf,
    container_id: String,
    iso: Option<Isolation>,
    events: mpsc::Sender<Event>,
    agent_endpoint: String,
    slot: Arc<std::sync::Mutex<Option<Container>>>,
}

impl Runner {
    fn status(&self, state: &str, extra: Value) -> Value {
        let mut s = json!({
            "task_id": mid(&self.key.1), "state": state, "source": "SOURCE_EXECUTOR",
            "executor_id": mid(&self.key.1), "timestamp": now_ms() as f64 / 1000.0,
            "container_status": {"container_id": mid(&self.container_id)},
        });
        if let (Some(o), Some(x)) = (s.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        s
    }

    async fn send(&self, s: Value) {
        let _ = self.events.send(Event::Status(self.key.clone(), s)).await;
    }

    async fn fail(&self, reason: &str, message: String) {
        tracing::warn!(task = %self.key.1, "{message}");
        self.send(self.status("TASK_FAILED", json!({"reason": reason, "message": message})))
            .await;
    }

    async fn run(self, mut kill: mpsc::Receiver<u64>) {
        if self.info.get("executor").is_some() {
            self.fail("REASON_EXECUTOR_TERMINATED", "custom executors (ExecutorInfo) are not supported by this agent yet: launch a command task".into()).await;
            return;
        }
        self.send(self.status("TASK_STARTING", json!({}))).await;
        if let Err(e) = std::fs::create_dir_all(&self.sandbox) {
            return self
                .fail(
                    "REASON_CONTAINER_LAUNCH_FAILED",
                    format!("cannot create the sandbox {}: {e}", self.sandbox.display()),
                )
                .await;
        }
        let res = Resources::from_json(self.info.get("resources").unwrap_or(&json!([])))
            .unwrap_or_default();
        let limits = Limits {
            cpus_milli: res.scalar("cpus"),
            mem_milli: res.scalar("mem"),
        };
        let container = match &self.iso {
            Some(iso) => match iso.create(&self.container_id, limits) {
                Ok(c) => Some(c),
                Err(e) => {
                    return self
                        .fail(
                            "REASON_CONTAINER_LAUNCH_FAILED",
                            format!("cannot create the task's cgroups: {e}"),
                        )
                        .await
                }
            },
            None => None,
        };
        let fds = container
            .as_ref()
            .map(Container::join_fds)
            .unwrap_or_default();
        let cmd = &self.info["command"];
        let value = cmd.get("value").and_then(Value::as_str).unwrap_or("");
        let shell = cmd.get("shell").and_then(Value::as_bool).unwrap_or(true);
        let mut c = if shell {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(value);
            c
        } else {
            let mut c = tokio::process::Command::new(value);
            let args: Vec<&str> = cmd
                .get("arguments")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // arguments[0] is argv[0], as in execvp.
            c.args(args.iter().skip(1));
            c
        };
        let open = |name: &str| std::fs::File::create(self.sandbox.join(name));
        let (out, err) = match (open("stdout"), open("stderr")) {
            (Ok(o), Ok(e)) => (o, e),
            _ => {
                return self
                    .fail(
                        "REASON_CONTAINER_LAUNCH_FAILED",
                        "cannot create stdout/stderr in the sandbox".into(),
                    )
                    .await
            }
        };
        c.current_dir(&self.sandbox)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        if let Some(vars) = cmd
            .pointer("/environment/variables")
            .and_then(Value::as_array)
        {
            for v in vars {
                if let (Some(n), Some(val)) = (
                    v.get("name").and_then(Value::as_str),
                    v.get("value").and_then(Value::as_str),
                ) {
                    c.env(n, val);
                }
            }
        }
        c.env("MESOS_SANDBOX", &self.sandbox)
            .env("MESOS_DIRECTORY", &self.sandbox)
            .env("MESOS_TASK_ID", &self.key.1)
            .env("MESOS_FRAMEWORK_ID", &self.key.0)
            .env("MESOS_EXECUTOR_ID", &self.key.1)
            .env("MESOS_AGENT_ENDPOINT", &self.agent_endpoint);
        // SAFETY: child_setup only makes async-signal-safe calls on descriptors that stay open
        // in the parent until the spawn returns.
        unsafe {
            c.pre_exec(move || container::child_setup(&fds));
        }
        let mut child = match c.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                if let Some(ct) = container {
                    let _ = tokio::task::spawn_blocking(move || ct.destroy()).await;
                }
                return self
                    .fail(
                        "REASON_CONTAINER_LAUNCH_FAILED",
                        format!("cannot start {value:?}: {e}"),
                    )
                    .await;
            }
        };
        let pid = child.id().unwrap_or(0);
        *self.slot.lock().expect("usage slot") = container;
        let _ = self.events.send(Event::Pid(self.key.clone(), pid)).await;
        self.send(self.status("TASK_RUNNING", json!({"container_status": {"container_id": mid(&self.container_id), "executor_pid": pid}}))).await;
        let mut killed = false;
        let exit = tokio::select! {
            r = child.wait() => r,
            Some(grace) = kill.recv() => {
                killed = true;
                container::signal_group(pid, libc::SIGTERM);
                match tokio::time::timeout(Duration::from_millis(grace), child.wait()).await {
                    Ok(r) => r,
                    Err(_) => {
                        container::signal_group(pid, libc::SIGKILL);
                        child.wait().await
                    }
                }
            }
        };
        // Whatever the task left behind goes with its container.
        container::signal_group(pid, libc::SIGKILL);
        let ct = self.slot.lock().expect("usage slot").take();
        let oom = ct.as_ref().map(Container::oom_kills).unwrap_or(0) > 0;
        if let Some(ct) = ct {
            let _ = tokio::task::spawn_blocking(move || ct.destroy()).await;
        }
        use std::os::unix::process::ExitStatusExt;
        let (state, extra) = match exit {
            Err(e) => (
                "TASK_FAILED",
                json!({"reason": "REASON_COMMAND_EXECUTOR_FAILED", "message": format!("cannot wait for the task: {e}")}),
            ),
            Ok(_) if killed => (
                "TASK_KILLED",
                json!({"message": "Command terminated by a kill"}),
            ),
            Ok(st) if oom => (
                "TASK_FAILED",
                json!({"reason": "REASON_CONTAINER_LIMITATION_MEMORY",
                "message": format!("Memory limit exceeded: the kernel killed the task (limit {} MB)", limits.mem_milli / 1000),
                "limitation": {"resources": [{"name": "mem", "type": "SCALAR", "scalar": {"value": limits.mem_milli as f64 / 1000.0}}]},
                "exit": st.code()}),
            ),
            Ok(st) => match (st.code(), st.signal()) {
                (Some(0), _) => (
                    "TASK_FINISHED",
                    json!({"message": "Command exited with status 0"}),
                ),
                (Some(n), _) => (
                    "TASK_FAILED",
                    json!({"message": format!("Command exited with status {n}")}),
                ),
                (None, Some(sig)) => (
                    "TASK_FAILED",
                    json!({"message": format!("Command terminated with signal {sig}")}),
                ),
                _ => (
                    "TASK_FAILED",
                    json!({"message": "Command ended abnormally"}),
                ),
            },
        };
        self.send(self.status(state, extra)).await;
    }
}

// ---------------------------------------------------------------- HTTP

async fn http(State(tx): State<mpsc::Sender<Event>>, req: Request) -> Response {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let path = path
        .strip_prefix("/slave(1)")
        .unwrap_or(&path)
        .trim_end_matches(".json")
        .to_string();
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
        "/version" => json_response(200, &crate::views::version()),
        "/health" => (StatusCode::OK, "").into_response(),
        "/state" => read(Box::new(state_view)).await,
        "/monitor/statistics" => read(Box::new(statistics)).await,
        "/api/v1/executor" => (
            StatusCode::NOT_IMPLEMENTED,
            "the executor API is not available yet on this agent: launch command tasks",
        )
            .into_response(),
        other => (
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint: {other} (see /state, /monitor/statistics, /version, /health)"
            ),
        )
            .into_response(),
    }
}

fn state_view(a: &Actor) -> Value {
    let tasks: Vec<Value> = a
        .tasks
        .iter()
        .map(|((f, t), e)| json!({"id": t, "framework_id": f, "state": e.state, "sandbox": e.sandbox, "container_id": e.container_id,
                                   "pid": e.pid, "unacknowledged_updates": e.pending.len()}))
        .collect();
    json!({
        "version": MESOS_VERSION, "id": a.agent_id, "hostname": a.cfg.hostname, "name": a.cfg.name,
        "pid": format!("slave(1)@{}:{}", a.cfg.hostname, a.port), "master_hostname": a.master,
        "resources": a.cfg.resources.summary(), "attributes": a.cfg.attributes,
        "isolation": if a.cfg.isolation.is_some() { "cgroups/cpu,cgroups/mem,cgroups/pids" } else { "none" },
        "tasks": tasks, "completed_tasks": a.completed,
    })
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
