//! The center's window onto each cluster's resource manager: `/v1/clusters/C/rm/...` is passed
//! to the Mesos master that cluster's manager reported, with the caller's own credential (the
//! master's guard checks it again and audits the call), so the dashboard reads and changes
//! resources and services from the center's one origin.
//!
//! Only the routes in [`route`] pass, each with the permission the center asks for first: the
//! master's state, agents, frameworks, tasks and services to read, and services to deploy, scale
//! and remove. Nothing else of the master (scheduler and operator calls) is reachable this way.
//! The HTTP exchange itself is the binary's ([`MesosProxy`]): this crate holds no HTTP client.

use std::future::Future;
use std::pin::Pin;

use yard_auth::Permission;

/// One request the center passes to a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The master's address (HOST:PORT).
    pub addr: String,
    pub method: &'static str,
    /// The master's path, with the caller's query string.
    pub path: String,
    pub body: Vec<u8>,
    /// The caller's `Authorization` header, passed on unchanged.
    pub authorization: Option<String>,
}

/// What the master answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why no answer came back from the master.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Mesos master at {addr} did not answer: {why}")]
pub struct Unreachable {
    pub addr: String,
    pub why: String,
}

/// The future a [`MesosProxy`] returns.
pub type Pending = Pin<Box<dyn Future<Output = Result<Answer, Unreachable>> + Send>>;

/// A read of a task's output: the master names the task's agent, the agent its sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLog {
    /// The master's address.
    pub addr: String,
    pub task: String,
    /// `stderr` instead of `stdout`.
    pub stderr: bool,
    /// Bytes already read (the previous answer's `offset` plus its data's length).
    pub offset: u64,
    pub authorization: Option<String>,
}

/// Carries a [`Forward`] to its master and brings the answer back (with a timeout).
pub trait MesosProxy: Send + Sync + std::fmt::Debug + 'static {
    fn forward(&self, request: Forward) -> Pending;
    /// Reads a task's output (JSON `{task, offset, data, ended}`, or `{code, context}`).
    fn task_log(&self, request: TaskLog) -> Pending;
}

/// Where a route of `/v1/clusters/C/rm/...` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Passed to the master: its method and path (without the query).
    Master { method: &'static str, path: String },
    /// Gathered by the center ([`MesosProxy::task_log`]): this task's output.
    TaskLog { task: String },
}

/// A route that the center serves from a cluster's resource manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// What the caller needs at the center.
    pub permission: Permission,
    pub target: Target,
}

/// A service name as the master accepts it in a path.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name != "."
        && name != ".."
}

/// The master's route for `METHOD /v1/clusters/C/rm/REST`, or `None` for anything else.
pub fn route(method: &str, rest: &str) -> Option<Route> {
    use Permission::*;
    let seg: Vec<&str> = rest.split('/').collect();
    let master = |m: &'static str, path: String| Target::Master { method: m, path };
    let (permission, target) = match (method, seg.as_slice()) {
        ("GET", ["state"]) => (Read, master("GET", "/master/state".into())),
        ("GET", ["agents"]) => (Read, master("GET", "/master/slaves".into())),
        ("GET", ["frameworks"]) => (Read, master("GET", "/master/frameworks".into())),
        ("GET", ["tasks"]) => (Read, master("GET", "/master/tasks".into())),
        ("GET", ["services"]) => (Read, master("GET", "/services".into())),
        ("GET", ["services", n]) if plain(n) => (Read, master("GET", format!("/services/{n}"))),
        ("POST", ["services"]) => (Command, master("POST", "/services".into())),
        ("POST", ["services", n, "scale"]) if plain(n) => {
            (Command, master("POST", format!("/services/{n}/scale")))
        }
        ("DELETE", ["services", n]) if plain(n) => {
            (Command, master("DELETE", format!("/services/{n}")))
        }
        ("GET", ["tasks", t, "log"]) if plain(t) => (
            Outputs,
            Target::TaskLog {
                task: t.to_string(),
            },
        ),
        _ => return None,
    };
    Some(Route { permission, target })
}

/// A task-log read's query: `stream=stdout|stderr` (whether stderr) and `offset=N`. Both are
/// plain words and digits, so nothing needs decoding.
pub fn task_log_query(raw: Option<&str>) -> Result<(bool, u64), String> {
    let raw = raw.unwrap_or("");
    let get = |k: &str| {
        raw.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v)
    };
    let stderr = match get("stream") {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => return Err(format!("stream must be stdout or stderr, not {other:?}")),
    };
    let offset =
        match get("offset").map(str::parse::<u64>) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Err(
                "offset must be a byte count (the previous answer's offset plus its data's length)"
                    .into(),
            ),
        };
    Ok((stderr, offset))
}

/// The query string passed on: only `limit`, `offset` and `order` (the master's task paging),
/// so that nothing else of the caller's URL reaches the master.
pub fn query(raw: Option<&str>) -> String {
    let Some(raw) = raw else {
        return String::new();
    };
    let kept: Vec<&str> = raw
        .split('&')
        .filter(|kv| {
            let k = kv.split('=').next().unwrap_or("");
            matches!(k, "limit" | "offset" | "order")
                && kv
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c))
        })
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_routes_pass_each_with_its_permission() {
        let r = |m, p| route(m, p).map(|r| (r.permission, r.target));
        let master = |method, path: &str| Target::Master {
            method,
            path: path.into(),
        };
        assert_eq!(
            r("GET", "agents"),
            Some((Permission::Read, master("GET", "/master/slaves")))
        );
        assert_eq!(
            r("POST", "services/web-1/scale"),
            Some((Permission::Command, master("POST", "/services/web-1/scale")))
        );
        assert_eq!(
            r("GET", "tasks/hello.v1.1a/log"),
            Some((
                Permission::Outputs,
                Target::TaskLog {
                    task: "hello.v1.1a".into()
                }
            ))
        );
        assert_eq!(
            r("DELETE", "services/hello"),
            Some((Permission::Command, master("DELETE", "/services/hello")))
        );
        for (m, p) in [
            ("POST", "state"),
            ("GET", "api/v1/scheduler"),
            ("POST", "api/v1"),
            ("GET", "services/../master/state"),
            ("GET", "services/a/b"),
            ("DELETE", "services"),
            ("GET", "services/"),
            ("GET", "services/%2e%2e"),
            ("GET", "tasks/../log"),
            ("POST", "tasks/t/log"),
        ] {
            assert_eq!(r(m, p), None, "{m} {p}");
        }
    }

    #[test]
    fn a_task_log_read_names_its_stream_and_offset() {
        assert_eq!(task_log_query(None), Ok((false, 0)));
        assert_eq!(
            task_log_query(Some("stream=stderr&offset=7")),
            Ok((true, 7))
        );
        assert!(task_log_query(Some("stream=both"))
            .unwrap_err()
            .contains("stdout or stderr"));
        assert!(task_log_query(Some("offset=-1"))
            .unwrap_err()
            .contains("byte count"));
    }

    #[test]
    fn only_paging_parameters_reach_the_master() {
        assert_eq!(query(None), "");
        assert_eq!(query(Some("limit=10&offset=5")), "?limit=10&offset=5");
        assert_eq!(query(Some("limit=10&path=/etc/passwd&x=1")), "?limit=10");
        assert_eq!(query(Some("order=des%26jsonp=x")), "");
    }
}
