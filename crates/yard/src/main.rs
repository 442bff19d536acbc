//! `yard`: the one Switchyard binary. Daemons (`node`) and client verbs (`pub`, `sub`, `status`,
//! `peers`, `peer`, `unpeer`, `request`, `log`, `store`, `bench`).

mod client;
mod config;
mod install_cli;
mod join_cli;
mod keeper;
mod mesh_cli;
mod node;
mod ops_cli;
mod render;
mod rm_cli;
mod rm_verbs;
mod store_cli;
mod tls_cli;
mod trust_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

// Messages cross threads (client → router → peer writer): the freeing thread is rarely the
// allocating one, which glibc's allocator handles poorly (a quarter of the CPU in the mesh
// benchmark went to malloc and free). mimalloc's per-thread free lists take it in stride.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "yard",
    version,
    about = "Switchyard: a datacenter connection broker",
    propagate_version = true
)]
struct Cli {
    /// The credential file client verbs send (or set YARD_CREDENTIALS) [default: the
    /// credentials home's, e.g. ./yard-data/credentials beside `yard up`].
    #[arg(long, global = true, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// The root certificate servers are checked against (or set YARD_CA); with one, a bare
    /// HOST:PORT is reached over TLS [default: the home's ca.crt, ca/ca.crt or tls/ca.crt, when
    /// there is one].
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a fabric endpoint with its WebSocket/HTTP gateway.
    Node(Box<NodeArgs>),
    /// Manage the credentials of this host's home: create, list, revoke.
    #[command(subcommand)]
    Token(trust_cli::TokenCommand),
    /// The cluster's certificate authority: init, show.
    #[command(subcommand)]
    Ca(tls_cli::CaCommand),
    /// Certificates of the cluster's authority: issue, list, revoke.
    #[command(subcommand)]
    Cert(tls_cli::CertCommand),
    /// Join this host to a system with a token: its key made here, its certificate from the
    /// center (docs/SECURITY.md, joining a host).
    Join(join_cli::JoinArgs),
    /// Tokens that let new hosts join (an admin, through the center).
    #[command(subcommand)]
    JoinToken(join_cli::JoinTokenCommand),
    /// Read a daemon's audit log (who did what, from where, with what result).
    Audit(trust_cli::AuditArgs),
    /// (Internal) an agent's task reaper: when the agent dies, kill its tasks' leftovers.
    #[command(hide = true)]
    ReapTasks { parent: String },
    /// Publish values on a topic.
    Pub(PubArgs),
    /// Subscribe to topic prefixes and print what arrives, one line per message.
    Sub(SubArgs),
    /// Show a running endpoint's status.
    Status(StatusArgs),
    /// List an endpoint's peers: address, direction, state, queue depth, drops.
    Peers(PeersArgs),
    /// Peer a running endpoint with another (it keeps re-dialing until unpeered).
    Peer(PeerArgs),
    /// Remove a peer from a running endpoint.
    Unpeer(PeerArgs),
    /// Send a request on a topic and print the first answer.
    Request(RequestArgs),
    /// Write one record to a remote log stream (published on yard/logs/STREAM).
    Log(LogArgs),
    /// Replicated stores: attach, read, write, back up, restore (see docs/STORES.md).
    Store(store_cli::StoreArgs),
    /// Run the operations center (topology, commands, metrics history; docs/OPS.md).
    Center(ops_cli::CenterArgs),
    /// Run a cluster's manager: registers with the center, runs the cluster's agents.
    Manager(ops_cli::ManagerArgs),
    /// Run an agent: supervises this host's nodes for its manager.
    Agent(ops_cli::AgentArgs),
    /// Run a whole system here: a center, the manager of cluster `local` and two agents.
    Up(ops_cli::UpArgs),
    /// Install a daemon (center, manager or agent) as a systemd service on this host, or
    /// upgrade it: `yard install agent -- --cluster web --join TOKEN …` (docs/OPS.md).
    Install(install_cli::InstallArgs),
    /// Print the system tree: clusters, managers, agents, nodes, with their states.
    Topology(ops_cli::TopologyArgs),
    /// Restart a cluster's nodes, a batch at a time, each healthy before the next.
    Restart(ops_cli::RestartArgs),
    /// Deploy an artifact to every agent of a cluster (sha256-verified, switched atomically).
    Deploy(ops_cli::DeployArgs),
    /// Switch every agent of a cluster back to the previous artifact.
    Rollback(ops_cli::RollbackArgs),
    /// Run a program on every agent of a cluster and gather exit codes and outputs.
    Exec(ops_cli::ExecArgs),
    /// List commands, or show and follow one.
    Commands(ops_cli::CommandsArgs),
    /// Print a one-time link that signs a browser in to the center's dashboard.
    LoginLink(ops_cli::LoginLinkArgs),
    /// Print the end of a node's log.
    Logs(ops_cli::LogsArgs),
    /// Query a metric's history.
    Metrics(ops_cli::MetricsArgs),
    /// System-wide and per-cluster statistics.
    Stats(ops_cli::StatsArgs),
    /// The resource manager's agents: address, activity, resources used, tasks.
    Agents(rm_verbs::MesosArgs),
    /// The resource manager's frameworks, and why any is waiting for offers.
    Frameworks(rm_verbs::MesosArgs),
    /// Tasks of the resource manager (running ones; --all for every one).
    Tasks(rm_verbs::TasksArgs),
    /// Kill a task, or print its output.
    #[command(subcommand)]
    Task(rm_verbs::TaskCommand),
    /// Long-running services: deploy, list, status, scale, rm (docs/RM.md).
    #[command(subcommand)]
    Service(rm_verbs::ServiceCommand),
    /// Benchmarks (programs, not tests); see docs/BENCHMARKS.md.
    #[command(subcommand)]
    Bench(yard_bench::BenchCommand),
}

#[derive(Args)]
struct NodeArgs {
    /// A TOML config file (see docs/CONFIG.md); flags override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address of the WebSocket/HTTP gateway [default: 127.0.0.1:9997].
    #[arg(long)]
    listen: Option<String>,
    /// Outbound queue of each WebSocket client, in messages [default: 8192].
    #[arg(long)]
    client_queue: Option<usize>,
    /// What happens when a client's queue is full: disconnect, drop_oldest, drop_newest [default: disconnect].
    #[arg(long)]
    overflow_policy: Option<String>,
    /// Fraction digits of timestamps in JSON: ms, us or ns [default: ms].
    #[arg(long)]
    timestamp_precision: Option<String>,
    /// Largest message a client may send, in bytes [default: 1048576].
    #[arg(long)]
    max_message_size: Option<usize>,
    /// Keepalive ping interval, e.g. 5s [default: 5s].
    #[arg(long)]
    ping_interval: Option<String>,
    /// Peer with the endpoint at this address (repeatable); re-dialed whenever the link drops.
    #[arg(long = "peer", value_name = "ADDR")]
    peers: Vec<String>,
    /// The mesh key peers prove they hold (or set YARD_TOKEN) [default: the credentials
    /// home's mesh.key].
    #[arg(long, env = "YARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// What callers without a credential may do: pubsub (publish and subscribe on user topics)
    /// or none [default: pubsub on loopback, none beyond].
    #[arg(long)]
    anonymous: Option<String>,
    /// A host name HTTP requests may use besides IP addresses and localhost (repeatable).
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
    /// This endpoint's id [default: a random UUID].
    #[arg(long)]
    id: Option<String>,
    /// Write every remote log stream received to DIR/STREAM.log.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Outbound queue of each peer, in messages [default: 8192].
    #[arg(long)]
    peer_queue: Option<usize>,
    /// What happens when a peer's queue is full [default: drop_oldest].
    #[arg(long)]
    peer_overflow_policy: Option<String>,
    /// Hops a publication may take [default: 16].
    #[arg(long)]
    ttl: Option<u8>,
    /// Be the master of a store: NAME (in memory) or NAME=sqlite:PATH (repeatable).
    #[arg(long = "master", value_name = "NAME[=BACKEND]")]
    masters: Vec<String>,
    /// Hold a clone of a store (repeatable); its master may start later, anywhere in the mesh.
    #[arg(long = "clone", value_name = "NAME")]
    clones: Vec<String>,
    /// A clone's reads fail with stale_data once its master has been silent this long, or
    /// "never" [default: 300s].
    #[arg(long)]
    stale_interval: Option<String>,
    /// How long a clone keeps writes for an unreachable master [default: 120s].
    #[arg(long)]
    mutation_buffer_interval: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// A daemon's TLS: its certificate, key and the cluster's root.
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct TlsArgs {
    /// This daemon's certificate (PEM, from `yard cert issue` or `yard join`): TLS 1.3 on its
    /// listeners and the links it dials; with --tls-key and --tls-ca.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The cluster's root certificate (PEM): servers dialed and callers' certificates are
    /// checked against it.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// With TLS, serve plain connections too (loopback listeners only).
    #[arg(long)]
    pub tls_plain: bool,
}

impl TlsArgs {
    /// Sets what was given over `file`'s settings.
    pub(crate) fn apply(&self, file: &mut config::NodeFile) {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        if let Some(v) = &self.tls_cert {
            file.tls_cert = path(v);
        }
        if let Some(v) = &self.tls_key {
            file.tls_key = path(v);
        }
        if let Some(v) = &self.tls_ca {
            file.tls_ca = path(v);
        }
        file.tls_plain |= self.tls_plain;
    }
}

/// Where the client verbs find the endpoint.
#[derive(Args, Clone, Debug)]
pub struct EndpointArg {
    /// The endpoint's gateway address (or set YARD_ENDPOINT).
    #[arg(long, short, env = "YARD_ENDPOINT", default_value = config::DEFAULT_LISTEN)]
    endpoint: String,
}

#[derive(Args)]
struct PubArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    /// Arguments are JSON value objects ({"@data-type":…,"data":…}), one message each.
    #[arg(long)]
    json: bool,
    /// The topic to publish on.
    topic: String,
    /// Values in literal syntax (see README); each top-level value is one message.
    #[arg(required = true, allow_hyphen_values = true)]
    values: Vec<String>,
}

#[derive(Args)]
struct SubArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    /// Print each message as its wire JSON.
    #[arg(long)]
    json: bool,
    /// Exit after this many messages.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Topic prefixes; "" subscribes to everything.
    #[arg(required = true)]
    prefixes: Vec<String>,
}

#[derive(Args)]
struct PeersArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PeerArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    /// The credential to send (or set YARD_API_TOKEN) [default: the credentials file found].
    #[arg(long, env = "YARD_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The other endpoint's address (HOST:PORT).
    address: String,
}

#[derive(Args)]
struct RequestArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    /// How long to wait for an answer.
    #[arg(long, default_value = "5s")]
    timeout: String,
    /// Print the answer as its wire JSON.
    #[arg(long)]
    json: bool,
    /// Arguments are JSON value objects.
    #[arg(long = "json-input")]
    json_input: bool,
    /// The topic to send the request on.
    topic: String,
    /// The request's value (several make a vector).
    #[arg(required = true, allow_hyphen_values = true)]
    values: Vec<String>,
}

#[derive(Args)]
struct LogArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    /// Arguments are JSON value objects.
    #[arg(long)]
    json: bool,
    /// The stream: letters, digits, '.', '_', '-'.
    stream: String,
    /// The record's value (several make a vector).
    #[arg(required = true, allow_hyphen_values = true)]
    values: Vec<String>,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    /// Print the raw status JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = cli.ca.clone() {
        yard_client::trust::use_ca_file(path);
    }
    if let Some(path) = cli.credentials.clone() {
        client::use_credentials_file(path);
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("YARD_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(a) => node::main(*a).await,
            Command::Token(c) => trust_cli::token(c),
            Command::Ca(c) => tls_cli::ca(c),
            Command::Cert(c) => tls_cli::cert(c),
            Command::Join(a) => join_cli::join(a).await,
            Command::JoinToken(c) => join_cli::join_token(c).await,
            Command::Audit(a) => trust_cli::audit(a).await,
            Command::Store(a) => store_cli::main(a).await,
            Command::Pub(a) => client::publish(a).await,
            Command::Sub(a) => client::subscribe(a).await,
            Command::Status(a) => client::status(a).await,
            Command::Peers(a) => mesh_cli::peers(a).await,
            Command::Peer(a) => mesh_cli::peer(a).await,
            Command::Unpeer(a) => mesh_cli::unpeer(a).await,
            Command::Request(a) => mesh_cli::request(a).await,
            Command::Log(a) => mesh_cli::log(a).await,
            Command::Bench(b) => yard_bench::main(b).await,
            Command::Center(a) => ops_cli::center(a).await,
            Command::Manager(a) => ops_cli::manager(a).await,
            Command::Agent(a) => ops_cli::agent(a).await,
            Command::ReapTasks { parent } => {
                yard_rm::agent::reap_tasks(&parent).await;
                Ok(())
            }
            Command::Up(a) => ops_cli::up(a).await,
            Command::Install(a) => install_cli::install(a),
            Command::Topology(a) => ops_cli::topology(a).await,
            Command::Restart(a) => ops_cli::restart(a).await,
            Command::Deploy(a) => ops_cli::deploy(a).await,
            Command::Rollback(a) => ops_cli::rollback(a).await,
            Command::Exec(a) => ops_cli::exec(a).await,
            Command::Commands(a) => ops_cli::commands(a).await,
            Command::LoginLink(a) => ops_cli::login_link(a).await,
            Command::Logs(a) => ops_cli::logs(a).await,
            Command::Metrics(a) => ops_cli::metrics(a).await,
            Command::Stats(a) => ops_cli::stats(a).await,
            Command::Agents(a) => rm_verbs::agents(a).await,
            Command::Frameworks(a) => rm_verbs::frameworks(a).await,
            Command::Tasks(a) => rm_verbs::tasks(a).await,
            Command::Task(c) => rm_verbs::task(c).await,
            Command::Service(c) => rm_verbs::service(c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("yard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
