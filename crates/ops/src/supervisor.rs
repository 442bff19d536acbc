//! The agent's process supervisor: it starts nodes, keeps their output in rotated files, checks
//! their health, restarts them by policy or on command, and stops them (the whole process
//! group: SIGTERM, a grace period, then SIGKILL).
//!
//! Each process is owned by one task. The supervisor's map only holds handles: a control queue
//! and a `watch` of the status, which callers wait on (a restart waits for the next generation
//! to be healthy) without polling.
//!
//! Accounts: a node runs as the `user` its spec names, else as [`NodeUsers::default_user`];
//! an agent running as root switches to it (to root itself only with
//! [`NodeUsers::allow_root`]), and gives it its working directory and `HOME` there.
//!
//! Health: with a check, a node is `healthy` after one passing check and `unhealthy` after
//! `retries` failing ones in a row; without one, it is `healthy` once it has run for
//! [`MIN_UPTIME`]. Both reset to `unknown` at every start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::RestartError;
use crate::logfile::{RotatingFile, Rotation};
use crate::nodes::{NodeSpec, RestartPolicy};
use crate::proto::NodeStatus;

/// Whom nodes run as (the agent's `--node-user` and `--allow-root-nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsers {
    /// The account of a node whose spec names none, when the agent runs as root.
    pub default_user: String,
    /// Whether a node may run as root.
    pub allow_root: bool,
}

impl Default for NodeUsers {
    fn default() -> Self {
        NodeUsers {
            default_user: "nobody".into(),
            allow_root: false,
        }
    }
}

impl NodeUsers {
    /// The account `spec` runs as on an agent running as `agent_uid`; `Ok(None)`: as the agent.
    pub fn resolve(
        &self,
        spec_user: Option<&str>,
        agent_uid: u32,
        lookup: impl Fn(&str) -> Result<yard_auth::account::Account, yard_auth::account::AccountError>,
    ) -> Result<Option<yard_auth::account::Account>, yard_auth::account::AccountError> {
        let name = match spec_user {
            Some(u) => u,
            // An agent that is not root runs its nodes as itself.
            None if agent_uid != 0 => return Ok(None),
            None => &self.default_user,
        };
        yard_auth::account::run_as(
            "node",
            name,
            agent_uid,
            self.allow_root,
            "--allow-root-nodes",
            lookup,
        )
    }
}

/// A node without a health check is healthy once it has run this long.
pub const MIN_UPTIME: Duration = Duration::from_secs(1);
/// Between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// A process that ran this long resets its restart backoff.
const BACKOFF_RESET: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    /// Logs go to `dir/logs`, default working directories are `dir/work/NAME`.
    dir: PathBuf,
    rotation: Rotation,
    users: NodeUsers,
    /// The processes; a std mutex, held only to look up or swap a handle (never across await).
    procs: Mutex<BTreeMap<String, Proc>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

struct Proc {
    spec: NodeSpec,
    restart: mpsc::Sender<()>,
    status: watch::Receiver<NodeStatus>,
    cancel: CancellationToken,
}

impl Supervisor {
    pub fn new(
        dir: PathBuf,
        rotation: Rotation,
        users: NodeUsers,
        shutdown: CancellationToken,
    ) -> Supervisor {
        Supervisor {
            inner: Arc::new(Inner {
                dir,
                rotation,
                users,
                procs: Mutex::new(BTreeMap::new()),
                tasks: TaskTracker::new(),
                shutdown,
            }),
        }
    }

    pub fn log_path(&self, node: &str, stream: &str) -> PathBuf {
        self.inner
            .dir
            .join("logs")
            .join(format!("{node}.{stream}.log"))
    }

    /// Makes the running set equal `specs`: starts new nodes, restarts changed ones, stops the
    /// ones no longer listed.
    pub fn apply(&self, specs: Vec<NodeSpec>) {
        let mut procs = self.inner.procs.lock().expect("supervisor map");
        let wanted: BTreeMap<String, NodeSpec> =
            specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        procs.retain(|name, p| {
            let keep = wanted.get(name) == Some(&p.spec);
            if !keep {
                p.cancel.cancel();
            }
            keep
        });
        for (name, spec) in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = procs.entry(name) {
                slot.insert(self.start(spec));
            }
        }
    }

    fn start(&self, spec: NodeSpec) -> Proc {
        let (restart_tx, restart_rx) = mpsc::channel(1);
        let (status_tx, status_rx) = watch::channel(NodeStatus {
            name: spec.name.clone(),
            state: "starting".into(),
            health: "unknown".into(),
            pid: None,
            restarts: 0,
            generation: 0,
        });
        let cancel = self.inner.shutdown.child_token();
        let run = ProcTask {
            spec: spec.clone(),
            logs: self.inner.dir.join("logs"),
            work: self.inner.dir.join("work").join(&spec.name),
            rotation: self.inner.rotation,
            users: self.inner.users.clone(),
            status: status_tx,
            restart: restart_rx,
            cancel: cancel.clone(),
        };
        self.inner.tasks.spawn(run.run());
        Proc {
            spec,
            restart: restart_tx,
            status: status_rx,
            cancel,
        }
    }

    pub fn statuses(&self) -> Vec<NodeStatus> {
        let procs = self.inner.procs.lock().expect("supervisor map");
        procs.values().map(|p| p.status.borrow().clone()).collect()
    }

    pub fn pids(&self) -> Vec<(String, u32)> {
        let procs = self.inner.procs.lock().expect("supervisor map");
        procs
            .iter()
            .filter_map(|(n, p)| p.status.borrow().pid.map(|pid| (n.clone(), pid)))
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        let procs = self.inner.procs.lock().expect("supervisor map");
        procs.keys().cloned().collect()
    }

    /// Restarts `node` and waits until its new generation is healthy. Fails when it turns
    /// unhealthy, exits, or `timeout` passes first.
    /// `Ok`: the new generation's number.
    pub async fn restart(&self, node: &str, timeout: Duration) -> Result<u64, RestartError> {
        let (tx, mut status) = {
            let procs = self.inner.procs.lock().expect("supervisor map");
            let p = procs
                .get(node)
                .ok_or_else(|| RestartError::NoSuchNode(node.to_string()))?;
            (p.restart.clone(), p.status.clone())
        };
        let before = status.borrow().generation;
        // A full queue means a restart is already pending: this one joins it.
        let _ = tx.try_send(());
        let wait = async {
            loop {
                {
                    let s = status.borrow_and_update();
                    if s.generation > before {
                        match (s.state.as_str(), s.health.as_str()) {
                            ("running", "healthy") => return Ok(s.generation),
                            (_, "unhealthy") => return Err(RestartError::Unhealthy),
                            ("backoff" | "failed" | "exited" | "stopped", _) => {
                                return Err(RestartError::Ended(s.state.clone()))
                            }
                            _ => {}
                        }
                    }
                }
                if status.changed().await.is_err() {
                    return Err(RestartError::Removed);
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(RestartError::Timeout(timeout)),
        }
    }

    /// Stops every node and waits for them (each gets its grace period).
    pub async fn stop_all(&self) {
        {
            let procs = self.inner.procs.lock().expect("supervisor map");
            for p in procs.values() {
                p.cancel.cancel();
            }
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// The task that owns one node's process.
struct ProcTask {
    spec: NodeSpec,
    logs: PathBuf,
    work: PathBuf,
    rotation: Rotation,
    users: NodeUsers,
    status: watch::Sender<NodeStatus>,
    restart: mpsc::Receiver<()>,
    cancel: CancellationToken,
}

enum Ended {
    Exited(std::process::ExitStatus),
    Restart,
    Cancelled,
}

impl ProcTask {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let generation = self.status.borrow().generation + 1;
            let child = self.spawn();
            let (mut child, account) = match child {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(node = %self.spec.name, "cannot start: {e}");
                    self.set(|s| {
                        s.state = "failed".into();
                        s.health = "unhealthy".into();
                        s.pid = None;
                        s.generation = generation;
                    });
                    if !self.idle_until_restart().await {
                        return;
                    }
                    self.set(|s| s.restarts += 1);
                    continue;
                }
            };
            let pid = child.id();
            self.set(|s| {
                s.state = "running".into();
                s.health = "unknown".into();
                s.pid = pid;
                s.generation = generation;
            });
            let started = tokio::time::Instant::now();
            let health_cancel = self.cancel.child_token();
            tokio::spawn(health_loop(
                self.spec.clone(),
                account,
                self.work.clone(),
                self.status.clone(),
                generation,
                health_cancel.clone(),
            ));
            let ended = tokio::select! {
                // Cancellation first: a stop must win over a simultaneous exit or restart.
                biased;
                _ = self.cancel.cancelled() => Ended::Cancelled,
                r = child.wait() => match r {
                    Ok(st) => Ended::Exited(st),
                    Err(_) => Ended::Exited(std::process::ExitStatus::default()),
                },
                Some(()) = self.restart.recv() => Ended::Restart,
            };
            health_cancel.cancel();
            match ended {
                Ended::Cancelled => {
                    stop(&mut child).await;
                    self.set(|s| {
                        s.state = "stopped".into();
                        s.pid = None;
                    });
                    return;
                }
                Ended::Restart => {
                    stop(&mut child).await;
                    self.set(|s| s.restarts += 1);
                    backoff = Duration::from_millis(200);
                }
                Ended::Exited(st) => {
                    let failed = !st.success();
                    tracing::info!(node = %self.spec.name, "exited: {st}");
                    let again = match self.spec.restart {
                        RestartPolicy::Always => true,
                        RestartPolicy::OnFailure => failed,
                        RestartPolicy::Never => false,
                    };
                    if !again {
                        self.set(|s| {
                            s.state = if failed { "failed" } else { "exited" }.into();
                            s.health = if failed { "unhealthy" } else { "unknown" }.into();
                            s.pid = None;
                        });
                        if !self.idle_until_restart().await {
                            return;
                        }
                        self.set(|s| s.restarts += 1);
                        continue;
                    }
                    if started.elapsed() >= BACKOFF_RESET {
                        backoff = Duration::from_millis(200);
                    }
                    self.set(|s| {
                        s.state = "backoff".into();
                        s.health = "unhealthy".into();
                        s.pid = None;
                    });
                    tokio::select! {
                        _ = self.cancel.cancelled() => {
                            self.set(|s| s.state = "stopped".into());
                            return;
                        }
                        _ = tokio::time::sleep(backoff) => {}
                        Some(()) = self.restart.recv() => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    self.set(|s| s.restarts += 1);
                }
            }
        }
    }

    /// After an exit that is not restarted by policy: wait for a commanded restart (true) or a
    /// stop (false).
    async fn idle_until_restart(&mut self) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => {
                self.set(|s| s.state = "stopped".into());
                false
            }
            r = self.restart.recv() => r.is_some(),
        }
    }

    fn set(&self, f: impl FnOnce(&mut NodeStatus)) {
        self.status.send_modify(f);
    }

    /// Starts the process; with the account it runs as (`None`: the agent's).
    fn spawn(
        &self,
    ) -> std::io::Result<(tokio::process::Child, Option<yard_auth::account::Account>)> {
        let account = self
            .users
            .resolve(
                self.spec.user.as_deref(),
                yard_auth::account::current_uid(),
                yard_auth::account::lookup,
            )
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
        let cwd = match &self.spec.cwd {
            Some(d) => PathBuf::from(d),
            None => {
                std::fs::create_dir_all(&self.work)?;
                if let Some(a) = &account {
                    std::os::unix::fs::chown(&self.work, Some(a.uid), Some(a.gid))?;
                }
                self.work.clone()
            }
        };
        let mut cmd = tokio::process::Command::new(&self.spec.command);
        if let Some(a) = &account {
            // std drops the supplementary groups too when it switches from root. The agent's
            // own HOME is not the node's: it gets its working directory (its spec may say
            // otherwise).
            cmd.uid(a.uid)
                .gid(a.gid)
                .env("HOME", &cwd)
                .env("USER", &a.name)
                .env("LOGNAME", &a.name);
        }
        cmd.args(&self.spec.args)
            .envs(&self.spec.env)
            .env("YARD_NODE", &self.spec.name)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // A node must not outlive its agent (even one killed with SIGKILL): nobody
                // would supervise it, and the next agent would start a second copy.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{:?} in {}: {e}", self.spec.command, cwd.display()),
            )
        })?;
        for (stream, pipe) in [
            ("stdout", child.stdout.take().map(Pipe::Out)),
            ("stderr", child.stderr.take().map(Pipe::Err)),
        ] {
            if let Some(pipe) = pipe {
                let path = self.logs.join(format!("{}.{stream}.log", self.spec.name));
                let file = RotatingFile::open(path, self.rotation)?;
                tokio::spawn(copy_to_log(pipe, file));
            }
        }
        Ok((child, account))
    }
}

enum Pipe {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
}

/// Copies a pipe into its log until the process closes it.
async fn copy_to_log(mut pipe: Pipe, mut file: RotatingFile) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match &mut pipe {
            Pipe::Out(p) => p.read(&mut buf).await,
            Pipe::Err(p) => p.read(&mut buf).await,
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Err(e) = file.write(&buf[..n]) {
                    tracing::warn!("cannot write a node log: {e}");
                    return;
                }
            }
        }
    }
}

/// SIGTERM to the process group, SIGKILL after the grace period.
async fn stop(child: &mut tokio::process::Child) {
    let Some(pid) = child.id() else { return };
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
}

fn signal_group(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process group we created (process_group(0) made the child its
    // leader); no memory is shared.
    unsafe {
        libc::kill(-(pid as i32), sig);
    }
}

/// Checks one generation's health until cancelled.
async fn health_loop(
    spec: NodeSpec,
    account: Option<yard_auth::account::Account>,
    work: PathBuf,
    status: watch::Sender<NodeStatus>,
    generation: u64,
    cancel: CancellationToken,
) {
    let set = |health: &str| {
        status.send_if_modified(|s| {
            if s.generation == generation && s.state == "running" && s.health != health {
                s.health = health.to_string();
                true
            } else {
                false
            }
        });
    };
    let Some(h) = spec.health else {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(MIN_UPTIME) => set("healthy"),
        }
        return;
    };
    let cwd: Option<&Path> = spec.cwd.as_deref().map(Path::new).or(Some(&work));
    let mut failures = 0u32;
    let mut first = true;
    loop {
        // The first check runs soon after the start; then every interval.
        let wait = if first {
            Duration::from_millis(100)
        } else {
            h.interval()
        };
        first = false;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match crate::health::check(&h, cwd, account.as_ref()).await {
            Ok(()) => {
                failures = 0;
                set("healthy");
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(node = %spec.name, "health check failed: {e}");
                if failures >= h.retries.max(1) {
                    set("unhealthy");
                }
            }
        }
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::HealthSpec;
    use yard_testkit::TempDir;

    fn spec(name: &str, script: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: Default::default(),
            cwd: None,
            restart: RestartPolicy::Always,
            health: None,
            agents: vec![],
            roles: vec![],
            user: None,
        }
    }

    /// Nodes run as the agent's own account (root allowed): what these tests ask of a node.
    fn as_agent() -> NodeUsers {
        NodeUsers {
            default_user: "root".into(),
            allow_root: true,
        }
    }

    /// 0755: some nodes run as `nobody` and write inside.
    fn dir(tag: &str) -> TempDir {
        TempDir::with_mode(&format!("sup-{tag}"), 0o755)
    }

    /// Waits (10 s at most) until the file at `path` holds exactly `want`.
    async fn wait_for_file(path: &Path, want: &str) {
        yard_testkit::wait_for_file(path, want, Duration::from_secs(10)).await;
    }

    async fn wait_for(sup: &Supervisor, f: impl Fn(&[NodeStatus]) -> bool) -> Vec<NodeStatus> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            let s = sup.statuses();
            if f(&s) {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out: {s:?}");
            poll.tick().await;
        }
    }

    #[tokio::test]
    async fn a_node_runs_as_the_user_its_spec_names() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: switching users cannot be tested here");
            return;
        }
        let nobody = yard_auth::account::lookup("nobody").unwrap();
        let d = dir("user");
        let sup = Supervisor::new(
            d.to_path_buf(),
            Rotation::default(),
            as_agent(),
            CancellationToken::new(),
        );
        let mut s = spec("who", "id -u; id -G; exec sleep 1000");
        s.user = Some("nobody".into());
        sup.apply(vec![s]);
        wait_for(&sup, |s| s[0].health == "healthy").await;
        let out = sup.log_path("who", "stdout");
        let want = format!("{}\n{}\n", nobody.uid, nobody.gid);
        wait_for_file(&out, &want).await;
        sup.stop_all().await;
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_node_that_names_no_user_runs_as_nobody_and_root_must_be_allowed() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: switching users cannot be tested here");
            return;
        }
        let nobody = yard_auth::account::lookup("nobody").unwrap();
        let d = dir("default-user");
        let sup = Supervisor::new(
            d.to_path_buf(),
            Rotation::default(),
            NodeUsers::default(),
            CancellationToken::new(),
        );
        let mut root = spec("root", "exec sleep 1000");
        root.user = Some("root".into());
        // The health command runs as the node's account too.
        let mut who = spec("who", "echo $(id -u) $HOME; exec sleep 1000");
        who.health = Some(HealthSpec {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!("test $(id -u) = {}", nobody.uid),
            ]),
            tcp: None,
            http: None,
            interval: "200ms".into(),
            timeout: "2s".into(),
            retries: 1,
        });
        sup.apply(vec![root, who]);
        let s = wait_for(&sup, |s| {
            s.len() == 2 && s[1].health == "healthy" && s[0].state == "failed"
        })
        .await;
        assert_eq!((s[0].pid, s[0].health.as_str()), (None, "unhealthy"));
        let out = sup.log_path("who", "stdout");
        let want = format!("{} {}\n", nobody.uid, d.join("work").join("who").display());
        wait_for_file(&out, &want).await;
        sup.stop_all().await;
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_node_runs_logs_restarts_on_command_and_stops() {
        let d = dir("run");
        let sup = Supervisor::new(
            d.to_path_buf(),
            Rotation::default(),
            as_agent(),
            CancellationToken::new(),
        );
        let mut s = spec(
            "echo",
            "echo hello $YARD_NODE; echo oops >&2; exec sleep 1000",
        );
        s.env.insert("X".into(), "1".into());
        sup.apply(vec![s]);
        wait_for(&sup, |s| s[0].health == "healthy").await;
        let out = sup.log_path("echo", "stdout");
        wait_for_file(&out, "hello echo\n").await;
        assert_eq!(
            std::fs::read_to_string(sup.log_path("echo", "stderr")).unwrap(),
            "oops\n"
        );
        let pid = sup.pids()[0].1;
        let r = sup.restart("echo", Duration::from_secs(10)).await;
        assert_eq!(r, Ok(2));
        let s = sup.statuses();
        assert_eq!((s[0].generation, s[0].restarts), (2, 1));
        assert_ne!(s[0].pid, Some(pid), "a new process");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z"),
            "the old process is gone"
        );
        let new_pid = s[0].pid.unwrap();
        sup.stop_all().await;
        assert!(
            !Path::new(&format!("/proc/{new_pid}/cmdline")).exists()
                || std::fs::read(format!("/proc/{new_pid}/cmdline"))
                    .unwrap()
                    .is_empty()
        );
        assert_eq!(sup.statuses()[0].state, "stopped");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn crashing_nodes_restart_by_policy_and_failing_checks_fail_the_restart() {
        let d = dir("policy");
        let sup = Supervisor::new(
            d.to_path_buf(),
            Rotation::default(),
            as_agent(),
            CancellationToken::new(),
        );
        let mut never = spec("never", "exit 3");
        never.restart = RestartPolicy::Never;
        let crash = spec("crash", "exit 1");
        let mut sick = spec("sick", "exec sleep 1000");
        sick.health = Some(HealthSpec {
            command: Some(vec!["false".into()]),
            tcp: None,
            http: None,
            interval: "100ms".into(),
            timeout: "1s".into(),
            retries: 2,
        });
        sup.apply(vec![never, crash, sick]);
        let s = wait_for(&sup, |s| {
            s.iter().any(|n| n.name == "crash" && n.restarts >= 2)
                && s.iter().any(|n| n.name == "never" && n.state == "failed")
                && s.iter()
                    .any(|n| n.name == "sick" && n.health == "unhealthy")
        })
        .await;
        assert_eq!(s.iter().find(|n| n.name == "never").unwrap().restarts, 0);
        let e = sup
            .restart("sick", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e, RestartError::Unhealthy);
        let e = sup
            .restart("nope", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e, RestartError::NoSuchNode("nope".into()));
        // Removing a node from the set stops it.
        sup.apply(vec![spec("crash", "exit 1")]);
        assert_eq!(sup.names(), ["crash"]);
        sup.stop_all().await;
        std::fs::remove_dir_all(d).unwrap();
    }
}
