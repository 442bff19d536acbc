//! `yard center`: the operations center. It keeps the topology of every cluster (in the store
//! `ops-center`, so it survives restarts), relays commands to managers and gathers their
//! progress, keeps the metrics history ([`crate::tsdb`]), and serves the HTTP API
//! (docs/openapi.json). It never addresses an agent.
//!
//! One actor owns the topology, its change events and the commands (`CenterState`, over the
//! pure cores [`crate::topology`] and [`crate::commands`]); the HTTP handlers ask it through a
//! bounded inbox, and it reads the time from the configured [`Clock`]. Its select priorities are
//! written on `Actor`.
//!
//! Inboxes: `<$>/ops/center/` for control (registrations, progress, results, artifact chunks;
//! a queue of 8192 that drops the newest when full: senders time out and retry) and
//! `<$>/ops/center-metrics/` for metric batches (a queue of 1024 batches that drops the oldest
//! when the history store falls behind; `yard_center_metric_batches_dropped_total` counts them).
//!
//! The dashboard's live stream (`GET /v1/stream`, [`crate::stream`]): the actor writes each
//! frame once into a ring of [`FRAMES`] that every client reads; a client that falls further
//! behind than the ring gets a new snapshot instead of a gap. Each client's connection buffers
//! 64 frames; past that its own task waits (the actor never does).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_auth::exposition::{family, label};
use yard_auth::http::Extension;
use yard_auth::http::Rule;
use yard_auth::login::Logins;
use yard_auth::{Caller, Permission, Registry, Role};
use yard_data::Value;
use yard_fabric::{Endpoint, Message, OverflowPolicy};
use yard_store::{Mutation, Stores};

use crate::artifacts::ArtifactStore;
use crate::commands::{Action as CommandAction, CommandState, Commands, ManagerRef};
pub use crate::commands::{ClusterOutcome, CommandRecord};
use crate::manager::{CENTER, CENTER_METRICS};
use crate::proto::{self, CommandKind, Msg, ProgressRow, Sample};
use crate::rpc::{self, Inbox};
use crate::stream::{self as live, Resume};
use crate::topology::{Change, ClusterRecord, Topology};
use crate::tsdb::{Resolution, Retention, Tsdb};
use crate::{Clock, OpsError};

const STORE: &str = "ops-center";
/// Change events kept for `GET /v1/events`.
const EVENTS: usize = 10_000;
/// Finished commands kept for `GET /v1/commands`.
const COMMANDS: usize = 1_000;
/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

#[derive(Debug, Clone)]
pub struct CenterConfig {
    pub dir: PathBuf,
    /// A manager silent this long is marked lost.
    pub manager_timeout: Duration,
    pub retention: Retention,
    /// Where the center reads the time (its cores take it from there).
    pub clock: Arc<dyn Clock>,
    /// How `/v1/clusters/C/rm/...` reaches the clusters' Mesos masters; without one those
    /// routes answer 501.
    pub mesos: Option<Arc<dyn crate::rm_proxy::MesosProxy>>,
    /// The system's certificate authority and its join tokens, when the center holds them:
    /// hosts join through `/v1/join` (docs/SECURITY.md, joining a host).
    pub joins: Option<Arc<yard_tls::join::Joins>>,
}

/// `GET /v1/topology`: the center and every cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopologyView {
    pub center: CenterInfo,
    pub clusters: Vec<ClusterRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CenterInfo {
    pub id: String,
    pub address: String,
}

/// `GET /v1/commands`: one line per command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandSummary {
    pub id: String,
    pub op: String,
    /// Who started it (the credential's name).
    #[serde(default)]
    pub by: String,
    pub state: CommandState,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub clusters: std::collections::BTreeMap<String, ClusterOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandList {
    pub commands: Vec<CommandSummary>,
}

/// `POST /v1/commands`: what to run, and where (`cluster`, or `all`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartRequest {
    #[serde(flatten)]
    pub kind: CommandKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

/// `POST /v1/commands` answered: the new command's id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Started {
    pub id: String,
}

/// `GET /v1/nodes`: every node of every agent (of one cluster with `?cluster=`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeList {
    pub nodes: Vec<NodeRow>,
    /// Rows that match, over every page.
    #[serde(default)]
    pub total: usize,
    /// The `after` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRow {
    pub cluster: String,
    pub agent: String,
    pub agent_state: String,
    pub name: String,
    pub state: String,
    pub health: String,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub generation: u64,
}

/// `GET /v1/stats`: one row per cluster and their total.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub clusters: Vec<StatsRow>,
    pub total: StatsRow,
}

/// `GET /v1/metrics/query`: a series' points between `from` and `to` (Unix ms).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeriesPoints {
    pub series: String,
    pub from: u64,
    pub to: u64,
    pub resolution: Resolution,
    pub points: Vec<crate::tsdb::Point>,
}

/// `GET /v1/metrics/series`: the series names under a prefix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeriesList {
    pub series: Vec<String>,
    /// Names that match, beyond `limit` too.
    #[serde(default)]
    pub total: usize,
}

/// `POST /v1/artifacts` answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Uploaded {
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    pub ts: u64,
    #[serde(flatten)]
    pub change: Change,
}

/// The center's state. Its actor alone owns it; everything else asks the actor.
#[derive(Debug)]
struct CenterState {
    topology: Topology,
    events: VecDeque<Event>,
    next_event: u64,
    commands: Commands,
}

/// A question for the actor: it runs the closure on its state and the closure sends the answer.
type Job = Box<dyn FnOnce(&CenterState) + Send>;

/// The actor's inbox.
enum Input {
    /// Read the state (the HTTP API's views).
    Read(Job),
    /// Start a command on `target`; the answer is its id, or the refusal to send back.
    Start {
        kind: CommandKind,
        target: Target,
        timeout_s: u64,
        by: String,
        reply: oneshot::Sender<Result<String, NotStarted>>,
    },
    /// A manager did not take a command it was asked to run.
    NotTaken {
        id: String,
        cluster: String,
        error: String,
    },
}

/// Why a command was not started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum NotStarted {
    #[error("no cluster {0:?}")]
    UnknownCluster(String),
    #[error("no cluster is registered")]
    NoClusters,
    #[error("no node {0:?} in the clusters asked (name nodes AGENT/NODE)")]
    UnknownNode(String),
}

impl NotStarted {
    fn response(&self) -> Response {
        match self {
            NotStarted::UnknownCluster(_) => {
                error(StatusCode::NOT_FOUND, "unknown_cluster", self.to_string())
            }
            NotStarted::NoClusters => error(StatusCode::CONFLICT, "no_clusters", self.to_string()),
            NotStarted::UnknownNode(_) => {
                error(StatusCode::NOT_FOUND, "unknown_node", self.to_string())
            }
        }
    }
}

/// The clusters a command is for.
#[derive(Debug)]
enum Target {
    One(String),
    All,
}

/// What the center's HTTP handlers and metrics hook share: configuration, the handle to the
/// actor, and the history store (which has its own writer thread).
pub struct Center {
    ep: Endpoint,
    pub(crate) cfg: CenterConfig,
    /// The actor's inbox (bounded: a handler waits when it is full).
    tx: mpsc::Sender<Input>,
    /// Woken on every command change (followers long-poll on it).
    changed: Notify,
    /// The history store; queried on blocking threads, written by the writer thread.
    tsdb: Arc<Mutex<Tsdb>>,
    /// The newest value of each series (for stats), kept by the writer thread.
    latest: Arc<Mutex<HashMap<String, (u64, f64)>>>,
    artifacts: ArtifactStore,
    samples: Arc<AtomicU64>,
    batches_dropped: Arc<AtomicU64>,
    /// The topology's and commands' Prometheus families, written by the actor after each change
    /// (the metrics hook cannot wait for the actor).
    gauges: Mutex<String>,
    /// The live stream's ring: the actor writes each frame once, every client reads it.
    frames: broadcast::Sender<Arc<Frame>>,
    /// One-time login codes (the links `yard up` and `yard login-link` print).
    logins: Mutex<Logins>,
    /// Where a redeemed login code gets its token.
    registry: Arc<Registry>,
}

/// One frame of the live stream, written once by the actor.
#[derive(Debug)]
struct Frame {
    /// The topology event's sequence number (`None` for command frames).
    seq: Option<u64>,
    text: Bytes,
}

/// Frames the stream's ring holds; a client further behind gets a new snapshot.
pub const FRAMES: usize = 1024;
/// Commands and changes a snapshot carries.
const SNAPSHOT_RECENT: usize = 50;

/// The actor's inbox size.
const INPUTS: usize = 256;

pub async fn start(
    cfg: CenterConfig,
    ep: Endpoint,
    stores: Arc<Stores>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<(Extension, JoinHandle<()>), OpsError> {
    let mut cfg = cfg;
    cfg.dir = crate::absolute_dir(&cfg.dir)?;
    let saved = crate::open_own_store(&stores, STORE, &cfg.dir.join("center.db"), "center").await?;
    let mut topology = Topology::default();
    let now = cfg.clock.now_ms();
    for json in saved {
        if let Ok(mut c) = serde_json::from_str::<ClusterRecord>(&json) {
            // A grace period for its manager to report again.
            c.last_report_ms = now;
            c.reports = 0;
            topology.clusters.insert(c.name.clone(), c);
        }
    }
    tracing::info!(clusters = topology.clusters.len(), "topology loaded");
    let tsdb =
        Tsdb::open(&cfg.dir.join("metrics.db"), cfg.retention).map_err(|e| OpsError::Metrics {
            owner: "center",
            why: e.to_string(),
        })?;
    // Statistics start from the newest stored values, not from nothing.
    let mut latest = HashMap::new();
    for name in tsdb.series("") {
        if let Ok(Some(last)) = tsdb.last(&name) {
            latest.insert(name, last);
        }
    }
    let publisher = ep
        .attach("center-publisher", vec![], 1024, OverflowPolicy::DropOldest)
        .await
        .map_err(|e| OpsError::Inbox {
            name: "center-publisher".into(),
            why: e.to_string(),
        })?;
    let (tx, rx) = mpsc::channel(INPUTS);
    let center = Arc::new(Center {
        ep: ep.clone(),
        artifacts: ArtifactStore::new(cfg.dir.join("artifacts")),
        cfg,
        tx,
        changed: Notify::new(),
        tsdb: Arc::new(Mutex::new(tsdb)),
        latest: Arc::new(Mutex::new(latest)),
        samples: Arc::new(AtomicU64::new(0)),
        batches_dropped: Arc::new(AtomicU64::new(0)),
        gauges: Mutex::new(String::new()),
        frames: broadcast::channel(FRAMES).0,
        logins: Mutex::new(Logins::default()),
        registry,
    });
    let control = Inbox::open(
        &ep,
        "center",
        vec![CENTER.into()],
        8192,
        OverflowPolicy::DropNewest,
    )
    .await?;
    let metrics_inbox = Inbox::open(
        &ep,
        "center-metrics",
        vec!["<$>/ops/center-metrics/".into()],
        1024,
        OverflowPolicy::DropOldest,
    )
    .await?;
    debug_assert!(CENTER_METRICS.starts_with("<$>/ops/center-metrics/"));
    let (batches_tx, batches_rx) = mpsc::channel::<Vec<Sample>>(64);
    let writer = {
        let tsdb = center.tsdb.clone();
        let latest = center.latest.clone();
        let samples = center.samples.clone();
        let clock = center.cfg.clock.clone();
        std::thread::Builder::new()
            .name("center-tsdb".into())
            .spawn(move || write_history(tsdb, latest, samples, batches_rx, clock))
            .map_err(|e| OpsError::Metrics {
                owner: "center",
                why: format!("cannot start the history writer: {e}"),
            })?
    };
    let hook = center.clone();
    let metrics: yard_auth::http::MetricsHook =
        Arc::new(move |out: &mut String| hook.prometheus(out));
    let routes = routes(center.clone());
    let actor = Actor {
        c: center.clone(),
        state: CenterState {
            topology,
            events: VecDeque::new(),
            next_event: 1,
            commands: Commands::new(COMMANDS),
        },
        stores,
        publisher,
    };
    actor.refresh_gauges();
    let task = tokio::spawn({
        let c = center.clone();
        async move {
            let metrics_task = tokio::spawn(take_metrics(c, metrics_inbox, batches_tx));
            actor.run(control, rx, shutdown).await;
            metrics_task.abort();
            let _ = metrics_task.await;
            // The writer ends once its queue's sender (held by the metrics task) is gone.
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    });
    Ok((
        Extension {
            routes: Some(routes),
            classify: Some(std::sync::Arc::new(classify)),
            metrics: Some(metrics),
        },
        task,
    ))
}

/// The history writer: one transaction per batch; prunes once a minute.
fn write_history(
    tsdb: Arc<Mutex<Tsdb>>,
    latest: Arc<Mutex<HashMap<String, (u64, f64)>>>,
    count: Arc<AtomicU64>,
    mut rx: mpsc::Receiver<Vec<Sample>>,
    clock: Arc<dyn Clock>,
) {
    let mut last_prune = clock.now_ms();
    while let Some(batch) = rx.blocking_recv() {
        match tsdb.lock().expect("tsdb").insert(&batch) {
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("cannot store metrics: {e}"),
        }
        {
            let mut l = latest.lock().expect("latest");
            for s in &batch {
                let e = l.entry(s.series.clone()).or_insert((s.ts, s.value));
                if s.ts >= e.0 {
                    *e = (s.ts, s.value);
                }
            }
        }
        let now = clock.now_ms();
        if now.saturating_sub(last_prune) > 60_000 {
            last_prune = now;
            if let Err(e) = tsdb.lock().expect("tsdb").prune(now) {
                tracing::warn!("cannot prune metrics: {e}");
            }
        }
    }
}

async fn take_metrics(c: Arc<Center>, mut inbox: Inbox, tx: mpsc::Sender<Vec<Sample>>) {
    let mut seen_drops = 0;
    while let Some(batch) = inbox.next().await {
        let drops = inbox.client.outbox().drops();
        if drops > seen_drops {
            c.batches_dropped
                .fetch_add(drops - seen_drops, Ordering::Relaxed);
            seen_drops = drops;
        }
        for m in batch {
            if let Ok(Msg::MetricsBatch { samples, .. }) = Msg::from_value(&m.value) {
                if tx.send(samples).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The one owner of [`CenterState`]. Its loop takes, in this order of priority:
///
/// 1. shutdown;
/// 2. the clock's tick (every 500 ms: command deadlines, managers gone silent), first so that
///    deadlines hold however busy the inboxes are;
/// 3. the control inbox from managers (registrations, progress, results, artifact chunks);
/// 4. its own inbox (the HTTP API's reads and commands; [`INPUTS`] deep, a full inbox makes the
///    handler wait).
///
/// It awaits only its own store's writes and publishing progress; artifact chunks are read on
/// blocking threads and answered from there.
struct Actor {
    c: Arc<Center>,
    state: CenterState,
    stores: Arc<Stores>,
    publisher: yard_fabric::Client,
}

impl Actor {
    async fn run(
        mut self,
        mut control: Inbox,
        mut rx: mpsc::Receiver<Input>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The gauges walk every agent: written once per tick at most, when something changed
        // (reads change nothing).
        let mut stale = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let changed = self.tick().await;
                    if std::mem::take(&mut stale) || changed {
                        self.refresh_gauges();
                    }
                }
                batch = control.next() => {
                    let Some(batch) = batch else { break };
                    for m in batch {
                        if let Some(answer) = self.control(&control.client, &m).await {
                            rpc::answer(&control.client, &m, answer).await;
                        }
                    }
                    stale = true;
                }
                Some(input) = rx.recv() => {
                    stale |= !matches!(input, Input::Read(_));
                    self.input(input);
                }
            }
        }
    }

    fn now(&self) -> u64 {
        self.c.cfg.clock.now_ms()
    }

    /// Command deadlines and silent managers; whether anything changed.
    async fn tick(&mut self) -> bool {
        let now = self.now();
        let running: Vec<String> = self
            .state
            .commands
            .list()
            .filter(|r| r.state == CommandState::Running)
            .map(|r| r.id.clone())
            .collect();
        let commands = self.state.commands.tick(now);
        if commands {
            for id in running {
                self.announce(&id);
            }
        }
        let bound = self.c.cfg.manager_timeout.as_millis() as u64;
        let ch = self.state.topology.expire(now, bound);
        let changed = commands || !ch.is_empty();
        let lost: Vec<String> = ch
            .iter()
            .filter_map(|c| match c {
                Change::ManagerLost { cluster, .. } => Some(cluster.clone()),
                _ => None,
            })
            .collect();
        self.log(ch);
        for name in lost {
            tracing::warn!(cluster = %name, "manager lost: no report for {:?}", self.c.cfg.manager_timeout);
            if let Some(rec) = self.state.topology.clusters.get(&name).cloned() {
                self.persist(&rec).await;
            }
        }
        changed
    }

    fn log(&mut self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let ts = self.now();
        let s = &mut self.state;
        let first = s.next_event;
        for change in changes {
            tracing::info!(?change, "topology");
            let seq = s.next_event;
            s.next_event += 1;
            s.events.push_back(Event { seq, ts, change });
            if s.events.len() > EVENTS {
                s.events.pop_front();
            }
        }
        if self.c.frames.receiver_count() > 0 {
            for f in topology_frames(&self.state, first.saturating_sub(1)) {
                let _ = self.c.frames.send(Arc::new(f));
            }
        }
    }

    /// Tells followers (long polls and the live stream) that command `id` changed.
    fn announce(&self, id: &str) {
        self.c.changed.notify_waiters();
        if self.c.frames.receiver_count() == 0 {
            return;
        }
        if let Some(r) = self.state.commands.get(id) {
            let data = serde_json::to_string(&summary(r)).expect("serializes");
            let _ = self.c.frames.send(Arc::new(Frame {
                seq: None,
                text: live::frame("command", None, &data).into(),
            }));
        }
    }

    async fn persist(&self, rec: &ClusterRecord) {
        let m = Mutation::Put {
            key: Value::string(rec.name.clone()),
            value: Value::string(serde_json::to_string(rec).expect("serializes")),
            expiry: None,
        };
        if let Err(e) = self.stores.write(STORE, m).await {
            tracing::warn!(cluster = %rec.name, "cannot persist the topology: {e}");
        }
    }

    /// A message from a manager; `None` when the answer goes out later (artifact chunks).
    async fn control(
        &mut self,
        client: &Arc<yard_fabric::Client>,
        m: &Arc<Message>,
    ) -> Option<Msg> {
        let answer = match Msg::from_value(&m.value) {
            Ok(Msg::Register(report)) => {
                if let Err(e) = crate::nodes::check_name("cluster", &report.cluster) {
                    return Some(Msg::refused("bad_request", e));
                }
                let before = self.state.topology.clusters.get(&report.cluster).cloned();
                let now = self.now();
                let cluster = report.cluster.clone();
                let ch = self.state.topology.apply(report, now);
                self.log(ch);
                let after = self.state.topology.clusters[&cluster].clone();
                // Persist what changed beyond the report time.
                let same = before.is_some_and(|b| {
                    b.agents == after.agents
                        && b.manager == after.manager
                        && b.manager_state == after.manager_state
                });
                if !same {
                    self.persist(&after).await;
                }
                Msg::Registered {
                    center: self.c.ep.id().to_string(),
                    manager_timeout_ms: self.c.cfg.manager_timeout.as_millis() as u64,
                }
            }
            Ok(Msg::Progress(row)) => {
                for action in self.state.commands.progress(row) {
                    if let CommandAction::Publish(row) = action {
                        self.announce(&row.id);
                        let topic = proto::command_topic(&row.id);
                        let _ = self
                            .publisher
                            .publish_system(topic, Msg::Progress(row).to_value())
                            .await;
                    }
                }
                Msg::Accepted
            }
            Ok(Msg::CommandDone {
                id,
                cluster,
                ok,
                rows,
                error,
            }) => {
                self.finish(&id, &cluster, ok, rows, error);
                Msg::Accepted
            }
            Ok(Msg::FetchChunk {
                sha256,
                offset,
                len,
            }) => {
                rpc::answer_chunk(
                    self.c.artifacts.clone(),
                    client.clone(),
                    m.clone(),
                    (sha256, offset, len),
                );
                return None;
            }
            Ok(other) => Msg::refused(
                "bad_request",
                format!("the center does not take {:?} messages", other.type_name()),
            ),
            Err(e) => Msg::refused("bad_request", e.to_string()),
        };
        Some(answer)
    }

    fn finish(
        &mut self,
        id: &str,
        cluster: &str,
        ok: bool,
        rows: Vec<ProgressRow>,
        error: Option<String>,
    ) {
        let now = self.now();
        if self
            .state
            .commands
            .finish(id, cluster, ok, rows, error, now)
        {
            self.announce(id);
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Read(job) => job(&self.state),
            Input::NotTaken { id, cluster, error } => {
                self.finish(&id, &cluster, false, Vec::new(), Some(error));
            }
            Input::Start {
                kind,
                target,
                timeout_s,
                by,
                reply,
            } => {
                let _ = reply.send(self.start_command(kind, target, timeout_s, by));
            }
        }
    }

    /// Starts a command on clusters: the [`Commands`] core registers it and names the
    /// managers to ask; its clock (the actor's tick) covers a manager that never answers.
    fn start_command(
        &mut self,
        kind: CommandKind,
        target: Target,
        timeout_s: u64,
        by: String,
    ) -> Result<String, NotStarted> {
        let clusters = match target {
            Target::One(name) if !self.state.topology.clusters.contains_key(&name) => {
                return Err(NotStarted::UnknownCluster(name))
            }
            Target::One(name) => vec![name],
            Target::All => self.state.topology.clusters.keys().cloned().collect(),
        };
        if clusters.is_empty() {
            return Err(NotStarted::NoClusters);
        }
        // A restart of named nodes: each runs in one of the clusters asked.
        if let CommandKind::Restart { nodes, .. } = &kind {
            let known = |x: &String| {
                clusters.iter().any(|c| {
                    self.state.topology.clusters[c].agents.iter().any(|a| {
                        a.nodes
                            .iter()
                            .any(|n| *x == format!("{}/{}", a.name, n.name))
                    })
                })
            };
            if let Some(x) = nodes.iter().find(|x| !known(x)) {
                return Err(NotStarted::UnknownNode(x.clone()));
            }
        }
        let now = self.now();
        let s = &mut self.state;
        let topology = &s.topology;
        let manager = |name: &str| {
            topology.clusters.get(name).map(|c| ManagerRef {
                id: c.manager.id.clone(),
                up: c.manager_state == "up",
            })
        };
        let (id, actions) = s
            .commands
            .start(kind, clusters, manager, timeout_s, by, now);
        for action in actions {
            let CommandAction::Ask {
                cluster,
                manager,
                spec,
            } = action
            else {
                continue;
            };
            let (ep, tx) = (self.c.ep.clone(), self.c.tx.clone());
            tokio::spawn(async move {
                let ask = Msg::Start(spec.clone());
                let to = proto::to(&manager, "start");
                if let Err(e) = rpc::call(&ep, to, &ask, Duration::from_secs(10)).await {
                    let error = format!("the manager did not take the command: {e}");
                    let _ = tx
                        .send(Input::NotTaken {
                            id: spec.id,
                            cluster,
                            error,
                        })
                        .await;
                }
            });
        }
        self.announce(&id);
        Ok(id)
    }

    /// Writes the gauges the metrics hook shows.
    fn refresh_gauges(&self) {
        let s = &self.state;
        let mut agents = Vec::new();
        let mut nodes = Vec::new();
        for c in s.topology.clusters.values() {
            let l = label(&c.name);
            let up = c.agents.iter().filter(|a| a.state == "up").count();
            agents.push((format!("{{cluster=\"{l}\",state=\"up\"}}"), up as f64));
            agents.push((
                format!("{{cluster=\"{l}\",state=\"lost\"}}"),
                (c.agents.len() - up) as f64,
            ));
            let n: Vec<_> = c.agents.iter().flat_map(|a| &a.nodes).collect();
            let healthy = n.iter().filter(|n| n.health == "healthy").count();
            nodes.push((
                format!("{{cluster=\"{l}\",health=\"healthy\"}}"),
                healthy as f64,
            ));
            nodes.push((
                format!("{{cluster=\"{l}\",health=\"other\"}}"),
                (n.len() - healthy) as f64,
            ));
        }
        let mut out = String::new();
        family(
            &mut out,
            "yard_center_clusters",
            "gauge",
            "Clusters registered.",
            &[(String::new(), s.topology.clusters.len() as f64)],
        );
        family(
            &mut out,
            "yard_center_agents",
            "gauge",
            "Agents per cluster and state.",
            &agents,
        );
        family(
            &mut out,
            "yard_center_nodes",
            "gauge",
            "Nodes per cluster and health.",
            &nodes,
        );
        family(
            &mut out,
            "yard_center_commands_running",
            "gauge",
            "Commands under way.",
            &[(String::new(), s.commands.running() as f64)],
        );
        *self.c.gauges.lock().expect("gauges") = out;
    }
}

impl Center {
    /// Runs `f` on the actor's state and returns what it returns; a 503 answer when the center
    /// is shutting down.
    async fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CenterState) -> T + Send + 'static,
    ) -> Result<T, Response> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |s: &CenterState| {
            let _ = tx.send(f(s));
        });
        let gone = || {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the center is shutting down",
            )
        };
        self.tx.send(Input::Read(job)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// [`Center::ask`] for a handler whose whole answer comes from the state.
    async fn view(&self, f: impl FnOnce(&CenterState) -> Response + Send + 'static) -> Response {
        self.ask(f).await.unwrap_or_else(|r| r)
    }

    fn prometheus(&self, out: &mut String) {
        out.push_str(&self.gauges.lock().expect("gauges"));
        family(
            out,
            "yard_center_samples_total",
            "counter",
            "Metric samples stored.",
            &[(String::new(), self.samples.load(Ordering::Relaxed) as f64)],
        );
        family(
            out,
            "yard_center_metric_batches_dropped_total",
            "counter",
            "Metric batches dropped because the history store fell behind.",
            &[(
                String::new(),
                self.batches_dropped.load(Ordering::Relaxed) as f64,
            )],
        );
    }
}

fn stats_of(s: &CenterState, latest: &HashMap<String, (u64, f64)>, only: Option<&str>) -> Stats {
    let mut rows = Vec::new();
    let mut total = StatsRow::default();
    for c in s.topology.clusters.values() {
        if only.is_some_and(|o| o != c.name) {
            continue;
        }
        let mut r = StatsRow {
            cluster: c.name.clone(),
            manager: c.manager_state.clone(),
            ..Default::default()
        };
        let mut cpu = Vec::new();
        for a in &c.agents {
            if a.state == "up" {
                r.agents_up += 1;
            } else {
                r.agents_lost += 1;
            }
            for n in &a.nodes {
                r.nodes += 1;
                r.nodes_running += u64::from(n.state == "running");
                r.nodes_healthy += u64::from(n.health == "healthy");
                r.restarts += n.restarts;
            }
            let key = |m: &str| format!("{}/{}/{m}", c.name, a.name);
            if let Some((_, v)) = latest.get(&key("cpu")) {
                cpu.push(*v);
            }
            if let Some((_, v)) = latest.get(&key("mem_used")) {
                r.mem_used_bytes += v;
            }
        }
        r.cpu_avg_pct = (!cpu.is_empty()).then(|| cpu.iter().sum::<f64>() / cpu.len() as f64);
        total.add(&r);
        rows.push(r);
    }
    Stats {
        clusters: rows,
        total,
    }
}

/// One cluster's figures (`cluster` is `*` in the total).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsRow {
    pub cluster: String,
    pub manager: String,
    pub agents_up: u64,
    pub agents_lost: u64,
    pub nodes: u64,
    pub nodes_running: u64,
    pub nodes_healthy: u64,
    pub restarts: u64,
    pub cpu_avg_pct: Option<f64>,
    pub mem_used_bytes: f64,
}

impl StatsRow {
    fn add(&mut self, r: &StatsRow) {
        self.cluster = "*".into();
        self.agents_up += r.agents_up;
        self.agents_lost += r.agents_lost;
        self.nodes += r.nodes;
        self.nodes_running += r.nodes_running;
        self.nodes_healthy += r.nodes_healthy;
        self.restarts += r.restarts;
        self.mem_used_bytes += r.mem_used_bytes;
        if let Some(c) = r.cpu_avg_pct {
            // A plain average over clusters that report one.
            self.cpu_avg_pct = Some(match self.cpu_avg_pct {
                Some(t) => (t + c) / 2.0,
                None => c,
            });
        }
    }
}

// ---- HTTP API ----

pub(crate) fn error(status: StatusCode, code: &str, context: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "context": context.into()})),
    )
        .into_response()
}

/// The rule of each of the center's routes (`None`: not one of them).
pub fn classify(method: &Method, path: &str) -> Option<Rule> {
    use Permission::*;
    let read = *method == Method::GET || *method == Method::HEAD;
    // The dashboard's files hold no data: anyone may load them; what they show comes from
    // the routes below, under the caller's credential.
    if read && (path == "/" || path == "/ui" || path.starts_with("/ui/")) {
        return Some(Rule::new(Open));
    }
    let seg: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
    let rule = match (seg.as_slice(), method.as_str()) {
        (["openapi.json"] | ["whoami"], _) if read => Rule::new(Open),
        (["stream"], _) if read => Rule::new(Read),
        // The one-time code in the body is the credential (the handler checks it).
        (["login"], "POST") => Rule::new(Open).own_credential(),
        (["login", "links"], "POST") => Rule::new(Admin),
        // The root certificate is public; a joining host checks it against its token.
        (["ca"], _) if read => Rule::new(Open),
        // The revocation list is public (and signed).
        (["ca", "crl"], _) if read => Rule::new(Open),
        // The token's secret in the body is the credential (the handler checks it).
        (["join"], "POST") => Rule::new(Open).own_credential(),
        // The TLS certificate the caller presented is the credential (the handler checks it).
        (["renew"], "POST") => Rule::new(Open).own_credential(),
        (["join", "tokens"], "GET" | "POST") | (["join", "tokens", _], "DELETE") => {
            Rule::new(Admin)
        }
        (
            ["topology"]
            | ["clusters"]
            | ["clusters", _]
            | ["clusters", _, "links"]
            | ["nodes"]
            | ["events"],
            _,
        ) if read => Rule::new(Read),
        (["commands"] | ["metrics", "query"] | ["metrics", "series"] | ["stats"], _) if read => {
            Rule::new(Read)
        }
        // What programs printed: command outputs and node logs.
        (["commands", _] | ["logs", _, _, _], _) if read => Rule::new(Outputs),
        (["commands"], "POST") => Rule::new(Command),
        (["artifacts"], "POST") => Rule::bytes(Command),
        // A cluster's resource manager, passed to its Mesos master (rm_proxy::route).
        (["clusters", _, "rm", rest @ ..], m) => {
            Rule::new(crate::rm_proxy::route(m, &rest.join("/"))?.permission)
        }
        _ => return None,
    };
    Some(rule)
}

fn routes(c: Arc<Center>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/topology", get(topology))
        .route("/v1/clusters", get(clusters))
        .route("/v1/clusters/{name}", get(cluster))
        .route(
            "/v1/clusters/{name}/rm/{*rest}",
            get(rm).post(rm).delete(rm),
        )
        .route("/v1/clusters/{name}/links", get(links))
        .route("/v1/nodes", get(nodes))
        .route("/v1/logs/{cluster}/{agent}/{node}", get(logs))
        .route("/v1/events", get(events))
        .route("/v1/commands", get(commands).post(start_command))
        .route("/v1/commands/{id}", get(command))
        .route("/v1/artifacts", post(upload))
        .route("/v1/metrics/query", get(query))
        .route("/v1/metrics/series", get(series))
        .route("/v1/stats", get(stats))
        .route("/v1/stream", get(stream))
        .route("/v1/whoami", get(whoami))
        .route("/v1/login", post(login))
        .route("/v1/login/links", post(login_link))
        .route("/v1/ca", get(crate::joins::root))
        .route("/v1/ca/crl", get(crate::joins::crl))
        .route("/v1/join", post(crate::joins::join))
        .route("/v1/renew", post(crate::joins::renew))
        .route(
            "/v1/join/tokens",
            get(crate::joins::list).post(crate::joins::create),
        )
        .route(
            "/v1/join/tokens/{id}",
            axum::routing::delete(crate::joins::revoke),
        )
        .route("/", get(to_dashboard))
        .route("/ui", get(to_dashboard))
        .route("/ui/", get(dashboard_file))
        .route("/ui/{*path}", get(dashboard_file))
        .with_state(c)
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn topology(State(c): State<Arc<Center>>) -> Response {
    let center = CenterInfo {
        id: c.ep.id().to_string(),
        address: c.ep.config().listen.clone(),
    };
    c.view(move |s| {
        Json(TopologyView {
            center,
            clusters: s.topology.clusters.values().cloned().collect(),
        })
        .into_response()
    })
    .await
}

async fn clusters(State(c): State<Arc<Center>>) -> Response {
    c.view(|s| {
        let list: Vec<_> = s
            .topology
            .clusters
            .values()
            .map(|r| {
                json!({
                    "name": r.name, "manager": r.manager, "manager_state": r.manager_state,
                    "agents": r.agents.len(),
                    "agents_up": r.agents.iter().filter(|a| a.state == "up").count(),
                    "registrations": r.registrations, "last_report_ms": r.last_report_ms,
                    "reports": r.reports,
                })
            })
            .collect();
        Json(json!({"clusters": list})).into_response()
    })
    .await
}

async fn cluster(State(c): State<Arc<Center>>, Path(name): Path<String>) -> Response {
    c.view(move |s| match s.topology.clusters.get(&name) {
        Some(r) => Json(r).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_cluster",
            format!("no cluster {name:?}"),
        ),
    })
    .await
}

/// `/v1/clusters/C/rm/...`: passed to the Mesos master cluster C's manager reported, with the
/// caller's credential (see [`crate::rm_proxy`]).
async fn rm(
    State(c): State<Arc<Center>>,
    method: axum::http::Method,
    Path((name, rest)): Path<(String, String)>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(route) = crate::rm_proxy::route(method.as_str(), &rest) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{method} /v1/clusters/{name}/rm/{rest} is not a route of the resource manager (state, agents, frameworks, tasks, services)"),
        );
    };
    let Some(proxy) = c.cfg.mesos.clone() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "no_rm_proxy",
            "this center was started without a way to reach the Mesos masters",
        );
    };
    let looked = name.clone();
    let addr = match c
        .ask(move |s| s.topology.clusters.get(&looked).map(|r| r.manager.mesos.clone()))
        .await
    {
        Err(r) => return r,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_cluster",
                format!("no cluster {name:?}"),
            )
        }
        Ok(Some(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                "no_rm",
                format!("the manager of cluster {name:?} runs no Mesos master (it was started with --mesos-listen off)"),
            )
        }
        Ok(Some(Some(addr))) => addr,
    };
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let pending = match route.target {
        crate::rm_proxy::Target::TaskLog { task } => {
            let (stderr, offset) = match crate::rm_proxy::task_log_query(raw.as_deref()) {
                Ok(q) => q,
                Err(why) => return error(StatusCode::BAD_REQUEST, "bad_request", why),
            };
            proxy.task_log(crate::rm_proxy::TaskLog {
                addr,
                task,
                stderr,
                offset,
                authorization,
            })
        }
        crate::rm_proxy::Target::Master { method, path } => {
            proxy.forward(crate::rm_proxy::Forward {
                addr,
                method,
                path: format!("{path}{}", crate::rm_proxy::query(raw.as_deref())),
                body: body.to_vec(),
                authorization,
            })
        }
    };
    match pending.await {
        Ok(a) => {
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let ct = a
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into());
            (status, [(axum::http::header::CONTENT_TYPE, ct)], a.body).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "rm_unreachable", e.to_string()),
    }
}

#[derive(Deserialize)]
struct NodesQuery {
    cluster: Option<String>,
    /// Rows whose cluster, agent, node name or state contains this.
    q: Option<String>,
    /// Rows per page (at most 1000; all of them without it).
    limit: Option<usize>,
    /// Rows after this `cluster/agent/node` (the previous page's `next`).
    after: Option<String>,
}

async fn nodes(State(c): State<Arc<Center>>, Query(q): Query<NodesQuery>) -> Response {
    c.view(move |s| {
        let mut out = Vec::new();
        for cl in s.topology.clusters.values() {
            if q.cluster.as_ref().is_some_and(|x| *x != cl.name) {
                continue;
            }
            for a in &cl.agents {
                for n in &a.nodes {
                    out.push(NodeRow {
                        cluster: cl.name.clone(),
                        agent: a.name.clone(),
                        agent_state: a.state.clone(),
                        name: n.name.clone(),
                        state: n.state.clone(),
                        health: n.health.clone(),
                        pid: n.pid,
                        restarts: n.restarts,
                        generation: n.generation,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.cluster, &a.agent, &a.name).cmp(&(&b.cluster, &b.agent, &b.name)));
        Json(page_nodes(out, &q)).into_response()
    })
    .await
}

#[derive(Deserialize)]
struct LogsQuery {
    stream: Option<String>,
    max_bytes: Option<u64>,
    /// The `x-yard-log-next` of the previous read: carry on from there.
    after: Option<String>,
}

/// The manager endpoint id of a cluster, or the 404 that says there is no such cluster.
async fn manager_of(c: &Center, cluster: &str) -> Result<String, Response> {
    let name = cluster.to_string();
    let id = c
        .ask(move |s| s.topology.clusters.get(&name).map(|r| r.manager.id.clone()))
        .await?;
    id.ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "unknown_cluster",
            format!("no cluster {cluster:?}"),
        )
    })
}

/// `GET /v1/clusters/C/links`: the peer links of the cluster's manager, as it sees them (its
/// queue to each agent, to the center and to any peer, with drops), asked over the mesh.
async fn links(State(c): State<Arc<Center>>, Path(cluster): Path<String>) -> Response {
    let manager = match manager_of(&c, &cluster).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let to = proto::to(&manager, "links");
    match rpc::call(&c.ep, to, &Msg::Links, Duration::from_secs(5)).await {
        Ok(Msg::LinksAre { endpoint, links }) => {
            Json(json!({"cluster": cluster, "endpoint": endpoint, "links": links})).into_response()
        }
        Ok(other) => error(StatusCode::BAD_GATEWAY, "bad_answer", other.type_name()),
        Err(e) => error(StatusCode::BAD_GATEWAY, "manager_error", e.to_string()),
    }
}

async fn logs(
    State(c): State<Arc<Center>>,
    Path((cluster, agent, node)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> Response {
    let manager = match manager_of(&c, &cluster).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let ask = Msg::Logs {
        agent,
        node,
        stream: q.stream.unwrap_or_else(|| "stdout".into()),
        max_bytes: q.max_bytes.unwrap_or(64 << 10),
        after: q.after,
    };
    match rpc::call(
        &c.ep,
        proto::to(&manager, "logs"),
        &ask,
        Duration::from_secs(15),
    )
    .await
    {
        Ok(Msg::LogsText {
            text,
            next,
            continued,
        }) => {
            let mut r = (
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; charset=utf-8",
                    ),
                    (
                        HeaderName::from_static("x-yard-log-continued"),
                        if continued { "true" } else { "false" },
                    ),
                ],
                text,
            )
                .into_response();
            if let Some(v) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
                r.headers_mut()
                    .insert(HeaderName::from_static("x-yard-log-next"), v);
            }
            r
        }
        Ok(other) => error(StatusCode::BAD_GATEWAY, "bad_answer", other.type_name()),
        Err(rpc::CallError::Refused { code, message }) if code == "bad_request" => {
            error(StatusCode::BAD_REQUEST, "bad_request", message)
        }
        Err(rpc::CallError::Refused { code, message })
            if code == "unknown_node" || code == "unknown_agent" =>
        {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{code}: {message}"),
            )
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "manager_error", e.to_string()),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<u64>,
    /// At most this many (the oldest first); without it, every kept event after `after`.
    limit: Option<usize>,
}

/// The most events one page of `GET /v1/events` holds.
const EVENTS_PAGE: usize = 1_000;

async fn events(State(c): State<Arc<Center>>, Query(q): Query<EventsQuery>) -> Response {
    let after = q.after.unwrap_or(0);
    let limit = match q.limit {
        Some(0) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "limit is at least 1",
            )
        }
        Some(n) if n > EVENTS_PAGE => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("limit is at most {EVENTS_PAGE}, not {n}"),
            )
        }
        Some(n) => n,
        None => EVENTS,
    };
    c.view(move |s| {
        // Sequence numbers rise along the queue: the first after `after` is found by halving.
        let start = s.events.partition_point(|e| e.seq <= after);
        let total = s.events.len() - start;
        let list: Vec<_> = s.events.range(start..).take(limit).collect();
        let next = (total > list.len())
            .then(|| list.last().map(|e| e.seq))
            .flatten();
        Json(json!({
            "events": list,
            "total": total,
            "next": next,
            "oldest": s.events.front().map(|e| e.seq),
        }))
        .into_response()
    })
    .await
}

async fn commands(State(c): State<Arc<Center>>) -> Response {
    c.view(|s| {
        let commands = s.commands.list().map(summary).collect();
        Json(CommandList { commands }).into_response()
    })
    .await
}

#[derive(Deserialize)]
struct FollowQuery {
    /// Answer once the command's version passes this one…
    after: Option<u64>,
    /// …or after this many milliseconds (at most 30 s).
    wait_ms: Option<u64>,
}

async fn command(
    State(c): State<Arc<Center>>,
    Path(id): Path<String>,
    Query(q): Query<FollowQuery>,
) -> Response {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000));
    loop {
        // Made before the read: a change between the read and the wait still wakes it.
        let notified = c.changed.notified();
        let key = id.clone();
        let rec = match c.ask(move |s| s.commands.get(&key).cloned()).await {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_command",
                    format!("no command {id:?}"),
                )
            }
            Err(r) => return r,
        };
        if rec.version > q.after.unwrap_or(0)
            || rec.state != CommandState::Running && q.after.is_some_and(|a| a >= rec.version)
            || tokio::time::Instant::now() >= deadline
        {
            return Json(rec).into_response();
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

async fn start_command(
    State(c): State<Arc<Center>>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Response {
    let b: StartRequest = match json_request(&body, "a command") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    // Deployments stay under each agent's deploy directory: say so before dispatching anything.
    let target = match &b.kind {
        CommandKind::Deploy { path, name, .. } => Some(path.as_deref().unwrap_or(name)),
        CommandKind::Rollback { path: Some(p) } => Some(p.as_str()),
        _ => None,
    };
    if let Some(Err(e)) = target.map(crate::artifacts::check_relative) {
        return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string());
    }
    let target = match (&b.cluster, b.all) {
        (Some(_), true) | (None, false) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give either cluster or all=true",
            )
        }
        (Some(name), false) => Target::One(name.clone()),
        (None, true) => Target::All,
    };
    match &b.kind {
        CommandKind::Deploy { sha256, name, .. } => {
            if !c.artifacts.has(sha256) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "unknown_artifact",
                    format!("no artifact {sha256}: upload it first (POST /v1/artifacts)"),
                );
            }
            if crate::nodes::check_name("artifact", name).is_err() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("artifact name {name:?}: letters, digits, '.', '_', '-'"),
                );
            }
        }
        CommandKind::Exec { argv } if argv.is_empty() => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "exec needs a program",
            )
        }
        CommandKind::Restart { batch, .. } if *batch == 0 => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "batch must be at least 1",
            )
        }
        _ => {}
    }
    let timeout_s = b.timeout_s.unwrap_or(300).clamp(1, 86_400);
    let (reply, answer) = oneshot::channel();
    let start = Input::Start {
        kind: b.kind,
        target,
        timeout_s,
        by: caller
            .map(|c| c.0.principal.name.clone())
            .unwrap_or_default(),
        reply,
    };
    let gone = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the center is shutting down",
        )
    };
    if c.tx.send(start).await.is_err() {
        return gone();
    }
    match answer.await {
        Ok(Ok(id)) => (StatusCode::ACCEPTED, Json(Started { id })).into_response(),
        Ok(Err(refusal)) => refusal.response(),
        Err(_) => gone(),
    }
}

#[derive(Deserialize)]
struct UploadQuery {
    sha256: Option<String>,
}

async fn upload(
    State(c): State<Arc<Center>>,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> Response {
    let store = c.artifacts.clone();
    let size = body.len();
    let put = tokio::task::spawn_blocking(move || store.put(&body, q.sha256.as_deref())).await;
    match put {
        Ok(Ok(sha256)) => (
            StatusCode::CREATED,
            Json(Uploaded {
                sha256,
                size: size as u64,
            }),
        )
            .into_response(),
        Ok(Err(e @ crate::artifacts::ArtifactError::Mismatch { .. })) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "checksum_mismatch",
            e.to_string(),
        ),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "io_error", e.to_string()),
    }
}

#[derive(Deserialize)]
struct MetricsQuery {
    series: String,
    /// A duration back from now, e.g. `1h` (instead of `from`).
    since: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    /// `raw`, `1m`, `1h` or `auto` (the finest tier that holds `from`).
    resolution: Option<String>,
}

async fn query(State(c): State<Arc<Center>>, Query(q): Query<MetricsQuery>) -> Response {
    let now = c.cfg.clock.now_ms();
    let from = match (&q.since, q.from) {
        (Some(s), None) => match yard_data::time::parse_duration(s) {
            Ok(d) => now.saturating_sub(d.as_millis() as u64),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("since {s:?} is not a duration such as 1h"),
                )
            }
        },
        (None, Some(f)) => f,
        (None, None) => now.saturating_sub(3_600_000),
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give since or from, not both",
            )
        }
    };
    let to = q.to.unwrap_or(now);
    let tsdb = c.tsdb.clone();
    let res = q.resolution.clone().unwrap_or_else(|| "auto".into());
    let name = q.series.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let db = tsdb.lock().expect("tsdb");
        let r = if res == "auto" {
            db.auto_resolution(from, now)
        } else {
            match Resolution::parse(&res) {
                Some(r) => r,
                None => return Err(format!("resolution {res:?}: raw, 1m, 1h or auto")),
            }
        };
        db.query(&name, from, to, r)
            .map(|p| (r, p))
            .map_err(|e| e.to_string())
    })
    .await;
    match answer {
        Ok(Ok((resolution, points))) => Json(SeriesPoints {
            series: q.series,
            from,
            to,
            resolution,
            points,
        })
        .into_response(),
        Ok(Err(e)) if e.starts_with("resolution") => {
            error(StatusCode::BAD_REQUEST, "bad_request", e)
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "io_error", e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "io_error", e.to_string()),
    }
}

#[derive(Deserialize)]
struct SeriesQuery {
    prefix: Option<String>,
    /// Only names containing this (the dashboard's search).
    q: Option<String>,
    /// At most this many names (1 to 10,000; every one without it).
    limit: Option<usize>,
}

async fn series(State(c): State<Arc<Center>>, Query(q): Query<SeriesQuery>) -> Response {
    let mut list = c
        .tsdb
        .lock()
        .expect("tsdb")
        .series(q.prefix.as_deref().unwrap_or(""));
    if let Some(text) = q.q.as_deref().filter(|t| !t.is_empty()) {
        list.retain(|name| name.contains(text));
    }
    let total = list.len();
    if let Some(limit) = q.limit {
        list.truncate(limit.clamp(1, 10_000));
    }
    Json(SeriesList {
        series: list,
        total,
    })
    .into_response()
}

#[derive(Deserialize)]
struct StatsQuery {
    cluster: Option<String>,
}

async fn stats(State(c): State<Arc<Center>>, Query(q): Query<StatsQuery>) -> Response {
    let latest = c.latest.clone();
    c.view(move |s| {
        if let Some(name) = &q.cluster {
            if !s.topology.clusters.contains_key(name) {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_cluster",
                    format!("no cluster {name:?}"),
                );
            }
        }
        let latest = latest.lock().expect("latest");
        Json(stats_of(s, &latest, q.cluster.as_deref())).into_response()
    })
    .await
}

impl std::fmt::Debug for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Center").finish_non_exhaustive()
    }
}

/// One page of node rows (sorted by cluster, agent and name), filtered by `q`.
fn page_nodes(rows: Vec<NodeRow>, q: &NodesQuery) -> NodeList {
    let key = |n: &NodeRow| format!("{}/{}/{}", n.cluster, n.agent, n.name);
    let matching: Vec<NodeRow> = rows
        .into_iter()
        .filter(|n| {
            q.q.as_deref().is_none_or(|t| {
                [&n.cluster, &n.agent, &n.name, &n.state]
                    .iter()
                    .any(|f| f.contains(t))
            })
        })
        .collect();
    let total = matching.len();
    let start = q.after.as_ref().map_or(0, |a| {
        matching.iter().position(|n| key(n) > *a).unwrap_or(total)
    });
    let limit = q.limit.map_or(usize::MAX, |l| l.clamp(1, 1000));
    let end = start.saturating_add(limit).min(total);
    let next = (end < total && end > start).then(|| key(&matching[end - 1]));
    NodeList {
        nodes: matching[start..end].to_vec(),
        total,
        next,
    }
}

fn summary(r: &CommandRecord) -> CommandSummary {
    CommandSummary {
        id: r.id.clone(),
        op: r.op.clone(),
        by: r.by.clone(),
        state: r.state,
        started_ms: r.started_ms,
        finished_ms: r.finished_ms,
        clusters: r.clusters.clone(),
    }
}

/// The `topology` frames of the events after `after`: one per cluster they touched, carrying
/// that cluster's whole record, its events, and the newest of their ids.
fn topology_frames(s: &CenterState, after: u64) -> Vec<Frame> {
    let mut by: std::collections::BTreeMap<&str, Vec<&Event>> = Default::default();
    for e in s.events.iter().filter(|e| e.seq > after) {
        by.entry(change_cluster(&e.change)).or_default().push(e);
    }
    let mut frames: Vec<Frame> = by
        .into_iter()
        .filter_map(|(cluster, events)| {
            let rec = s.topology.clusters.get(cluster)?;
            let seq = events.last()?.seq;
            let data = json!({"seq": seq, "cluster": rec, "events": events}).to_string();
            Some(Frame {
                seq: Some(seq),
                text: live::frame("topology", Some(seq), &data).into(),
            })
        })
        .collect();
    frames.sort_by_key(|f| f.seq);
    frames
}

fn change_cluster(c: &Change) -> &str {
    match c {
        Change::ClusterRegistered { cluster, .. }
        | Change::ManagerRestarted { cluster, .. }
        | Change::ManagerLost { cluster, .. }
        | Change::ManagerBack { cluster, .. }
        | Change::AgentJoined { cluster, .. }
        | Change::AgentLost { cluster, .. }
        | Change::AgentBack { cluster, .. }
        | Change::AgentLeft { cluster, .. }
        | Change::NodeChanged { cluster, .. } => cluster,
    }
}

/// The snapshot frame: the whole topology, recent commands and changes, the newest event id.
fn snapshot_frame(c: &Center, s: &CenterState) -> Frame {
    let seq = s.next_event - 1;
    let topology = TopologyView {
        center: CenterInfo {
            id: c.ep.id().to_string(),
            address: c.ep.config().listen.clone(),
        },
        clusters: s.topology.clusters.values().cloned().collect(),
    };
    let mut commands: Vec<CommandSummary> = s.commands.list().map(summary).collect();
    commands.sort_by_key(|c| std::cmp::Reverse(c.started_ms));
    commands.truncate(SNAPSHOT_RECENT);
    let skip = s.events.len().saturating_sub(SNAPSHOT_RECENT);
    let events: Vec<&Event> = s.events.iter().skip(skip).collect();
    let data = json!({"seq": seq, "topology": topology, "commands": commands, "events": events});
    Frame {
        seq: Some(seq),
        text: live::frame("snapshot", Some(seq), &data.to_string()).into(),
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    /// Series prefixes whose newest samples the stream carries (comma-separated).
    series: Option<String>,
}

/// Frames a client's connection buffers before its task waits for it.
const CLIENT_QUEUE: usize = 64;

/// `GET /v1/stream`: the live stream ([`crate::stream`] says what it carries).
async fn stream(
    State(c): State<Arc<Center>>,
    Query(q): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let prefixes = match live::prefixes(q.series.as_deref()) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Subscribed before the first frames are made: nothing falls between them.
    let rx = c.frames.subscribe();
    let c2 = c.clone();
    let first = match c.ask(move |s| opening(&c2, s, last_id)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (tx, out) = mpsc::channel::<Bytes>(CLIENT_QUEUE);
    tokio::spawn(follow(c.clone(), rx, tx, first, prefixes));
    let body = axum::body::Body::from_stream(futures_util::stream::unfold(out, |mut out| async {
        out.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), out))
    }));
    Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "text/event-stream")
        .header(axum::http::header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "io_error", "stream"))
}

/// What the actor hands a new stream: its first frames, and the event id they bring it to.
struct Opening {
    frames: Vec<Bytes>,
    seq: u64,
}

fn opening(c: &Center, s: &CenterState, last_id: Option<u64>) -> Opening {
    let newest = s.next_event - 1;
    match live::resume(last_id, s.events.front().map(|e| e.seq), newest) {
        Resume::Replay { after } => {
            let mut frames: Vec<Bytes> = topology_frames(s, after)
                .into_iter()
                .map(|f| f.text)
                .collect();
            let data = json!({ "seq": newest }).to_string();
            frames.push(live::frame("resumed", Some(newest), &data).into());
            Opening {
                frames,
                seq: newest,
            }
        }
        Resume::Snapshot => Opening {
            frames: vec![snapshot_frame(c, s).text],
            seq: newest,
        },
    }
}

/// One client's stream: its first frames, then the ring's frames it has not seen, the newest
/// samples of its series once a second, and a keep-alive every 15 s; a new snapshot when it
/// fell behind the ring. Ends when the client goes.
async fn follow(
    c: Arc<Center>,
    mut rx: broadcast::Receiver<Arc<Frame>>,
    tx: mpsc::Sender<Bytes>,
    first: Opening,
    prefixes: Vec<String>,
) {
    let mut seq = first.seq;
    for f in first.frames {
        if tx.send(f).await.is_err() {
            return;
        }
    }
    let mut keep = tokio::time::interval(Duration::from_secs(15));
    keep.tick().await;
    let mut metrics = tokio::time::interval(Duration::from_secs(1));
    let mut sent: HashMap<String, u64> = HashMap::new();
    loop {
        let out = tokio::select! {
            _ = tx.closed() => return,
            r = rx.recv() => match r {
                Ok(f) if f.seq.is_some_and(|s| s <= seq) => continue,
                Ok(f) => {
                    seq = f.seq.unwrap_or(seq);
                    f.text.clone()
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "a stream client fell behind: a new snapshot");
                    let c2 = c.clone();
                    let Ok(f) = c.ask(move |s| snapshot_frame(&c2, s)).await else { return };
                    seq = f.seq.unwrap_or(seq);
                    f.text
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = keep.tick() => Bytes::from_static(live::KEEP_ALIVE.as_bytes()),
            _ = metrics.tick(), if !prefixes.is_empty() => {
                let batch = newest_samples(&c, &prefixes, &mut sent);
                if batch.is_empty() {
                    continue;
                }
                live::frame("metrics", None, &serde_json::to_string(&batch).expect("serializes")).into()
            }
        };
        if tx.send(out).await.is_err() {
            return;
        }
    }
}

/// The newest sample of each series under `prefixes` not yet sent, as `[series, ts, value]`.
fn newest_samples(
    c: &Center,
    prefixes: &[String],
    sent: &mut HashMap<String, u64>,
) -> Vec<(String, u64, f64)> {
    let latest = c.latest.lock().expect("latest");
    let mut out = Vec::new();
    for (name, (ts, v)) in latest.iter() {
        if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            continue;
        }
        if sent.get(name).is_some_and(|t| t >= ts) {
            continue;
        }
        sent.insert(name.clone(), *ts);
        out.push((name.clone(), *ts, *v));
    }
    out
}

/// `GET /v1/whoami`: the caller's name, kind and what its policy allows (the dashboard offers
/// only those actions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WhoAmI {
    pub name: String,
    pub kind: String,
    pub may: std::collections::BTreeMap<String, bool>,
}

async fn whoami(caller: Option<axum::Extension<Caller>>) -> Response {
    let Some(axum::Extension(caller)) = caller else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no_caller", "no caller");
    };
    let p = &caller.principal;
    let may = [
        ("metrics", Permission::Metrics),
        ("read", Permission::Read),
        ("outputs", Permission::Outputs),
        ("command", Permission::Command),
        ("admin", Permission::Admin),
    ]
    .into_iter()
    .map(|(k, perm)| (k.to_string(), p.policy.allows(&perm)))
    .collect();
    Json(WhoAmI {
        name: if p.is_anonymous() {
            "anonymous".into()
        } else {
            p.name.clone()
        },
        kind: format!("{:?}", p.kind).to_lowercase(),
        may,
    })
    .into_response()
}

/// `POST /v1/login/links`: a one-time login code for the dashboard.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LinkRequest {
    /// The role of the dashboard's token (`operator` unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// How long the code is good for, in seconds (900 unless given; at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

/// A login link's code and the path to open.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoginLink {
    pub code: String,
    /// `/ui/#login=CODE` (the code rides in the fragment, which browsers never send).
    pub path: String,
    pub expires_ms: u64,
}

async fn login_link(State(c): State<Arc<Center>>, body: Bytes) -> Response {
    let req: LinkRequest = if body.is_empty() {
        LinkRequest::default()
    } else {
        match json_request(&body, "a link request") {
            Ok(r) => r,
            Err(r) => return *r,
        }
    };
    let ttl = req.ttl_s.unwrap_or(900).clamp(1, 86_400);
    let expires_ms = c.cfg.clock.now_ms() + ttl * 1000;
    let code = c
        .logins
        .lock()
        .expect("logins")
        .mint(req.role.unwrap_or(Role::Operator), expires_ms);
    let path = format!("/ui/#login={code}");
    Json(LoginLink {
        code,
        path,
        expires_ms,
    })
    .into_response()
}

/// `POST /v1/login`: a one-time code traded for a token of the dashboard's own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoginRequest {
    pub code: String,
}

/// What a redeemed code gives: a token (shown once), its name and role, when it expires.
#[derive(Serialize, Deserialize, PartialEq)]
pub struct LoggedIn {
    pub token: String,
    pub name: String,
    pub role: Role,
    pub expires: u64,
}

impl std::fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// How long a dashboard's token lasts.
const SESSION: Duration = Duration::from_secs(12 * 3600);

async fn login(State(c): State<Arc<Center>>, body: Bytes) -> Response {
    let req: LoginRequest = match json_request(&body, "a login request") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let now = c.cfg.clock.now_ms();
    let role = match c.logins.lock().expect("logins").redeem(&req.code, now) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::UNAUTHORIZED, "bad_login_code", e.to_string()),
    };
    let name = format!("dashboard-{}", yard_auth::secret::random_hex(3));
    let registry = c.registry.clone();
    let made =
        tokio::task::spawn_blocking(move || registry.create(&name, role, None, Some(SESSION)))
            .await;
    match made {
        Ok(Ok((rec, token))) => Json(LoggedIn {
            token,
            name: rec.name,
            role: rec.role,
            expires: rec.expires.unwrap_or(0),
        })
        .into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "registry_error",
            e.to_string(),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "registry_error",
            e.to_string(),
        ),
    }
}

/// A JSON request body, or the 400 that says why it is not `what`.
pub(crate) fn json_request<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("not {what}: {e}"),
        ))
    })
}

/// `/` and `/ui`: to the dashboard.
async fn to_dashboard() -> Response {
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, "/ui/")],
        "the dashboard is at /ui/\n",
    )
        .into_response()
}

/// `/ui/…`: the dashboard's files, with its Content-Security-Policy and ETag.
async fn dashboard_file(path: Option<Path<String>>, headers: axum::http::HeaderMap) -> Response {
    let path = path.map(|Path(p)| p).unwrap_or_default();
    let Some(f) = yard_ui::get(&path) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the dashboard has no file {path:?}"),
        );
    };
    let fresh = headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == f.etag);
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(axum::http::header::CONTENT_TYPE, f.asset.content_type)],
            f.asset.bytes,
        )
            .into_response()
    };
    let h = r.headers_mut();
    for (k, v) in yard_ui::headers() {
        h.insert(k, axum::http::HeaderValue::from_static(v));
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&f.etag) {
        h.insert(axum::http::header::ETAG, v);
    }
    r
}
