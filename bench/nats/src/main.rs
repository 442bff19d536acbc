//! The workloads of `yard bench mesh`, against nats-server with the async-nats client (one
//! connection per publisher, subscriber and responder, as the yard side has one client each).
//! Output lines match the yard side: `workload=… value=…`.
//!
//! Usage: natsbench WORKLOAD [--server URL] [--size N] [--subscribers N] [--messages N]
//!        [--window N] [--rate N] [--latency-messages N] [--requests N] [--idle N]
//!        [--subscriptions N] [--pid PID]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Opts {
    workload: String,
    o: HashMap<String, String>,
}

impl Opts {
    fn get(&self, k: &str, d: u64) -> u64 {
        self.o.get(k).map(|v| v.parse().expect(k)).unwrap_or(d)
    }
    fn server(&self) -> String {
        self.o.get("server").cloned().unwrap_or("127.0.0.1:4222".into())
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    let mut args = std::env::args().skip(1);
    let workload = args.next().expect("workload");
    let mut o = HashMap::new();
    while let Some(k) = args.next() {
        o.insert(k.trim_start_matches("--").to_string(), args.next().expect("value"));
    }
    let opts = Opts { workload, o };
    match opts.workload.as_str() {
        "throughput" => throughput(&opts).await,
        "latency" => latency(&opts).await,
        "request" => request(&opts).await,
        "memory" => memory(&opts).await,
        w => panic!("unknown workload {w}"),
    }
}

async fn throughput(opts: &Opts) -> R<()> {
    let server = opts.server();
    let (n, size, fanout, window) = (
        opts.get("messages", 2_000_000),
        opts.get("size", 16) as usize,
        opts.get("subscribers", 1),
        opts.get("window", 4096),
    );
    let publ = async_nats::connect(&server).await?;
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut readers = Vec::new();
    for _ in 0..fanout {
        let c = async_nats::connect(&server).await?;
        let mut sub = c.subscribe("bench.t").await?;
        c.flush().await?;
        let (received, progress) = (received.clone(), progress.clone());
        readers.push(tokio::spawn(async move {
            let _keep = c;
            let mut got = 0u64;
            while got < n {
                if sub.next().await.is_none() {
                    break;
                }
                got += 1;
                received.fetch_add(1, Ordering::Relaxed);
                if got % 64 == 0 || got == n {
                    progress.notify_one();
                }
            }
            got
        }));
    }
    let payload = Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    for i in 0..n {
        while i * fanout > received.load(Ordering::Relaxed) + window * fanout {
            publ.flush().await?;
            tokio::select! {
                _ = progress.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        publ.publish("bench.t", payload.clone()).await?;
    }
    publ.flush().await?;
    let mut total = 0;
    for r in readers {
        total += r.await?;
    }
    if total != n * fanout {
        return Err(format!("delivered {total} of {}", n * fanout).into());
    }
    println!(
        "workload=throughput size={size} subscribers={fanout} value={:.0} unit=deliveries/s",
        total as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn latency(opts: &Opts) -> R<()> {
    let server = opts.server();
    let (n, rate, size) = (
        opts.get("latency-messages", 100_000),
        opts.get("rate", 20_000),
        opts.get("size", 16) as usize,
    );
    let publ = async_nats::connect(&server).await?;
    let c = async_nats::connect(&server).await?;
    let mut sub = c.subscribe("bench.l").await?;
    c.flush().await?;
    let base = Instant::now();
    let reader = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n as usize);
        while (lat.len() as u64) < n {
            let Some(m) = sub.next().await else { break };
            let sent = u64::from_le_bytes(m.payload[..8].try_into().unwrap());
            lat.push(base.elapsed().as_nanos() as u64 - sent);
        }
        lat
    });
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..n {
        let due = base + gap * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let mut payload = (base.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
        payload.resize(8 + size, b'x');
        publ.publish("bench.l", payload.into()).await?;
        publ.flush().await?;
    }
    let mut lat = reader.await?;
    lat.sort_unstable();
    println!(
        "workload=latency rate={rate} p50_us={:.1} p99_us={:.1}",
        percentile(&lat, 0.5) as f64 / 1e3,
        percentile(&lat, 0.99) as f64 / 1e3
    );
    Ok(())
}

async fn request(opts: &Opts) -> R<()> {
    let server = opts.server();
    let (n, size) = (opts.get("requests", 20_000), opts.get("size", 16) as usize);
    let responder = async_nats::connect(&server).await?;
    let mut svc = responder.subscribe("bench.svc").await?;
    responder.flush().await?;
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
                let _ = responder.flush().await;
            }
        }
    });
    let c = async_nats::connect(&server).await?;
    let payload = Bytes::from(vec![b'x'; size]);
    c.request("bench.svc", payload.clone()).await?;
    let mut rtt = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        c.request("bench.svc", payload.clone()).await?;
        rtt.push(t.elapsed().as_nanos() as u64);
    }
    rtt.sort_unstable();
    println!(
        "workload=request size={size} p50_us={:.1} p99_us={:.1}",
        percentile(&rtt, 0.5) as f64 / 1e3,
        percentile(&rtt, 0.99) as f64 / 1e3
    );
    Ok(())
}

fn rss_kib(pid: u64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server pid");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// A raw client: CONNECT, then PING until PONG (the server has registered it).
async fn raw_client(server: &str) -> R<BufReader<TcpStream>> {
    let mut s = BufReader::new(TcpStream::connect(server).await?);
    let mut line = String::new();
    s.read_line(&mut line).await?; // INFO
    s.get_mut()
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .await?;
    loop {
        line.clear();
        s.read_line(&mut line).await?;
        if line.starts_with("PONG") {
            return Ok(s);
        }
    }
}

async fn memory(opts: &Opts) -> R<()> {
    let server = opts.server();
    let pid = opts.get("pid", 0);
    let (idle, subs) = (opts.get("idle", 500), opts.get("subscriptions", 10_000));
    let before = rss_kib(pid);
    let mut conns = Vec::new();
    for _ in 0..idle {
        conns.push(raw_client(&server).await?);
    }
    let with_conns = rss_kib(pid);
    let mut c = raw_client(&server).await?;
    let mut cmds = String::new();
    for i in 0..subs {
        cmds.push_str(&format!("SUB bench.sub.{i:06} {i}\r\n"));
    }
    cmds.push_str("PING\r\n");
    c.get_mut().write_all(cmds.as_bytes()).await?;
    let mut line = String::new();
    while !line.starts_with("PONG") {
        line.clear();
        c.read_line(&mut line).await?;
    }
    let with_subs = rss_kib(pid);
    println!(
        "workload=memory per_peer_bytes={:.0} per_subscription_bytes={:.0}",
        (with_conns.saturating_sub(before) * 1024) as f64 / idle as f64,
        (with_subs.saturating_sub(with_conns) * 1024) as f64 / subs as f64
    );
    Ok(())
}
