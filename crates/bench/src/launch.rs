//! `yard bench launch`: the end-to-end launch rate of the resource manager, from ACCEPT to
//! TASK_RUNNING, with real processes on this host.
//!
//! Starts a `yard manager` (the master) and `--agents` `yard agent`s (cgroups isolation where
//! the host has it, unless `--no-isolation`), subscribes a scheduler of its own over the Mesos
//! HTTP API (a RecordIO stream; calls on one keep-alive connection), and for each run launches
//! `--tasks` short command tasks, spread over the offers of every agent in ACCEPT calls, then
//! acknowledges every update as a framework must (updates reach it in order: RUNNING only after
//! STARTING was acknowledged), over four connections. Reported per run: tasks per second from the first ACCEPT to the
//! last TASK_RUNNING, and how long until every task finished. Medians over `--runs`.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// Tasks per run.
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// Agents (processes on this host).
    #[arg(long, default_value_t = 2)]
    agents: usize,
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// What each task runs.
    #[arg(long, default_value = "sleep 1")]
    command: String,
    /// Run the tasks without cgroups.
    #[arg(long)]
    no_isolation: bool,
    /// Where the manager's and agents' data (task sandboxes) go [default: the temp dir].
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Exec the command's words directly instead of through `sh -c` (CommandInfo shell=false).
    #[arg(long)]
    no_shell: bool,
}

/// A child process killed when dropped.
struct Proc {
    _child: tokio::process::Child,
}

async fn daemon(args: &[String]) -> anyhow::Result<(Proc, String)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(args)
        .env("YARD_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start yard {}", args[0]))?;
    let out = child.stdout.take().expect("piped");
    let line = tokio::time::timeout(
        Duration::from_secs(15),
        BufReader::new(out).lines().next_line(),
    )
    .await
    .context("the daemon did not start within 15s")??
    .ok_or_else(|| anyhow!("yard {} exited at start", args[0]))?;
    let mesos = line
        .split("Mesos API http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| anyhow!("unexpected first line: {line}"))?
        .to_string();
    Ok((Proc { _child: child }, mesos))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A keep-alive HTTP/1.1 connection for calls.
struct Conn {
    r: BufReader<TcpStream>,
    addr: String,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::new(s),
            addr: addr.to_string(),
        })
    }

    async fn post(&mut self, path: &str, body: &Value, stream_id: &str) -> anyhow::Result<u16> {
        let b = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\nMesos-Stream-Id: {stream_id}\r\nContent-Length: {}\r\n\r\n{b}",
            self.addr,
            auth_header(),
            b.len()
        );
        self.r.get_mut().write_all(req.as_bytes()).await?;
        let (code, len, _) = read_head(&mut self.r).await?;
        let mut sink = vec![0u8; len];
        self.r.read_exact(&mut sink).await?;
        if !(200..300).contains(&code) {
            bail!("{path}: HTTP {code}: {}", String::from_utf8_lossy(&sink));
        }
        Ok(code)
    }
}

/// Status, Content-Length, chunked?
async fn read_head(r: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, usize, bool)> {
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let code = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
    let (mut len, mut chunked) = (0, false);
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("connection closed in the headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok((code, len, chunked));
        }
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
}

/// The SUBSCRIBE stream: chunked HTTP carrying RecordIO records.
struct Events {
    r: BufReader<TcpStream>,
    buf: Vec<u8>,
}

impl Events {
    async fn next(&mut self) -> anyhow::Result<Value> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let n: usize = std::str::from_utf8(&self.buf[..nl])?.trim().parse()?;
                if self.buf.len() >= nl + 1 + n {
                    let v = serde_json::from_slice(&self.buf[nl + 1..nl + 1 + n])?;
                    self.buf.drain(..nl + 1 + n);
                    return Ok(v);
                }
            }
            // One more HTTP chunk.
            let mut size = String::new();
            if self.r.read_line(&mut size).await? == 0 {
                bail!("the master closed the event stream");
            }
            let size = usize::from_str_radix(size.trim(), 16)?;
            let mut chunk = vec![0u8; size + 2];
            self.r.read_exact(&mut chunk).await?;
            self.buf.extend_from_slice(&chunk[..size]);
        }
    }
}

/// The CLI's credential as a header line (the master needs one for scheduler calls).
fn auth_header() -> String {
    yard_client::credential::bearer(None)
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default()
}

async fn subscribe(addr: &str) -> anyhow::Result<(Events, String, String)> {
    let s = TcpStream::connect(addr).await?;
    let mut r = BufReader::new(s);
    let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": "bench-launch"}}}).to_string();
    let req = format!("POST /api/v1/scheduler HTTP/1.1\r\nHost: {addr}\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", auth_header(), body.len());
    r.get_mut().write_all(req.as_bytes()).await?;
    // The stream id header is needed for calls: read the head by hand.
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if !line.contains(" 200 ") {
        bail!("SUBSCRIBE: {line}");
    }
    let mut stream = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("mesos-stream-id") {
                stream = v.trim().to_string();
            }
        }
    }
    let mut ev = Events { r, buf: Vec::new() };
    let sub = ev.next().await?;
    let fid = sub
        .pointer("/subscribed/framework_id/value")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("expected SUBSCRIBED, got {sub}"))?
        .to_string();
    Ok((ev, stream, fid))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) async fn main(a: LaunchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.tasks > 0 && a.agents > 0 && a.runs > 0,
        "give at least one task, agent and run"
    );
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("yard-bench-launch-{}", std::process::id()));
    let fabric = format!("127.0.0.1:{}", free_port()?);
    let mesos_port = free_port()?;
    let s = |x: &str| x.to_string();
    let (_manager, mesos) = daemon(&[
        s("manager"),
        s("--cluster"),
        s("bench"),
        s("--center"),
        s("127.0.0.1:1"),
        s("--listen"),
        fabric.clone(),
        s("--data"),
        dir.join("manager").display().to_string(),
        s("--mesos-listen"),
        format!("127.0.0.1:{mesos_port}"),
        s("--offer-timeout"),
        s("120s"),
    ])
    .await?;
    let mut agents = Vec::new();
    for i in 0..a.agents {
        let mut args = vec![
            s("agent"),
            s("--manager"),
            fabric.clone(),
            s("--name"),
            format!("bench-{i}"),
            s("--listen"),
            s("127.0.0.1:0"),
            s("--data"),
            dir.join(format!("agent-{i}")).display().to_string(),
            s("--mesos-listen"),
            s("127.0.0.1:0"),
            s("--resources"),
            format!("cpus:{};mem:{}", a.tasks, a.tasks * 32),
        ];
        if a.no_isolation {
            args.push(s("--no-isolation"));
        }
        // The bench's framework runs its tasks as root, as before users were switched.
        args.push(s("--allow-root-tasks"));
        agents.push(daemon(&args).await?.0);
    }
    let (mut events, stream, fid) = subscribe(&mesos).await?;
    let mut calls = Conn::open(&mesos).await?;
    // Acknowledgements go out from their own tasks (on `ACK_CONNECTIONS` connections, a task
    // always on the same one), so reading events never waits for them.
    const ACK_CONNECTIONS: usize = 4;
    let mut ack_txs = Vec::new();
    let mut ackers = Vec::new();
    for _ in 0..ACK_CONNECTIONS {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let mut conn = Conn::open(&mesos).await?;
        let sid = stream.clone();
        ackers.push(tokio::spawn(async move {
            while let Some(ack) = rx.recv().await {
                if let Err(e) = conn.post("/api/v1/scheduler", &ack, &sid).await {
                    eprintln!("acknowledgement failed: {e:#}");
                    return;
                }
            }
        }));
        ack_txs.push(tx);
    }
    println!(
        "launch: {} tasks per run ({:?}{}, cpus 0.01, mem 16) on {} agent(s), {}; {} runs",
        a.tasks,
        a.command,
        if a.no_shell { ", no shell" } else { ", sh -c" },
        a.agents,
        if a.no_isolation {
            "no isolation"
        } else {
            "cgroups"
        },
        a.runs
    );
    let (mut rates, mut finishes) = (Vec::new(), Vec::new());
    for run in 0..a.runs {
        // Offers from every agent.
        let mut offers: Vec<Value> = Vec::new();
        let mut seen_agents = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen_agents.len() < a.agents {
            if Instant::now() > deadline {
                bail!(
                    "offers from {} of {} agents within 30s",
                    seen_agents.len(),
                    a.agents
                );
            }
            let e = tokio::time::timeout(Duration::from_secs(30), events.next()).await??;
            if e["type"] == "OFFERS" {
                for o in e["offers"]["offers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    seen_agents.insert(o["agent_id"]["value"].as_str().unwrap_or("").to_string());
                    offers.push(o);
                }
            }
        }
        let words: Vec<&str> = a.command.split_whitespace().collect();
        let command = if a.no_shell {
            json!({"shell": false, "value": words.first().copied().unwrap_or("true"), "arguments": words})
        } else {
            json!({"value": a.command})
        };
        let per = a.tasks.div_ceil(offers.len());
        let mut launched = 0;
        let mut accepts = Vec::new();
        for o in &offers {
            let n = per.min(a.tasks - launched);
            let tasks: Vec<Value> = (launched..launched + n)
                .map(|i| json!({"name": "bench", "task_id": {"value": format!("r{run}-t{i}")}, "agent_id": o["agent_id"],
                    "command": command,
                    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}},
                                  {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}]}))
                .collect();
            launched += n;
            accepts.push(json!({"type": "ACCEPT", "framework_id": {"value": fid}, "accept": {"offer_ids": [o["id"]],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}], "filters": {"refuse_seconds": 0}}}));
        }
        let t0 = Instant::now();
        for acc in &accepts {
            calls.post("/api/v1/scheduler", acc, &stream).await?;
        }
        let (mut running, mut ended) = (0usize, 0usize);
        let mut t_running = None;
        while ended < a.tasks {
            let e = tokio::time::timeout(Duration::from_secs(60), events.next())
                .await
                .context("no event within 60s")??;
            match e["type"].as_str() {
                Some("UPDATE") => {
                    let st = &e["update"]["status"];
                    match st["state"].as_str().unwrap_or("") {
                        "TASK_RUNNING" => {
                            running += 1;
                            if running == a.tasks {
                                t_running = Some(t0.elapsed());
                            }
                        }
                        "TASK_FINISHED" => ended += 1,
                        "TASK_STARTING" => {}
                        other => bail!(
                            "task {} ended {other}: {}",
                            st["task_id"]["value"],
                            st["message"]
                        ),
                    }
                    if let Some(uuid) = st.get("uuid") {
                        let ack = json!({"type": "ACKNOWLEDGE", "framework_id": {"value": fid},
                            "acknowledge": {"agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": uuid}});
                        let n: usize = st["task_id"]["value"]
                            .as_str()
                            .unwrap_or("")
                            .bytes()
                            .map(usize::from)
                            .sum();
                        let _ = ack_txs[n % ACK_CONNECTIONS].send(ack);
                    }
                }
                Some("OFFERS") => {
                    let ids: Vec<Value> = e["offers"]["offers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|o| o["id"].clone())
                        .collect();
                    let d = json!({"type": "DECLINE", "framework_id": {"value": fid}, "decline": {"offer_ids": ids, "filters": {"refuse_seconds": 0}}});
                    calls.post("/api/v1/scheduler", &d, &stream).await?;
                }
                _ => {}
            }
        }
        let tr = t_running.ok_or_else(|| anyhow!("not every task reported RUNNING"))?;
        let rate = a.tasks as f64 / tr.as_secs_f64();
        println!(
            "  run {}: {} tasks RUNNING in {:.3} s = {:.0} tasks/s (ACCEPT -> TASK_RUNNING); all FINISHED after {:.2} s",
            run + 1,
            a.tasks,
            tr.as_secs_f64(),
            rate,
            t0.elapsed().as_secs_f64()
        );
        rates.push(rate);
        finishes.push(t0.elapsed().as_secs_f64());
    }
    println!(
        "median: {:.0} tasks/s from ACCEPT to TASK_RUNNING; all finished after {:.2} s",
        median(&mut rates),
        median(&mut finishes)
    );
    drop(ack_txs);
    for a in ackers {
        let _ = a.await;
    }
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
