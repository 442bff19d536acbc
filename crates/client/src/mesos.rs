//! A manager's Mesos API (the legacy read endpoints, the operator's kill and the services
//! API) and its agents' `/state` and `/files/read`, typed with the types `yard-rm` serves.

use serde::de::DeserializeOwned;
use yard_rm::mesos::legacy::{
    AgentState, FileChunk, Frameworks, KillRequest, Killing, Slaves, Tasks,
};
use yard_rm::services::{Deployed, Removing, Scale, ServiceList, ServiceSpec, ServiceStatus};

use crate::http::{self, escape, Request};
use crate::ClientError;

/// The Mesos API at `addr` (a manager's, or an agent's), reached with `authorization` (the
/// whole header value: `Basic …` with Mesos credentials, or the CLI's `Bearer …`).
#[derive(Clone)]
pub struct Mesos {
    addr: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for Mesos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesos")
            .field("addr", &self.addr)
            .field("authorized", &self.authorization.is_some())
            .finish()
    }
}

/// Which tasks `GET /tasks` lists: all of them, oldest first, or newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub framework_id: Option<String>,
    pub task_id: Option<String>,
    /// Oldest first (by first status) instead of the newest.
    pub oldest_first: bool,
}

impl Mesos {
    pub fn new(addr: impl Into<String>, authorization: Option<String>) -> Mesos {
        Mesos {
            addr: addr.into(),
            authorization,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The same credential, at another address (an agent of this manager).
    pub fn at(&self, addr: impl Into<String>) -> Mesos {
        Mesos {
            addr: addr.into(),
            authorization: self.authorization.clone(),
        }
    }

    /// Sends `r`; a 2xx answer decoded, else the refusal with the body's `error` (Mesos's
    /// error shape) or the whole body.
    async fn send<T: DeserializeOwned>(&self, r: Request<'_>) -> Result<T, ClientError> {
        let (method, path) = (r.method, r.path);
        let r = r.authorized(self.authorization.as_deref());
        let answer = http::request(&self.addr, r).await?;
        if !(200..300).contains(&answer.status) {
            let text = answer.text();
            let error = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string));
            return Err(ClientError::Refused {
                method: method.to_string(),
                path: path.to_string(),
                status: answer.status,
                code: "error".into(),
                context: error.unwrap_or_else(|| text.trim().to_string()),
            });
        }
        serde_json::from_slice(&answer.body).map_err(|e| ClientError::Decode {
            what: format!("{method} {path} on {}", self.addr),
            why: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Request::get(path)).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).expect("a request serializes");
        self.send(Request::json("POST", path, &body)).await
    }

    /// `GET /slaves`.
    pub async fn slaves(&self) -> Result<Slaves, ClientError> {
        self.get("/slaves").await
    }

    /// `GET /master/frameworks`.
    pub async fn frameworks(&self) -> Result<Frameworks, ClientError> {
        self.get("/master/frameworks").await
    }

    /// `GET /tasks`, every page at once.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Tasks, ClientError> {
        let mut path = "/tasks?limit=-1".to_string();
        if filter.oldest_first {
            path.push_str("&order=asc");
        }
        if let Some(f) = &filter.framework_id {
            path.push_str(&format!("&framework_id={}", escape(f, false)));
        }
        if let Some(t) = &filter.task_id {
            path.push_str(&format!("&task_id={}", escape(t, false)));
        }
        self.get(&path).await
    }

    /// `POST /yard/tasks/kill`: an operator's kill (the kill policy's grace, then SIGKILL).
    pub async fn kill(&self, req: &KillRequest) -> Result<Killing, ClientError> {
        self.post("/yard/tasks/kill", req).await
    }

    /// `GET /services`.
    pub async fn services(&self) -> Result<ServiceList, ClientError> {
        self.get("/services").await
    }

    /// `GET /services/NAME`.
    pub async fn service(&self, name: &str) -> Result<ServiceStatus, ClientError> {
        self.get(&format!("/services/{}", escape(name, false)))
            .await
    }

    /// `POST /services`: a new version of the service rolls out.
    pub async fn deploy(&self, spec: &ServiceSpec) -> Result<Deployed, ClientError> {
        self.post("/services", spec).await
    }

    /// `POST /services/NAME/scale`.
    pub async fn scale(&self, name: &str, instances: u32) -> Result<Scale, ClientError> {
        let path = format!("/services/{}/scale", escape(name, false));
        let body = Scale {
            name: None,
            instances,
        };
        self.post(&path, &body).await
    }

    /// `DELETE /services/NAME`: its instances stop, then it is gone.
    pub async fn remove(&self, name: &str) -> Result<Removing, ClientError> {
        let path = format!("/services/{}", escape(name, false));
        self.send(Request::json("DELETE", &path, &[])).await
    }

    /// An agent's `GET /state`.
    pub async fn agent_state(&self) -> Result<AgentState, ClientError> {
        self.get("/state").await
    }

    /// An agent's `GET /files/read`: a sandbox file from `offset` to its end (at most what the
    /// agent returns at once).
    pub async fn read_file(&self, path: &str, offset: u64) -> Result<FileChunk, ClientError> {
        let p = format!(
            "/files/read?path={}&offset={offset}&length=-1",
            escape(path, true)
        );
        self.get(&p).await
    }
}

/// Why a task's sandbox file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TaskFileError {
    #[error("no task {0} (see `yard tasks --all`)")]
    NoTask(String),
    #[error("task {task} ran on agent {agent}, which is gone")]
    AgentGone { task: String, agent: String },
    #[error("agent {agent} no longer holds the sandbox of task {task}")]
    NoSandbox { task: String, agent: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl TaskFileError {
    /// The HTTP status the center answers with.
    pub fn status(&self) -> u16 {
        match self {
            TaskFileError::Client(e) => e.status().unwrap_or(502),
            _ => 404,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            TaskFileError::NoTask(_) => "unknown_task",
            TaskFileError::AgentGone { .. } => "agent_gone",
            TaskFileError::NoSandbox { .. } => "no_sandbox",
            TaskFileError::Client(_) => "rm_unreachable",
        }
    }
}

/// Where a task's output is: its agent's Mesos API and the file's path in its sandbox.
#[derive(Debug, Clone)]
pub struct TaskFile {
    pub agent: Mesos,
    pub path: String,
    /// Whether the task has ended (nothing more will be written).
    pub ended: bool,
}

impl Mesos {
    /// The task of that id (the oldest, when a framework reused the id).
    pub async fn find_task(
        &self,
        task_id: &str,
    ) -> Result<Option<yard_rm::mesos::legacy::TaskRow>, ClientError> {
        let filter = TaskFilter {
            task_id: Some(task_id.to_string()),
            ..TaskFilter::default()
        };
        Ok(self.tasks(&filter).await?.tasks.pop())
    }

    /// Finds task `task_id`'s `stdout` (or `stderr`): the master names its agent, the agent its
    /// sandbox.
    pub async fn task_file(&self, task_id: &str, stderr: bool) -> Result<TaskFile, TaskFileError> {
        let t = self
            .find_task(task_id)
            .await?
            .ok_or_else(|| TaskFileError::NoTask(task_id.to_string()))?;
        let slaves = self.slaves().await?;
        let agent = slaves
            .find(&t.slave_id)
            .ok_or_else(|| TaskFileError::AgentGone {
                task: task_id.to_string(),
                agent: t.slave_id.clone(),
            })?;
        let on_agent = self.at(agent.address());
        let state = on_agent.agent_state().await?;
        let sandbox =
            state
                .sandbox(&t.framework_id, task_id)
                .ok_or_else(|| TaskFileError::NoSandbox {
                    task: task_id.to_string(),
                    agent: on_agent.addr().to_string(),
                })?;
        let path = sandbox
            .join(if stderr { "stderr" } else { "stdout" })
            .display()
            .to_string();
        Ok(TaskFile {
            agent: on_agent,
            path,
            ended: t.ended(),
        })
    }
}

/// The center's way to its clusters' Mesos masters ([`yard_ops::rm_proxy`]): one HTTP exchange
/// per call, bounded by `timeout`.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pub timeout: std::time::Duration,
}

impl yard_ops::rm_proxy::MesosProxy for Forwarder {
    fn forward(&self, f: yard_ops::rm_proxy::Forward) -> yard_ops::rm_proxy::Pending {
        let timeout = self.timeout;
        Box::pin(async move {
            use yard_ops::rm_proxy::{Answer, Unreachable};
            let json = !f.body.is_empty();
            let request = Request {
                method: f.method,
                path: &f.path,
                body: &f.body,
                content_type: json.then_some("application/json"),
                authorization: f.authorization.as_deref(),
            };
            let unreachable = |why: String| Unreachable {
                addr: f.addr.clone(),
                why,
            };
            match tokio::time::timeout(timeout, http::request(&f.addr, request)).await {
                Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
                Ok(Err(e)) => Err(unreachable(e.to_string())),
                Ok(Ok(a)) => Ok(Answer {
                    status: a.status,
                    content_type: a.content_type,
                    body: a.body,
                }),
            }
        })
    }

    fn task_log(&self, l: yard_ops::rm_proxy::TaskLog) -> yard_ops::rm_proxy::Pending {
        let timeout = self.timeout;
        Box::pin(async move {
            use yard_ops::rm_proxy::{Answer, Unreachable};
            let master = Mesos::new(l.addr.clone(), l.authorization.clone());
            let read = async {
                let f = master.task_file(&l.task, l.stderr).await?;
                let chunk = f.agent.read_file(&f.path, l.offset).await?;
                Ok::<_, TaskFileError>(serde_json::json!({
                    "task": l.task, "offset": chunk.offset, "data": chunk.data, "ended": f.ended,
                }))
            };
            let json = |status: u16, v: serde_json::Value| Answer {
                status,
                content_type: Some("application/json".into()),
                body: serde_json::to_vec(&v).expect("serializes"),
            };
            match tokio::time::timeout(timeout, read).await {
                Err(_) => Err(Unreachable {
                    addr: l.addr,
                    why: format!("no answer within {timeout:?}"),
                }),
                Ok(Ok(v)) => Ok(json(200, v)),
                Ok(Err(e)) => Ok(json(
                    e.status(),
                    serde_json::json!({"code": e.code(), "context": e.to_string()}),
                )),
            }
        })
    }
}
