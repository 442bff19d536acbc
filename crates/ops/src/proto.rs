//! The operations protocol: what centers, managers and agents say to each other over the fabric.
//!
//! Every message is a [`Msg`] encoded as JSON inside a fabric string value. Control traffic
//! travels on reserved topics (`<$>/ops/…`), which WebSocket clients cannot publish on and which
//! only authenticated peers carry; live metrics go on `yard/metrics/…`, which anyone with
//! subscribe rights may watch and only the system publishes on (the `yard/` prefix is reserved
//! to principals with the control grant, and a manager keeps only samples its agents sent). Each daemon listens on its own inbox, keyed by its endpoint id:
//!
//! - agent → its manager: [`Msg::Heartbeat`] (a request; the answer carries the cluster's node
//!   list when the agent's copy is out of date), [`Msg::FetchChunk`] for artifacts;
//! - manager → the center: [`Msg::Register`] (at boot, on every change and periodically),
//!   [`Msg::MetricsBatch`], [`Msg::Progress`] and [`Msg::CommandDone`];
//! - center → a manager: [`Msg::Start`] (a command), [`Msg::Logs`];
//! - manager → an agent: [`Msg::Task`] (one step of a command), [`Msg::Logs`].
//!
//! The center never addresses an agent: it does not know their inboxes' purpose, only managers'.

use serde::{Deserialize, Serialize};
use yard_data::Value;

use crate::nodes::NodeSpec;

/// The inbox prefix of the daemon whose endpoint id is `id`.
pub fn inbox(id: &str) -> String {
    format!("<$>/ops/ep/{id}/")
}

/// A topic in the inbox of `id`.
pub fn to(id: &str, what: &str) -> String {
    format!("<$>/ops/ep/{id}/{what}")
}

/// Where an agent publishes its live samples.
pub fn live_metrics(cluster: &str, agent: &str) -> String {
    format!("yard/metrics/{cluster}/{agent}")
}

/// Where a manager listens for its agents' live samples.
pub fn live_metrics_prefix(cluster: &str) -> String {
    format!("yard/metrics/{cluster}/")
}

/// Where the center republishes a command's progress: a local event of the center's endpoint
/// (`<$>/local/data/commands/ID`), for its clients with the viewer role or above. Progress
/// carries outputs, so it is never a public topic.
pub fn command_topic(id: &str) -> String {
    format!("<$>/local/data/commands/{id}")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// Agent → manager, every heartbeat interval.
    Heartbeat {
        agent: AgentView,
        /// The version of the node list the agent runs.
        config_version: u64,
    },
    HeartbeatAck {
        cluster: String,
        config_version: u64,
        /// Present when the agent's version differs: the nodes this agent must run.
        nodes: Option<Vec<NodeSpec>>,
        metrics_interval_ms: u64,
    },
    /// Manager → center.
    Register(ClusterReport),
    Registered {
        center: String,
        /// How long the center waits for a report before it calls the manager lost (0 from a
        /// center that does not say): the manager reports well within it.
        #[serde(default)]
        manager_timeout_ms: u64,
    },
    /// Manager → center: samples of the cluster's agents since the last batch.
    MetricsBatch {
        cluster: String,
        samples: Vec<Sample>,
    },
    /// Agent → its manager, on the live topic.
    Samples {
        samples: Vec<Sample>,
    },
    /// Center → manager: start a command on the cluster.
    Start(CommandSpec),
    /// Manager → center (and the command topic): one node's or agent's step changed.
    Progress(ProgressRow),
    /// Manager → center: a command ended on this cluster.
    CommandDone {
        id: String,
        cluster: String,
        ok: bool,
        rows: Vec<ProgressRow>,
        error: Option<String>,
    },
    /// Manager → agent: one step of a command, answered when the step is over.
    Task(Task),
    TaskResult(TaskOutcome),
    /// Center → manager → agent: the tail of a node's log.
    Logs {
        agent: String,
        node: String,
        stream: String,
        max_bytes: u64,
        /// Carry on from this place (a [`crate::logfile::LogPos`], encoded) instead of the tail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    LogsText {
        text: String,
        /// Where the next read carries on (absent from agents that predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
        /// The text continues the read that ended at `after`; false when it is the tail afresh.
        #[serde(default)]
        continued: bool,
    },
    /// Center → manager: the links of the manager's endpoint (to its agents, the center, peers).
    Links,
    LinksAre {
        /// The manager's endpoint id.
        endpoint: String,
        links: Vec<LinkView>,
    },
    /// Agent → manager → center: a piece of an artifact.
    FetchChunk {
        sha256: String,
        offset: u64,
        len: u64,
    },
    Chunk {
        /// Base64 of the bytes.
        data: String,
        total: u64,
    },
    Accepted,
    /// Any request that could not be served, with the reason.
    Refused {
        code: String,
        message: String,
    },
}

impl Msg {
    pub fn to_value(&self) -> Value {
        Value::String(serde_json::to_string(self).expect("messages always serialize"))
    }

    pub fn from_value(v: &Value) -> Result<Msg, ProtoError> {
        match v {
            Value::String(s) => serde_json::from_str(s).map_err(|e| ProtoError(e.to_string())),
            other => Err(ProtoError(format!(
                "expected an operations message (a JSON string), got a {}",
                other.value_type().name()
            ))),
        }
    }

    /// The message's `type`, for errors that name it.
    pub fn type_name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("type")?.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn refused(code: &str, message: impl Into<String>) -> Msg {
        Msg::Refused {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("malformed operations message: {0}")]
pub struct ProtoError(pub String);

/// One peer link of an endpoint, as that endpoint sees it: its outgoing queue and counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkView {
    /// The endpoint at the other end (empty while it was never reached).
    pub id: String,
    pub address: String,
    /// `outbound` (this endpoint dialed) or `inbound`.
    pub direction: String,
    /// `connected`, or `connecting` for a dialed address without a link.
    pub state: String,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    /// Messages dropped at this end's queue to the peer.
    pub drops: u64,
    pub sent: u64,
    pub received: u64,
}

impl From<&yard_fabric::PeerInfo> for LinkView {
    fn from(p: &yard_fabric::PeerInfo) -> LinkView {
        LinkView {
            id: p.id.clone(),
            address: p.address.clone(),
            direction: p.direction.to_string(),
            state: p.state.to_string(),
            queue_depth: p.queue_depth,
            queue_capacity: p.queue_capacity,
            drops: p.drops,
            sent: p.sent,
            received: p.received,
        }
    }
}

/// An agent as its manager and the center see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentView {
    /// The agent's endpoint id.
    pub id: String,
    /// Its name (host name unless given).
    pub name: String,
    /// Its gateway address.
    pub address: String,
    /// `up`, or `lost` once its heartbeats stopped for longer than the manager's bound.
    pub state: String,
    /// Roles, from the agent's flags: the cluster config places nodes by role.
    pub roles: Vec<String>,
    pub nodes: Vec<NodeStatus>,
    /// Unix milliseconds of the last heartbeat the manager received.
    #[serde(default)]
    pub last_seen_ms: u64,
    /// Resource-manager tasks running on it (at most `MAX_TASKS_IN_VIEW`).
    #[serde(default)]
    pub tasks: Vec<TaskView>,
    /// How many tasks it runs in all.
    #[serde(default)]
    pub tasks_total: usize,
}

/// Tasks listed per agent in the topology; the rest are counted.
pub const MAX_TASKS_IN_VIEW: usize = 100;

/// A resource-manager task as the topology shows it under its agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskView {
    pub id: String,
    /// Its framework's name (or id).
    pub framework: String,
    pub state: String,
    #[serde(default)]
    pub healthy: Option<bool>,
}

/// One supervised process on an agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    pub name: String,
    /// `starting`, `running`, `backoff`, `stopped`, `failed`, `exited`.
    pub state: String,
    /// `healthy`, `unhealthy` or `unknown` (no check, or not yet run).
    pub health: String,
    pub pid: Option<u32>,
    pub restarts: u64,
    /// Bumped each time the process is (re)started.
    pub generation: u64,
}

/// What a manager tells the center about its cluster: the whole of it, every time, so that a
/// report after any restart reconciles rather than duplicates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterReport {
    pub cluster: String,
    pub manager: ManagerView,
    pub agents: Vec<AgentView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManagerView {
    pub id: String,
    pub address: String,
    /// Unix milliseconds when this manager process started.
    pub started_ms: u64,
    /// Its Mesos master's address, when it runs one (the center passes the dashboard's
    /// resource and service calls there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos: Option<String>,
}

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Series name, e.g. `local/agent-1/cpu` or `local/agent-1/web/rss`.
    pub series: String,
    /// Unix milliseconds.
    pub ts: u64,
    pub value: f64,
}

/// A command for one or more clusters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandSpec {
    /// Assigned by the center.
    #[serde(default)]
    pub id: String,
    pub kind: CommandKind,
    /// Seconds the whole command may take on one cluster.
    pub timeout_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CommandKind {
    /// Restart the cluster's nodes, `batch` at a time, each batch healthy before the next;
    /// only those named `AGENT/NODE` in `nodes` when it is not empty.
    Restart {
        batch: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<String>,
    },
    /// Install an artifact (already at the center) on every agent.
    Deploy {
        sha256: String,
        name: String,
        size: u64,
        path: Option<String>,
    },
    /// Switch every agent back to the previous artifact at `path` (the last deployed if none).
    Rollback { path: Option<String> },
    /// Run a program on every agent.
    Exec { argv: Vec<String> },
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::Restart { .. } => "restart",
            CommandKind::Deploy { .. } => "deploy",
            CommandKind::Rollback { .. } => "rollback",
            CommandKind::Exec { .. } => "exec",
        }
    }
}

/// One step of a command, as it stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProgressRow {
    pub id: String,
    pub cluster: String,
    pub agent: String,
    /// The node, for restarts; empty for per-agent steps.
    pub node: String,
    pub state: RowState,
    pub detail: String,
    pub exit_code: Option<i32>,
    pub output: String,
}

/// Where one row of a command stands (on the wire: `pending`, `running`, `ok`, `failed`,
/// `skipped`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    Pending,
    Running,
    Ok,
    Failed,
    /// Not started: an earlier step failed, or the deadline passed.
    Skipped,
}

/// One step, for one agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Task {
    /// Restart a node and answer once it is healthy again (or the timeout passed).
    RestartNode {
        node: String,
        timeout_ms: u64,
    },
    /// Fetch an artifact from the manager, verify it and switch `path` to it.
    Install {
        sha256: String,
        name: String,
        size: u64,
        path: Option<String>,
    },
    Rollback {
        path: Option<String>,
    },
    Exec {
        argv: Vec<String>,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskOutcome {
    pub ok: bool,
    pub detail: String,
    pub exit_code: Option<i32>,
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused_with_the_reason() {
        let m = Msg::Start(CommandSpec {
            id: "c1".into(),
            kind: CommandKind::Exec {
                argv: vec!["uname".into(), "-a".into()],
            },
            timeout_s: 30,
        });
        assert_eq!(Msg::from_value(&m.to_value()).unwrap(), m);
        let e = Msg::from_value(&Value::Count(1)).unwrap_err();
        assert!(e.0.contains("expected an operations message"), "{e}");
        let e = Msg::from_value(&Value::String("{\"type\":\"nope\"}".into())).unwrap_err();
        assert!(e.0.contains("unknown variant `nope`"), "{e}");
    }
}
