//! `yard manager`: one per cluster. It peers with the center and registers its cluster (at boot,
//! on every change, and every report interval, always the whole cluster), answers its agents'
//! heartbeats with the nodes they must run, marks an agent lost when its heartbeats stop for
//! longer than `agent_timeout`, forwards its agents' metrics to the center in batches, and
//! carries out the center's commands on its agents.
//!
//! One actor owns the cluster's state (the pure core [`crate::cluster::Cluster`]) and reads
//! the time from the configured [`Clock`]; its select priorities are written on `Actor`.
//! Each command runs as a task of its own over the pure [`crate::rollout`] core.
//!
//! Its agents are kept in a store (`ops-manager-CLUSTER`): after a restart the manager knows
//! which agents it had, and reports those that do not come back as lost.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_auth::exposition::family;
use yard_auth::http::Extension;
use yard_data::Value;
use yard_fabric::{Endpoint, Message, OverflowPolicy};
use yard_store::{Mutation, Stores};

use crate::artifacts::ArtifactStore;
use crate::cluster::{AgentError, Cluster, Heartbeat};
use crate::nodes::ClusterConfig;
use crate::proto::{
    self, AgentView, CommandKind, CommandSpec, ManagerView, Msg, ProgressRow, Task, TaskOutcome,
};
use crate::rollout::{self, Action, Rollout};
use crate::rpc::{self, Inbox};
use crate::{Clock, OpsError};

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
    /// Where the manager reads the time (its cores take it from there).
    pub clock: Arc<dyn Clock>,
    /// The address of the Mesos master beside it, if any (reported to the center).
    pub mesos: Option<String>,
}

/// What reaches the manager's actor besides the fabric's inboxes.
enum Input {
    /// The endpoint id of a live agent (a rollout's step, a log read).
    AgentId {
        name: String,
        reply: oneshot::Sender<Result<String, AgentError>>,
    },
    /// Every agent (a rollout's start).
    Agents {
        reply: oneshot::Sender<Vec<AgentView>>,
    },
    /// How the report sent last went.
    /// A report's outcome: the center's bound (ms, 0 when it does not say), or why it failed.
    Reported(Result<u64, String>),
}

/// What the manager's tasks share: configuration, the actor's inbox, counters.
struct Manager {
    ep: Endpoint,
    cfg: ManagerConfig,
    started_ms: u64,
    /// Bumped on every start so that agents re-read the node list.
    config_version: u64,
    cache: ArtifactStore,
    /// The actor's inbox (bounded: a rollout's task waits when it is full).
    tx: mpsc::Sender<Input>,
    agents_up: AtomicU64,
    agents_lost: AtomicU64,
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

/// The actor's inbox size.
const INPUTS: usize = 256;

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
    let now = cfg.clock.now_ms();
    // Known from before the restart: a grace period to come back, then lost.
    let known: Vec<AgentView> = saved
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect();
    if !known.is_empty() {
        tracing::info!(agents = known.len(), "agents known from the store");
    }
    let core = Cluster::new(
        &cfg.cluster,
        cfg.agent_timeout.as_millis() as u64,
        METRICS_BUFFER,
        known,
        now,
    );
    let publisher = ep
        .attach("manager-publisher", vec![], 64, OverflowPolicy::DropOldest)
        .await
        .map_err(|e| OpsError::Inbox {
            name: "manager-publisher".into(),
            why: e.to_string(),
        })?;
    let (tx, rx) = mpsc::channel(INPUTS);
    let m = Arc::new(Manager {
        publisher,
        started_ms: now,
        config_version: now,
        cache: ArtifactStore::new(cfg.dir.join("artifacts")),
        tx,
        agents_up: AtomicU64::new(0),
        agents_lost: AtomicU64::new(0),
        metrics_dropped: AtomicU64::new(0),
        metrics_refused: AtomicU64::new(0),
        reports_sent: AtomicU64::new(0),
        ep: ep.clone(),
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
    let actor = Actor {
        m: m.clone(),
        core,
        stores,
        reporting: false,
        last_report_ms: 0,
        last_error: String::new(),
        center_bound_ms: 0,
    };
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
            actor.run(inbox, live, rx, shutdown).await;
            peering.abort();
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

/// The one owner of the cluster's state (the [`Cluster`] core). Its loop takes, in this order
/// of priority:
///
/// 1. shutdown;
/// 2. the clock's tick (every 200 ms: agents gone silent, the report to the center when the
///    cluster changed or the report interval passed; one report in flight at a time);
/// 3. the forwarding tick (every second: the waiting samples go to the center in batches);
/// 4. its control inbox (heartbeats, commands, log reads, artifact chunks);
/// 5. the agents' live metrics;
/// 6. its own inbox (rollouts asking for agents, a report's outcome).
///
/// It awaits only its store's writes (a new agent) and publishing; commands, log reads and
/// reports run as tasks of their own and come back through its inbox.
struct Actor {
    m: Arc<Manager>,
    core: Cluster,
    stores: Arc<Stores>,
    /// A report is on its way to the center.
    reporting: bool,
    last_report_ms: u64,
    last_error: String,
    /// The center's bound on silence, as its last answer said (0: not known).
    center_bound_ms: u64,
}

/// How often a full report goes to the center (ms): `--report-interval`, or a third of the
/// center's bound when that is shorter, so that a quiet cluster is never taken for a lost one.
pub fn report_every(interval: Duration, center_bound_ms: u64) -> u64 {
    let interval = interval.as_millis() as u64;
    match center_bound_ms {
        0 => interval,
        b => interval.min((b / 3).max(1)),
    }
}

impl Actor {
    async fn run(
        mut self,
        mut inbox: Inbox,
        mut live: Inbox,
        mut rx: mpsc::Receiver<Input>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut forward = tokio::time::interval(Duration::from_secs(1));
        for t in [&mut tick, &mut forward] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.tick(),
                _ = forward.tick() => self.forward().await,
                batch = inbox.next() => {
                    let Some(batch) = batch else { break };
                    for msg in batch {
                        if let Some(answer) = self.control(&inbox.client, &msg).await {
                            rpc::answer(&inbox.client, &msg, answer).await;
                        }
                    }
                }
                batch = live.next() => {
                    let Some(batch) = batch else { break };
                    self.samples(batch);
                }
                Some(input) = rx.recv() => self.input(input),
            }
            let (up, lost) = self.core.counts();
            self.m.agents_up.store(up as u64, Ordering::Relaxed);
            self.m.agents_lost.store(lost as u64, Ordering::Relaxed);
        }
    }

    fn now(&self) -> u64 {
        self.m.cfg.clock.now_ms()
    }

    /// Marks silent agents lost; reports the cluster when it changed (at most every tick) and
    /// at least every report interval.
    fn tick(&mut self) {
        let now = self.now();
        for name in self.core.expire(now) {
            tracing::warn!(agent = %name, "agent lost: no heartbeat for {:?}", self.m.cfg.agent_timeout);
        }
        if self.reporting {
            return;
        }
        let every = report_every(self.m.cfg.report_interval, self.center_bound_ms);
        let due = now.saturating_sub(self.last_report_ms) >= every;
        if !self.core.take_dirty() && !due {
            return;
        }
        self.reporting = true;
        self.last_report_ms = now;
        let report = self.core.report(ManagerView {
            id: self.m.ep.id().to_string(),
            address: self.m.ep.config().listen.clone(),
            started_ms: self.m.started_ms,
            mesos: self.m.cfg.mesos.clone(),
        });
        let m = self.m.clone();
        tokio::spawn(async move {
            let to = format!("{CENTER}register");
            let sent = rpc::call(&m.ep, to, &Msg::Register(report), Duration::from_secs(3)).await;
            let outcome = sent
                .map(|answer| match answer {
                    Msg::Registered {
                        manager_timeout_ms, ..
                    } => manager_timeout_ms,
                    _ => 0,
                })
                .map_err(|e| e.to_string());
            let _ = m.tx.send(Input::Reported(outcome)).await;
        });
    }

    async fn forward(&mut self) {
        let samples = self.core.drain_metrics();
        for chunk in samples.chunks(20_000) {
            let msg = Msg::MetricsBatch {
                cluster: self.m.cfg.cluster.clone(),
                samples: chunk.to_vec(),
            };
            let _ = self
                .m
                .publisher
                .publish_system(CENTER_METRICS.to_string(), msg.to_value())
                .await;
        }
    }

    fn samples(&mut self, batch: Vec<Arc<Message>>) {
        // Samples count only from a known agent's own endpoint, for its own series: nobody
        // else fakes an agent's history or grows the store with series of their choosing.
        let prefix = proto::live_metrics_prefix(&self.m.cfg.cluster);
        for msg in batch {
            let agent = msg.topic.strip_prefix(&prefix).unwrap_or("");
            let samples = match Msg::from_value(&msg.value) {
                Ok(Msg::Samples { samples }) => samples,
                _ => Vec::new(),
            };
            let n = self.core.samples(agent, &msg.origin, samples);
            self.m
                .metrics_refused
                .fetch_add(n.refused, Ordering::Relaxed);
            self.m
                .metrics_dropped
                .fetch_add(n.dropped, Ordering::Relaxed);
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::AgentId { name, reply } => {
                let _ = reply.send(self.core.agent_id(&name));
            }
            Input::Agents { reply } => {
                let _ = reply.send(self.core.agents());
            }
            Input::Reported(outcome) => {
                self.reporting = false;
                match outcome {
                    Ok(bound) => {
                        self.m.reports_sent.fetch_add(1, Ordering::Relaxed);
                        self.last_error.clear();
                        if bound != self.center_bound_ms {
                            self.center_bound_ms = bound;
                            let every = report_every(self.m.cfg.report_interval, bound);
                            if every < self.m.cfg.report_interval.as_millis() as u64 {
                                tracing::info!(
                                    "the center calls a manager lost after {bound} ms of silence: reporting every {every} ms, within it (not --report-interval {:?})",
                                    self.m.cfg.report_interval
                                );
                            }
                        }
                    }
                    Err(e) => {
                        // Not delivered: send again at the next tick.
                        self.core.mark_dirty();
                        self.last_report_ms = 0;
                        if e != self.last_error {
                            tracing::warn!("cannot report to the center: {e}");
                            self.last_error = e;
                        }
                    }
                }
            }
        }
    }

    /// A message on the control inbox; `None` when the answer goes out later, from a task.
    async fn control(
        &mut self,
        client: &Arc<yard_fabric::Client>,
        msg: &Arc<Message>,
    ) -> Option<Msg> {
        let answer = match Msg::from_value(&msg.value) {
            Ok(Msg::Heartbeat {
                agent,
                config_version,
            }) => self.heartbeat(agent, config_version).await,
            Ok(Msg::Start(spec)) => {
                tracing::info!(id = %spec.id, op = spec.kind.name(), "command from the center");
                let m = self.m.clone();
                tokio::spawn(async move { m.run_command(spec).await });
                Msg::Accepted
            }
            Ok(Msg::Logs {
                agent,
                node,
                stream,
                max_bytes,
                after,
            }) => {
                let id = match self.core.agent_id(&agent) {
                    Ok(id) => id,
                    Err(e) => return Some(Msg::refused("unknown_agent", e.to_string())),
                };
                let ask = Msg::Logs {
                    agent,
                    node,
                    stream,
                    max_bytes,
                    after,
                };
                let (ep, client, msg) = (self.m.ep.clone(), client.clone(), msg.clone());
                tokio::spawn(async move {
                    let to = proto::to(&id, "logs");
                    let answer = match rpc::call(&ep, to, &ask, Duration::from_secs(10)).await {
                        Ok(answer) => answer,
                        // The agent's own refusal (unknown_node, ...) reaches the center as it is.
                        Err(rpc::CallError::Refused { code, message }) => {
                            Msg::refused(&code, message)
                        }
                        Err(e) => Msg::refused("agent_error", e),
                    };
                    rpc::answer(&client, &msg, answer).await;
                });
                return None;
            }
            Ok(Msg::Links) => match self.m.ep.snapshot().await {
                Ok(snap) => Msg::LinksAre {
                    endpoint: self.m.ep.id().to_string(),
                    links: snap.peers.iter().map(Into::into).collect(),
                },
                Err(e) => Msg::refused("shutting_down", e.to_string()),
            },
            Ok(Msg::FetchChunk {
                sha256,
                offset,
                len,
            }) => {
                rpc::answer_chunk(
                    self.m.cache.clone(),
                    client.clone(),
                    msg.clone(),
                    (sha256, offset, len),
                );
                return None;
            }
            Ok(other) => Msg::refused(
                "bad_request",
                format!("a manager does not take {:?} messages", other.type_name()),
            ),
            Err(e) => Msg::refused("bad_request", e.to_string()),
        };
        Some(answer)
    }

    /// An agent's heartbeat: record it, answer with its nodes when its list is out of date.
    async fn heartbeat(&mut self, view: AgentView, version: u64) -> Msg {
        if let Err(e) = crate::nodes::check_name("agent", &view.name) {
            return Msg::refused("bad_request", e);
        }
        let name = view.name.clone();
        let roles = view.roles.clone();
        let now = self.now();
        match self.core.heartbeat(view, now) {
            Heartbeat::Clash { other } => {
                return Msg::refused(
                    "duplicate_agent",
                    format!(
                        "agent name {name:?} is taken by the live agent {other}; give this one another --name"
                    ),
                )
            }
            Heartbeat::Taken { persist: Some(stored) } => {
                tracing::info!(agent = %name, address = %stored.address, "agent joined");
                let m = Mutation::Put {
                    key: Value::string(name.clone()),
                    value: Value::string(serde_json::to_string(&stored).expect("serializes")),
                    expiry: None,
                };
                if let Err(e) = self
                    .stores
                    .write(&store_name(&self.m.cfg.cluster), m)
                    .await
                {
                    tracing::warn!("cannot record agent {name}: {e}");
                }
            }
            Heartbeat::Taken { persist: None } => {}
        }
        let cfg = &self.m.cfg;
        let nodes = (version != self.m.config_version).then(|| cfg.config.nodes_for(&name, &roles));
        Msg::HeartbeatAck {
            cluster: cfg.cluster.clone(),
            config_version: self.m.config_version,
            nodes,
            metrics_interval_ms: cfg.metrics_interval.as_millis() as u64,
        }
    }
}

impl Manager {
    fn prometheus(&self, out: &mut String) {
        let up = self.agents_up.load(Ordering::Relaxed);
        let lost = self.agents_lost.load(Ordering::Relaxed);
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

    /// Asks the actor; `None` when it is gone (the manager is stopping).
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Input) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn agent_id(&self, name: &str) -> Result<String, String> {
        let name = name.to_string();
        match self.ask(|reply| Input::AgentId { name, reply }).await {
            Some(r) => r.map_err(|e| e.to_string()),
            None => Err("the manager is stopping".into()),
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
        let Some(agents) = self.ask(|reply| Input::Agents { reply }).await else {
            return;
        };
        let id = spec.id.clone();
        let artifact = match &spec.kind {
            CommandKind::Deploy { sha256, size, .. } => Some((sha256.clone(), *size)),
            _ => None,
        };
        let clock = self.cfg.clock.clone();
        let mut core = Rollout::new(spec, &self.cfg.cluster, &agents, clock.now_ms());
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
        actions = core.begin(error, clock.now_ms());
        loop {
            if let Some(done) = self.perform(std::mem::take(&mut actions), &answers).await {
                self.report_done(&id, done).await;
                return;
            }
            let left = core.deadline_ms().saturating_sub(clock.now_ms());
            actions = tokio::select! {
                Some((row, answer)) = answered.recv() => core.answered(row, answer, clock.now_ms()),
                _ = tokio::time::sleep(Duration::from_millis(left)) => core.tick(clock.now_ms()),
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
        let id = self.agent_id(agent).await?;
        let answer = rpc::call(
            &self.ep,
            proto::to(&id, "task"),
            &Msg::Task(task),
            timeout + Duration::from_millis(rollout::ANSWER_GRACE_MS),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_come_within_a_third_of_the_center_s_bound() {
        let five = Duration::from_secs(5);
        assert_eq!(report_every(five, 0), 5_000, "a center that does not say");
        assert_eq!(report_every(five, 15_000), 5_000, "the defaults fit");
        assert_eq!(
            report_every(five, 3_000),
            1_000,
            "a tight center shortens it"
        );
        assert_eq!(report_every(Duration::from_millis(500), 3_000), 500);
        assert_eq!(report_every(five, 2), 1, "never zero");
    }
}
