//! `yard agent`: one per host. It knows only its manager: it peers with it, sends a heartbeat
//! every interval (the answer carries the nodes to run), supervises those nodes, publishes
//! metrics on `yard/metrics/CLUSTER/AGENT`, and carries out the steps of commands its manager
//! sends (restart a node, install or roll back an artifact, run a program).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_auth::exposition::{family, label};
use yard_auth::http::Extension;
use yard_fabric::{Endpoint, Message, OverflowPolicy};

use crate::artifacts::{ArtifactStore, Deployments};
use crate::logfile::Rotation;
use crate::proto::{self, AgentView, Msg, Task, TaskOutcome, TaskView, MAX_TASKS_IN_VIEW};
use crate::rpc::{self, Inbox};
use crate::sample::Sampler;
use crate::supervisor::Supervisor;
use crate::OpsError;

/// Artifacts travel in pieces of this size.
pub const CHUNK: u64 = 1 << 20;
/// An `exec` keeps at most this much of a program's output.
pub const MAX_OUTPUT: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The manager's address (HOST:PORT).
    pub manager: String,
    /// This agent's name in its cluster.
    pub name: String,
    pub roles: Vec<String>,
    /// Nodes' logs and working directories, artifacts, deployments.
    pub dir: PathBuf,
    pub heartbeat: Duration,
    pub rotation: Rotation,
    /// The resource manager's tasks on this host (latest list), reported with each heartbeat.
    pub tasks: Option<tokio::sync::watch::Receiver<Vec<TaskView>>>,
    /// Whom nodes run as.
    pub node_users: crate::supervisor::NodeUsers,
}

struct State {
    cluster: Option<String>,
    manager: Option<String>,
    config_version: u64,
    metrics_interval: Duration,
}

struct Agent {
    ep: Endpoint,
    cfg: AgentConfig,
    sup: Supervisor,
    store: ArtifactStore,
    deployments: Deployments,
    /// Learnt from the manager's answers; a std mutex never held across an await.
    state: Mutex<State>,
}

/// Starts the agent on `ep`; the handle resolves after shutdown, once every node has stopped.
pub async fn start(
    cfg: AgentConfig,
    ep: Endpoint,
    shutdown: CancellationToken,
) -> Result<(Extension, JoinHandle<()>), OpsError> {
    crate::nodes::check_name("agent", &cfg.name)?;
    let mut cfg = cfg;
    cfg.dir = crate::absolute_dir(&cfg.dir)?;
    let store = ArtifactStore::new(cfg.dir.join("artifacts"));
    let agent = Arc::new(Agent {
        sup: Supervisor::new(
            cfg.dir.join("nodes"),
            cfg.rotation,
            cfg.node_users.clone(),
            shutdown.child_token(),
        ),
        deployments: Deployments::new(&cfg.dir, store.clone()),
        store,
        state: Mutex::new(State {
            cluster: None,
            manager: None,
            config_version: 0,
            metrics_interval: Duration::from_secs(5),
        }),
        ep: ep.clone(),
        cfg,
    });
    let inbox = Inbox::open(
        &ep,
        "agent",
        vec![proto::inbox(ep.id())],
        4096,
        OverflowPolicy::DropNewest,
    )
    .await?;
    let metrics_agent = agent.clone();
    let metrics: yard_auth::http::MetricsHook = Arc::new(move |out: &mut String| {
        metrics_agent.prometheus(out);
    });
    let a = agent.clone();
    let task = tokio::spawn(async move {
        let peering = {
            let ep = a.ep.clone();
            let addr = a.cfg.manager.clone();
            tokio::spawn(async move {
                match ep.peer(&addr).await {
                    Ok(Ok(id)) => tracing::info!(%addr, manager = %id, "peered with the manager"),
                    Ok(Err(e)) => tracing::warn!(%addr, "manager not reached yet: {e}; re-dialing"),
                    Err(e) => tracing::error!(%addr, "cannot peer with the manager: {e}"),
                }
            })
        };
        let inbox_task = tokio::spawn(serve_inbox(a.clone(), inbox));
        let beat = tokio::spawn(heartbeats(a.clone()));
        let samples = tokio::spawn(publish_metrics(a.clone()));
        shutdown.cancelled().await;
        for t in [&peering, &inbox_task, &beat, &samples] {
            t.abort();
        }
        a.sup.stop_all().await;
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

impl Agent {
    fn view(&self) -> AgentView {
        AgentView {
            id: self.ep.id().to_string(),
            name: self.cfg.name.clone(),
            address: self.ep.config().listen.clone(),
            state: "up".into(),
            roles: self.cfg.roles.clone(),
            nodes: self.sup.statuses(),
            last_seen_ms: 0,
            tasks: self
                .cfg
                .tasks
                .as_ref()
                .map(|t| t.borrow().iter().take(MAX_TASKS_IN_VIEW).cloned().collect())
                .unwrap_or_default(),
            tasks_total: self.cfg.tasks.as_ref().map_or(0, |t| t.borrow().len()),
        }
    }

    fn prometheus(&self, out: &mut String) {
        let nodes = self.sup.statuses();
        let per = |f: &dyn Fn(&proto::NodeStatus) -> f64| -> Vec<(String, f64)> {
            nodes
                .iter()
                .map(|n| (format!("{{node=\"{}\"}}", label(&n.name)), f(n)))
                .collect()
        };
        family(
            out,
            "yard_agent_node_healthy",
            "gauge",
            "1 when the node's health check passes.",
            &per(&|n| f64::from(u8::from(n.health == "healthy"))),
        );
        family(
            out,
            "yard_agent_node_restarts_total",
            "counter",
            "Restarts of the node (by policy or command).",
            &per(&|n| n.restarts as f64),
        );
    }

    async fn manager_id(&self) -> Option<String> {
        let snap = self.ep.snapshot().await.ok()?;
        snap.peers
            .into_iter()
            .find(|p| p.state == "connected" && !p.id.is_empty())
            .map(|p| p.id)
    }

    async fn beat(&self) -> Result<(), String> {
        let manager = self
            .manager_id()
            .await
            .ok_or_else(|| format!("not peered with the manager at {}", self.cfg.manager))?;
        let version = self.state.lock().expect("agent state").config_version;
        let msg = Msg::Heartbeat {
            agent: self.view(),
            config_version: version,
        };
        let answer = rpc::call(
            &self.ep,
            proto::to(&manager, "heartbeat"),
            &msg,
            Duration::from_secs(3),
        )
        .await?;
        let Msg::HeartbeatAck {
            cluster,
            config_version,
            nodes,
            metrics_interval_ms,
        } = answer
        else {
            return Err(format!("unexpected answer to a heartbeat: {answer:?}"));
        };
        {
            let mut s = self.state.lock().expect("agent state");
            if s.cluster.as_deref() != Some(&cluster) {
                tracing::info!(%cluster, "joined the cluster");
            }
            s.cluster = Some(cluster);
            s.manager = Some(manager);
            s.config_version = config_version;
            s.metrics_interval = Duration::from_millis(metrics_interval_ms.max(100));
        }
        if let Some(nodes) = nodes {
            tracing::info!(
                version = config_version,
                nodes = nodes.len(),
                "node list from the manager"
            );
            self.sup.apply(nodes);
        }
        Ok(())
    }

    async fn task(&self, task: Task) -> TaskOutcome {
        let done = |ok: bool, detail: String| TaskOutcome {
            ok,
            detail,
            exit_code: None,
            output: String::new(),
        };
        match task {
            Task::RestartNode { node, timeout_ms } => {
                match self
                    .sup
                    .restart(&node, Duration::from_millis(timeout_ms))
                    .await
                {
                    Ok(generation) => done(true, format!("healthy (generation {generation})")),
                    Err(e) => done(false, e.to_string()),
                }
            }
            Task::Install {
                sha256,
                name,
                size,
                path,
            } => match self.install(&sha256, &name, size, path.as_deref()).await {
                Ok(d) => done(true, d),
                Err(e) => done(false, e),
            },
            Task::Rollback { path } => {
                let path = match path.map(|p| self.deployments.resolve(Some(&p), "")) {
                    Some(Err(e)) => return done(false, e.to_string()),
                    Some(Ok(p)) => Some(p),
                    None => None,
                };
                match self.deployments.rollback(path.as_deref()) {
                    Ok(s) => done(true, format!("{} -> {}", s.path.display(), short(&s.to))),
                    Err(e) => done(false, e.to_string()),
                }
            }
            Task::Exec { argv, timeout_ms } => {
                exec(&argv, &self.cfg.name, Duration::from_millis(timeout_ms)).await
            }
        }
    }

    /// Fetches the artifact from the manager unless it is here already, verifies it, and
    /// switches the deployment to it.
    async fn install(
        &self,
        sha: &str,
        name: &str,
        size: u64,
        path: Option<&str>,
    ) -> Result<String, String> {
        crate::artifacts::check_digest(sha).map_err(|e| e.to_string())?;
        if !self.store.has(sha) {
            let manager = self
                .state
                .lock()
                .expect("agent state")
                .manager
                .clone()
                .ok_or("no manager yet")?;
            let mut w = self.store.writer(sha).map_err(|e| e.to_string())?;
            loop {
                let ask = Msg::FetchChunk {
                    sha256: sha.to_string(),
                    offset: w.len(),
                    len: CHUNK,
                };
                let got = rpc::call(
                    &self.ep,
                    proto::to(&manager, "chunk"),
                    &ask,
                    Duration::from_secs(30),
                )
                .await?;
                let Msg::Chunk { data, total } = got else {
                    return Err(format!("unexpected answer to a chunk request: {got:?}"));
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| format!("a chunk is not base64: {e}"))?;
                if bytes.is_empty() && w.len() < total {
                    return Err(format!(
                        "the artifact ended early at {} of {total} bytes",
                        w.len()
                    ));
                }
                w.write(&bytes).map_err(|e| e.to_string())?;
                if w.len() >= total {
                    break;
                }
            }
            if w.len() != size {
                return Err(format!("expected {size} bytes, received {}", w.len()));
            }
            w.finish().map_err(|e| e.to_string())?;
        }
        let target = self
            .deployments
            .resolve(path, name)
            .map_err(|e| e.to_string())?;
        let s = self
            .deployments
            .install(&target, sha)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{} -> {}{}",
            s.path.display(),
            short(&s.to),
            s.from
                .map(|f| format!(" (was {})", short(&f)))
                .unwrap_or_default()
        ))
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Runs a program with a timeout; keeps the end of its output (stdout then stderr).
async fn exec(argv: &[String], agent: &str, timeout: Duration) -> TaskOutcome {
    let fail = |detail: String| TaskOutcome {
        ok: false,
        detail,
        exit_code: None,
        output: String::new(),
    };
    let Some(program) = argv.first() else {
        return fail("nothing to run".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .env("YARD_AGENT", agent)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => fail(format!("did not finish within {timeout:?} (killed)")),
        Ok(Err(e)) => fail(format!("cannot run {program:?}: {e}")),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            if text.len() > MAX_OUTPUT {
                let mut cut = text.len() - MAX_OUTPUT;
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                text = format!("[… {cut} bytes cut]{}", &text[cut..]);
            }
            TaskOutcome {
                ok: out.status.success(),
                detail: out.status.to_string(),
                exit_code: out.status.code(),
                output: text,
            }
        }
    }
}

async fn heartbeats(a: Arc<Agent>) {
    let mut tick = tokio::time::interval(a.cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error = String::new();
    loop {
        tick.tick().await;
        match a.beat().await {
            Ok(()) => last_error.clear(),
            Err(e) if e != last_error => {
                tracing::warn!("heartbeat: {e}");
                last_error = e;
            }
            Err(_) => {}
        }
    }
}

async fn publish_metrics(a: Arc<Agent>) {
    let publisher = match a
        .ep
        .attach("agent-metrics", vec![], 16, OverflowPolicy::DropOldest)
        .await
    {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut sampler: Option<(String, Sampler)> = None;
    loop {
        let (cluster, interval) = {
            let s = a.state.lock().expect("agent state");
            (s.cluster.clone(), s.metrics_interval)
        };
        if let Some(cluster) = cluster {
            if sampler.as_ref().is_none_or(|(c, _)| *c != cluster) {
                sampler = Some((
                    cluster.clone(),
                    Sampler::new(&cluster, &a.cfg.name, a.cfg.dir.clone()),
                ));
            }
            let (_, s) = sampler.as_mut().expect("sampler");
            let samples = s.sample(crate::now_ms(), &a.sup.statuses());
            let msg = Msg::Samples { samples };
            let _ = publisher
                .publish(proto::live_metrics(&cluster, &a.cfg.name), msg.to_value())
                .await;
        }
        tokio::time::sleep(interval).await;
    }
}

async fn serve_inbox(a: Arc<Agent>, mut inbox: Inbox) {
    while let Some(batch) = inbox.next().await {
        for m in batch {
            let a = a.clone();
            let client = inbox.client.clone();
            tokio::spawn(async move {
                let answer = handle(&a, &m).await;
                rpc::answer(&client, &m, answer).await;
            });
        }
    }
}

async fn handle(a: &Agent, m: &Message) -> Msg {
    match Msg::from_value(&m.value) {
        Ok(Msg::Task(t)) => Msg::TaskResult(a.task(t).await),
        Ok(Msg::Logs {
            node,
            stream,
            max_bytes,
            after,
            ..
        }) => {
            if !a.sup.names().contains(&node) {
                return Msg::refused(
                    "unknown_node",
                    format!("no node {node:?} on agent {}", a.cfg.name),
                );
            }
            if stream != "stdout" && stream != "stderr" {
                return Msg::refused(
                    "bad_request",
                    format!("stream is stdout or stderr, not {stream:?}"),
                );
            }
            let after = match after
                .as_deref()
                .map(|s| (s, crate::logfile::LogPos::decode(s)))
            {
                None => None,
                Some((_, Some(pos))) => Some(pos),
                Some((s, None)) => {
                    return Msg::refused(
                        "bad_request",
                        format!("after is a log position FILE:OFFSET, not {s:?}"),
                    )
                }
            };
            let path = a.sup.log_path(&node, &stream);
            match crate::logfile::follow(&path, after, max_bytes.min(16 << 20)) {
                Ok(c) => Msg::LogsText {
                    text: String::from_utf8_lossy(&c.bytes).into_owned(),
                    next: Some(c.next.encode()),
                    continued: c.continued,
                },
                Err(e) => Msg::refused("io_error", e.to_string()),
            }
        }
        Ok(other) => Msg::refused(
            "bad_request",
            format!("an agent does not take {:?} messages", other.type_name()),
        ),
        Err(e) => Msg::refused("bad_request", e.to_string()),
    }
}
