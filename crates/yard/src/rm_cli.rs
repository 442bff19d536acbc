//! The resource manager's flags on `yard manager` (the master) and `yard agent`, and what they
//! build: validated configs and the bound Mesos API listeners.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use tokio::net::TcpListener;
use yard_rm::mesos::resources::{parse_attributes, Resources, MILLI};

use crate::ops_cli::dur;

use crate::node::Mesos;

#[derive(Args, Clone)]
pub(crate) struct MasterArgs {
    /// The Mesos API (schedulers such as pymesos, operators, mesos-cli); `off` disables the
    /// resource manager.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub mesos_listen: String,
    /// With TLS on (--tls-cert), also serve plain HTTP on this API, for clients that cannot
    /// speak TLS (pymesos, its executors); loopback listeners only.
    #[arg(long)]
    pub mesos_plain: bool,
    /// Offers not used within this time are rescinded (no framework hoards resources).
    #[arg(long, default_value = "30s")]
    pub offer_timeout: String,
    /// Allocation runs at once when something changes, and at least this often.
    #[arg(long, default_value = "1s")]
    pub allocation_interval: String,
    /// HEARTBEAT events on scheduler streams.
    #[arg(long, default_value = "15s")]
    pub scheduler_heartbeat: String,
    /// An agent is offered only when it has one of these free (alternatives separated by |).
    #[arg(long, default_value = "cpus:0.01|mem:32")]
    pub min_allocatable: String,
    /// Role weights for dominant resource fairness: ROLE=WEIGHT, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<String>,
    /// PRINCIPAL:SECRET required (HTTP Basic) on calls; mandatory off loopback.
    #[arg(long, env = "YARD_MESOS_CREDENTIALS", hide_env_values = true)]
    pub mesos_credentials: Option<String>,
}

impl Default for MasterArgs {
    fn default() -> Self {
        MasterArgs {
            mesos_listen: "127.0.0.1:5050".into(),
            mesos_plain: false,
            offer_timeout: "30s".into(),
            allocation_interval: "1s".into(),
            scheduler_heartbeat: "15s".into(),
            min_allocatable: "cpus:0.01|mem:32".into(),
            weights: vec![],
            mesos_credentials: None,
        }
    }
}

/// Detects the host's resources as Mesos does: all CPUs, memory minus 1 GB (half when under
/// 2 GB), the work directory's disk minus 5 GB (half when under 10 GB), ports 31000-32000.
fn detect_resources(dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as i64;
    let mem_mb = yard_ops::sample::meminfo()
        .map(|(total, _)| (total >> 20) as i64)
        .unwrap_or(2048);
    let mem = if mem_mb >= 2048 {
        mem_mb - 1024
    } else {
        mem_mb / 2
    };
    let disk_mb = yard_ops::sample::disk_space(dir)
        .map(|(total, _)| (total >> 20) as i64)
        .unwrap_or(10_240);
    let disk = if disk_mb >= 10_240 {
        disk_mb - 5120
    } else {
        disk_mb / 2
    };
    let mut r = Resources::parse("ports:[31000-32000]").expect("valid");
    r.set_scalar("cpus", cpus * MILLI);
    r.set_scalar("mem", mem * MILLI);
    r.set_scalar("disk", disk * MILLI);
    r
}

async fn bind(what: &str, listen: &str) -> anyhow::Result<TcpListener> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        anyhow!("--mesos-listen {listen:?} is not an address such as 127.0.0.1:5050")
    })?;
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what}'s Mesos API (is a Mesos {what} or another yard running? choose --mesos-listen, or `off`)")
    })
}

impl MasterArgs {
    /// The master's config and listener, or `None` when the Mesos API is off.
    pub(crate) async fn build(
        &self,
        cluster: &str,
        dir: &Path,
        agent_timeout: Duration,
    ) -> anyhow::Result<Option<Mesos<yard_rm::master::server::ServerConfig>>> {
        if self.mesos_listen == "off" {
            return Ok(None);
        }
        let min_allocatable =
            yard_rm::master::allocator::parse_min_allocatable(&self.min_allocatable)
                .map_err(|e| anyhow!("--min-allocatable: {e}"))?;
        let mut weights = HashMap::new();
        for w in &self.weights {
            let (role, weight) = w
                .split_once('=')
                .ok_or_else(|| anyhow!("--weights {w:?}: expected ROLE=WEIGHT"))?;
            let weight: f64 = weight
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && *x > 0.0)
                .ok_or_else(|| anyhow!("--weights {w:?}: the weight must be a positive number"))?;
            weights.insert(role.to_string(), weight);
        }
        if let Some(c) = &self.mesos_credentials {
            if !c.contains(':') {
                bail!("--mesos-credentials must be PRINCIPAL:SECRET");
            }
        }
        let listener = bind("master", &self.mesos_listen).await?;
        let addr = listener.local_addr()?;
        let dir = yard_ops::absolute_dir(dir).map_err(|e| anyhow!(e))?;
        let backend = format!("sqlite:{}", dir.join("rm.db").display())
            .parse()
            .map_err(|e: yard_store::backend::SpecError| anyhow!(e))?;
        let cfg = yard_rm::master::server::ServerConfig {
            master: yard_rm::master::MasterConfig {
                id: yard_fabric::id::random_uuid(),
                hostname: addr.ip().to_string(),
                ip: addr.ip().to_string(),
                port: addr.port(),
                offer_timeout_ms: dur("offer-timeout", &self.offer_timeout)?.as_millis() as u64,
                agent_timeout_ms: agent_timeout.as_millis() as u64,
                heartbeat_interval_s: dur("scheduler-heartbeat", &self.scheduler_heartbeat)?
                    .as_secs_f64(),
                min_allocatable,
                weights,
                kill_grace_ms: 3000,
            },
            store: format!("rm-{cluster}"),
            backend,
            allocation_interval: dur("allocation-interval", &self.allocation_interval)?,
            credentials: self.mesos_credentials.clone(),
        };
        Ok(Some(Mesos {
            cfg,
            listener,
            plain: self.mesos_plain,
        }))
    }
}

#[derive(Args, Clone)]
#[group(id = "MesosAgentArgs")]
pub(crate) struct AgentArgs {
    /// The agent's Mesos API; `off` disables the resource manager on this agent.
    #[arg(long, default_value = "127.0.0.1:5051")]
    pub mesos_listen: String,
    /// With TLS on (--tls-cert), also serve plain HTTP on this API, for clients that cannot
    /// speak TLS (pymesos, its executors); loopback listeners only.
    #[arg(long)]
    pub mesos_plain: bool,
    /// Resources offered, in Mesos syntax (cpus:4;mem:8192;disk:10240;ports:[31000-32000])
    /// [default: detected].
    #[arg(long)]
    pub resources: Option<String>,
    /// Attributes, such as rack:a;zone:1.
    #[arg(long, default_value = "")]
    pub attributes: String,
    /// Run tasks without cgroups (when the host has no cgroups v1 controllers).
    #[arg(long)]
    pub no_isolation: bool,
    /// Cap each task's CPU at its `cpus` with a CFS quota (shares only otherwise).
    #[arg(long)]
    pub cgroups_enable_cfs: bool,
    /// Most processes in one task.
    #[arg(long, default_value_t = 4096)]
    pub pids_max: u64,
    /// Unacknowledged status updates are sent again this often.
    #[arg(long, default_value = "2s")]
    pub update_retry: String,
    /// Without cgroups, run tasks unisolated (and say so) rather than refuse to start
    /// (`yard up` on a developer's machine).
    #[arg(skip)]
    pub isolation_fallback: bool,
    /// Let tasks and executors run as root (uid 0) when their framework or command names it;
    /// without it such launches fail. Tasks run as the user they name (Mesos's --switch_user).
    #[arg(long)]
    pub allow_root_tasks: bool,
    /// Who may make an executor's calls: `token` (only its MESOS_EXECUTOR_AUTHENTICATION_TOKEN)
    /// or `token-or-account` (the token, or a caller on this host running as the executor's
    /// account or root; pymesos's executor driver sends no token).
    #[arg(long, default_value = "token-or-account")]
    pub executor_auth: yard_rm::agent::executor::ExecutorAuth,
}

impl Default for AgentArgs {
    fn default() -> Self {
        AgentArgs {
            mesos_listen: "127.0.0.1:5051".into(),
            mesos_plain: false,
            resources: None,
            attributes: String::new(),
            no_isolation: false,
            cgroups_enable_cfs: false,
            pids_max: 4096,
            update_retry: "2s".into(),
            isolation_fallback: false,
            allow_root_tasks: false,
            executor_auth: Default::default(),
        }
    }
}

/// A short stable tag of a path (the agent's cgroups are named after its data directory, so
/// that two agents on one host never touch each other's, and a restart finds its leftovers).
fn tag(p: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in p.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

impl AgentArgs {
    pub(crate) async fn build(
        &self,
        name: &str,
        dir: &Path,
        heartbeat: Duration,
    ) -> anyhow::Result<Option<Mesos<yard_rm::agent::AgentConfig>>> {
        if self.mesos_listen == "off" {
            return Ok(None);
        }
        let dir = yard_ops::absolute_dir(&dir.join("rm")).map_err(|e| anyhow!(e))?;
        let resources = match &self.resources {
            Some(r) => Resources::parse(r).map_err(|e| anyhow!("--resources: {e}"))?,
            None => detect_resources(&dir),
        };
        if resources.scalar("cpus") == 0 || resources.scalar("mem") == 0 {
            bail!("--resources {resources}: an agent needs cpus and mem to be offered");
        }
        let attributes =
            parse_attributes(&self.attributes).map_err(|e| anyhow!("--attributes: {e}"))?;
        let isolation = if self.no_isolation {
            tracing::warn!(
                "--no-isolation: tasks run without cgroups (no CPU, memory or process limits)"
            );
            None
        } else {
            let parent = format!("yard/{name}-{}", tag(&dir));
            match yard_rm::agent::container::Isolation::detect(&parent, self.cgroups_enable_cfs, self.pids_max) {
                Ok(i) => Some(i),
                Err(e) if self.isolation_fallback => {
                    eprintln!("note: {e}: agent {name} runs tasks without isolation");
                    None
                }
                Err(e) => bail!("{e}; tasks cannot be isolated on this host. Run with --no-isolation to run them without limits"),
            }
        };
        let listener = bind("agent", &self.mesos_listen).await?;
        let hostname = listener.local_addr()?.ip().to_string();
        let cfg = yard_rm::agent::AgentConfig {
            tasks: None,
            name: name.to_string(),
            hostname,
            resources,
            attributes,
            dir,
            isolation,
            heartbeat,
            update_retry: dur("update-retry", &self.update_retry)?,
            allow_root: self.allow_root_tasks,
            executor_auth: self.executor_auth,
        };
        Ok(Some(Mesos {
            cfg,
            listener,
            plain: self.mesos_plain,
        }))
    }
}
