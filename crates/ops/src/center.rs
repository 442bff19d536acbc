//! `yard center`: the operations center. It keeps the topology of every cluster (in the store
//! `ops-center`, so it survives restarts), relays commands to managers and gathers their
//! progress, keeps the metrics history ([`crate::tsdb`]), and serves the HTTP API
//! (docs/openapi.json). It never addresses an agent.
//!
//! Inboxes: `<$>/ops/center/` for control (registrations, progress, results, artifact chunks;
//! a queue of 8192 that drops the newest when full: senders time out and retry) and
//! `<$>/ops/center-metrics/` for metric batches (a queue of 1024 batches that drops the oldest
//! when the history store falls behind; `yard_center_metric_batches_dropped_total` counts them).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_auth::exposition::{family, label};
use yard_auth::http::Extension;
use yard_auth::http::Rule;
use yard_auth::Permission;
use yard_data::Value;
use yard_fabric::{Endpoint, Message, OverflowPolicy};
use yard_store::{Mutation, Stores};

use crate::artifacts::ArtifactStore;
use crate::commands::{Action as CommandAction, CommandState, Commands, ManagerRef};
pub use crate::commands::{ClusterOutcome, CommandRecord};
use crate::manager::{CENTER, CENTER_METRICS};
use crate::proto::{self, CommandKind, Msg, ProgressRow, Sample};
use crate::rpc::{self, Inbox};
use crate::topology::{Change, ClusterRecord, Topology};
use crate::tsdb::{Resolution, Retention, Tsdb};
use crate::OpsError;

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
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    pub ts: i64,
    #[serde(flatten)]
    pub change: Change,
}

struct CenterState {
    topology: Topology,
    events: VecDeque<Event>,
    next_event: u64,
    commands: Commands,
}

pub struct Center {
    ep: Endpoint,
    stores: Arc<Stores>,
    cfg: CenterConfig,
    /// One owner of topology, events and commands; a std mutex never held across an await.
    state: Mutex<CenterState>,
    /// Woken on every command change (followers long-poll on it).
    changed: Notify,
    /// The history store; queried on blocking threads, written by the writer thread.
    tsdb: Arc<Mutex<Tsdb>>,
    /// The newest value of each series (for stats), kept by the writer thread.
    latest: Arc<Mutex<HashMap<String, (i64, f64)>>>,
    artifacts: ArtifactStore,
    publisher: yard_fabric::Client,
    samples: Arc<AtomicU64>,
    batches_dropped: Arc<AtomicU64>,
}

pub async fn start(
    cfg: CenterConfig,
    ep: Endpoint,
    stores: Arc<Stores>,
    shutdown: CancellationToken,
) -> Result<(Extension, JoinHandle<()>), OpsError> {
    let mut cfg = cfg;
    cfg.dir = crate::absolute_dir(&cfg.dir)?;
    let saved = crate::open_own_store(&stores, STORE, &cfg.dir.join("center.db"), "center").await?;
    let mut topology = Topology::default();
    let now = crate::now_ms();
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
    let center = Arc::new(Center {
        ep: ep.clone(),
        stores,
        artifacts: ArtifactStore::new(cfg.dir.join("artifacts")),
        cfg,
        state: Mutex::new(CenterState {
            topology,
            events: VecDeque::new(),
            next_event: 1,
            commands: Commands::new(COMMANDS),
        }),
        changed: Notify::new(),
        tsdb: Arc::new(Mutex::new(tsdb)),
        latest: Arc::new(Mutex::new(latest)),
        publisher,
        samples: Arc::new(AtomicU64::new(0)),
        batches_dropped: Arc::new(AtomicU64::new(0)),
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
    let (batches_tx, batches_rx) = tokio::sync::mpsc::channel::<Vec<Sample>>(64);
    let writer = {
        let tsdb = center.tsdb.clone();
        let latest = center.latest.clone();
        let samples = center.samples.clone();
        std::thread::Builder::new()
            .name("center-tsdb".into())
            .spawn(move || write_history(tsdb, latest, samples, batches_rx))
            .map_err(|e| OpsError::Metrics {
                owner: "center",
                why: format!("cannot start the history writer: {e}"),
            })?
    };
    let hook = center.clone();
    let metrics: yard_auth::http::MetricsHook =
        Arc::new(move |out: &mut String| hook.prometheus(out));
    let routes = routes(center.clone());
    let task = tokio::spawn({
        let c = center.clone();
        async move {
            let tasks = [
                tokio::spawn(serve_control(c.clone(), control)),
                tokio::spawn(take_metrics(c.clone(), metrics_inbox, batches_tx)),
                tokio::spawn(watch_managers(c.clone())),
            ];
            shutdown.cancelled().await;
            for t in tasks {
                t.abort();
            }
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
    latest: Arc<Mutex<HashMap<String, (i64, f64)>>>,
    count: Arc<AtomicU64>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<Sample>>,
) {
    let mut last_prune = std::time::Instant::now();
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
        if last_prune.elapsed() > Duration::from_secs(60) {
            last_prune = std::time::Instant::now();
            if let Err(e) = tsdb.lock().expect("tsdb").prune(crate::now_ms()) {
                tracing::warn!("cannot prune metrics: {e}");
            }
        }
    }
}

async fn take_metrics(
    c: Arc<Center>,
    mut inbox: Inbox,
    tx: tokio::sync::mpsc::Sender<Vec<Sample>>,
) {
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

async fn watch_managers(c: Arc<Center>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let bound = c.cfg.manager_timeout.as_millis() as i64;
        let changed = {
            let mut s = c.state.lock().expect("center state");
            let now = crate::now_ms();
            if s.commands.tick(now) {
                c.changed.notify_waiters();
            }
            let ch = s.topology.expire(now, bound);
            let names: Vec<String> = ch
                .iter()
                .filter_map(|c| match c {
                    Change::ManagerLost { cluster, .. } => Some(cluster.clone()),
                    _ => None,
                })
                .collect();
            c.log(&mut s, ch);
            names
                .into_iter()
                .filter_map(|n| s.topology.clusters.get(&n).cloned())
                .collect::<Vec<_>>()
        };
        for rec in changed {
            tracing::warn!(cluster = %rec.name, "manager lost: no report for {:?}", c.cfg.manager_timeout);
            c.persist(&rec).await;
        }
    }
}

async fn serve_control(c: Arc<Center>, mut inbox: Inbox) {
    while let Some(batch) = inbox.next().await {
        for m in batch {
            // Registrations and results are quick and ordered; chunk reads go to a blocking thread.
            let answer = c.handle(&m).await;
            rpc::answer(&inbox.client, &m, answer).await;
        }
    }
}

impl Center {
    fn log(&self, s: &mut CenterState, changes: Vec<Change>) {
        let ts = crate::now_ms();
        for change in changes {
            tracing::info!(?change, "topology");
            let seq = s.next_event;
            s.next_event += 1;
            s.events.push_back(Event { seq, ts, change });
            if s.events.len() > EVENTS {
                s.events.pop_front();
            }
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

    async fn handle(self: &Arc<Self>, m: &Message) -> Msg {
        match Msg::from_value(&m.value) {
            Ok(Msg::Register(report)) => {
                if let Err(e) = crate::nodes::check_name("cluster", &report.cluster) {
                    return Msg::refused("bad_request", e);
                }
                let rec = {
                    let mut s = self.state.lock().expect("center state");
                    let before = s.topology.clusters.get(&report.cluster).cloned();
                    let ch = s.topology.apply(report.clone(), crate::now_ms());
                    self.log(&mut s, ch);
                    let after = s.topology.clusters[&report.cluster].clone();
                    // Persist what changed beyond the report time.
                    let same = before.is_some_and(|b| {
                        b.agents == after.agents
                            && b.manager == after.manager
                            && b.manager_state == after.manager_state
                    });
                    (!same).then_some(after)
                };
                if let Some(rec) = rec {
                    self.persist(&rec).await;
                }
                Msg::Registered {
                    center: self.ep.id().to_string(),
                }
            }
            Ok(Msg::Progress(row)) => {
                self.progress(row).await;
                Msg::Accepted
            }
            Ok(Msg::CommandDone {
                id,
                cluster,
                ok,
                rows,
                error,
            }) => {
                self.finish_cluster(&id, &cluster, ok, rows, error);
                Msg::Accepted
            }
            Ok(Msg::FetchChunk {
                sha256,
                offset,
                len,
            }) => {
                let store = self.artifacts.clone();
                let read = tokio::task::spawn_blocking(move || {
                    store.read_chunk(&sha256, offset, len.min(crate::agent::CHUNK))
                })
                .await;
                match read {
                    Ok(Ok((bytes, total))) => Msg::Chunk {
                        data: base64::engine::general_purpose::STANDARD.encode(bytes),
                        total,
                    },
                    Ok(Err(e)) => Msg::refused("unknown_artifact", e.to_string()),
                    Err(e) => Msg::refused("io_error", e.to_string()),
                }
            }
            Ok(other) => Msg::refused(
                "bad_request",
                format!("the center does not take {:?} messages", other.type_name()),
            ),
            Err(e) => Msg::refused("bad_request", e.to_string()),
        }
    }

    async fn progress(&self, row: ProgressRow) {
        let actions = self
            .state
            .lock()
            .expect("center state")
            .commands
            .progress(row);
        for action in actions {
            if let CommandAction::Publish(row) = action {
                self.changed.notify_waiters();
                let _ = self
                    .publisher
                    .publish_system(proto::command_topic(&row.id), Msg::Progress(row).to_value())
                    .await;
            }
        }
    }

    fn finish_cluster(
        &self,
        id: &str,
        cluster: &str,
        ok: bool,
        rows: Vec<ProgressRow>,
        error: Option<String>,
    ) {
        let changed = self.state.lock().expect("center state").commands.finish(
            id,
            cluster,
            ok,
            rows,
            error,
            crate::now_ms(),
        );
        if changed {
            self.changed.notify_waiters();
        }
    }

    fn fail_cluster(&self, id: &str, cluster: &str, error: String) {
        self.finish_cluster(id, cluster, false, Vec::new(), Some(error));
    }

    /// Starts a command on clusters: the [`Commands`] core registers it and names the
    /// managers to ask; its clock (in [`watch_managers`]) covers a manager that never answers.
    fn start_command(
        self: &Arc<Self>,
        kind: CommandKind,
        clusters: Vec<String>,
        timeout_s: u64,
    ) -> String {
        let (id, actions) = {
            let mut guard = self.state.lock().expect("center state");
            let s = &mut *guard;
            let topology = &s.topology;
            let manager = |name: &str| {
                topology.clusters.get(name).map(|c| ManagerRef {
                    id: c.manager.id.clone(),
                    up: c.manager_state == "up",
                })
            };
            s.commands
                .start(kind, clusters, manager, timeout_s, crate::now_ms())
        };
        for action in actions {
            let CommandAction::Ask {
                cluster,
                manager,
                spec,
            } = action
            else {
                continue;
            };
            let c = self.clone();
            tokio::spawn(async move {
                if let Err(e) = rpc::call(
                    &c.ep,
                    proto::to(&manager, "start"),
                    &Msg::Start(spec.clone()),
                    Duration::from_secs(10),
                )
                .await
                {
                    c.fail_cluster(
                        &spec.id,
                        &cluster,
                        format!("the manager did not take the command: {e}"),
                    );
                }
            });
        }
        self.changed.notify_waiters();
        id
    }

    fn prometheus(&self, out: &mut String) {
        let s = self.state.lock().expect("center state");
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
        family(
            out,
            "yard_center_clusters",
            "gauge",
            "Clusters registered.",
            &[(String::new(), s.topology.clusters.len() as f64)],
        );
        family(
            out,
            "yard_center_agents",
            "gauge",
            "Agents per cluster and state.",
            &agents,
        );
        family(
            out,
            "yard_center_nodes",
            "gauge",
            "Nodes per cluster and health.",
            &nodes,
        );
        let running = s.commands.running();
        drop(s);
        family(
            out,
            "yard_center_commands_running",
            "gauge",
            "Commands under way.",
            &[(String::new(), running as f64)],
        );
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

    fn stats(&self, only: Option<&str>) -> serde_json::Value {
        let s = self.state.lock().expect("center state");
        let latest = self.latest.lock().expect("latest");
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
        json!({"clusters": rows, "total": total})
    }
}

#[derive(Debug, Default, Serialize)]
struct StatsRow {
    cluster: String,
    manager: String,
    agents_up: u64,
    agents_lost: u64,
    nodes: u64,
    nodes_running: u64,
    nodes_healthy: u64,
    restarts: u64,
    cpu_avg_pct: Option<f64>,
    mem_used_bytes: f64,
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

fn error(status: StatusCode, code: &str, context: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "context": context.into()})),
    )
        .into_response()
}

/// The rule of each of the center's routes (`None`: not one of them).
pub fn classify(method: &Method, path: &str) -> Option<Rule> {
    use Permission::*;
    let seg: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    let rule = match (seg.as_slice(), method.as_str()) {
        (["openapi.json"], _) if read => Rule::new(Open),
        (["topology"] | ["clusters"] | ["clusters", _] | ["nodes"] | ["events"], _) if read => {
            Rule::new(Read)
        }
        (["commands"] | ["metrics", "query"] | ["metrics", "series"] | ["stats"], _) if read => {
            Rule::new(Read)
        }
        // What programs printed: command outputs and node logs.
        (["commands", _] | ["logs", _, _, _], _) if read => Rule::new(Outputs),
        (["commands"], "POST") => Rule::new(Command),
        (["artifacts"], "POST") => Rule::bytes(Command),
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
        .route("/v1/nodes", get(nodes))
        .route("/v1/logs/{cluster}/{agent}/{node}", get(logs))
        .route("/v1/events", get(events))
        .route("/v1/commands", get(commands).post(start_command))
        .route("/v1/commands/{id}", get(command))
        .route("/v1/artifacts", post(upload))
        .route("/v1/metrics/query", get(query))
        .route("/v1/metrics/series", get(series))
        .route("/v1/stats", get(stats))
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
    let s = c.state.lock().expect("center state");
    Json(json!({
        "center": {"id": c.ep.id(), "address": c.ep.config().listen},
        "clusters": s.topology.clusters.values().collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn clusters(State(c): State<Arc<Center>>) -> Response {
    let s = c.state.lock().expect("center state");
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
}

async fn cluster(State(c): State<Arc<Center>>, Path(name): Path<String>) -> Response {
    let s = c.state.lock().expect("center state");
    match s.topology.clusters.get(&name) {
        Some(r) => Json(r).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_cluster",
            format!("no cluster {name:?}"),
        ),
    }
}

#[derive(Deserialize)]
struct NodesQuery {
    cluster: Option<String>,
}

async fn nodes(State(c): State<Arc<Center>>, Query(q): Query<NodesQuery>) -> Response {
    let s = c.state.lock().expect("center state");
    let mut out = Vec::new();
    for cl in s.topology.clusters.values() {
        if q.cluster.as_ref().is_some_and(|x| *x != cl.name) {
            continue;
        }
        for a in &cl.agents {
            for n in &a.nodes {
                out.push(json!({
                    "cluster": cl.name, "agent": a.name, "agent_state": a.state,
                    "name": n.name, "state": n.state, "health": n.health, "pid": n.pid,
                    "restarts": n.restarts, "generation": n.generation,
                }));
            }
        }
    }
    Json(json!({"nodes": out})).into_response()
}

#[derive(Deserialize)]
struct LogsQuery {
    stream: Option<String>,
    max_bytes: Option<u64>,
}

async fn logs(
    State(c): State<Arc<Center>>,
    Path((cluster, agent, node)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> Response {
    let manager = {
        let s = c.state.lock().expect("center state");
        s.topology
            .clusters
            .get(&cluster)
            .map(|r| r.manager.id.clone())
    };
    let Some(manager) = manager else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_cluster",
            format!("no cluster {cluster:?}"),
        );
    };
    let ask = Msg::Logs {
        agent,
        node,
        stream: q.stream.unwrap_or_else(|| "stdout".into()),
        max_bytes: q.max_bytes.unwrap_or(64 << 10),
    };
    match rpc::call(
        &c.ep,
        proto::to(&manager, "logs"),
        &ask,
        Duration::from_secs(15),
    )
    .await
    {
        Ok(Msg::LogsText { text }) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(other) => error(StatusCode::BAD_GATEWAY, "bad_answer", other.type_name()),
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
}

async fn events(State(c): State<Arc<Center>>, Query(q): Query<EventsQuery>) -> Response {
    let s = c.state.lock().expect("center state");
    let after = q.after.unwrap_or(0);
    let list: Vec<_> = s.events.iter().filter(|e| e.seq > after).collect();
    Json(json!({"events": list})).into_response()
}

async fn commands(State(c): State<Arc<Center>>) -> Response {
    let s = c.state.lock().expect("center state");
    let list: Vec<_> = s
        .commands
        .list()
        .map(|r| json!({"id": r.id, "op": r.op, "state": r.state, "started_ms": r.started_ms, "finished_ms": r.finished_ms, "clusters": r.clusters}))
        .collect();
    Json(json!({"commands": list})).into_response()
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
        let notified = c.changed.notified();
        {
            let s = c.state.lock().expect("center state");
            let Some(rec) = s.commands.get(&id) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_command",
                    format!("no command {id:?}"),
                );
            };
            if rec.version > q.after.unwrap_or(0)
                || rec.state != CommandState::Running && q.after.is_some_and(|a| a >= rec.version)
            {
                return Json(rec).into_response();
            }
            if tokio::time::Instant::now() >= deadline {
                return Json(rec).into_response();
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

#[derive(Deserialize)]
struct StartBody {
    #[serde(flatten)]
    kind: CommandKind,
    cluster: Option<String>,
    #[serde(default)]
    all: bool,
    timeout_s: Option<u64>,
}

async fn start_command(State(c): State<Arc<Center>>, body: Bytes) -> Response {
    let b: StartBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("not a command: {e}"),
            )
        }
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
    let clusters: Vec<String> = {
        let s = c.state.lock().expect("center state");
        match (&b.cluster, b.all) {
            (Some(_), true) | (None, false) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "give either cluster or all=true",
                )
            }
            (Some(name), false) => {
                if !s.topology.clusters.contains_key(name) {
                    return error(
                        StatusCode::NOT_FOUND,
                        "unknown_cluster",
                        format!("no cluster {name:?}"),
                    );
                }
                vec![name.clone()]
            }
            (None, true) => s.topology.clusters.keys().cloned().collect(),
        }
    };
    if clusters.is_empty() {
        return error(
            StatusCode::CONFLICT,
            "no_clusters",
            "no cluster is registered",
        );
    }
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
        CommandKind::Restart { batch } if *batch == 0 => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "batch must be at least 1",
            )
        }
        _ => {}
    }
    let timeout = b.timeout_s.unwrap_or(300).clamp(1, 86_400);
    let id = c.start_command(b.kind, clusters, timeout);
    (StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response()
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
        Ok(Ok(sha)) => (
            StatusCode::CREATED,
            Json(json!({"sha256": sha, "size": size})),
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
    from: Option<i64>,
    to: Option<i64>,
    /// `raw`, `1m`, `1h` or `auto` (the finest tier that holds `from`).
    resolution: Option<String>,
}

async fn query(State(c): State<Arc<Center>>, Query(q): Query<MetricsQuery>) -> Response {
    let now = crate::now_ms();
    let from = match (&q.since, q.from) {
        (Some(s), None) => match yard_data::time::parse_duration(s) {
            Ok(d) => now - d.as_millis() as i64,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("since {s:?} is not a duration such as 1h"),
                )
            }
        },
        (None, Some(f)) => f,
        (None, None) => now - 3_600_000,
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
        Ok(Ok((r, points))) => Json(
            json!({"series": q.series, "from": from, "to": to, "resolution": r, "points": points}),
        )
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
}

async fn series(State(c): State<Arc<Center>>, Query(q): Query<SeriesQuery>) -> Response {
    let list = c
        .tsdb
        .lock()
        .expect("tsdb")
        .series(q.prefix.as_deref().unwrap_or(""));
    Json(json!({"series": list})).into_response()
}

#[derive(Deserialize)]
struct StatsQuery {
    cluster: Option<String>,
}

async fn stats(State(c): State<Arc<Center>>, Query(q): Query<StatsQuery>) -> Response {
    if let Some(name) = &q.cluster {
        if !c
            .state
            .lock()
            .expect("center state")
            .topology
            .clusters
            .contains_key(name)
        {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_cluster",
                format!("no cluster {name:?}"),
            );
        }
    }
    Json(c.stats(q.cluster.as_deref())).into_response()
}

impl std::fmt::Debug for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Center").finish_non_exhaustive()
    }
}
