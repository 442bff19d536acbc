//! The JSON shapes of Mesos's legacy read endpoints (`/slaves`, `/master/frameworks`,
//! `/tasks`; `/master/state` carries the same rows), as typed values: the master serves them
//! and the client reads them back. Fields are Mesos's names; unknown keys are ignored by Mesos
//! clients, so the master adds its own (`name` on an agent, `waiting` on a framework).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mesos::state::TaskState;

/// Resources as the legacy endpoints sum them up: the four usual scalars, and any other
/// scalar, range (`"[31000-32000]"`) or set (`"{a,b}"`) by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub cpus: f64,
    #[serde(default)]
    pub gpus: f64,
    #[serde(default)]
    pub mem: f64,
    #[serde(default)]
    pub disk: f64,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `GET /slaves`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slaves {
    pub slaves: Vec<Slave>,
    #[serde(default)]
    pub recovered_slaves: Vec<Value>,
}

impl Slaves {
    /// The agent of that id.
    pub fn find(&self, id: &str) -> Option<&Slave> {
        self.slaves.iter().find(|a| a.id == id)
    }
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slave {
    pub id: String,
    /// The agent's own name (Switchyard's; Mesos has none).
    #[serde(default)]
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub pid: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub registered_time: f64,
    #[serde(default)]
    pub reregistered_time: Option<f64>,
    pub resources: Summary,
    pub used_resources: Summary,
    pub offered_resources: Summary,
    #[serde(default)]
    pub reserved_resources: BTreeMap<String, Summary>,
    pub unreserved_resources: Summary,
    pub active: bool,
    pub deactivated: bool,
    pub version: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub reserved_resources_full: BTreeMap<String, Value>,
    #[serde(default)]
    pub unreserved_resources_full: Value,
    #[serde(default)]
    pub used_resources_full: Value,
    #[serde(default)]
    pub offered_resources_full: Value,
}

impl Slave {
    /// `host:port` of the agent's API.
    pub fn address(&self) -> String {
        format!("{}:{}", self.hostname, self.port)
    }
}

/// `GET /tasks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tasks {
    pub tasks: Vec<TaskRow>,
}

/// One task (`statuses` oldest first; `executor_id` empty for command tasks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub framework_id: String,
    #[serde(default)]
    pub executor_id: String,
    pub slave_id: String,
    pub agent_id: String,
    pub state: TaskState,
    pub resources: Summary,
    #[serde(default)]
    pub role: String,
    /// Mesos `TaskStatus` objects, as the agent and the master wrote them.
    #[serde(default)]
    pub statuses: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Value>,
}

impl TaskRow {
    /// The last health verdict of its statuses, if a check ever gave one.
    pub fn healthy(&self) -> Option<bool> {
        self.statuses
            .iter()
            .rev()
            .find_map(|s| s.get("healthy").and_then(Value::as_bool))
    }

    /// Whether it ended, or was lost (a lost task does not come back to this master).
    pub fn ended(&self) -> bool {
        self.state.is_terminal() || self.state == TaskState::Lost
    }
}

/// `GET /master/frameworks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Frameworks {
    pub frameworks: Vec<FrameworkRow>,
    #[serde(default)]
    pub completed_frameworks: Vec<FrameworkRow>,
    #[serde(default)]
    pub unregistered_frameworks: Vec<Value>,
}

impl Frameworks {
    /// The framework of that id, registered or completed.
    pub fn find(&self, id: &str) -> Option<&FrameworkRow> {
        self.frameworks
            .iter()
            .chain(&self.completed_frameworks)
            .find(|f| f.id == id)
    }
}

/// One framework, with its tasks and offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRow {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub webui_url: String,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub failover_timeout: f64,
    #[serde(default)]
    pub checkpoint: bool,
    pub role: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub active: bool,
    pub connected: bool,
    #[serde(default)]
    pub recovered: bool,
    #[serde(default)]
    pub suppressed: bool,
    pub registered_time: f64,
    #[serde(default)]
    pub reregistered_time: Option<f64>,
    #[serde(default)]
    pub unregistered_time: f64,
    pub resources: Summary,
    pub used_resources: Summary,
    pub offered_resources: Summary,
    /// Why it got no offer in the last allocation cycle (Switchyard's; Mesos has none).
    #[serde(default)]
    pub waiting: Option<String>,
    #[serde(default)]
    pub offer_constraints: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    #[serde(default)]
    pub tasks: Vec<TaskRow>,
    #[serde(default)]
    pub unreachable_tasks: Vec<TaskRow>,
    #[serde(default)]
    pub completed_tasks: Vec<TaskRow>,
    #[serde(default)]
    pub offers: Vec<OfferRow>,
    #[serde(default)]
    pub executors: Vec<Value>,
}

/// An outstanding offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferRow {
    pub id: String,
    pub framework_id: String,
    pub slave_id: String,
    pub resources: Summary,
}

/// The answer to `POST /yard/tasks/kill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Killing {
    pub framework_id: String,
    pub task_id: String,
    pub killing: bool,
}

/// The body of `POST /yard/tasks/kill`: the framework may be left out when one framework has
/// a task of that id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    pub task_id: String,
    #[serde(default)]
    pub framework_id: Option<String>,
}

/// An agent's `GET /state` (the parts Mesos tools read, plus each task's sandbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// Its id, once a master registered it.
    pub id: Option<String>,
    pub name: String,
    pub hostname: String,
    pub pid: String,
    pub version: String,
    pub master_hostname: Option<String>,
    pub resources: Summary,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// `cgroups/cpu,cgroups/mem,cgroups/pids` or `none`.
    pub isolation: String,
    #[serde(default)]
    pub executors: Vec<Value>,
    pub tasks: Vec<SandboxTask>,
    #[serde(default)]
    pub completed_tasks: Vec<SandboxTask>,
}

impl AgentState {
    /// The sandbox of a task of `framework` (a running one first, else the last that ended).
    pub fn sandbox(&self, framework: &str, task: &str) -> Option<&std::path::Path> {
        let mine = |t: &&SandboxTask| t.id == task && t.framework_id == framework;
        self.tasks
            .iter()
            .find(mine)
            .or_else(|| self.completed_tasks.iter().rev().find(mine))
            .map(|t| t.sandbox.as_path())
    }
}

/// A task an agent holds or held, with its sandbox; `detail` carries the rest (its container,
/// pid and unacknowledged updates while it runs, its last status once it ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxTask {
    pub id: String,
    pub framework_id: String,
    pub state: String,
    pub sandbox: std::path::PathBuf,
    #[serde(flatten)]
    pub detail: BTreeMap<String, Value>,
}

/// The answer to an agent's `GET /files/read`: bytes of a sandbox file from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunk {
    pub data: String,
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_keeps_ports_and_other_resources_by_name() {
        let s: Summary =
            serde_json::from_str(r#"{"cpus":1.5,"mem":64,"ports":"[1-2]","disk":0}"#).unwrap();
        assert_eq!((s.cpus, s.mem, s.gpus), (1.5, 64.0, 0.0));
        assert_eq!(s.other.get("ports"), Some(&Value::from("[1-2]")));
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"cpus":1.5,"gpus":0.0,"mem":64.0,"disk":0.0,"ports":"[1-2]"})
        );
    }
}
