//! `yard bench store`: one WebSocket client pipelining store operations (a window of requests
//! in flight), against `yard node` processes started for the run: a master in memory, a master
//! on SQLite (synchronous=normal), and a clone whose gets are answered from its copy.
//! `scripts/bench-store.sh` runs it next to `redis-benchmark` and prints both.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::bench::start_node_with;

#[derive(Args)]
pub struct StoreArgs {
    /// Operations per measurement.
    #[arg(long, default_value_t = 200_000)]
    ops: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// Print one JSON line per figure (for scripts).
    #[arg(long)]
    json: bool,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/messages/json"))
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    ws.send(Message::text("[]")).await?;
    ws.next().await.ok_or_else(|| anyhow!("no ack"))??;
    Ok(ws)
}

fn op_text(op: &str, store: &str, id: u64, key: u64) -> String {
    let value = match op {
        "get" => String::new(),
        _ => format!(",\"value\":{{\"@data-type\":\"count\",\"data\":{id}}}"),
    };
    format!(
        "{{\"type\":\"store\",\"id\":{id},\"store\":\"{store}\",\"op\":\"{op}\",\"key\":{{\"@data-type\":\"string\",\"data\":\"key:{key:012}\"}}{value}}}"
    )
}

/// Runs `n` operations with `window` in flight; returns operations per second.
async fn pipeline(
    ws: &mut Ws,
    op: &str,
    store: &str,
    n: u64,
    window: u64,
    key_base: u64,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut done = 0u64;
    while done < n {
        let mut batch = Vec::new();
        while sent < n && sent - done < window {
            batch.push(Message::text(op_text(op, store, sent, key_base + sent)));
            sent += 1;
        }
        if !batch.is_empty() {
            let mut items = futures_util::stream::iter(batch.into_iter().map(Ok));
            ws.send_all(&mut items).await?;
        }
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no answer within 30 s")?
            .ok_or_else(|| anyhow!("connection closed"))??;
        if let Message::Text(t) = msg {
            if !t.starts_with("{\"type\":\"store-result\"") {
                bail!("operation failed: {t}");
            }
            done += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

pub async fn main(args: StoreArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("yard-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = format!("disk=sqlite:{}", dir.join("disk.db").display());
    let master = start_node_with(&["--master", "mem", "--master", &db]).await?;
    let clone = start_node_with(&["--clone", "mem", "--peer", &master.addr]).await?;
    let mut ws = connect(&master.addr).await?;
    let n = args.ops;
    let w = args.window;
    let mut figures = Vec::new();
    figures.push((
        "put, memory master",
        pipeline(&mut ws, "put", "mem", n, w, 0).await?,
    ));
    figures.push((
        "put_unique, memory master",
        pipeline(&mut ws, "put_unique", "mem", n, w, n).await?,
    ));
    figures.push((
        "put, SQLite master",
        pipeline(&mut ws, "put", "disk", n, w, 0).await?,
    ));
    figures.push((
        "put_unique, SQLite master",
        pipeline(&mut ws, "put_unique", "disk", n, w, n).await?,
    ));
    // Gets from the clone, once it holds everything written to the memory master.
    let (code, body) = crate::client::http(
        "POST",
        &clone.addr,
        "/v1/stores/mem/ops",
        Some("{\"op\":\"await_idle\",\"timeout\":\"60s\"}"),
        None,
    )
    .await?;
    if code != 200 || !body.contains("true") {
        bail!("the clone did not catch up: {body}");
    }
    let mut cws = connect(&clone.addr).await?;
    figures.push((
        "get, from a clone",
        pipeline(&mut cws, "get", "mem", n, w, 0).await?,
    ));
    figures.push((
        "get, memory master",
        pipeline(&mut ws, "get", "mem", n, w, 0).await?,
    ));
    for (what, rate) in &figures {
        if args.json {
            println!("{{\"figure\":\"{what}\",\"ops_per_sec\":{rate:.0}}}");
        } else {
            println!("{what:<28} {rate:>12.0} ops/s");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
