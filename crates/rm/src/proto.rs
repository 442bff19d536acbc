//! What the master and its agents say to each other over the fabric (Mesos keeps this link
//! private too). Each message is a [`Wire`] as JSON inside a fabric string, on reserved topics
//! that travel the mesh between authenticated peers only:
//!
//! - agent → master (`<$>/ops/rm/MASTER-ID/…`): [`Wire::Register`] (a request, answered with
//!   [`Wire::Registered`]), [`Wire::Heartbeat`] (a request), [`Wire::Update`] (a task's status,
//!   resent until the master sends [`Wire::Ack`]);
//! - master → agent (`<$>/ops/rm/AGENT-ENDPOINT-ID/…`): [`Wire::Launch`], [`Wire::Kill`],
//!   [`Wire::Ack`], [`Wire::ShutdownFramework`], [`Wire::FrameworkMessage`],
//!   [`Wire::ShutdownExecutor`]; agent → master also [`Wire::ExecutorMessage`], [`Wire::ExecutorExited`].
//!
//! Mesos objects (TaskInfo, TaskStatus, FrameworkInfo) travel as their Mesos JSON, unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The topic prefix where the daemon whose endpoint id is `id` receives resource-manager traffic.
pub fn inbox(id: &str) -> String {
    format!("<$>/ops/rm/{id}/")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Wire {
    Register(Registration),
    Registered {
        agent_id: String,
        /// Tasks the agent reported that the master wants killed (not partition-aware, or
        /// unknown to it).
        kill: Vec<(String, String)>,
    },
    Heartbeat {
        agent_id: String,
    },
    /// `known: false` asks the agent to register again (the master restarted or removed it).
    HeartbeatAck {
        known: bool,
    },
    Update {
        agent_id: String,
        framework_id: String,
        status: Value,
    },
    Launch {
        framework_id: String,
        framework_info: Value,
        tasks: Vec<Value>,
    },
    Kill {
        framework_id: String,
        task_id: String,
        grace_ms: u64,
    },
    Ack {
        framework_id: String,
        task_id: String,
        uuid: String,
    },
    ShutdownFramework {
        framework_id: String,
    },
    FrameworkMessage {
        framework_id: String,
        executor_id: String,
        data: String,
    },
    /// Master → agent: SHUTDOWN of one executor.
    ShutdownExecutor {
        framework_id: String,
        executor_id: String,
    },
    /// Agent → master: an executor's MESSAGE for its framework.
    ExecutorMessage {
        agent_id: String,
        framework_id: String,
        executor_id: String,
        data: String,
    },
    /// Agent → master: an executor's process ended (the framework gets FAILURE).
    ExecutorExited {
        agent_id: String,
        framework_id: String,
        executor_id: String,
        status: i32,
    },
    Refused {
        message: String,
    },
}

impl Wire {
    pub fn encode(&self) -> yard_data::Value {
        yard_data::Value::String(serde_json::to_string(self).expect("messages serialize"))
    }

    pub fn decode(v: &yard_data::Value) -> Result<Wire, crate::Invalid> {
        match v {
            yard_data::Value::String(s) => serde_json::from_str(s)
                .map_err(|e| crate::Invalid(format!("malformed resource-manager message: {e}"))),
            other => Err(crate::Invalid(format!(
                "expected a resource-manager message (a JSON string), got a {}",
                other.value_type().name()
            ))),
        }
    }
}

/// An agent introducing itself (at start, and again whenever the master does not know it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Registration {
    /// The id the master gave it before, if any.
    pub agent_id: Option<String>,
    pub name: String,
    pub hostname: String,
    /// Its Mesos agent API port (5051 by default).
    pub port: u16,
    /// Its fabric endpoint id: where the master sends its messages.
    pub endpoint: String,
    /// Total resources, in the text syntax.
    pub resources: String,
    pub attributes: BTreeMap<String, String>,
    /// The tasks it runs now (after a master restart or a partition, for reconciliation).
    pub tasks: Vec<TaskReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskReport {
    pub framework_id: String,
    pub framework_info: Value,
    pub task: Value,
    /// Its latest status.
    pub status: Value,
}
