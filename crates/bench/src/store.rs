//! `yard bench store`: one WebSocket client pipelining store operations (a window of requests
//! in flight), against `yard node` processes started for the run: a master in memory and a
//! master on SQLite (synchronous=normal), alone at first (as `redis-server` runs alone); then a
//! clone of the memory store joins, and puts are measured again while it follows, and gets
//! are answered from its copy.
//! `scripts/bench-store.sh` runs it next to `redis-benchmark` and prints both.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use std::io::{Read, Write};

use crate::start_node_with;

#[derive(Args, Debug)]
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

/// A WebSocket client as lean as `redis-benchmark`: a plain socket, frames formatted before
/// they are needed and written many at a time, answers counted by scanning frame headers. The
/// client shares the machine's two cores with the server, so its own cost is kept small.
struct Ws {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

fn connect(addr: &str) -> anyhow::Result<Ws> {
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request = format!(
        "GET /v1/messages/json HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            bail!("{addr} closed the connection during the upgrade");
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!(
            "{addr} refused the upgrade: {}",
            String::from_utf8_lossy(&head)
        );
    }
    let mut ws = Ws {
        stream,
        buf: Vec::new(),
    };
    // The subscription list first; its answer is the ack.
    let mut frame = Vec::new();
    push_frame(&mut frame, b"[]");
    ws.stream.write_all(&frame)?;
    let mut texts = Vec::new();
    while texts.is_empty() {
        ws.read_texts(&mut texts)?;
    }
    Ok(ws)
}

/// Appends a masked text frame (mask key 0: the payload goes as is).
fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

impl Ws {
    /// Reads what has arrived and moves every complete text frame's first bytes into `out`.
    fn read_texts(&mut self, out: &mut Vec<Vec<u8>>) -> anyhow::Result<()> {
        let mut chunk = [0u8; 65536];
        let n = self
            .stream
            .read(&mut chunk)
            .context("no answer within 30 s")?;
        if n == 0 {
            bail!("connection closed");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            if rest.len() < 2 {
                break;
            }
            let (len, head) = match rest[1] & 0x7f {
                126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 if rest.len() >= 10 => (
                    u64::from_be_bytes(rest[2..10].try_into().expect("8")) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if rest.len() < head + len {
                break;
            }
            if rest[0] & 0x0f == 1 {
                let payload = &rest[head..head + len];
                out.push(payload[..payload.len().min(64)].to_vec());
            }
            at += head + len;
        }
        self.buf.drain(..at);
        Ok(())
    }
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

/// Runs `n` operations with `window` in flight; returns operations per second. The frames are
/// formatted before the clock starts, as `redis-benchmark` does with its commands.
fn pipeline(
    ws: &mut Ws,
    op: &str,
    store: &str,
    n: u64,
    window: u64,
    key_base: u64,
) -> anyhow::Result<f64> {
    let mut frames = Vec::new();
    let mut ends = Vec::with_capacity(n as usize);
    for i in 0..n {
        push_frame(&mut frames, op_text(op, store, i, key_base + i).as_bytes());
        ends.push(frames.len());
    }
    let start = Instant::now();
    let mut sent = 0u64;
    let mut done = 0u64;
    let mut texts = Vec::new();
    while done < n {
        let upto = n.min(done + window);
        if upto > sent {
            let from = if sent == 0 {
                0
            } else {
                ends[sent as usize - 1]
            };
            ws.stream
                .write_all(&frames[from..ends[upto as usize - 1]])?;
            sent = upto;
        }
        ws.read_texts(&mut texts)?;
        for t in texts.drain(..) {
            if !t.starts_with(b"{\"type\":\"store-result\"") {
                bail!("operation failed: {}", String::from_utf8_lossy(&t));
            }
            done += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Waits until the clone of `mem` on `addr` holds everything its master applied.
async fn await_idle(addr: &str) -> anyhow::Result<()> {
    let (code, body) = crate::http_post(
        addr,
        "/v1/stores/mem/ops",
        "{\"op\":\"await_idle\",\"timeout\":\"60s\"}",
    )
    .await?;
    if code != 200 || !body.contains("true") {
        bail!("the clone did not catch up: {body}");
    }
    Ok(())
}

pub(crate) async fn main(args: StoreArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("yard-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = format!("disk=sqlite:{}", dir.join("disk.db").display());
    let master = start_node_with(&["--master", "mem", "--master", &db]).await?;
    let (n, w) = (args.ops, args.window);
    let addr = master.addr.clone();
    // Masters alone first (as redis-server runs alone), then with a clone following.
    let (ws, mut figures) = tokio::task::spawn_blocking(move || {
        let mut ws = connect(&addr)?;
        let figures = vec![
            (
                "put, memory master",
                pipeline(&mut ws, "put", "mem", n, w, 0)?,
            ),
            (
                "put_unique, memory master",
                pipeline(&mut ws, "put_unique", "mem", n, w, n)?,
            ),
            (
                "put, SQLite master",
                pipeline(&mut ws, "put", "disk", n, w, 0)?,
            ),
            (
                "put_unique, SQLite master",
                pipeline(&mut ws, "put_unique", "disk", n, w, n)?,
            ),
        ];
        anyhow::Ok((ws, figures))
    })
    .await??;
    let clone = start_node_with(&["--clone", "mem", "--peer", &master.addr]).await?;
    await_idle(&clone.addr).await?;
    let (mut ws, more) = tokio::task::spawn_blocking(move || {
        let mut ws = ws;
        let f = pipeline(&mut ws, "put_unique", "mem", n, w, 2 * n)?;
        anyhow::Ok((
            ws,
            vec![("put_unique, memory master, one clone following", f)],
        ))
    })
    .await??;
    figures.extend(more);
    // Gets from the clone, once it holds everything written to the memory master.
    await_idle(&clone.addr).await?;
    let addr = clone.addr.clone();
    let more = tokio::task::spawn_blocking(move || {
        let mut cws = connect(&addr)?;
        anyhow::Ok(vec![
            (
                "get, from a clone",
                pipeline(&mut cws, "get", "mem", n, w, 0)?,
            ),
            (
                "get, memory master",
                pipeline(&mut ws, "get", "mem", n, w, 0)?,
            ),
        ])
    })
    .await??;
    figures.extend(more);
    for (what, rate) in &figures {
        if args.json {
            println!("{{\"figure\":\"{what}\",\"ops_per_sec\":{rate:.0}}}");
        } else {
            println!("{what:<48} {rate:>12.0} ops/s");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
