//! The benchmark programs behind `yard bench`. Each runs one shape, and where the brief
//! names a peer (nats-server, redis, Mesos's allocator figures) the same shape against it,
//! in the same run; docs/BENCHMARKS.md records each figure with its command.
//!
//! - `ws` (this file): WebSocket publisher → endpoint → WebSocket subscriber;
//! - [`mesh`]: two peered endpoints with native clients;
//! - [`store`]: store operations over the WebSocket API;
//! - [`fleet`]: a real center tracking a simulated fleet;
//! - [`allocator`]: the resource manager's allocator, in process;
//! - [`launch`]: the resource manager end to end, ACCEPT to TASK_RUNNING;
//! - [`tls`]: new connections per second, plain and TLS 1.3.
//!
//! ## `yard bench ws`
//!
//! `yard bench ws`: one WebSocket publisher → one endpoint → one WebSocket subscriber.
//!
//! Starts a `yard node` process of its own (unless `--endpoint` is given), then for each run:
//! - **throughput**: publishes `--messages` events as fast as the subscriber keeps up, with at most
//!   `--window` messages in flight (below the endpoint's client queue, so nothing is dropped), and
//!   reports messages per second delivered to the subscriber;
//! - **latency**: publishes at a fixed `--rate` and reports p50/p99 from send to receipt.
//!
//! With `--compare-tls` the node serves TLS 1.3 and (on loopback) plain connections on its one
//! port, and each run measures both, plain first; `--tls` measures TLS alone.
//!
//! Publisher and subscriber each run on their own thread with a single-threaded runtime. The
//! sequence number and send time travel in the topic (`/bench/<seq>/<ns>`), so the payload is
//! exactly the event under test.

pub mod allocator;
pub mod fleet;
pub mod launch;
pub mod mesh;
pub mod store;
pub mod tls;

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// Connects to the WebSocket API with the credential found, subscribes, waits for the ack.
pub(crate) async fn connect(
    addr: &str,
    prefixes: &[String],
) -> anyhow::Result<(yard_client::ws::Socket, String)> {
    let auth = yard_client::credential::bearer(None);
    Ok(yard_client::ws::connect(addr, prefixes, auth.as_deref()).await?)
}

/// `GET path` with the credential found; any status but 2xx is an error.
pub(crate) async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let auth = yard_client::credential::bearer(None);
    let r = yard_client::http::Request::get(path).authorized(auth.as_deref());
    let answer = yard_client::http::request(addr, r).await?.ok("GET", path)?;
    Ok(answer.text())
}

/// `POST path` with a JSON body and the credential found: the status and the body.
pub(crate) async fn http_post(addr: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let auth = yard_client::credential::bearer(None);
    let r =
        yard_client::http::Request::json("POST", path, body.as_bytes()).authorized(auth.as_deref());
    let answer = yard_client::http::request(addr, r).await?;
    Ok((answer.status, answer.text()))
}

/// The mesh key of the home the CLI would use.
pub(crate) fn home_mesh_key() -> anyhow::Result<String> {
    let home = yard_auth::Home::open_or_init(yard_auth::home::resolve(None))?;
    Ok(home.mesh_key()?)
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// WebSocket publisher → endpoint → WebSocket subscriber.
    Ws(WsArgs),
    /// Two peered endpoints with native clients (compare: bench/nats against nats-server).
    Mesh(crate::mesh::MeshArgs),
    /// Store operations over the WebSocket API: puts and put_unique to a master (memory and
    /// SQLite), gets from a clone (compare: redis-benchmark, see scripts/bench-store.sh).
    Store(crate::store::StoreArgs),
    /// A real center tracking a simulated fleet (many agents and clusters in this process):
    /// its CPU and memory per agent.
    Fleet(crate::fleet::FleetArgs),
    /// The resource manager's allocator, in process: one cycle at 10,000 agents x 1,000
    /// frameworks (Mesos's DeclineOffers benchmark setting).
    Alloc(crate::allocator::AllocArgs),
    /// The resource manager end to end: launch rate from ACCEPT to TASK_RUNNING with a real
    /// manager and agents on this host.
    Launch(crate::launch::LaunchArgs),
    /// New connections per second to one gateway, plain and TLS 1.3 in the same run: clients
    /// (HTTP) and peers (the peering handshake, mutual TLS).
    Handshake(crate::tls::HandshakeArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub(crate) enum Payload {
    /// The Zeek event `[1,1,["ping",[count]]]`.
    Small,
    /// A 1 KiB string.
    #[value(name = "1k")]
    OneK,
}

#[derive(Args, Debug)]
pub struct WsArgs {
    /// Use a running endpoint instead of starting one.
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, value_enum, default_value = "small")]
    payload: Payload,
    /// Messages per throughput run.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Most messages in flight (sent, not yet received).
    #[arg(long, default_value_t = 4096)]
    window: u64,
    /// Send rate of the latency measurement, messages per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Messages per latency run.
    #[arg(long, default_value_t = 100_000)]
    latency_messages: u64,
    /// Runs of each measurement; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Both clients speak TLS 1.3 to the endpoint (`wss://`, its certificate from a throw-away
    /// authority); not with --endpoint.
    #[arg(long)]
    tls: bool,
    /// Each run measures plain (`ws://`) and then TLS (`wss://`) against the same endpoint,
    /// which serves both on its one port; not with --endpoint.
    #[arg(long)]
    compare_tls: bool,
}

pub async fn main(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ws(args) => ws(args).await,
        BenchCommand::Mesh(args) => crate::mesh::main(args).await,
        BenchCommand::Store(args) => crate::store::main(args).await,
        BenchCommand::Fleet(args) => crate::fleet::main(args).await,
        BenchCommand::Alloc(args) => crate::allocator::main(args),
        BenchCommand::Launch(args) => crate::launch::main(args).await,
        BenchCommand::Handshake(args) => crate::tls::main(args).await,
    }
}

/// A `yard node` child process, killed when dropped.
pub(crate) struct Node {
    _child: tokio::process::Child,
    pub(crate) addr: String,
}

async fn start_node() -> anyhow::Result<Node> {
    start_node_with(&[]).await
}

/// Starts `yard node` on a free loopback port with extra arguments.
pub(crate) async fn start_node_with(extra: &[&str]) -> anyhow::Result<Node> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["node", "--listen", "127.0.0.1:0", "--client-queue", "8192"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start yard node")?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("yard node did not report its address within 10s")??
        .ok_or_else(|| anyhow!("yard node exited before listening"))?;
    let addr = line
        .split(" listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| anyhow!("unexpected first line from yard node: {line}"))?
        .to_string();
    Ok(Node {
        _child: child,
        addr,
    })
}

fn payload_json(p: Payload) -> String {
    match p {
        Payload::Small => {
            r#""@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"ping"},{"@data-type":"vector","data":[{"@data-type":"count","data":42}]}]}]"#.to_string()
        }
        Payload::OneK => format!(r#""@data-type":"string","data":"{}""#, "x".repeat(1024)),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct RunResult {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Reads `/bench/<seq>/<ns>` from the front of a data message.
fn parse_topic(text: &str) -> Option<(u64, u64)> {
    let rest = text.split("\"topic\":\"/bench/").nth(1)?;
    let mut parts = rest.split(['/', '"']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// One run: `count` messages, paced at `rate` per second when given, at most `window` in flight.
fn run_once(
    addr: &str,
    payload: &str,
    count: u64,
    window: u64,
    rate: Option<u64>,
) -> anyhow::Result<RunResult> {
    let base = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sub = {
        let (addr, received, progress) = (addr.to_string(), received.clone(), progress.clone());
        std::thread::spawn(move || -> anyhow::Result<(Vec<u64>, Instant)> {
            rt()?.block_on(async move {
                let (mut ws, _) = connect(&addr, &["/bench/".to_string()]).await?;
                let _ = ready_tx.send(());
                let mut latencies =
                    Vec::with_capacity(if rate.is_some() { count as usize } else { 0 });
                let mut n = 0u64;
                while n < count {
                    let msg = ws
                        .next()
                        .await
                        .ok_or_else(|| anyhow!("endpoint closed the subscriber"))??;
                    let Message::Text(text) = msg else { continue };
                    let (_, sent_ns) =
                        parse_topic(&text).ok_or_else(|| anyhow!("unexpected message: {text}"))?;
                    if rate.is_some() {
                        latencies.push(base.elapsed().as_nanos() as u64 - sent_ns);
                    }
                    n += 1;
                    received.store(n, Ordering::Release);
                    if n.is_multiple_of(256) || n == count {
                        progress.notify_one();
                    }
                }
                Ok((latencies, Instant::now()))
            })
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("subscriber did not connect"))?;

    let publisher = {
        let (addr, payload, received, progress) = (
            addr.to_string(),
            payload.to_string(),
            received.clone(),
            progress.clone(),
        );
        std::thread::spawn(move || -> anyhow::Result<Instant> {
            rt()?.block_on(async move {
                let (mut ws, _) = connect(&addr, &[]).await?;
                let start = Instant::now();
                let mut i = 0u64;
                while i < count {
                    if let Some(r) = rate {
                        let due = start + Duration::from_nanos(i * 1_000_000_000 / r);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    // Send everything that is due (or a batch), then flush once.
                    let burst_end = match rate {
                        Some(r) => ((start.elapsed().as_nanos() as u64 * r / 1_000_000_000) + 1).min(count),
                        None => (i + 256).min(count),
                    };
                    let burst_end = burst_end.max(i + 1).min(count);
                    while i < burst_end {
                        while i - received.load(Ordering::Acquire) >= window {
                            ws.flush().await?;
                            let notified = progress.notified();
                            if i - received.load(Ordering::Acquire) < window {
                                break;
                            }
                            notified.await;
                        }
                        let now = base.elapsed().as_nanos() as u64;
                        let text = format!("{{\"type\":\"data-message\",\"topic\":\"/bench/{i}/{now}\",{payload}}}");
                        ws.feed(Message::text(text)).await?;
                        i += 1;
                    }
                    ws.flush().await?;
                }
                Ok(start)
            })
        })
    };
    let start = publisher
        .join()
        .map_err(|_| anyhow!("publisher panicked"))??;
    let (mut lat, end) = sub.join().map_err(|_| anyhow!("subscriber panicked"))??;
    let secs = end.duration_since(start).as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0
        }
    };
    Ok(RunResult {
        rate: count as f64 / secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

/// The medians of one transport's runs.
#[derive(Default)]
struct Figures {
    rates: Vec<f64>,
    p50s: Vec<f64>,
    p99s: Vec<f64>,
}

async fn ws(args: WsArgs) -> anyhow::Result<()> {
    if args.runs == 0 || args.messages == 0 || args.rate == 0 {
        bail!("--runs, --messages and --rate must be at least 1");
    }
    let tls_wanted = args.tls || args.compare_tls;
    if tls_wanted && args.endpoint.is_some() {
        bail!("--tls and --compare-tls start an endpoint of their own: drop --endpoint");
    }
    // The authority lives as long as the node that uses its certificate.
    let ca = if tls_wanted {
        let ca = crate::tls::ThrowawayCa::new("ws")?;
        yard_client::trust::use_roots(yard_client::trust::Roots::from_pem(ca.ca_pem())?);
        Some(ca)
    } else {
        None
    };
    let node = match (&args.endpoint, &ca) {
        (Some(_), _) => None,
        (None, None) => Some(start_node().await?),
        (None, Some(ca)) => {
            let extra = crate::tls::node_args(ca)?;
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            Some(start_node_with(&extra).await?)
        }
    };
    // A node of our own is reached by scheme, so that a CA in the caller's home does not
    // decide the transport.
    let transports: Vec<(&str, String)> = match (&args.endpoint, &node) {
        (Some(e), _) => vec![("", e.clone())],
        (None, Some(n)) if args.compare_tls => vec![
            ("plain", format!("ws://{}", n.addr)),
            ("TLS", format!("wss://{}", n.addr)),
        ],
        (None, Some(n)) if args.tls => vec![("TLS", format!("wss://{}", n.addr))],
        (None, Some(n)) => vec![("", format!("ws://{}", n.addr))],
        (None, None) => unreachable!("a node is started when no endpoint is given"),
    };
    let payload = payload_json(args.payload);
    let name = match args.payload {
        Payload::Small => "small event [1,1,[\"ping\",[count]]]",
        Payload::OneK => "1 KiB string",
    };
    let shown = node
        .as_ref()
        .map_or_else(|| transports[0].1.clone(), |n| n.addr.clone());
    println!(
        "yard bench ws: {name}, endpoint {shown}, {} runs",
        args.runs
    );
    let mut figures: Vec<Figures> = transports.iter().map(|_| Figures::default()).collect();
    for run in 1..=args.runs {
        for ((label, addr), f) in transports.iter().zip(figures.iter_mut()) {
            let (addr2, payload2) = (addr.clone(), payload.clone());
            let (messages, window) = (args.messages, args.window);
            let t = tokio::task::spawn_blocking(move || {
                run_once(&addr2, &payload2, messages, window, None)
            })
            .await??;
            let (addr2, payload2) = (addr.clone(), payload.clone());
            let (lm, rate) = (args.latency_messages, args.rate);
            let l = tokio::task::spawn_blocking(move || {
                run_once(&addr2, &payload2, lm, u64::MAX, Some(rate))
            })
            .await??;
            println!(
                "  run {run}{}{label}: throughput {:>9.0} msg/s   latency at {} msg/s: p50 {:>7.1} µs  p99 {:>7.1} µs",
                if label.is_empty() { "" } else { ", " },
                t.rate, args.rate, l.p50_us, l.p99_us
            );
            f.rates.push(t.rate);
            f.p50s.push(l.p50_us);
            f.p99s.push(l.p99_us);
        }
    }
    let mut medians = Vec::new();
    for ((label, _), f) in transports.iter().zip(figures.iter_mut()) {
        let (lo, hi) = (
            f.rates.iter().cloned().fold(f64::MAX, f64::min),
            f.rates.iter().cloned().fold(0.0, f64::max),
        );
        let m = (
            median(&mut f.rates),
            median(&mut f.p50s),
            median(&mut f.p99s),
        );
        let label = if label.is_empty() {
            String::new()
        } else {
            format!("{label} ")
        };
        println!(
            "{label}throughput msg/s: median {:.0} (min {lo:.0}, max {hi:.0}) over {} runs of {} messages",
            m.0, args.runs, args.messages
        );
        println!(
            "{label}latency at {} msg/s: p50 {:.1} µs, p99 {:.1} µs (medians over {} runs of {} messages)",
            args.rate, m.1, m.2, args.runs, args.latency_messages
        );
        medians.push(m);
    }
    if let [plain, tls] = medians[..] {
        println!(
            "TLS / plain: throughput {:.2}, latency p50 {:.2}, p99 {:.2}",
            tls.0 / plain.0,
            tls.1 / plain.1,
            tls.2 / plain.2
        );
    }
    Ok(())
}
