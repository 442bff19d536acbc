//! Starting and watching the agent's processes: a command task (the built-in command executor:
//! the agent itself reports the task's states) or a custom executor (it reports its tasks'
//! states through the executor API; the agent watches the process). Either runs in its own
//! session and its own cgroups ([`container`]), in a sandbox holding `stdout` and `stderr`.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use tokio::sync::mpsc;

use crate::agent::container::{self, Container, Isolation, Limits};
use crate::agent::health::{self, HealthCheck, Tracker, Verdict};
use crate::agent::spawn::{self, Process};
use crate::agent::{Event, ExecKey, Key};
use crate::mesos::mid;
use crate::now_ms;

/// Where a process's container usage is published for `/monitor/statistics`.
pub(crate) type UsageSlot = Arc<std::sync::Mutex<Option<Container>>>;

/// What to start, and where.
pub(crate) struct Launch {
    pub sandbox: PathBuf,
    pub container_id: String,
    pub iso: Option<Isolation>,
    pub limits: Limits,
    /// A Mesos CommandInfo.
    pub command: Value,
    /// On top of the agent's own environment and the CommandInfo's.
    pub env: Vec<(String, String)>,
    /// Whom it runs as ([`crate::agent::task_user`]); the error fails the launch.
    pub user: Result<Option<spawn::Account>, yard_auth::account::AccountError>,
}

impl Launch {
    /// Creates the sandbox and the cgroups, then starts the command in its own session inside
    /// them. The error is the message for the task's failure.
    fn start(&self) -> Result<(Process, Option<Container>), String> {
        let user = self.user.clone()?;
        std::fs::create_dir_all(&self.sandbox)
            .map_err(|e| format!("cannot create the sandbox {}: {e}", self.sandbox.display()))?;
        if let Some(u) = &user {
            std::os::unix::fs::chown(&self.sandbox, Some(u.uid), Some(u.gid))
                .map_err(|e| format!("cannot give the sandbox to {}: {e}", u.name))?;
        }
        let container = match &self.iso {
            Some(iso) => Some(
                iso.create(&self.container_id, self.limits)
                    .map_err(|e| format!("cannot create the cgroups: {e}"))?,
            ),
            None => None,
        };
        let cmd = &self.command;
        let value = cmd.get("value").and_then(Value::as_str).unwrap_or("");
        let shell = cmd.get("shell").and_then(Value::as_bool).unwrap_or(true);
        let mut vars: Vec<(String, String)> = cmd
            .pointer("/environment/variables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| {
                Some((
                    v.get("name")?.as_str()?.to_string(),
                    v.get("value")?.as_str()?.to_string(),
                ))
            })
            .collect();
        vars.extend(self.env.iter().cloned());
        let env = spawn::environment(&vars);
        let (program, args): (PathBuf, Vec<OsString>) = if shell {
            (
                "/bin/sh".into(),
                vec!["sh".into(), "-c".into(), value.into()],
            )
        } else {
            let Some(program) = spawn::resolve(OsStr::new(value), &env) else {
                return Err(undo(
                    container,
                    format!("cannot start {value:?}: not found (PATH is searched)"),
                ));
            };
            // arguments[0] is argv[0], as in execvp.
            let mut args: Vec<OsString> = cmd
                .get("arguments")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(OsString::from)
                        .collect()
                })
                .unwrap_or_default();
            if args.is_empty() {
                args.push(value.into());
            }
            (program, args)
        };
        let open = |name: &str| std::fs::File::create(self.sandbox.join(name));
        let (stdout, stderr) = match (open("stdout"), open("stderr")) {
            (Ok(o), Ok(e)) => (o, e),
            _ => {
                return Err(undo(
                    container,
                    "cannot create stdout/stderr in the sandbox".into(),
                ))
            }
        };
        if let Some(u) = &user {
            for f in ["stdout", "stderr"] {
                let _ = std::os::unix::fs::chown(self.sandbox.join(f), Some(u.uid), Some(u.gid));
            }
        }
        let c = spawn::Command {
            user,
            program,
            args,
            env,
            cwd: self.sandbox.clone(),
            stdout,
            stderr,
            cgroup_fds: container
                .as_ref()
                .map(Container::join_fds)
                .unwrap_or_default(),
        };
        let who = c.user.as_ref().map(|u| u.name.clone());
        match c.spawn() {
            Ok(p) => Ok((p, container)),
            Err(e) => {
                let hint = match (&who, e.raw_os_error()) {
                    (Some(u), Some(libc::EACCES)) => format!(
                        " (every directory above {} must be searchable by {u}: chmod o+x)",
                        self.sandbox.display()
                    ),
                    _ => String::new(),
                };
                Err(undo(
                    container,
                    format!("cannot start {value:?}: {e}{hint}"),
                ))
            }
        }
    }
}

fn undo(container: Option<Container>, message: String) -> String {
    if let Some(ct) = container {
        ct.destroy();
    }
    message
}

/// Waits for the process; a kill request (its grace in ms) terminates it. Returns the exit and
/// whether it was killed.
async fn wait(
    child: &Process,
    kill: &mut mpsc::Receiver<u64>,
) -> (std::io::Result<ExitStatus>, bool) {
    tokio::select! {
        r = child.wait() => (r, false),
        Some(grace) = kill.recv() => (terminate(child, grace).await, true),
    }
}

/// SIGTERM to the process group, SIGKILL when `grace_ms` is over.
async fn terminate(child: &Process, grace_ms: u64) -> std::io::Result<ExitStatus> {
    let pid = child.pid;
    container::signal_group(pid, libc::SIGTERM);
    match tokio::time::timeout(Duration::from_millis(grace_ms), child.wait()).await {
        Ok(r) => r,
        Err(_) => {
            container::signal_group(pid, libc::SIGKILL);
            child.wait().await
        }
    }
}

/// After the process ended: whatever it left behind goes with its container. True when the
/// kernel's OOM killer struck inside it.
async fn finish(pid: u32, slot: &UsageSlot) -> bool {
    container::signal_group(pid, libc::SIGKILL);
    let ct = slot.lock().expect("usage slot").take();
    let oom = ct.as_ref().map(Container::oom_kills).unwrap_or(0) > 0;
    if let Some(ct) = ct {
        let _ = tokio::task::spawn_blocking(move || ct.destroy()).await;
    }
    oom
}

/// The TaskStatus fields of a memory-limit kill.
pub(crate) fn oom_status(limits: Limits) -> Value {
    json!({"reason": "REASON_CONTAINER_LIMITATION_MEMORY",
        "message": format!("Memory limit exceeded: the kernel killed the task (limit {} MB)", limits.mem_milli / 1000),
        "limitation": {"resources": [{"name": "mem", "type": "SCALAR", "scalar": {"value": limits.mem_milli as f64 / 1000.0}}]}})
}

/// A command task: the agent is its executor.
pub(crate) struct Runner {
    pub key: Key,
    pub launch: Launch,
    pub events: mpsc::Sender<Event>,
    pub slot: UsageSlot,
    pub health: Option<HealthCheck>,
    /// The framework handles TASK_KILLING (capability TASK_KILLING_STATE): sent when a kill starts.
    pub killing_state: bool,
    /// The task's own kill channel (the health checker kills through it).
    pub kill: mpsc::Sender<u64>,
    /// The grace a health-check kill gives the task.
    pub health_kill_grace_ms: u64,
}

impl Runner {
    fn status(&self, state: &str, extra: Value) -> Value {
        let mut s = json!({
            "task_id": mid(&self.key.1), "state": state, "source": "SOURCE_EXECUTOR",
            "executor_id": mid(&self.key.1), "timestamp": now_ms() as f64 / 1000.0,
            "container_status": {"container_id": mid(&self.launch.container_id)},
        });
        if let (Some(o), Some(x)) = (s.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        s
    }

    async fn send(&self, s: Value) {
        let _ = self.events.send(Event::Status(self.key.clone(), s)).await;
    }

    pub(super) async fn run(self, mut kill: mpsc::Receiver<u64>) {
        self.send(self.status("TASK_STARTING", json!({}))).await;
        let (child, container) = match self.launch.start() {
            Ok(x) => x,
            Err(message) => {
                tracing::warn!(task = %self.key.1, "{message}");
                let s = json!({"reason": "REASON_CONTAINER_LAUNCH_FAILED", "message": message});
                return self.send(self.status("TASK_FAILED", s)).await;
            }
        };
        *self.slot.lock().expect("usage slot") = container;
        let pid = child.pid;
        let _ = self.events.send(Event::Pid(self.key.clone(), pid)).await;
        let container_status =
            json!({"container_id": mid(&self.launch.container_id), "executor_pid": pid});
        self.send(self.status(
            "TASK_RUNNING",
            json!({"container_status": container_status}),
        ))
        .await;
        let unhealthy = Arc::new(AtomicBool::new(false));
        let checker = self.health.clone().map(|hc| {
            tokio::spawn(check_health(
                hc,
                self.launch.sandbox.clone(),
                self.key.clone(),
                container_status.clone(),
                self.events.clone(),
                self.kill.clone(),
                self.health_kill_grace_ms,
                unhealthy.clone(),
            ))
        });
        let (exit, killed) = tokio::select! {
            r = child.wait() => (r, false),
            Some(grace) = kill.recv() => {
                if self.killing_state {
                    self.send(self.status("TASK_KILLING", json!({}))).await;
                }
                (terminate(&child, grace).await, true)
            }
        };
        if let Some(c) = checker {
            c.abort();
        }
        let oom = finish(pid, &self.slot).await;
        use std::os::unix::process::ExitStatusExt;
        let (state, extra) = match exit {
            Err(e) => (
                "TASK_FAILED",
                json!({"reason": "REASON_COMMAND_EXECUTOR_FAILED", "message": format!("cannot wait for the task: {e}")}),
            ),
            Ok(_) if killed && unhealthy.load(Ordering::Relaxed) => (
                "TASK_KILLED",
                json!({"message": "Command killed: its health check failed", "healthy": false,
                       "reason": "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"}),
            ),
            Ok(_) if killed => (
                "TASK_KILLED",
                json!({"message": "Command terminated by a kill"}),
            ),
            Ok(st) if oom => {
                let mut s = oom_status(self.launch.limits);
                s["exit"] = json!(st.code());
                ("TASK_FAILED", s)
            }
            Ok(st) => match (st.code(), st.signal()) {
                (Some(0), _) => (
                    "TASK_FINISHED",
                    json!({"message": "Command exited with status 0"}),
                ),
                (Some(n), _) => (
                    "TASK_FAILED",
                    json!({"message": format!("Command exited with status {n}")}),
                ),
                (None, Some(sig)) => (
                    "TASK_FAILED",
                    json!({"message": format!("Command terminated with signal {sig}")}),
                ),
                _ => (
                    "TASK_FAILED",
                    json!({"message": "Command ended abnormally"}),
                ),
            },
        };
        self.send(self.status(state, extra)).await;
    }
}

/// Checks a task's health on its schedule until it is aborted; reports `healthy` on the first
/// result and on changes, and kills the task after too many failures.
#[allow(clippy::too_many_arguments)]
async fn check_health(
    hc: HealthCheck,
    sandbox: PathBuf,
    key: Key,
    container_status: Value,
    events: mpsc::Sender<Event>,
    kill: mpsc::Sender<u64>,
    kill_grace_ms: u64,
    unhealthy: Arc<AtomicBool>,
) {
    let started = tokio::time::Instant::now();
    let mut tracker = Tracker::new(&hc);
    tokio::time::sleep(hc.delay).await;
    let mut every = tokio::time::interval(hc.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let result = health::probe(&hc.probe, &sandbox, hc.timeout).await;
        if let Err(e) = &result {
            tracing::debug!(task = %key.1, "health check failed: {e}");
        }
        let healthy = match tracker.observe(result.is_ok(), started.elapsed()) {
            Verdict::Quiet => continue,
            Verdict::Report(h) => h,
            Verdict::Kill => {
                tracing::info!(task = %key.1, "killing the task: its health check failed {} times in a row", hc.consecutive_failures);
                unhealthy.store(true, Ordering::Relaxed);
                let _ = kill.send(kill_grace_ms).await;
                return;
            }
        };
        let mut s = json!({"task_id": mid(&key.1), "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR",
            "executor_id": mid(&key.1), "timestamp": now_ms() as f64 / 1000.0, "healthy": healthy,
            "reason": "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED", "container_status": container_status});
        if let Err(e) = result {
            s["message"] = json!(format!("health check failed: {e}"));
        }
        if events.send(Event::Status(key.clone(), s)).await.is_err() {
            return;
        }
    }
}

/// How a custom executor's process ended.
#[derive(Debug, Clone)]
pub(crate) struct Exited {
    /// The wait status as Mesos reports it in FAILURE (exit code × 256, or the signal).
    pub status: i32,
    pub message: String,
    pub oom: bool,
    pub launch_failed: bool,
}

/// A custom executor's process.
pub(crate) struct ExecutorRunner {
    pub key: ExecKey,
    pub launch: Launch,
    pub events: mpsc::Sender<Event>,
    pub slot: UsageSlot,
}

impl ExecutorRunner {
    pub(super) async fn run(self, mut stop: mpsc::Receiver<u64>) {
        let (child, container) = match self.launch.start() {
            Ok(x) => x,
            Err(message) => {
                tracing::warn!(executor = %self.key.1, "{message}");
                let e = Exited {
                    status: -1,
                    message,
                    oom: false,
                    launch_failed: true,
                };
                let _ = self.events.send(Event::ExecutorExited(self.key, e)).await;
                return;
            }
        };
        *self.slot.lock().expect("usage slot") = container;
        let pid = child.pid;
        let _ = self
            .events
            .send(Event::ExecutorPid(self.key.clone(), pid))
            .await;
        let (exit, killed) = wait(&child, &mut stop).await;
        let oom = finish(pid, &self.slot).await;
        use std::os::unix::process::ExitStatusExt;
        let (status, message) = match exit {
            Err(e) => (-1, format!("cannot wait for the executor: {e}")),
            Ok(st) => match (st.code(), st.signal()) {
                (Some(n), _) => (n << 8, format!("Executor exited with status {n}")),
                (None, Some(sig)) if killed => (sig, "Executor shut down".to_string()),
                (None, Some(sig)) => (sig, format!("Executor terminated with signal {sig}")),
                _ => (-1, "Executor ended abnormally".to_string()),
            },
        };
        let e = Exited {
            status,
            message,
            oom,
            launch_failed: false,
        };
        let _ = self.events.send(Event::ExecutorExited(self.key, e)).await;
    }
}
