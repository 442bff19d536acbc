//! `yard manager`: one per cluster. It peers with the center and registers its cluster (at boot,
//! on every change, and every report interval, always the whole cluster), answers its agents'
//! heartbeats with the nodes they must run, marks an agent lost when its heartbeats stop for
//! longer than `agent_timeout`, forwards its agents' metrics to the center in batches, and
//! carries out the center's commands on its agents.
//!
//! Its agents are kept in a store (`ops-manager-CLUSTER`): after a restart the manager knows
//! which agents it had, and reports those that do not come back as lost.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use yard_auth::exposition::family;
use yard_auth::http::Extension;
use yard_data::Value;
use yard_fabric::{Endpoint, Message, OverflowPolicy};
use yard_store::{Mutation, Stores};

use crate::artifacts::ArtifactStore;
use crate::nodes::ClusterConfig;
use crate::proto::{
    self, AgentView, ClusterReport, CommandKind, CommandSpec, ManagerView, Msg, ProgressRow,
    Sample, Task, TaskOutcome,
};
use crate::rollout::{self, Action, Rollout};
use crate::rpc::{self, Inbox};
use crate::OpsError;

/// Samples waiting to go to the center; beyond this the oldest are dropped (and counted).
pub const METRICS_BUFFER: usize = 200_000;
/// The center's well-known inbox.
pub const CENTER: &str = "<$>/ops/center/";
/// Where managers send metric batches (a separate inbox at the center, which drops the oldest
/// batches when it falls behind, rather than control messages).
pub const CENTER_METRICS: &str = "<$>/ops/center-metrics/batch";

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub cluster: String,
    /// The center's address (HOST:PORT).
    pub center: String,
    pub dir: PathBuf,
    pub config: ClusterConfig,
    /// An agent silent this long is lost.
    pub agent_timeout: Duration,
    /// A full report goes to the center at least this often.
    pub report_interval: Duration,
    /// How often agents sample metrics.
    pub metrics_interval: Duration,
}

struct AgentEntry {
    view: AgentView,
    last_seen: Instant,
}

struct State {
    agents: BTreeMap<String, AgentEntry>,
    /// Something changed since the last report.
    dirty: bool,
    metrics: VecDeque<Sample>,
}

struct Manager {
    ep: Endpoint,
    stores: Arc<Stores>,
    cfg: ManagerConfig,
    started_ms: u64,
    /// Bumped on every start so that agents re-read the node list.
    config_version: u64,
    cache: ArtifactStore,
    /// One owner of the cluster's state; a std mutex never held across an await.
    state: Mutex<State>,
    metrics_dropped: AtomicU64,
    /// Samples refused: not from the agent they name, or for another agent's series.
    metrics_refused: AtomicU64,
    reports_sent: AtomicU64,
    /// Publishes progress and metric batches to the center.
    publisher: yard_fabric::Client,
}

fn store_name(cluster: &str) -> String {
    format!("ops-manager-{cluster}")
}

pub async fn start(
    cfg: ManagerConfig,
    ep: Endpoint,
    stores: Arc<Stores>,
    shutdown: CancellationToken,
) -> Result<(Extension, JoinHandle<()>), OpsError> {
    crate::nodes::check_name("cluster", &cfg.cluster)?;
    cfg.config.validate()?;
    let mut cfg = cfg;
    cfg.dir = crate::absolute_dir(&cfg.dir)?;
    let store = store_name(&cfg.cluster);
    let saved =
        crate::open_own_store(&stores, &store, &cfg.dir.join("manager.db"), "manager").await?;
    let now = Instant::now();
    let mut agents = BTreeMap::new();
    for json in saved {
        if let Ok(view) = serde_json::from_str::<AgentView>(&json) {
            // Known from before the restart: a grace period to come back, then lost.
            agents.insert(
                view.name.clone(),
                AgentEntry {
                    view,
                    last_seen: now,
                },
            );
        }
    }
    if !agents.is_empty() {
        tracing::info!(agents = agents.len(), "agents known from the store");
    }
    let publisher = ep
        .attach("manager-publisher", vec![], 64, OverflowPolicy::DropOldest)
        .await
        .map_err(|e| OpsError::Inbox {
            name: "manager-publisher".into(),
            why: e.to_string(),
        })?;
    let m = Arc::new(Manager {
        publisher,
        started_ms: crate::now_ms() as u64,
        config_version: crate::now_ms() as u64,
        cache: ArtifactStore::new(cfg.dir.join("artifacts")),
        state: Mutex::new(State {
            agents,
            dirty: true,
            metrics: VecDeque::new(),
        }),
        metrics_dropped: AtomicU64::new(0),
        metrics_refused: AtomicU64::new(0),
        reports_sent: AtomicU64::new(0),
        ep: ep.clone(),
        stores,
        cfg,
    });
    let inbox = Inbox::open(
        &ep,
        "manager",
        vec![proto::inbox(ep.id())],
        8192,
        OverflowPolicy::DropNewest,
    )
    .await?;
    let live = Inbox::open(
        &ep,
        "manager-metrics",
        vec![proto::live_metrics_prefix(&m.cfg.cluster)],
        8192,
        OverflowPolicy::DropOldest,
    )
    .await?;
    let hook = m.clone();
    let metrics: yard_auth::http::MetricsHook =
        Arc::new(move |out: &mut String| hook.prometheus(out));
    let task = tokio::spawn({
        let m = m.clone();
        async move {
            let peering = {
                let ep = m.ep.clone();
                let addr = m.cfg.center.clone();
                tokio::spawn(async move {
                    match ep.peer(&addr).await {
                        Ok(Ok(id)) => tracing::info!(%addr, center = %id, "peered with the center"),
                        Ok(Err(e)) => {
                            tracing::warn!(%addr, "center not reached yet: {e}; re-dialing")
                        }
                        Err(e) => tracing::error!(%addr, "cannot peer with the center: {e}"),
                    }
                })
            };
            let tasks = [
                peering,
                tokio::spawn(serve_inbox(m.clone(), inbox)),
                tokio::spawn(collect_metrics(m.clone(), live)),
                tokio::spawn(report_loop(m.clone())),
                tokio::spawn(forward_metrics(m.clone())),
            ];
            shutdown.cancelled().await;
            for t in tasks {
                t.abort();
            }
        }
    });
    Ok((
        Extension {
            routes: None,
            classify: None,
            metrics: Some(metrics),
        },
        task,
    ))
}

impl Manager {
    fn prometheus(&self, out: &mut String) {
        let (up, lost) = {
            let s = self.state.lock().expect("manager state");
            let up = s.agents.values().filter(|a| a.view.state == "up").count();
            (up, s.agents.len() - up)
        };
        family(
            out,
            "yard_manager_agents",
            "gauge",
            "Agents of this cluster by state.",
            &[
                ("{state=\"up\"}".into(), up as f64),
                ("{state=\"lost\"}".into(), lost as f64),
            ],
        );
        family(
            out,
            "yard_manager_metrics_dropped_total",
            "counter",
            "Samples dropped because the buffer for the center was full.",
            &[(
                String::new(),
                self.metrics_dropped.load(Ordering::Relaxed) as f64,
            )],
        );
        family(
            out,
            "yard_manager_metrics_refused_total",
            "counter",
            "Samples refused: not published by the agent they name, or for another agent's series.",
            &[(
                String::new(),
                self.metrics_refused.load(Ordering::Relaxed) as f64,
            )],
        );
        family(
            out,
            "yard_manager_reports_total",
            "counter",
            "Reports sent to the center.",
            &[(
                String::new(),
                self.reports_sent.load(Ordering::Relaxed) as f64,
            )],
        );
    }

    fn report(&self) -> ClusterReport {
        let s = self.state.lock().expect("manager state");
        ClusterReport {
            cluster: self.cfg.cluster.clone(),
            manager: ManagerView {
                id: self.ep.id().to_string(),
                address: self.ep.config().listen.clone(),
                started_ms: self.started_ms,
            },
            agents: s.agents.values().map(|a| a.view.clone()).collect(),
        }
    }

    /// An agent's heartbeat: record it, answer with its nodes when its list is out of date.
    async fn heartbeat(&self, mut view: AgentView, version: u64) -> Msg {
        if let Err(e) = crate::nodes::check_name("agent", &view.name) {
            return Msg::refused("bad_request", e);
        }
        view.state = "up".into();
        view.last_seen_ms = crate::now_ms() as u64;
        let (persist, clash) = {
            let mut s = self.state.lock().expect("manager state");
            let now = Instant::now();
            match s.agents.get_mut(&view.name) {
                // Two live agents under one name: the second is refused.
                Some(e)
                    if e.view.id != view.id
                        && e.view.state == "up"
                        && now.duration_since(e.last_seen) < self.cfg.agent_timeout =>
                {
                    (false, Some(e.view.id.clone()))
                }
                Some(e) => {
                    let changed = e.view.id != view.id
                        || e.view.state != view.state
                        || e.view.address != view.address
                        || e.view.roles != view.roles
                        || nodes_differ(&e.view, &view)
                        || e.view.tasks != view.tasks
                        || e.view.tasks_total != view.tasks_total;
                    let identity = e.view.id != view.id || e.view.address != view.address;
                    if changed {
                        s.dirty = true;
                    }
                    let e = s.agents.get_mut(&view.name).expect("present");
                    e.view = view.clone();
                    e.last_seen = now;
                    (identity, None)
                }
                None => {
                    tracing::info!(agent = %view.name, address = %view.address, "agent joined");
                    s.agents.insert(
                        view.name.clone(),
                        AgentEntry {
                            view: view.clone(),
                            last_seen: now,
                        },
                    );
                    s.dirty = true;
                    (true, None)
                }
            }
        };
        if let Some(other) = clash {
            return Msg::refused(
                "duplicate_agent",
                format!(
                    "agent name {:?} is taken by the live agent {other}; give this one another --name",
                    view.name
                ),
            );
        }
        if persist {
            let mut stored = view.clone();
            stored.nodes.clear();
            let m = Mutation::Put {
                key: Value::string(view.name.clone()),
                value: Value::string(serde_json::to_string(&stored).expect("serializes")),
                expiry: None,
            };
            if let Err(e) = self.stores.write(&store_name(&self.cfg.cluster), m).await {
                tracing::warn!("cannot record agent {}: {e}", view.name);
            }
        }
        let nodes = (version != self.config_version)
            .then(|| self.cfg.config.nodes_for(&view.name, &view.roles));
        Msg::HeartbeatAck {
            cluster: self.cfg.cluster.clone(),
            config_version: self.config_version,
            nodes,
            metrics_interval_ms: self.cfg.metrics_interval.as_millis() as u64,
        }
    }

    /// Marks silent agents lost; true when any changed.
    fn expire(&self) -> bool {
        let mut s = self.state.lock().expect("manager state");
        let now = Instant::now();
        let mut changed = false;
        for a in s.agents.values_mut() {
            if a.view.state == "up" && now.duration_since(a.last_seen) > self.cfg.agent_timeout {
                tracing::warn!(agent = %a.view.name, "agent lost: no heartbeat for {:?}", self.cfg.agent_timeout);
                a.view.state = "lost".into();
                for n in &mut a.view.nodes {
                    n.health = "unknown".into();
                }
                for t in &mut a.view.tasks {
                    t.healthy = None;
                }
                changed = true;
            }
        }
        s.dirty |= changed;
        changed
    }

    fn agent_id(&self, name: &str) -> Result<String, String> {
        let s = self.state.lock().expect("manager state");
        match s.agents.get(name) {
            Some(a) if a.view.state == "up" => Ok(a.view.id.clone()),
            Some(_) => Err(format!("agent {name} is lost")),
            None => Err(format!("no agent {name} in cluster {}", self.cfg.cluster)),
        }
    }

    async fn progress(&self, row: &ProgressRow) {
        // Best effort: the final report (acknowledged) carries every row again.
        let _ = self
            .publisher
            .publish_system(
                format!("{CENTER}progress"),
                Msg::Progress(row.clone()).to_value(),
            )
            .await;
    }

    /// Carries out a command on this cluster: the [`Rollout`] core decides what happens next;
    /// this shell publishes progress, dispatches steps to agents, and reports the end.
    async fn run_command(self: &Arc<Self>, spec: CommandSpec) {
        let agents: Vec<AgentView> = {
            let s = self.state.lock().expect("manager state");
            s.agents.values().map(|a| a.view.clone()).collect()
        };
        let id = spec.id.clone();
        let artifact = match &spec.kind {
            CommandKind::Deploy { sha256, size, .. } => Some((sha256.clone(), *size)),
            _ => None,
        };
        let mut core = Rollout::new(spec, &self.cfg.cluster, &agents, crate::now_ms());
        // Each dispatched row answers once: the queue never holds more than the rows.
        let (answers, mut answered) = mpsc::channel(core.rows().max(1));
        let mut actions = core.start();
        self.perform(std::mem::take(&mut actions), &answers).await;
        let error = match artifact {
            Some((sha, size)) => self
                .fetch_artifact(&sha, size)
                .await
                .err()
                .map(|e| format!("cannot fetch the artifact from the center: {e}")),
            None => None,
        };
        actions = core.begin(error, crate::now_ms());
        loop {
            if let Some(done) = self.perform(std::mem::take(&mut actions), &answers).await {
                self.report_done(&id, done).await;
                return;
            }
            let left = core.deadline_ms().saturating_sub(crate::now_ms()).max(0);
            actions = tokio::select! {
                Some((row, answer)) = answered.recv() => core.answered(row, answer, crate::now_ms()),
                _ = tokio::time::sleep(Duration::from_millis(left as u64)) => core.tick(crate::now_ms()),
            };
        }
    }

    /// Performs a rollout's actions; returns its end, when it is one of them.
    async fn perform(
        self: &Arc<Self>,
        actions: Vec<Action>,
        answers: &mpsc::Sender<(usize, Result<TaskOutcome, String>)>,
    ) -> Option<Msg> {
        let mut done = None;
        for action in actions {
            match action {
                Action::Progress(row) => self.progress(&row).await,
                Action::Dispatch {
                    row,
                    agent,
                    task,
                    timeout,
                } => {
                    let me = self.clone();
                    let answers = answers.clone();
                    tokio::spawn(async move {
                        let answer = me.step(&agent, task, timeout).await;
                        let _ = answers.send((row, answer)).await;
                    });
                }
                Action::Done(msg) => done = Some(msg),
            }
        }
        done
    }

    /// One step on one agent.
    async fn step(
        &self,
        agent: &str,
        task: Task,
        timeout: Duration,
    ) -> Result<TaskOutcome, String> {
        let id = self.agent_id(agent)?;
        let answer = rpc::call(
            &self.ep,
            proto::to(&id, "task"),
            &Msg::Task(task),
            timeout + Duration::from_millis(rollout::ANSWER_GRACE_MS as u64),
        )
        .await?;
        match answer {
            Msg::TaskResult(o) => Ok(o),
            other => Err(format!("unexpected answer: {}", other.type_name())),
        }
    }

    /// The end of a command must reach the center: retried until it answers.
    async fn report_done(&self, id: &str, done: Msg) {
        for attempt in 0..30 {
            match rpc::call(
                &self.ep,
                format!("{CENTER}done"),
                &done,
                Duration::from_secs(3),
            )
            .await
            {
                Ok(_) => return,
                // Only a transport failure can go away; a refusal will not.
                Err(e) if !e.retryable() || attempt == 29 => {
                    tracing::warn!("cannot report the end of {id}: {e}");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Copies an artifact from the center into the manager's cache (verified).
    async fn fetch_artifact(&self, sha: &str, size: u64) -> Result<(), String> {
        if self.cache.has(sha) {
            return Ok(());
        }
        let mut w = self.cache.writer(sha).map_err(|e| e.to_string())?;
        while w.len() < size {
            let ask = Msg::FetchChunk {
                sha256: sha.into(),
                offset: w.len(),
                len: crate::agent::CHUNK,
            };
            let got = rpc::call(
                &self.ep,
                format!("{CENTER}chunk"),
                &ask,
                Duration::from_secs(30),
            )
            .await?;
            let Msg::Chunk { data, .. } = got else {
                return Err(format!("unexpected answer: {}", got.type_name()));
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| e.to_string())?;
            if bytes.is_empty() {
                return Err(format!(
                    "the artifact ended early at {} of {size} bytes",
                    w.len()
                ));
            }
            w.write(&bytes).map_err(|e| e.to_string())?;
        }
        w.finish().map(|_| ()).map_err(|e| e.to_string())
    }
}

fn nodes_differ(a: &AgentView, b: &AgentView) -> bool {
    a.nodes.len() != b.nodes.len()
        || a.nodes.iter().zip(&b.nodes).any(|(x, y)| {
            x.name != y.name
                || x.state != y.state
                || x.health != y.health
                || x.generation != y.generation
        })
}

async fn serve_inbox(m: Arc<Manager>, mut inbox: Inbox) {
    while let Some(batch) = inbox.next().await {
        for msg in batch {
            let m = m.clone();
            let client = inbox.client.clone();
            tokio::spawn(async move {
                let answer = handle(&m, &msg).await;
                rpc::answer(&client, &msg, answer).await;
            });
        }
    }
}

async fn handle(m: &Arc<Manager>, msg: &Message) -> Msg {
    match Msg::from_value(&msg.value) {
        Ok(Msg::Heartbeat {
            agent,
            config_version,
        }) => m.heartbeat(agent, config_version).await,
        Ok(Msg::Start(spec)) => {
            tracing::info!(id = %spec.id, op = spec.kind.name(), "command from the center");
            let m = m.clone();
            tokio::spawn(async move { m.run_command(spec).await });
            Msg::Accepted
        }
        Ok(Msg::Logs {
            agent,
            node,
            stream,
            max_bytes,
        }) => {
            let id = match m.agent_id(&agent) {
                Ok(id) => id,
                Err(e) => return Msg::refused("unknown_agent", e),
            };
            let ask = Msg::Logs {
                agent,
                node,
                stream,
                max_bytes,
            };
            match rpc::call(&m.ep, proto::to(&id, "logs"), &ask, Duration::from_secs(10)).await {
                Ok(answer) => answer,
                // The agent's own refusal (unknown_node, ...) reaches the center as it is.
                Err(rpc::CallError::Refused { code, message }) => Msg::refused(&code, message),
                Err(e) => Msg::refused("agent_error", e),
            }
        }
        Ok(Msg::FetchChunk {
            sha256,
            offset,
            len,
        }) => match m
            .cache
            .read_chunk(&sha256, offset, len.min(crate::agent::CHUNK))
        {
            Ok((bytes, total)) => Msg::Chunk {
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
                total,
            },
            Err(e) => Msg::refused("unknown_artifact", e.to_string()),
        },
        Ok(other) => Msg::refused(
            "bad_request",
            format!("a manager does not take {:?} messages", other.type_name()),
        ),
        Err(e) => Msg::refused("bad_request", e.to_string()),
    }
}

/// Reports the cluster to the center whenever it changed (at most every 200 ms) and at least
/// every report interval; marks silent agents lost.
async fn report_loop(m: Arc<Manager>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last = Instant::now() - m.cfg.report_interval;
    let mut last_error = String::new();
    loop {
        tick.tick().await;
        m.expire();
        let dirty = m.state.lock().expect("manager state").dirty;
        if !dirty && last.elapsed() < m.cfg.report_interval {
            continue;
        }
        m.state.lock().expect("manager state").dirty = false;
        let report = m.report();
        match rpc::call(
            &m.ep,
            format!("{CENTER}register"),
            &Msg::Register(report),
            Duration::from_secs(3),
        )
        .await
        {
            Ok(_) => {
                last = Instant::now();
                m.reports_sent.fetch_add(1, Ordering::Relaxed);
                last_error.clear();
            }
            Err(e) => {
                // Not delivered: send again at the next tick.
                m.state.lock().expect("manager state").dirty = true;
                let e = e.to_string();
                if e != last_error {
                    tracing::warn!("cannot report to the center: {e}");
                    last_error = e;
                }
            }
        }
    }
}

async fn collect_metrics(m: Arc<Manager>, mut live: Inbox) {
    while let Some(batch) = live.next().await {
        let mut s = m.state.lock().expect("manager state");
        for msg in batch {
            // Samples count only from a known agent's own endpoint, for its own series: nobody
            // else fakes an agent's history or grows the store with series of their choosing.
            let prefix = proto::live_metrics_prefix(&m.cfg.cluster);
            let agent = msg.topic.strip_prefix(&prefix).unwrap_or("");
            let known = s
                .agents
                .get(agent)
                .is_some_and(|a| *a.view.id == *msg.origin);
            if !known {
                m.metrics_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let own = format!("{}/{agent}/", m.cfg.cluster);
            if let Ok(Msg::Samples { samples }) = Msg::from_value(&msg.value) {
                for x in samples {
                    if !x.series.starts_with(&own) {
                        m.metrics_refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if s.metrics.len() >= METRICS_BUFFER {
                        s.metrics.pop_front();
                        m.metrics_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    s.metrics.push_back(x);
                }
            }
        }
    }
}

async fn forward_metrics(m: Arc<Manager>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let samples: Vec<Sample> = {
            let mut s = m.state.lock().expect("manager state");
            s.metrics.drain(..).collect()
        };
        if samples.is_empty() {
            continue;
        }
        for chunk in samples.chunks(20_000) {
            let msg = Msg::MetricsBatch {
                cluster: m.cfg.cluster.clone(),
                samples: chunk.to_vec(),
            };
            let _ = m
                .publisher
                .publish_system(CENTER_METRICS.to_string(), msg.to_value())
                .await;
        }
    }
}
