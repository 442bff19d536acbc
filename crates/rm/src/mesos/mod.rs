//! Mesos's wire vocabulary, shared by the master, the agent and the services: ids, task states
//! ([`state`]), the legacy read endpoints' rows ([`legacy`]), the scheduler API's calls and events ([`scheduler`]), the version clients
//! parse, resources ([`resources`]) and RecordIO framing ([`recordio`]).

pub mod legacy;
pub mod recordio;
pub mod resources;
pub mod scheduler;
pub mod state;

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

/// Whether a task in `state` (a Mesos `TASK_*` name) will not change again; a name that is
/// not a Mesos state is not terminal.
pub fn is_terminal(state: &str) -> bool {
    state::TaskState::parse(state).is_ok_and(state::TaskState::is_terminal)
}
