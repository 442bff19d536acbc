//! The operations center's daemons (`center`, `manager`, `agent`, `up`) and its client verbs
//! (`topology`, `restart`, `deploy`, `rollback`, `exec`, `logs`, `metrics`, `stats`,
//! `commands`), which talk to the center's HTTP API.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use yard_data::time::parse_duration;
use yard_ops::nodes::ClusterConfig;

use yard_client::center::{Center, NodeRef};
use yard_client::ClientError;
use yard_ops::center::StartRequest;
use yard_ops::commands::CommandState;
use yard_ops::proto::{CommandKind, RowState};

use crate::config::{NodeConfig, NodeFile};
use crate::node::Role;
use crate::render::ops as render;

pub(crate) const CENTER_LISTEN: &str = "127.0.0.1:9900";
pub(crate) const MANAGER_LISTEN: &str = "127.0.0.1:9901";
pub(crate) const AGENT_LISTEN: &str = "127.0.0.1:9910";

#[derive(Args, Clone)]
pub(crate) struct Common {
    /// Address of this daemon's gateway (WebSocket, HTTP, peering, /metrics).
    #[arg(long)]
    listen: Option<String>,
    /// State directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Shared secret for peering and for changes over HTTP (or set YARD_TOKEN).
    #[arg(long, env = "YARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: crate::TlsArgs,
    /// Join the system first with this token (`yard join-token create`), unless this home
    /// joined already; the daemon then runs with the certificate it got.
    #[arg(long, value_name = "TOKEN", env = "YARD_JOIN", hide_env_values = true)]
    join: Option<String>,
    /// How long the certificates this daemon's home authority issues live: its own, and on
    /// the center those of joining hosts. Each is renewed after two thirds of its life.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    cert_ttl: String,
}

#[derive(Args)]
pub(crate) struct CenterArgs {
    #[command(flatten)]
    common: Common,
    /// A manager silent this long is marked lost.
    #[arg(long, default_value = "15s")]
    manager_timeout: String,
    /// Raw samples are kept this long (then the 1-minute and 1-hour rollups).
    #[arg(long, default_value = "6h")]
    raw_retention: String,
    #[arg(long, default_value = "14d")]
    minute_retention: String,
    #[arg(long, default_value = "365d")]
    hour_retention: String,
}

#[derive(Args)]
pub(crate) struct ManagerArgs {
    #[command(flatten)]
    common: Common,
    /// The cluster this manager runs.
    #[arg(long)]
    cluster: String,
    /// The center's address.
    #[arg(long, default_value = CENTER_LISTEN)]
    center: String,
    /// The cluster config (TOML: the nodes and where they run; docs/OPS.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// An agent silent this long is reported lost.
    #[arg(long, default_value = "10s")]
    agent_timeout: String,
    /// A full report goes to the center at least this often.
    #[arg(long, default_value = "5s")]
    report_interval: String,
    /// How often agents sample metrics.
    #[arg(long, default_value = "5s")]
    metrics_interval: String,
    #[command(flatten)]
    mesos: crate::rm_cli::MasterArgs,
}

#[derive(Args)]
pub(crate) struct AgentArgs {
    #[command(flatten)]
    common: Common,
    /// The manager's address.
    #[arg(long, default_value = MANAGER_LISTEN)]
    manager: String,
    /// This agent's name in the cluster [default: the host name].
    #[arg(long)]
    name: Option<String>,
    /// The cluster its manager runs: the agent's certificate names it (agent:CLUSTER/NAME).
    #[arg(long, default_value = "local")]
    cluster: String,
    /// Roles (comma-separated); the cluster config places nodes by role.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// How often the agent reports to its manager.
    #[arg(long, default_value = "1s")]
    heartbeat: String,
    #[command(flatten)]
    node_users: NodeUserArgs,
    #[command(flatten)]
    mesos: crate::rm_cli::AgentArgs,
}

/// Whom an agent's nodes run as.
#[derive(Args, Clone)]
pub(crate) struct NodeUserArgs {
    /// The account of a node whose spec names no `user`, when the agent runs as root (an agent
    /// running as another user runs its nodes as itself).
    #[arg(long, default_value = "nobody")]
    node_user: String,
    /// Let nodes run as root (uid 0), by their spec's `user` or --node-user; without it such a
    /// node fails to start, with the reason.
    #[arg(long)]
    allow_root_nodes: bool,
}

impl NodeUserArgs {
    fn users(&self) -> yard_ops::supervisor::NodeUsers {
        yard_ops::supervisor::NodeUsers {
            default_user: self.node_user.clone(),
            allow_root: self.allow_root_nodes,
        }
    }
}

#[derive(Args)]
pub(crate) struct UpArgs {
    /// State directory of the whole system.
    #[arg(long, default_value = "./yard-data")]
    data: PathBuf,
    /// Agents to run.
    #[arg(long, default_value_t = 2)]
    agents: usize,
    /// Refuse plain text on every listener. By default `yard up`, which listens on loopback
    /// only, also serves plain HTTP there, for a browser that does not hold its CA and for
    /// pymesos, which cannot speak TLS.
    #[arg(long)]
    tls_only: bool,
    #[command(flatten)]
    node_users: NodeUserArgs,
}

/// A duration flag (`500ms`, `5s`, `1h`), not zero.
pub(crate) fn dur(what: &str, s: &str) -> anyhow::Result<Duration> {
    match parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => bail!("--{what} must be more than zero"),
        Err(e) => bail!("--{what}: {e}"),
    }
}

fn node_config(
    listen: &str,
    token: Option<String>,
    tls: &crate::TlsArgs,
) -> anyhow::Result<NodeConfig> {
    let mut file = NodeFile {
        listen: listen.to_string(),
        token: token.unwrap_or_default(),
        ..NodeFile::default()
    };
    tls.apply(&mut file);
    NodeConfig::try_from(file)
}

fn center_role(a: &CenterArgs, dir: PathBuf) -> anyhow::Result<Role> {
    Ok(Role::Center(yard_ops::center::CenterConfig {
        dir,
        manager_timeout: dur("manager-timeout", &a.manager_timeout)?,
        retention: yard_ops::tsdb::Retention {
            raw: dur("raw-retention", &a.raw_retention)?,
            minute: dur("minute-retention", &a.minute_retention)?,
            hour: dur("hour-retention", &a.hour_retention)?,
        },
        clock: std::sync::Arc::new(yard_ops::SystemClock),
        mesos: Some(std::sync::Arc::new(yard_client::mesos::Forwarder {
            timeout: Duration::from_secs(10),
        })),
        joins: None,
    }))
}

/// Binds, prints the line tests and scripts read, runs until a signal.
async fn daemon(
    what: &str,
    common: &Common,
    default_listen: &str,
    subject: yard_tls::Subject,
    mut role: Role,
) -> anyhow::Result<()> {
    let listen = common.listen.as_deref().unwrap_or(default_listen);
    let listen_addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| anyhow!("--listen {listen:?} is not an address such as 127.0.0.1:9900"))?;
    // Its TLS: what it is given, else what its home joined with or its home's authority issues.
    let home = yard_auth::home::resolve(None);
    if let Some(token) = &common.join {
        if matches!(role, Role::Center(_)) {
            bail!("--join: the center holds the authority others join; it does not join");
        }
        match crate::join_cli::joined(&home)? {
            Some(j) if j.subject == subject => {
                tracing::info!(%subject, "this home joined already; the token is not used again")
            }
            Some(j) => bail!(
                "this home ({}) joined as {}, not {subject}: give this daemon a home of its own (YARD_HOME)",
                home.display(),
                j.subject
            ),
            None => {
                let hosts: Vec<String> = if listen_addr.ip().is_unspecified() {
                    vec![]
                } else {
                    vec![listen_addr.ip().to_string()]
                };
                let j = crate::join_cli::join_home(&home, token, &subject, &hosts).await?;
                tracing::info!(subject = %j.subject, serial = %j.serial, "joined");
            }
        }
    }
    let cert_ttl = dur("cert-ttl", &common.cert_ttl)?;
    let (tls, renewal) = match &common.tls.tls_cert {
        Some(_) => (common.tls.clone(), crate::keeper::Renewal::Files),
        None => crate::join_cli::daemon_tls(&home, &subject, listen_addr, cert_ttl)?
            .unwrap_or((Default::default(), crate::keeper::Renewal::Files)),
    };
    if tls.tls_cert.is_none() && !listen_addr.ip().is_loopback() {
        bail!(
            "the {what} would listen on {listen_addr}, beyond loopback, in plain text: give it a \
             certificate (`yard join TOKEN`, `yard cert issue` with --tls-cert/--tls-key/--tls-ca, \
             or an authority in its home: `yard ca init` on the center's host)"
        );
    }
    if let Role::Center(c) = &mut role {
        let ca_dir = home.join("ca");
        if ca_dir.join("ca.key").exists() {
            let ca = yard_tls::Authority::open(&ca_dir)?;
            let mesh_key = crate::node::home_mesh_key(Some(&home))?;
            c.joins = Some(std::sync::Arc::new(
                yard_tls::join::Joins::new(ca, mesh_key)?.with_lifetime(cert_ttl),
            ));
        }
    }
    // The address the manager gives for its Mesos API carries its scheme, so that the center
    // reaches it the right way whatever root it holds.
    if let Role::Manager(c, Some(m)) = &mut role {
        let scheme = if tls.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        c.mesos = m
            .listener
            .local_addr()
            .ok()
            .map(|a| format!("{scheme}://{a}"));
    }
    let mut config = node_config(listen, common.token.clone(), &tls)?;
    if let Some(t) = config.tls.as_mut() {
        t.renewal = renewal;
    }
    let scheme = if config.gateway.tls.is_some() {
        // Its own calls (the center's to the managers' Mesos APIs) check servers against the
        // same root.
        if let Some(ca) = &tls.tls_ca {
            let pem = std::fs::read_to_string(ca)
                .with_context(|| format!("--tls-ca: cannot read {}", ca.display()))?;
            yard_client::trust::use_roots(yard_client::trust::Roots::from_pem(&pem)?);
        }
        "https"
    } else {
        "http"
    };
    let mesos = match &role {
        Role::Manager(_, Some(m)) => m.listener.local_addr().ok(),
        Role::Agent(_, Some(m)) => m.listener.local_addr().ok(),
        _ => None,
    }
    .map(|a| format!(", Mesos API {scheme}://{a}/"))
    .unwrap_or_default();
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (another yard running? choose --listen)",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let id = yard_fabric::id::random_uuid();
    println!(
        "yard {what} {id} listening on {addr} (HTTP {scheme}://{addr}/, metrics {scheme}://{addr}/metrics{mesos})"
    );
    let _ = std::io::stdout().flush();
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(crate::node::stop_on_signal(shutdown.clone()));
    let mut config = config;
    config.endpoint.listen = addr.to_string();
    let r = crate::node::run(id, config, listener, role, shutdown).await;
    signals.abort();
    tracing::info!("stopped");
    r
}

pub(crate) async fn center(a: CenterArgs) -> anyhow::Result<()> {
    let dir = a
        .common
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from("./yard-data/center"));
    let role = center_role(&a, dir)?;
    daemon(
        "center",
        &a.common,
        CENTER_LISTEN,
        yard_tls::Subject::Center,
        role,
    )
    .await
}

async fn manager_role(a: &ManagerArgs, dir: PathBuf) -> anyhow::Result<Role> {
    let config = match &a.config {
        Some(p) => ClusterConfig::load(p).map_err(|e| anyhow!(e))?,
        None => ClusterConfig::default(),
    };
    let agent_timeout = dur("agent-timeout", &a.agent_timeout)?;
    let mesos = a.mesos.build(&a.cluster, &dir, agent_timeout).await?;
    // The address it gives the center; its scheme is set once its TLS is known (`daemon`).
    let mesos_addr = mesos
        .as_ref()
        .and_then(|m| m.listener.local_addr().ok())
        .map(|a| a.to_string());
    Ok(Role::Manager(
        yard_ops::manager::ManagerConfig {
            mesos: mesos_addr,
            cluster: a.cluster.clone(),
            center: a.center.clone(),
            dir,
            config,
            agent_timeout,
            report_interval: dur("report-interval", &a.report_interval)?,
            metrics_interval: dur("metrics-interval", &a.metrics_interval)?,
            clock: std::sync::Arc::new(yard_ops::SystemClock),
        },
        mesos,
    ))
}

pub(crate) async fn manager(a: ManagerArgs) -> anyhow::Result<()> {
    let dir = a
        .common
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("./yard-data/manager-{}", a.cluster)));
    let role = manager_role(&a, dir).await?;
    let subject = yard_tls::Subject::Manager {
        cluster: a.cluster.clone(),
    };
    daemon("manager", &a.common, MANAGER_LISTEN, subject, role).await
}

/// This machine's host name, when it has one.
pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
}

pub(crate) async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    let name = a
        .name
        .clone()
        .or_else(host_name)
        .unwrap_or_else(|| "agent".into());
    let dir = a
        .common
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("./yard-data/agent-{name}")));
    let heartbeat = dur("heartbeat", &a.heartbeat)?;
    let mesos = a.mesos.build(&name, &dir, heartbeat).await?;
    let subject = yard_tls::Subject::Agent {
        cluster: a.cluster.clone(),
        agent: name.clone(),
    };
    let role = Role::Agent(
        yard_ops::agent::AgentConfig {
            manager: a.manager.clone(),
            name,
            roles: a.roles.clone(),
            dir,
            heartbeat,
            rotation: Default::default(),
            tasks: None,
            node_users: a.node_users.users(),
        },
        mesos,
    );
    daemon("agent", &a.common, AGENT_LISTEN, subject, role).await
}

/// What each agent of `yard up` offers. They share one host, so each offers its own 500 host
/// ports (agent i: 31000 + 500(i-1) onwards): two tasks never get the same port.
fn up_agent_resources(i: usize) -> String {
    let first = 31000 + 500 * (i - 1);
    format!("cpus:2;mem:2048;disk:4096;ports:[{first}-{}]", first + 499)
}

/// The cluster config `yard up` writes on its first run.
fn demo_config(yard: &Path) -> String {
    let yard = yard.display();
    format!(
        r#"# The nodes of cluster "local" (see docs/OPS.md). Edit, then restart `yard up`.

# A small service on each agent: a yard endpoint, checked over HTTP.
[[node]]
name = "web-1"
command = "{yard}"
args = ["node", "--listen", "127.0.0.1:9921"]
agents = ["agent-1"]
[node.health]
http = "http://127.0.0.1:9921/v1/health"

[[node]]
name = "web-2"
command = "{yard}"
args = ["node", "--listen", "127.0.0.1:9922"]
agents = ["agent-2"]
[node.health]
http = "http://127.0.0.1:9922/v1/health"

# A worker on every agent (no agents or roles given); without a health check it counts as
# healthy once it has run for a second.
[[node]]
name = "ticker"
command = "sh"
args = ["-c", "while :; do date; sleep 5; done"]
restart = "always"
"#
    )
}

/// `yard up`: a center, the manager of cluster `local` and agents, in this process.
pub(crate) async fn up(a: UpArgs) -> anyhow::Result<()> {
    let data = a.data.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    // The data directory holds the credentials (files of mode 0600): nobody else may list or
    // change it. Others may pass through it (0711), as the tasks' own users must to reach
    // their sandboxes under the agents' directories.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot make {} private", data.display()))?;
    }
    // The data directory is this system's credentials home: its mesh key joins the daemons.
    let mesh_key = crate::node::home_mesh_key(Some(&data))?;
    let config_path = data.join("cluster.toml");
    if !config_path.exists() {
        let exe = std::env::current_exe().context("cannot find the yard binary")?;
        std::fs::write(&config_path, demo_config(&exe))?;
    }
    let cluster_config = ClusterConfig::load(&config_path).map_err(|e| anyhow!(e))?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(crate::node::stop_on_signal(shutdown.clone()));
    let mut daemons = Vec::new();
    let center = CenterArgs {
        common: Common {
            listen: Some(CENTER_LISTEN.into()),
            data: None,
            token: None,
            tls: Default::default(),
            join: None,
            cert_ttl: "24h".into(),
        },
        manager_timeout: "15s".into(),
        raw_retention: "6h".into(),
        minute_retention: "14d".into(),
        hour_retention: "365d".into(),
    };
    let mut plan: Vec<(String, String, Role)> = vec![(
        "center".into(),
        CENTER_LISTEN.into(),
        center_role(&center, data.join("center"))?,
    )];
    let master = crate::rm_cli::MasterArgs::default()
        .build(
            "local",
            &data.join("manager-local"),
            Duration::from_secs(10),
        )
        .await?;
    let master_addr = master
        .as_ref()
        .and_then(|m| m.listener.local_addr().ok())
        .map(|a| format!("https://{a}"));
    plan.push((
        "manager".into(),
        MANAGER_LISTEN.into(),
        Role::Manager(
            yard_ops::manager::ManagerConfig {
                mesos: master_addr,
                cluster: "local".into(),
                center: CENTER_LISTEN.into(),
                dir: data.join("manager-local"),
                config: cluster_config,
                agent_timeout: Duration::from_secs(10),
                report_interval: Duration::from_secs(5),
                metrics_interval: Duration::from_secs(5),
                clock: std::sync::Arc::new(yard_ops::SystemClock),
            },
            master,
        ),
    ));
    for i in 1..=a.agents {
        let name = format!("agent-{i}");
        plan.push((
            name.clone(),
            format!("127.0.0.1:{}", 9910 + i),
            Role::Agent(
                yard_ops::agent::AgentConfig {
                    manager: MANAGER_LISTEN.into(),
                    dir: data.join(&name),
                    name: name.clone(),
                    roles: vec![],
                    heartbeat: Duration::from_secs(1),
                    rotation: Default::default(),
                    tasks: None,
                    node_users: a.node_users.users(),
                },
                crate::rm_cli::AgentArgs {
                    mesos_listen: format!("127.0.0.1:{}", 5050 + i),
                    resources: Some(up_agent_resources(i)),
                    // Isolated where the host has cgroups v1; elsewhere `yard up` says so and
                    // runs tasks without limits.
                    isolation_fallback: true,
                    ..Default::default()
                }
                .build(&name, &data.join(&name), Duration::from_secs(1))
                .await?,
            ),
        ));
    }
    // TLS on every listener and link: the system's authority (made on the first run) issues
    // each daemon a certificate for its principal at every start.
    let ca = yard_tls::Authority::open_or_init(&data.join("ca"), std::time::SystemTime::now())?;
    yard_client::trust::use_roots(yard_client::trust::Roots::from_pem(ca.cert_pem())?);
    if let Some((_, _, Role::Center(c))) = plan.first_mut() {
        let desk =
            yard_tls::join::Joins::new(yard_tls::Authority::open(ca.dir())?, mesh_key.clone())?;
        c.joins = Some(std::sync::Arc::new(desk));
    }
    let mut lines = Vec::new();
    for (what, listen, mut role) in plan {
        let subject = match what.as_str() {
            "center" => yard_tls::Subject::Center,
            "manager" => yard_tls::Subject::Manager {
                cluster: "local".into(),
            },
            agent => yard_tls::Subject::Agent {
                cluster: "local".into(),
                agent: agent.into(),
            },
        };
        let loopback = vec!["127.0.0.1".into(), "localhost".into()];
        let tls = issue_for(
            &ca,
            &subject,
            loopback,
            yard_tls::ca::CERT_LIFETIME,
            &data.join("certs"),
            !a.tls_only,
        )?;
        match &mut role {
            Role::Manager(_, Some(m)) => m.plain = !a.tls_only,
            Role::Agent(_, Some(m)) => m.plain = !a.tls_only,
            _ => {}
        }
        let mut config = node_config(&listen, None, &tls)?;
        if let Some(t) = config.tls.as_mut() {
            // Renewed from the authority before they expire, whatever `yard up` runs for.
            t.renewal = crate::keeper::Renewal::Authority(ca.dir().to_path_buf());
        }
        config.endpoint.mesh_key = Some(mesh_key.clone());
        config.home = Some(data.clone());
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!("cannot listen on {listen} for the {what} (is another `yard up` running?)")
        })?;
        let id = stable_id(&data, &what)?;
        lines.push(format!("  {what:<10} https://{listen}/  (id {id})"));
        config.endpoint.listen = listen.clone();
        let sd = shutdown.clone();
        daemons.push(tokio::spawn(async move {
            let r = crate::node::run(id, config, listener, role, sd.clone()).await;
            if let Err(e) = &r {
                tracing::error!("{what} stopped: {e:#}");
                sd.cancel();
            }
            r
        }));
    }
    println!(
        "Switchyard is up; state in {} (cluster config {})",
        data.display(),
        config_path.display()
    );
    for l in &lines {
        println!("{l}");
    }
    let creds = data.join("credentials");
    let plain = if a.tls_only {
        "TLS only (--tls-only)"
    } else {
        "TLS, and plain HTTP on loopback for browsers and pymesos (--tls-only refuses it)"
    };
    println!(
        "  TLS 1.3    every listener and link, certificates of the authority in {} ({plain})",
        data.join("ca").display()
    );
    let browser_scheme = if a.tls_only { "https" } else { "http" };
    match dashboard_link(&creds).await {
        Ok(path) => println!(
            "  Dashboard  {browser_scheme}://{CENTER_LISTEN}{path}\n             (a one-time sign-in link, good for 15 min; `yard login-link` prints another;\n             https:// once the browser trusts {})",
            data.join("ca").join("ca.crt").display()
        ),
        Err(e) => println!(
            "  Dashboard  {browser_scheme}://{CENTER_LISTEN}/ui/ (no sign-in link: {e:#})"
        ),
    }
    println!(
        "  Admin credential in {} (mode 0600): `yard` run in this directory uses it; give others their own (`yard token create NAME --role viewer`).",
        creds.display()
    );
    println!(
        "  Mesos API  https://127.0.0.1:5050/ (master), agents on 5051..{} (docs/RM.md){}",
        5050 + a.agents,
        if a.tls_only {
            ""
        } else {
            "; http:// too, on loopback"
        }
    );
    println!(
        "\nTry, from another terminal (yard = {}):\n  yard topology\n  yard stats\n  yard restart --cluster local --rolling\n  echo v1 > app.txt && yard deploy app.txt --cluster local\n  yard rollback --cluster local\n  yard exec --cluster local -- uname -n\n  yard logs ticker\n  yard metrics local/agent-1/cpu --since 1h\n  yard audit\n  curl -s --cacert {} -H \"Authorization: Bearer $(cat {})\" https://{CENTER_LISTEN}/metrics\nCtrl-C stops everything; `yard up` again resumes the same state.",
        std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "yard".into()),
        data.join("ca").join("ca.crt").display(),
        creds.display()
    );
    let _ = std::io::stdout().flush();
    let mut first_error = None;
    for d in daemons {
        if let Ok(Err(e)) = d.await {
            first_error.get_or_insert(e);
        }
    }
    signals.abort();
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A certificate for `subject` serving on `hosts` from `ca`, written under `dir`, as TLS
/// settings.
pub(crate) fn issue_for(
    ca: &yard_tls::Authority,
    subject: &yard_tls::Subject,
    hosts: Vec<String>,
    lifetime: Duration,
    dir: &Path,
    plain: bool,
) -> anyhow::Result<crate::TlsArgs> {
    let issued = ca.issue(
        &yard_tls::Request {
            subject: subject.clone(),
            hosts,
            lifetime,
        },
        std::time::SystemTime::now(),
    )?;
    let name = crate::tls_cli::file_name(subject);
    let (cert, key) = yard_tls::ca::write_identity(dir, &name, &issued, ca.cert_pem())?;
    Ok(crate::TlsArgs {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_ca: Some(dir.join("ca.crt")),
        tls_plain: plain,
    })
}

/// The endpoint id a daemon of `yard up` keeps across runs.
fn stable_id(data: &Path, what: &str) -> anyhow::Result<String> {
    let path = data.join(format!("{what}.id"));
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_string());
        }
    }
    let id = yard_fabric::id::random_uuid();
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

// ---- client verbs ----

#[derive(Args, Clone)]
pub(crate) struct CenterArg {
    /// The center's address (or set YARD_CENTER).
    #[arg(long, short = 'c', env = "YARD_CENTER", default_value = CENTER_LISTEN)]
    pub(crate) center: String,
    /// The credential to send (or set YARD_API_TOKEN) [default: the credentials file found].
    #[arg(long, env = "YARD_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl CenterArg {
    /// The typed client for the center, with `--token` or the credential found.
    pub(crate) fn client(&self) -> Center {
        Center::new(
            self.center.clone(),
            crate::client::bearer(self.token.as_deref()),
        )
    }
}

/// The dashboard's one-time sign-in link, made with the admin credential of `yard up`.
async fn dashboard_link(creds: &std::path::Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(creds)
        .with_context(|| format!("cannot read {}", creds.display()))?;
    let center = Center::new(CENTER_LISTEN, Some(format!("Bearer {}", token.trim())));
    let mut last = None;
    // The center's routes come up with its actor, a moment after its listener.
    for _ in 0..50 {
        match center.login_link(&Default::default()).await {
            Ok(link) => return Ok(link.path),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last
        .map(anyhow::Error::from)
        .unwrap_or_else(|| anyhow!("no answer")))
}

#[derive(Args)]
pub(crate) struct LoginLinkArgs {
    #[command(flatten)]
    center: CenterArg,
    /// The role of the browser's token: viewer, operator or admin.
    #[arg(long, default_value = "operator")]
    role: String,
    /// How long the link works (it works once).
    #[arg(long, default_value = "15m")]
    ttl: String,
}

pub(crate) async fn login_link(a: LoginLinkArgs) -> anyhow::Result<()> {
    let role = yard_auth::Role::parse(&a.role)?;
    let ttl = dur("ttl", &a.ttl)?;
    let link = a
        .center
        .client()
        .login_link(&yard_ops::center::LinkRequest {
            role: Some(role),
            ttl_s: Some(ttl.as_secs().max(1)),
        })
        .await
        .map_err(hint)?;
    let target =
        yard_client::trust::target(&a.center.center, yard_client::trust::found().is_some());
    let scheme = if target.tls { "https" } else { "http" };
    println!("{scheme}://{}{}", target.addr, link.path);
    eprintln!(
        "(works once, until {}; the browser then holds a {} token of its own for 12 h)",
        yard_data::time::format_timestamp(
            yard_data::time::ms_to_ns(link.expires_ms),
            Default::default()
        ),
        a.role
    );
    Ok(())
}

/// A client error, with the way out when nothing answers.
pub(crate) fn hint(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::NotRunning { .. } => {
            anyhow!("{e}\n(is the center running? `yard up` or `yard center` starts one)")
        }
        other => other.into(),
    }
}

#[derive(Args)]
pub(crate) struct TopologyArgs {
    #[command(flatten)]
    center: CenterArg,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn topology(a: TopologyArgs) -> anyhow::Result<()> {
    let t = a.center.client().topology().await.map_err(hint)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        print!("{}", render::topology(&t));
    }
    Ok(())
}

#[derive(Args, Clone)]
pub(crate) struct Target {
    /// The cluster.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    cluster: Option<String>,
    /// Every cluster (fanned out through every manager).
    #[arg(long)]
    all: bool,
    /// How long the command may take on each cluster.
    #[arg(long, default_value = "300s")]
    timeout: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Start the command and print its id without following it.
    #[arg(long)]
    detach: bool,
}

impl Target {
    fn request(&self, kind: CommandKind) -> anyhow::Result<StartRequest> {
        let timeout = dur("timeout", &self.timeout)?;
        Ok(StartRequest {
            kind,
            cluster: self.cluster.clone(),
            all: self.cluster.is_none(),
            timeout_s: Some(timeout.as_secs().max(1)),
        })
    }
}

#[derive(Args)]
pub(crate) struct RestartArgs {
    #[command(flatten)]
    center: CenterArg,
    #[command(flatten)]
    target: Target,
    /// One batch at a time, each healthy before the next (the only mode; kept for clarity).
    #[arg(long)]
    rolling: bool,
    /// Nodes restarted together.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Only this node, as AGENT/NODE (repeat for several) [default: every node].
    #[arg(long = "node", value_name = "AGENT/NODE")]
    nodes: Vec<String>,
}

pub(crate) async fn restart(a: RestartArgs) -> anyhow::Result<()> {
    let req = a.target.request(CommandKind::Restart {
        batch: a.batch,
        nodes: a.nodes.clone(),
    })?;
    run_command(&a.center, &a.target, &req).await
}

#[derive(Args)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    center: CenterArg,
    #[command(flatten)]
    target: Target,
    /// Where the artifact lands on each agent (relative paths under the agent's deploy
    /// directory) [default: deploy/FILE-NAME].
    #[arg(long)]
    path: Option<String>,
    /// The SHA-256 the file must have; refused when it differs.
    #[arg(long)]
    sha256: Option<String>,
    /// The artifact.
    file: PathBuf,
}

pub(crate) async fn deploy(a: DeployArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let name = a
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{} has no file name", a.file.display()))?;
    let local = yard_ops::artifacts::sha256_hex(&bytes);
    let expected = a.sha256.clone().unwrap_or(local);
    let up = a
        .center
        .client()
        .upload(&bytes, Some(&expected))
        .await
        .map_err(hint)?;
    eprintln!("uploaded {name}: {} bytes, sha256 {}", up.size, up.sha256);
    let req = a.target.request(CommandKind::Deploy {
        sha256: up.sha256,
        name,
        size: up.size,
        path: a.path.clone(),
    })?;
    run_command(&a.center, &a.target, &req).await
}

#[derive(Args)]
pub(crate) struct RollbackArgs {
    #[command(flatten)]
    center: CenterArg,
    #[command(flatten)]
    target: Target,
    /// The deployment to roll back [default: the newest on each agent].
    #[arg(long)]
    path: Option<String>,
}

pub(crate) async fn rollback(a: RollbackArgs) -> anyhow::Result<()> {
    let req = a.target.request(CommandKind::Rollback {
        path: a.path.clone(),
    })?;
    run_command(&a.center, &a.target, &req).await
}

#[derive(Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    center: CenterArg,
    #[command(flatten)]
    target: Target,
    /// The program and its arguments (after --).
    #[arg(last = true, required = true)]
    argv: Vec<String>,
}

pub(crate) async fn exec(a: ExecArgs) -> anyhow::Result<()> {
    let req = a.target.request(CommandKind::Exec { argv: a.argv })?;
    run_command(&a.center, &a.target, &req).await
}

async fn run_command(
    center: &CenterArg,
    target: &Target,
    req: &StartRequest,
) -> anyhow::Result<()> {
    let id = center.client().start(req).await.map_err(hint)?;
    if target.detach {
        println!("{id}");
        return Ok(());
    }
    eprintln!("command {id} (follow it elsewhere: yard commands {id} --follow)");
    follow(center, &id, target.json).await
}

/// Prints progress lines as rows change, then the result table; fails unless every step is ok.
async fn follow(center: &CenterArg, id: &str, json: bool) -> anyhow::Result<()> {
    let client = center.client();
    let mut version = 0u64;
    let mut shown: std::collections::BTreeMap<String, RowState> = Default::default();
    let tty = std::io::stderr().is_terminal();
    let rec = loop {
        let rec = client
            .command(id, Some(version), 10_000)
            .await
            .map_err(hint)?;
        version = rec.version;
        let done = rec
            .rows
            .iter()
            .filter(|r| matches!(r.state, RowState::Ok | RowState::Failed | RowState::Skipped))
            .count();
        for r in &rec.rows {
            let key = format!("{}/{}/{}", r.cluster, r.agent, r.node);
            if shown.get(&key) != Some(&r.state) {
                let bar = if tty {
                    render::progress_bar(done, rec.rows.len())
                } else {
                    format!("[{done}/{}]", rec.rows.len())
                };
                eprintln!(
                    "{bar} {:<40} {} {}",
                    key.trim_end_matches('/'),
                    render::row_state(r.state),
                    r.detail
                );
                shown.insert(key, r.state);
            }
        }
        if rec.state != CommandState::Running {
            break rec;
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        print!("{}", render::command_table(&rec));
    }
    if rec.state == CommandState::Ok {
        return Ok(());
    }
    let errs = render::failures(&rec);
    if errs.is_empty() {
        bail!("command {id} failed")
    } else {
        bail!("command {id} failed: {}", errs.join("; "))
    }
}

#[derive(Args)]
pub(crate) struct CommandsArgs {
    #[command(flatten)]
    center: CenterArg,
    /// One command (otherwise: the list).
    id: Option<String>,
    /// Follow it until it ends.
    #[arg(long)]
    follow: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn commands(a: CommandsArgs) -> anyhow::Result<()> {
    match a.id {
        Some(id) if a.follow => follow(&a.center, &id, a.json).await,
        Some(id) => {
            let rec = a
                .center
                .client()
                .command(&id, None, 0)
                .await
                .map_err(hint)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rec)?);
            } else {
                print!("{}", render::command_table(&rec));
            }
            Ok(())
        }
        None => {
            let list = a.center.client().commands().await.map_err(hint)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render::command_list(&list));
            }
            Ok(())
        }
    }
}

#[derive(Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    center: CenterArg,
    /// Only this cluster.
    #[arg(long)]
    cluster: Option<String>,
    /// stdout or stderr.
    #[arg(long, default_value = "stdout")]
    stream: String,
    /// How much of the end of the log.
    #[arg(long, default_value_t = 65536)]
    bytes: u64,
    /// Keep printing what the node writes, until Ctrl-C (one node only).
    #[arg(long, short)]
    follow: bool,
    /// NODE, or AGENT/NODE.
    node: String,
}

pub(crate) async fn logs(a: LogsArgs) -> anyhow::Result<()> {
    let (agent, node) = match a.node.split_once('/') {
        Some((ag, n)) => (Some(ag.to_string()), n.to_string()),
        None => (None, a.node.clone()),
    };
    let client = a.center.client();
    let list = client.nodes(a.cluster.as_deref()).await.map_err(hint)?;
    let found: Vec<_> = list
        .nodes
        .into_iter()
        .filter(|n| n.name == node && agent.as_ref().is_none_or(|ag| n.agent == *ag))
        .collect();
    if found.is_empty() {
        bail!("no node {:?} in the topology (see `yard topology`)", a.node);
    }
    if a.follow {
        let [n] = found.as_slice() else {
            bail!(
                "{} nodes are named {:?}: follow one of them, as AGENT/NODE",
                found.len(),
                a.node
            );
        };
        return follow_log(&client, n, &a.stream, a.bytes).await;
    }
    for n in &found {
        let node = NodeRef {
            cluster: &n.cluster,
            agent: &n.agent,
            node: &n.name,
        };
        let read = client
            .logs(&node, &a.stream, a.bytes, None)
            .await
            .map_err(hint)?;
        if found.len() > 1 {
            println!("==> {}/{}/{} <==", n.cluster, n.agent, n.name);
        }
        print!("{}", read.text);
    }
    Ok(())
}

/// Prints a node's log as it grows: each read asks for what was written since the last one.
async fn follow_log(
    client: &Center,
    n: &yard_ops::center::NodeRow,
    stream: &str,
    bytes: u64,
) -> anyhow::Result<()> {
    use std::io::Write;
    let node = NodeRef {
        cluster: &n.cluster,
        agent: &n.agent,
        node: &n.name,
    };
    let mut after: Option<String> = None;
    loop {
        let read = client
            .logs(&node, stream, bytes, after.as_deref())
            .await
            .map_err(hint)?;
        if after.is_some() && !read.continued {
            eprintln!(
                "(the log rotated or ran past {bytes} bytes since the last read: its tail follows)"
            );
        }
        print!("{}", read.text);
        std::io::stdout().flush()?;
        after = read.next;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[derive(Args)]
pub(crate) struct MetricsArgs {
    #[command(flatten)]
    center: CenterArg,
    /// How far back, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    since: String,
    /// raw, 1m, 1h or auto.
    #[arg(long, default_value = "auto")]
    resolution: String,
    #[arg(long)]
    json: bool,
    /// The series (e.g. local/agent-1/cpu); with --list, a prefix.
    series: String,
    /// List the series starting with SERIES.
    #[arg(long)]
    list: bool,
}

pub(crate) async fn metrics(a: MetricsArgs) -> anyhow::Result<()> {
    let client = a.center.client();
    if a.list {
        for s in client.series(&a.series).await.map_err(hint)?.series {
            println!("{s}");
        }
        return Ok(());
    }
    let p = client
        .query(&a.series, &a.since, &a.resolution)
        .await
        .map_err(hint)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", render::points(&p, &a.since));
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    center: CenterArg,
    #[arg(long)]
    json: bool,
    /// One cluster (otherwise all).
    cluster: Option<String>,
}

pub(crate) async fn stats(a: StatsArgs) -> anyhow::Result<()> {
    let st = a
        .center
        .client()
        .stats(a.cluster.as_deref())
        .await
        .map_err(hint)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", render::stats(&st, a.cluster.is_none()));
    }
    Ok(())
}
