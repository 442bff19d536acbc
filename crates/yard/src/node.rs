//! `yard node`: one fabric endpoint and its gateway, until SIGINT or SIGTERM.

use std::io::Write;

use anyhow::Context;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use yard_auth::{AuditLog, Guard, GuardConfig, Registry};
use yard_fabric::id::random_uuid;
use yard_fabric::Endpoint;
use yard_store::Stores;

use crate::config::{NodeConfig, NodeFile};
use crate::NodeArgs;

pub(crate) async fn main(args: NodeArgs) -> anyhow::Result<()> {
    let mut file = match &args.config {
        Some(path) => NodeFile::load(path)?,
        None => NodeFile::default(),
    };
    if let Some(v) = args.listen {
        file.listen = v;
    }
    if let Some(v) = args.client_queue {
        file.client_queue = v;
    }
    if let Some(v) = args.overflow_policy {
        file.overflow_policy = v;
    }
    if let Some(v) = args.timestamp_precision {
        file.timestamp_precision = v;
    }
    if let Some(v) = args.max_message_size {
        file.max_message_size = v;
    }
    if let Some(v) = args.ping_interval {
        file.ping_interval = v;
    }
    file.peers.extend(args.peers);
    if let Some(v) = args.anonymous {
        file.anonymous = v;
    }
    if !args.allow_hosts.is_empty() {
        file.allow_hosts = args.allow_hosts;
    }
    if let Some(v) = args.token {
        file.token = v;
    }
    if let Some(v) = args.id {
        file.id = v;
    }
    if let Some(v) = args.log_dir {
        file.log_dir = v.to_string_lossy().into_owned();
    }
    if let Some(v) = args.peer_queue {
        file.peer_queue = v;
    }
    if let Some(v) = args.peer_overflow_policy {
        file.peer_overflow_policy = v;
    }
    if let Some(v) = args.ttl {
        file.ttl = v;
    }
    file.masters.extend(args.masters);
    file.clones.extend(args.clones);
    if let Some(v) = args.stale_interval {
        file.stale_interval = v;
    }
    if let Some(v) = args.mutation_buffer_interval {
        file.mutation_buffer_interval = v;
    }
    args.tls.apply(&mut file);
    let joined = joined_identity(&mut file)?;
    let mut config = NodeConfig::try_from(file)?;
    if let (Some(center), Some(tls)) = (joined, config.tls.as_mut()) {
        tls.renewal = crate::keeper::Renewal::Center(center);
    }
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (is another yard node running? choose another with --listen)",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    // Beyond loopback anonymous callers get nothing unless asked (`--anonymous pubsub`).
    if !addr.ip().is_loopback()
        && config.anonymous.as_ref() == Some(&yard_auth::Policy::anonymous_loopback())
    {
        tracing::warn!(%addr, "listening beyond loopback with --anonymous pubsub: anyone who \
            can reach this address can publish and subscribe on user topics without a credential");
    }
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
    let id = config.id.clone().unwrap_or_else(random_uuid);
    config.endpoint.listen = addr.to_string();
    // Tests and scripts read this line to learn the address (the port may have been 0).
    let (ws, http, tls) = match &config.gateway.tls {
        Some(t) if t.plain => ("wss", "https", ", TLS 1.3 and plain"),
        Some(_) => ("wss", "https", ", TLS 1.3 only"),
        None => ("ws", "http", ""),
    };
    println!(
        "yard node {id} listening on {addr} (peering yard://{addr}, WebSocket {ws}://{addr}/v1/messages/json, status {http}://{addr}/v1/status/json, metrics {http}://{addr}/metrics{tls})"
    );
    let _ = std::io::stdout().flush();
    let result = run(id, config, listener, Role::Node, shutdown.clone()).await;
    signals.abort();
    tracing::info!("stopped");
    result
}

/// A node given no TLS whose home joined (`yard join TOKEN --as node:NAME`) runs on the
/// identity it got, renewed at the center: the center's address. A home that joined as
/// another principal is not a node's.
fn joined_identity(file: &mut NodeFile) -> anyhow::Result<Option<String>> {
    if !(file.tls_cert.is_empty() && file.tls_key.is_empty() && file.tls_ca.is_empty()) {
        return Ok(None);
    }
    let home = yard_auth::home::resolve((!file.home.is_empty()).then(|| Path::new(&file.home)));
    let Some(j) = crate::join_cli::joined(&home)? else {
        return Ok(None);
    };
    if !matches!(j.subject, yard_tls::Subject::Node { .. }) {
        anyhow::bail!(
            "this home ({}) joined as {}, not as a node: give the node a home of its own \
             (YARD_HOME) and `yard join TOKEN --as node:NAME` there, or --tls-cert",
            home.display(),
            j.subject
        );
    }
    crate::join_cli::joined_files(&home).apply(file);
    Ok(Some(j.center))
}

/// What an endpoint is, besides a fabric endpoint.
pub(crate) enum Role {
    Node,
    Center(yard_ops::center::CenterConfig),
    /// A cluster's manager, and the resource manager's master when its Mesos API is on.
    Manager(
        yard_ops::manager::ManagerConfig,
        Option<Mesos<yard_rm::master::server::ServerConfig>>,
    ),
    /// A host's agent, and the resource manager's agent when its Mesos API is on.
    Agent(
        yard_ops::agent::AgentConfig,
        Option<Mesos<yard_rm::agent::AgentConfig>>,
    ),
}

/// The resource manager's part of a daemon: its config and its Mesos API listener.
pub(crate) struct Mesos<C> {
    pub cfg: C,
    pub listener: TcpListener,
    /// With TLS, plain HTTP too (`--mesos-plain`, loopback only).
    pub plain: bool,
}

impl<C> Mesos<C> {
    /// The API's listener: TLS with the gateway's certificate when the daemon has one.
    fn http(
        self,
        tls: Option<&yard_gateway::tls::GatewayTls>,
        timeout: std::time::Duration,
    ) -> anyhow::Result<(C, yard_tls::listen::HttpListener)> {
        let tls = tls.map(|t| yard_tls::listen::ServerTls {
            server: t.server.clone(),
            plain: self.plain,
            live: t.live.clone(),
        });
        if tls.is_none() && self.plain {
            anyhow::bail!(
                "--mesos-plain: TLS is off (no --tls-cert), so the Mesos API is plain already"
            );
        }
        let l = yard_tls::listen::HttpListener::new(self.listener, tls, timeout)
            .context("the Mesos API's listener")?;
        Ok((self.cfg, l))
    }
}

/// Carries the resource-manager agent's task list to the operations agent's heartbeats, until
/// the resource-manager agent is gone.
async fn bridge_tasks(
    mut from: tokio::sync::watch::Receiver<Vec<yard_rm::agent::TaskBrief>>,
    to: tokio::sync::watch::Sender<Vec<yard_ops::proto::TaskView>>,
) {
    while from.changed().await.is_ok() {
        let list = from
            .borrow_and_update()
            .iter()
            .map(|t| yard_ops::proto::TaskView {
                id: t.task_id.clone(),
                framework: t.framework.clone(),
                state: t.state.clone(),
                healthy: t.healthy,
            })
            .collect();
        to.send_replace(list);
    }
}

/// The mesh key of the credentials home at `dir` (or the one [`yard_auth::home::resolve`]
/// picks), made on first use. Peers prove they hold it; it never crosses the wire.
pub(crate) fn home_mesh_key(dir: Option<&std::path::Path>) -> anyhow::Result<String> {
    let dir = yard_auth::home::resolve(dir);
    let home = yard_auth::Home::open_or_init(&dir)?;
    Ok(home.mesh_key()?)
}

/// The token registry of a home, one per process (every listener of `yard up` shares it).
fn shared_registry(home: &yard_auth::Home) -> anyhow::Result<Arc<Registry>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<Registry>>>> = OnceLock::new();
    let mut open = OPEN
        .get_or_init(Default::default)
        .lock()
        .expect("registries");
    if let Some(r) = open.get(&home.dir) {
        return Ok(r.clone());
    }
    let r = Arc::new(home.registry()?);
    open.insert(home.dir.clone(), r.clone());
    Ok(r)
}

/// Audit records kept per file before it is rotated, and rotated files kept.
const AUDIT_MAX_BYTES: u64 = 16 << 20;
const AUDIT_KEEP: usize = 4;

/// A guard for a listener at `addr`.
fn guard_for(
    addr: std::net::SocketAddr,
    hosts: &[String],
    realm: &str,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
) -> Arc<Guard> {
    guard_with(addr, hosts, None, realm, registry, audit)
}

fn guard_with(
    addr: std::net::SocketAddr,
    hosts: &[String],
    anonymous: Option<yard_auth::Policy>,
    realm: &str,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
) -> Arc<Guard> {
    Guard::new(
        GuardConfig {
            loopback: addr.ip().is_loopback(),
            hosts: hosts.to_vec(),
            anonymous,
            realm: realm.into(),
            ..GuardConfig::default()
        },
        registry,
        audit,
    )
}

/// Runs an endpoint, its role and its gateway on `listener` until `shutdown` is cancelled.
pub(crate) async fn run(
    id: String,
    config: NodeConfig,
    listener: TcpListener,
    role: Role,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut config = config;
    // Trust: the credentials home gives the mesh key, the token registry every listener of this
    // process shares, and (for a plain node) the audit log's directory.
    let home = yard_auth::Home::open_or_init(yard_auth::home::resolve(config.home.as_deref()))?;
    if config.endpoint.mesh_key.is_none() {
        config.endpoint.mesh_key = Some(home.mesh_key()?);
    }
    let registry = shared_registry(&home)?;
    let audit_dir = match &role {
        Role::Node => home.dir.clone(),
        Role::Center(c) => c.dir.clone(),
        Role::Manager(c, _) => c.dir.clone(),
        Role::Agent(c, _) => c.dir.clone(),
    };
    let audit = Arc::new(
        AuditLog::open(&audit_dir, AUDIT_MAX_BYTES, AUDIT_KEEP)
            .with_context(|| format!("cannot open the audit log in {}", audit_dir.display()))?,
    );
    let hosts = config.allow_hosts.clone();
    if config.gateway.store_dir.is_none() {
        config.gateway.store_dir = Some(home.dir.join("stores"));
    }
    // The Mesos listeners' guards: the same registry (or one with the Mesos principal) and log.
    let mesos_guard = |listener: &TcpListener, registry: Arc<Registry>| -> anyhow::Result<_> {
        Ok(guard_for(
            listener.local_addr()?,
            &hosts,
            "mesos",
            registry,
            audit.clone(),
        ))
    };
    config.gateway.guard = Some(guard_with(
        listener.local_addr()?,
        &hosts,
        config.anonymous.clone(),
        "yard",
        registry.clone(),
        audit.clone(),
    ));
    let tls = config.gateway.tls.clone();
    let handshake = config.gateway.handshake_timeout;
    let (endpoint, router) = Endpoint::spawn(id, config.endpoint, shutdown.clone());
    if let Some(files) = config.tls {
        // Renewal, reloads and revocations; the authority's list read on its own host, and
        // published on the fabric by the center.
        let ca_dir = home.ca_dir();
        let authority = ca_dir.join("ca.key").exists().then_some(ca_dir);
        let publish = matches!(role, Role::Center(_));
        tokio::spawn(crate::keeper::run(
            files,
            endpoint.clone(),
            authority,
            publish,
            shutdown.clone(),
        ));
    }
    if let Some(logs) = config.logs {
        let ep = endpoint.clone();
        tokio::spawn(async move {
            if let Err(e) = yard_gateway::logs::run(ep, logs).await {
                tracing::error!("remote log writer stopped: {e:#}");
            }
        });
    }
    let mut first_attempts = Vec::new();
    for addr in config.peers {
        let ep = endpoint.clone();
        first_attempts.push(tokio::spawn(async move {
            match ep.peer(&addr).await {
                Ok(Ok(peer)) => {
                    tracing::debug!(%addr, %peer, "peered");
                    Some(peer)
                }
                Ok(Err(e)) => {
                    tracing::warn!(%addr, "not peered yet: {e}; re-dialing with backoff");
                    None
                }
                Err(e) => {
                    tracing::error!(%addr, "cannot peer: {e}");
                    None
                }
            }
        }));
    }
    if !config.masters.is_empty() {
        // A master checks that no other master of its store answers in the mesh: give the
        // configured peers their first attempt and their routes first (bounded).
        settle_peers(&endpoint, first_attempts).await;
    }
    let stores = Stores::new(endpoint.clone(), shutdown.clone());
    for (name, spec) in config.masters {
        stores
            .attach_master(&name, spec.clone())
            .await
            .with_context(|| format!("cannot start the master of store {name:?} ({spec})"))?;
        tracing::info!(store = %name, backend = %spec, "master attached");
    }
    for name in config.clones {
        stores
            .attach_clone(&name, config.clone_options.clone())
            .await
            .with_context(|| format!("cannot start the clone of store {name:?}"))?;
        tracing::info!(store = %name, "clone attached");
    }
    let started = match role {
        Role::Node => anyhow::Ok(None),
        Role::Center(c) => yard_ops::center::start(
            c,
            endpoint.clone(),
            stores.clone(),
            registry.clone(),
            shutdown.clone(),
        )
        .await
        .map(Some)
        .map_err(anyhow::Error::from),
        Role::Manager(c, mesos) => {
            match yard_ops::manager::start(c, endpoint.clone(), stores.clone(), shutdown.clone())
                .await
            {
                Ok((ext, task)) => match mesos {
                    Some(m) => {
                        // A Mesos principal (`--mesos-credentials`) is an operator of this master.
                        let registry =
                            match m.cfg.credentials.as_deref().and_then(|c| c.split_once(':')) {
                                Some((principal, secret)) => {
                                    Arc::new(home.registry()?.with_static(
                                        principal,
                                        secret,
                                        yard_auth::Role::Operator,
                                    ))
                                }
                                None => registry.clone(),
                            };
                        let guard = mesos_guard(&m.listener, registry)?;
                        let (cfg, listener) = m.http(tls.as_ref(), handshake)?;
                        yard_rm::master::server::start(
                            cfg,
                            endpoint.clone(),
                            stores.clone(),
                            listener,
                            guard,
                            shutdown.clone(),
                        )
                        .await
                        .map(|rm| Some((ext, join_both(task, rm))))
                        .map_err(anyhow::Error::from)
                    }
                    None => Ok(Some((ext, task))),
                },
                Err(e) => Err(anyhow::Error::from(e)),
            }
        }
        Role::Agent(mut c, mut mesos) => {
            // The resource manager's tasks appear under this agent in the topology.
            if let Some(m) = mesos.as_mut() {
                let (rm_tx, rm_rx) = tokio::sync::watch::channel(Vec::new());
                let (ops_tx, ops_rx) = tokio::sync::watch::channel(Vec::new());
                m.cfg.tasks = Some(rm_tx);
                c.tasks = Some(ops_rx);
                tokio::spawn(bridge_tasks(rm_rx, ops_tx));
            }
            match yard_ops::agent::start(c, endpoint.clone(), shutdown.clone()).await {
                Ok((ext, task)) => match mesos {
                    Some(m) => {
                        let guard = mesos_guard(&m.listener, registry.clone())?;
                        let (cfg, listener) = m.http(tls.as_ref(), handshake)?;
                        yard_rm::agent::start(
                            cfg,
                            endpoint.clone(),
                            listener,
                            guard,
                            shutdown.clone(),
                        )
                        .await
                        .map(|rm| Some((ext, join_both(task, rm))))
                        .map_err(anyhow::Error::from)
                    }
                    None => Ok(Some((ext, task))),
                },
                Err(e) => Err(anyhow::Error::from(e)),
            }
        }
    };
    let (extension, role_task) = match started {
        Ok(Some((ext, task))) => (ext, Some(task)),
        Ok(None) => (yard_gateway::Extension::default(), None),
        Err(e) => {
            shutdown.cancel();
            let _ = router.await;
            return Err(e);
        }
    };
    let served = yard_gateway::serve_with(
        listener,
        endpoint,
        stores,
        config.clone_options,
        config.gateway,
        extension,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some(t) = role_task {
        // Agents stop their nodes here (each within its grace period).
        let _ = t.await;
    }
    router.await.context("router task failed")?;
    served.context("gateway failed")
}

/// Waits (at most about 3 s) for the first peering attempts and for the peers reached to show
/// in the routes.
async fn settle_peers(endpoint: &Endpoint, attempts: Vec<tokio::task::JoinHandle<Option<String>>>) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut ids = Vec::new();
    for a in attempts {
        if let Ok(Ok(Some(id))) = tokio::time::timeout_at(deadline, a).await {
            ids.push(id);
        }
    }
    while tokio::time::Instant::now() < deadline {
        match endpoint.snapshot().await {
            // Known, not only linked: a master's probe needs the peers' subscriptions.
            Ok(s) if ids.iter().all(|id| s.known.iter().any(|r| r == id)) => return,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
}

/// One handle for a daemon's two parts.
fn join_both(
    a: tokio::task::JoinHandle<()>,
    b: tokio::task::JoinHandle<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = a.await;
        let _ = b.await;
    })
}

pub(crate) async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}
