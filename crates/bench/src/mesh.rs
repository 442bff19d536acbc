//! `yard bench mesh`: two endpoints peered over loopback TCP, with native (library) clients, the
//! fastest client Switchyard offers; `bench/nats` runs the same workloads against nats-server.
//!
//! Both endpoints run in this process on one two-worker runtime; their only connection is the
//! peering link. Workloads (each run `--runs` times; medians reported by `scripts/bench-mesh.sh`):
//! - `throughput`: one publisher on A, `--subscribers` subscribers on B, `--messages` messages of
//!   `--size` bytes; at most `--window` in flight (below every queue, so nothing is dropped);
//!   deliveries per second, first send to last receipt;
//! - `latency`: `--rate` messages per second for `--latency-messages`; send-to-receipt p50/p99;
//! - `request`: sequential requests from A answered by a responder on B; round-trip p50/p99;
//! - `memory`: a `yard node` child process; RSS growth per idle peer connection (`--idle`
//!   handshaken peering connections) and per subscription (one client with `--subscriptions`
//!   prefixes).
//!
//! Output: one line per run, `workload=… value=… unit=…`, easy to merge with the NATS side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use yard_data::Value;
use yard_fabric::{Client, Endpoint, EndpointConfig, OverflowPolicy};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub(crate) enum Workload {
    Throughput,
    Latency,
    Request,
    Memory,
}

#[derive(Args, Debug)]
pub struct MeshArgs {
    #[arg(long, value_enum)]
    workload: Workload,
    /// Payload bytes (a string value of this length).
    #[arg(long, default_value_t = 16)]
    size: usize,
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 4096)]
    window: u64,
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    #[arg(long, default_value_t = 100_000)]
    latency_messages: u64,
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    #[arg(long, default_value_t = 500)]
    idle: usize,
    #[arg(long, default_value_t = 10_000)]
    subscriptions: usize,
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Run the link over TLS 1.3 (mutual, certificates of a throw-away authority); with
    /// --compare-tls, each run measures plain and TLS one after the other.
    #[arg(long)]
    tls: bool,
    /// Each run measures the workload over a plain link, then over TLS (throughput, latency
    /// and request workloads).
    #[arg(long)]
    compare_tls: bool,
}

/// The TLS of a bench pair: each endpoint's acceptor and dialer, from one throw-away authority.
struct BenchTls {
    server: Arc<yard_tls::rustls::ServerConfig>,
    dialer: Arc<dyn yard_fabric::transport::Dialer>,
    _ca: crate::tls::ThrowawayCa,
}

fn bench_tls() -> anyhow::Result<BenchTls> {
    let ca = crate::tls::ThrowawayCa::new("mesh")?;
    let id = ca.identity("node:bench")?;
    let server = yard_tls::config::server(&id, Some(ca.ca_pem()))?;
    let client = yard_tls::config::client(ca.ca_pem(), Some(&id), yard_tls::ALPN_PEER)?;
    Ok(BenchTls {
        server,
        dialer: Arc::new(yard_gateway::tls::TlsDialer::new(client)),
        _ca: ca,
    })
}

struct Pair {
    a: Endpoint,
    b: Endpoint,
    token: CancellationToken,
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn endpoint(
    name: &str,
    token: &CancellationToken,
    tls: Option<&BenchTls>,
) -> anyhow::Result<(Endpoint, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let config = EndpointConfig {
        listen: addr.clone(),
        // The window keeps far fewer in flight; a drop would be a bug and fails the run.
        peer_overflow_policy: OverflowPolicy::Disconnect,
        mesh_key: Some("bench-mesh-key".into()),
        dialer: tls.map(|t| t.dialer.clone()),
        ..EndpointConfig::default()
    };
    let (ep, _) = Endpoint::spawn(name.to_string(), config, token.clone());
    match tls {
        None => ep.serve_peers(listener),
        Some(t) => {
            let acceptor = yard_tls::TlsAcceptor::from(t.server.clone());
            let (ep, token) = (ep.clone(), token.clone());
            tokio::spawn(async move {
                loop {
                    let (s, remote) = tokio::select! {
                        _ = token.cancelled() => return,
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => return },
                    };
                    let _ = s.set_nodelay(true);
                    let (acceptor, ep) = (acceptor.clone(), ep.clone());
                    tokio::spawn(async move {
                        if let Ok(t) = acceptor.accept(s).await {
                            ep.accept_peer_stream(
                                yard_fabric::transport::PeerStream::Certified(Box::new(t)),
                                remote,
                            );
                        }
                    });
                }
            });
        }
    }
    Ok((ep, addr))
}

/// Whether a run of this workload goes over TLS: the flag, or the second half of a comparison.
fn tls_runs(args: &MeshArgs) -> Vec<bool> {
    if args.compare_tls {
        vec![false, true]
    } else {
        vec![args.tls]
    }
}

async fn pair(tls: bool) -> anyhow::Result<Pair> {
    let token = CancellationToken::new();
    let tls = if tls { Some(bench_tls()?) } else { None };
    let (a, _) = endpoint("bench-a", &token, tls.as_ref()).await?;
    let (b, b_addr) = endpoint("bench-b", &token, tls.as_ref()).await?;
    a.peer(&b_addr)
        .await?
        .map_err(|e| anyhow::anyhow!("peering: {e}"))?;
    Ok(Pair { a, b, token })
}

/// Publishes probes until `sub` receives one: the subscription has reached A.
async fn converge(publ: &Client, subs: &[Client]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in subs {
        while s.outbox().depth() == 0 {
            if Instant::now() > deadline {
                bail!("the subscription never reached the publisher's endpoint");
            }
            publ.publish("/bench/probe".into(), Value::None).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut drain = Vec::new();
        s.recv_batch(&mut drain, usize::MAX).await.ok();
    }
    // Late probes: let them arrive, then drain again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for s in subs {
        while s.outbox().depth() > 0 {
            let mut drain = Vec::new();
            s.recv_batch(&mut drain, usize::MAX).await.ok();
        }
    }
    Ok(())
}

fn on(tls: bool) -> &'static str {
    if tls {
        "on"
    } else {
        "off"
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) async fn main(args: MeshArgs) -> anyhow::Result<()> {
    if (args.tls || args.compare_tls) && args.workload == Workload::Memory {
        bail!("--tls and --compare-tls measure throughput, latency and request workloads");
    }
    for _ in 0..args.runs {
        for tls in tls_runs(&args) {
            match args.workload {
                Workload::Throughput => throughput(&args, tls).await?,
                Workload::Latency => latency(&args, tls).await?,
                Workload::Request => request(&args, tls).await?,
                Workload::Memory => memory(&args).await?,
            }
        }
    }
    Ok(())
}

async fn throughput(args: &MeshArgs, tls: bool) -> anyhow::Result<()> {
    let p = pair(tls).await?;
    let publ =
        p.a.attach("pub", vec![], 16, OverflowPolicy::Disconnect)
            .await?;
    let mut subs = Vec::new();
    for _ in 0..args.subscribers {
        subs.push(
            p.b.attach(
                "sub",
                vec!["/bench/".into()],
                1 << 20,
                OverflowPolicy::Disconnect,
            )
            .await?,
        );
    }
    converge(&publ, &subs).await?;
    let n = args.messages;
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut readers = Vec::new();
    for s in subs {
        let received = received.clone();
        let progress = progress.clone();
        readers.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut batch = Vec::with_capacity(4096);
            while got < n {
                if s.recv_batch(&mut batch, 4096).await.is_err() {
                    return Err(anyhow::anyhow!("subscriber closed after {got} messages"));
                }
                let k = batch.len() as u64;
                got += k;
                batch.clear();
                received.fetch_add(k, Ordering::Relaxed);
                progress.notify_one();
            }
            Ok(got)
        }));
    }
    let payload = Value::string("x".repeat(args.size));
    let total = n * args.subscribers as u64;
    let started = Instant::now();
    for i in 0..n {
        // The slowest subscriber bounds the window.
        let fanout = args.subscribers as u64;
        while i * fanout > received.load(Ordering::Relaxed) + args.window * fanout {
            progress.notified().await;
        }
        publ.publish("/bench/t".into(), payload.clone()).await?;
    }
    for r in readers {
        r.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "workload=throughput tls={} size={} subscribers={} value={:.0} unit=deliveries/s",
        on(tls),
        args.size,
        args.subscribers,
        total as f64 / secs
    );
    Ok(())
}

async fn latency(args: &MeshArgs, tls: bool) -> anyhow::Result<()> {
    let p = pair(tls).await?;
    let publ =
        p.a.attach("pub", vec![], 16, OverflowPolicy::Disconnect)
            .await?;
    let sub =
        p.b.attach(
            "sub",
            vec!["/bench/".into()],
            1 << 20,
            OverflowPolicy::Disconnect,
        )
        .await?;
    converge(&publ, std::slice::from_ref(&sub)).await?;
    let n = args.latency_messages;
    let base = Instant::now();
    let reader = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n as usize);
        let mut batch = Vec::new();
        while (lat.len() as u64) < n {
            sub.recv_batch(&mut batch, 1024).await.ok();
            let now = base.elapsed().as_nanos() as u64;
            for m in batch.drain(..) {
                if let Some(sent) = m.value.as_vector().and_then(|v| v[0].as_count()) {
                    lat.push(now - sent);
                }
            }
        }
        lat
    });
    let pad = Value::string("x".repeat(args.size));
    let gap = Duration::from_secs_f64(1.0 / args.rate as f64);
    for i in 0..n {
        let due = base + gap * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let sent = base.elapsed().as_nanos() as u64;
        publ.publish(
            "/bench/l".into(),
            Value::Vector(vec![Value::Count(sent), pad.clone()]),
        )
        .await?;
    }
    let mut lat = reader.await?;
    lat.sort_unstable();
    println!(
        "workload=latency tls={} rate={} p50_us={:.1} p99_us={:.1}",
        on(tls),
        args.rate,
        percentile(&lat, 0.5) as f64 / 1e3,
        percentile(&lat, 0.99) as f64 / 1e3
    );
    Ok(())
}

async fn request(args: &MeshArgs, tls: bool) -> anyhow::Result<()> {
    let p = pair(tls).await?;
    let responder =
        p.b.attach(
            "svc",
            vec!["/bench/svc".into()],
            1 << 16,
            OverflowPolicy::Disconnect,
        )
        .await?;
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while responder.recv_batch(&mut batch, 256).await.is_ok() {
            for m in batch.drain(..) {
                if m.reply_to.is_some() {
                    let _ = responder.reply(&m, m.value.clone()).await;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while p
        .a
        .request("/bench/svc".into(), Value::None, Duration::from_secs(1))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("the responder never became reachable");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let payload = Value::string("x".repeat(args.size));
    let mut rtt = Vec::with_capacity(args.requests as usize);
    for _ in 0..args.requests {
        let t = Instant::now();
        p.a.request("/bench/svc".into(), payload.clone(), Duration::from_secs(5))
            .await?;
        rtt.push(t.elapsed().as_nanos() as u64);
    }
    rtt.sort_unstable();
    println!(
        "workload=request tls={} size={} p50_us={:.1} p99_us={:.1}",
        on(tls),
        args.size,
        percentile(&rtt, 0.5) as f64 / 1e3,
        percentile(&rtt, 0.99) as f64 / 1e3
    );
    Ok(())
}

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// Opens a peering connection and completes the handshake as endpoint `id` (proving the mesh
/// key of this host's credentials home, which the node under test shares); stays idle.
async fn idle_peer(addr: &str, id: String) -> anyhow::Result<TcpStream> {
    let key = crate::home_mesh_key()?;
    crate::tls::peering(TcpStream::connect(addr).await?, &key, id).await
}

async fn memory(args: &MeshArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["node", "--listen", "127.0.0.1:0"])
        .env("YARD_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut out = tokio::io::BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line).await?;
    let addr = line
        .split(" listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .context("node address")?
        .to_string();
    let pid = child.id().context("pid")?;
    let status = |addr: String| async move {
        let body = crate::http_get(&addr, "/v1/status/json").await?;
        Ok::<serde_json::Value, anyhow::Error>(serde_json::from_str(&body)?)
    };
    status(addr.clone()).await?;
    let before = rss_kib(pid)?;
    let mut conns = Vec::new();
    for i in 0..args.idle {
        conns.push(idle_peer(&addr, format!("idle-{i}")).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(addr.clone()).await?["peers"]
        .as_array()
        .map_or(0, Vec::len)
        < args.idle
    {
        if Instant::now() > deadline {
            bail!("the idle peers never all registered");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let with_peers = rss_kib(pid)?;
    let prefixes: Vec<String> = (0..args.subscriptions)
        .map(|i| format!("/bench/sub/{i:06}"))
        .collect();
    let (_ws, _) = crate::connect(&addr, &prefixes).await?;
    status(addr.clone()).await?;
    let with_subs = rss_kib(pid)?;
    println!(
        "workload=memory per_peer_bytes={:.0} per_subscription_bytes={:.0}",
        (with_peers.saturating_sub(before) * 1024) as f64 / args.idle as f64,
        (with_subs.saturating_sub(with_peers) * 1024) as f64 / args.subscriptions as f64
    );
    drop(conns);
    let _ = child.kill().await;
    Ok(())
}
