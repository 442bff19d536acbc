//! `yard bench fleet`: a real `yard center` process tracking a simulated fleet. This process
//! plays the managers (one fabric endpoint per cluster, peered with the center, speaking the
//! managers' protocol): each registers its cluster with all its agents, reports it every report
//! interval, and forwards every agent's samples every metrics interval, as real managers do.
//! Measured: the center's CPU (share of one core) and resident memory over a steady window,
//! and whether every sample reached its history.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use yard_fabric::{Endpoint, EndpointConfig, OverflowPolicy};
use yard_ops::manager::{CENTER, CENTER_METRICS};
use yard_ops::proto::{AgentView, ClusterReport, ManagerView, Msg, NodeStatus, Sample};

#[derive(Args, Debug)]
pub struct FleetArgs {
    /// Clusters (one simulated manager each).
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Agents per cluster.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// How often each agent's samples arrive (and each cluster is reported).
    #[arg(long, default_value = "5s")]
    interval: String,
    /// The measured window (after one warm-up interval).
    #[arg(long, default_value = "60s")]
    duration: String,
    /// After the warm-up, write `{"center": ADDR, "pid": PID}` here, for a program that
    /// measures something against the center while the fleet runs (bench/dashboard.py).
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
}

/// Series per agent per interval: seven host series and one node's four.
const HOST: [&str; 7] = [
    "cpu",
    "mem_used",
    "mem_used_pct",
    "disk_used_pct",
    "load1",
    "net_rx",
    "net_tx",
];
const NODE: [&str; 4] = ["cpu", "rss", "restarts", "healthy"];

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').ok_or_else(|| anyhow!("bad stat"))? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn report(cluster: &str, manager: &Endpoint, agents: usize, started: u64) -> Msg {
    Msg::Register(ClusterReport {
        cluster: cluster.to_string(),
        manager: ManagerView {
            id: manager.id().to_string(),
            address: "127.0.0.1:1".into(),
            started_ms: started,
            mesos: None,
        },
        agents: (0..agents)
            .map(|i| AgentView {
                id: format!("{cluster}-agent-{i}"),
                name: format!("agent-{i}"),
                address: format!("10.0.{}.{}:9910", i / 250, i % 250),
                state: "up".into(),
                roles: vec![],
                nodes: vec![NodeStatus {
                    name: "web".into(),
                    state: "running".into(),
                    health: "healthy".into(),
                    pid: Some(1000 + i as u32),
                    restarts: 0,
                    generation: 1,
                }],
                last_seen_ms: 0,
                tasks: vec![],
                tasks_total: 0,
            })
            .collect(),
    })
}

fn samples(cluster: &str, agents: usize, ts: u64) -> Vec<Sample> {
    let mut out = Vec::with_capacity(agents * (HOST.len() + NODE.len()));
    for i in 0..agents {
        for (k, m) in HOST.iter().enumerate() {
            out.push(Sample {
                series: format!("{cluster}/agent-{i}/{m}"),
                ts,
                value: (i * 7 + k) as f64 % 97.0,
            });
        }
        for (k, m) in NODE.iter().enumerate() {
            out.push(Sample {
                series: format!("{cluster}/agent-{i}/web/{m}"),
                ts,
                value: (i + k) as f64,
            });
        }
    }
    out
}

async fn center_metric(addr: &str, name: &str) -> anyhow::Result<f64> {
    let text = crate::http_get(addr, "/metrics").await?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {name} in the center's metrics"))
}

pub(crate) async fn main(a: FleetArgs) -> anyhow::Result<()> {
    let interval =
        yard_data::time::parse_duration(&a.interval).map_err(|e| anyhow!("--interval: {e}"))?;
    let duration =
        yard_data::time::parse_duration(&a.duration).map_err(|e| anyhow!("--duration: {e}"))?;
    let dir = std::env::temp_dir().join(format!("yard-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["center", "--listen", "127.0.0.1:0", "--data"])
        .arg(&dir)
        .args(["--manager-timeout", "60s"])
        .env("YARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start yard center")?;
    let pid = child.id().ok_or_else(|| anyhow!("center exited"))?;
    let line = BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .next_line()
        .await?
        .ok_or_else(|| anyhow!("center exited before listening"))?;
    let addr = line
        .split(" listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| anyhow!("unexpected line: {line}"))?
        .to_string();
    let shutdown = CancellationToken::new();
    let mut managers = Vec::new();
    // The center under test shares this host's credentials home, and so its mesh key.
    let mesh_key = crate::home_mesh_key()?;
    for c in 0..a.clusters {
        let (ep, _router) = Endpoint::spawn(
            format!("bench-manager-{c}"),
            EndpointConfig {
                mesh_key: Some(mesh_key.clone()),
                ..EndpointConfig::default()
            },
            shutdown.clone(),
        );
        match ep.peer(&addr).await {
            Ok(Ok(_)) => {}
            other => bail!("cannot peer with the center: {other:?}"),
        }
        let client = ep
            .attach("bench", vec![], 64, OverflowPolicy::DropOldest)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        managers.push((format!("cluster-{c}"), ep, client));
    }
    let started = yard_ops::now_ms();
    // Registration: every cluster, with all its agents.
    for (name, ep, _) in &managers {
        yard_ops::rpc::call(
            ep,
            format!("{CENTER}register"),
            &report(name, ep, a.agents, started),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| anyhow!("registration of {name}: {e}"))?;
    }
    let per_round = a.clusters * a.agents * (HOST.len() + NODE.len());
    // One round per interval, spread evenly over it (managers are not synchronised).
    let round = |k: u64| {
        let managers = &managers;
        async move {
            let ts = yard_ops::now_ms() + k;
            let gap = interval / a.clusters.max(1) as u32;
            let mut tick = tokio::time::interval(gap);
            for (name, ep, client) in managers {
                tick.tick().await;
                let batch = Msg::MetricsBatch {
                    cluster: name.clone(),
                    samples: samples(name, a.agents, ts),
                };
                client
                    .publish_system(CENTER_METRICS.to_string(), batch.to_value())
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                let r = report(name, ep, a.agents, started);
                yard_ops::rpc::call(ep, format!("{CENTER}register"), &r, Duration::from_secs(30))
                    .await
                    .map_err(|e| anyhow!("report of {name}: {e}"))?;
            }
            anyhow::Ok(())
        }
    };
    eprintln!(
        "fleet: {} clusters x {} agents = {} agents, {} samples per {:?}; warming up",
        a.clusters,
        a.agents,
        a.clusters * a.agents,
        per_round,
        interval
    );
    round(0).await?;
    if let Some(path) = &a.ready_file {
        let ready = serde_json::json!({"center": addr, "pid": pid});
        std::fs::write(path, ready.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let stored_before = center_metric(&addr, "yard_center_samples_total").await?;
    let cpu0 = cpu_ticks(pid)?;
    let t0 = Instant::now();
    let mut rounds = 0u64;
    while t0.elapsed() < duration {
        rounds += 1;
        round(rounds).await?;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(pid)?;
    // Let the last batches land, then count.
    let want = stored_before + (rounds as usize * per_round) as f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stored = center_metric(&addr, "yard_center_samples_total").await?;
    while stored < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = center_metric(&addr, "yard_center_samples_total").await?;
    }
    let rss = crate::mesh::rss_kib(pid)?;
    // /proc counts CPU time in USER_HZ ticks, 100 per second on Linux.
    let cpu = (cpu1 - cpu0) as f64 / 100.0 / elapsed;
    let stats = crate::http_get(&addr, "/v1/stats").await?;
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    let agents = a.clusters * a.agents;
    println!(
        "fleet clusters={} agents={} interval={:?} samples_per_s={:.0} center_cpu_cores={:.3} center_rss_mib={:.1} rss_kib_per_agent={:.2} stored={}/{} agents_up={}",
        a.clusters,
        agents,
        interval,
        per_round as f64 / interval.as_secs_f64(),
        cpu,
        rss as f64 / 1024.0,
        rss as f64 / agents as f64,
        stored - stored_before,
        want - stored_before,
        stats["total"]["agents_up"]
    );
    shutdown.cancel();
    drop(managers);
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
