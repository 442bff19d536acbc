//! Mesos's wire vocabulary, shared by the master, the agent and the services: ids, task states,
//! the version clients parse, resources ([`resources`]) and RecordIO framing ([`recordio`]).

pub mod recordio;
pub mod resources;

use serde_json::{json, Value};

/// Mesos's version as clients parse it (dotted integers only).
pub const MESOS_VERSION: &str = "1.11.0";

/// `{"value": v}`.
pub fn mid(v: &str) -> Value {
    json!({ "value": v })
}

/// `v[key].value` as a string.
pub fn get_id<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.get("value")?.as_str()
}

/// Whether a task in `state` (a Mesos `TASK_*` name) will not change again.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}
