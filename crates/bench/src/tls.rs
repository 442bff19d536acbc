//! TLS for the benches: a throw-away certificate authority, and `yard bench handshake`.
//!
//! ## `yard bench handshake`
//!
//! New connections per second to one `yard node` gateway that serves TLS 1.3 and, on loopback,
//! plain connections too (`--tls-plain`), so that both sides of each ratio meet the same process
//! in the same run. Four shapes, each `--connections` connections, `--concurrency` at a time,
//! each connection used once and closed:
//! - **client, plain**: TCP connect, `GET /v1/health`, the answer read;
//! - **client, TLS**: the same after a TLS 1.3 handshake (server certificate checked against
//!   the authority, ALPN `http/1.1`, no client certificate);
//! - **peer, plain**: TCP connect, the peering handshake (preamble, hello, mesh-key proofs both
//!   ways: the node's proof is read and checked);
//! - **peer, TLS**: the same inside mutual TLS 1.3 (ALPN `yard-peer/1`, the peer's certificate
//!   checked by the node).
//!
//! Session resumption is off in Switchyard's TLS (every connection is a full handshake, with
//! an ECDSA P-256 signature on each side that shows a certificate), so these are full-handshake
//! figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use yard_fabric::wire::{hex, unhex, Frame, FrameDecoder, Preamble};
use yard_tls::rustls::ClientConfig;
use yard_tls::{Identity, TlsConnector};

/// A certificate authority in a temporary directory, removed when dropped.
pub(crate) struct ThrowawayCa {
    dir: PathBuf,
    ca: yard_tls::Authority,
}

impl Drop for ThrowawayCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl ThrowawayCa {
    pub(crate) fn new(tag: &str) -> anyhow::Result<ThrowawayCa> {
        let dir = std::env::temp_dir().join(format!("yard-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = yard_tls::Authority::init(&dir.join("ca"), SystemTime::now())?;
        Ok(ThrowawayCa { dir, ca })
    }

    pub(crate) fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// A certificate for `subject` (a principal's name such as `node:bench`), serving 127.0.0.1.
    pub(crate) fn identity(&self, subject: &str) -> anyhow::Result<Identity> {
        let issued = self.ca.issue(
            &yard_tls::Request {
                subject: subject.parse().map_err(|e| anyhow!("{e}"))?,
                hosts: vec!["127.0.0.1".into()],
                lifetime: yard_tls::ca::CERT_LIFETIME,
            },
            SystemTime::now(),
        )?;
        Ok(Identity {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        })
    }

    /// Writes `id` and the root as files: the `--tls-cert`, `--tls-key` and `--tls-ca` of a
    /// daemon (the key 0600).
    pub(crate) fn files(&self, name: &str, id: &Identity) -> anyhow::Result<[PathBuf; 3]> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let (cert, key, ca) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
        std::fs::write(&cert, &id.cert_pem)?;
        std::fs::write(&ca, self.ca_pem())?;
        yard_auth::tokens::write_private(&key, id.key_pem.as_bytes())?;
        Ok([cert, key, ca])
    }
}

/// The `--tls-*` arguments of a `yard node` serving TLS with `ca`'s certificate for
/// `node:bench`, plain connections too on loopback.
pub(crate) fn node_args(ca: &ThrowawayCa) -> anyhow::Result<Vec<String>> {
    let id = ca.identity("node:bench")?;
    let [cert, key, root] = ca.files("node", &id)?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    Ok(vec![
        "--tls-cert".into(),
        s(&cert),
        "--tls-key".into(),
        s(&key),
        "--tls-ca".into(),
        s(&root),
        "--tls-plain".into(),
    ])
}

#[derive(Args, Debug)]
pub struct HandshakeArgs {
    /// Connections per shape and run.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    ClientPlain,
    ClientTls,
    PeerPlain,
    PeerTls,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::ClientPlain => "client plain",
            Shape::ClientTls => "client TLS",
            Shape::PeerPlain => "peer plain",
            Shape::PeerTls => "peer TLS",
        }
    }
}

/// What every connection of a run needs.
struct Setup {
    addr: String,
    http: Arc<ClientConfig>,
    peer: Arc<ClientConfig>,
    mesh_key: String,
}

pub(crate) async fn main(a: HandshakeArgs) -> anyhow::Result<()> {
    if a.connections == 0 || a.concurrency == 0 || a.runs == 0 {
        bail!("--connections, --concurrency and --runs must be at least 1");
    }
    let ca = ThrowawayCa::new("handshake")?;
    let extra = node_args(&ca)?;
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let node = crate::start_node_with(&extra).await?;
    let peer_id = ca.identity("node:bench-peer")?;
    let setup = Arc::new(Setup {
        addr: node.addr.clone(),
        http: yard_tls::config::client(ca.ca_pem(), None, yard_tls::ALPN_HTTP)?,
        peer: yard_tls::config::client(ca.ca_pem(), Some(&peer_id), yard_tls::ALPN_PEER)?,
        mesh_key: crate::home_mesh_key()?,
    });
    println!(
        "yard bench handshake: node {}, {} connections per shape, {} at a time, {} runs",
        setup.addr, a.connections, a.concurrency, a.runs
    );
    let shapes = [
        Shape::ClientPlain,
        Shape::ClientTls,
        Shape::PeerPlain,
        Shape::PeerTls,
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); shapes.len()];
    for run in 1..=a.runs {
        let mut line = format!("  run {run}:");
        for (i, shape) in shapes.iter().enumerate() {
            let r = rate(&setup, *shape, a.connections, a.concurrency, run).await?;
            line.push_str(&format!("  {} {r:.0}/s", shape.name()));
            rates[i].push(r);
        }
        println!("{line}");
    }
    let med: Vec<f64> = rates.iter_mut().map(|v| crate::median(v)).collect();
    for (i, shape) in shapes.iter().enumerate() {
        println!(
            "workload=handshake shape=\"{}\" value={:.0} unit=connections/s",
            shape.name(),
            med[i]
        );
    }
    println!(
        "TLS / plain: clients {:.2}, peers {:.2} (medians over {} runs)",
        med[1] / med[0],
        med[3] / med[2],
        a.runs
    );
    Ok(())
}

/// Connections per second of one shape.
async fn rate(
    setup: &Arc<Setup>,
    shape: Shape,
    connections: usize,
    concurrency: usize,
    run: usize,
) -> anyhow::Result<f64> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (setup, next) = (setup.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= connections {
                    return Ok::<(), anyhow::Error>(());
                }
                let id = format!("hs-{run}-{i}");
                tokio::time::timeout(Duration::from_secs(10), one(&setup, shape, id))
                    .await
                    .map_err(|_| anyhow!("{}: a connection took over 10 s", shape.name()))??;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(connections as f64 / start.elapsed().as_secs_f64())
}

/// One connection of `shape`, used once and closed.
async fn one(setup: &Setup, shape: Shape, id: String) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(&setup.addr).await?;
    let _ = tcp.set_nodelay(true);
    let name = || yard_tls::config::server_name(&setup.addr);
    match shape {
        Shape::ClientPlain => health(tcp, &setup.addr).await,
        Shape::ClientTls => {
            let s = TlsConnector::from(setup.http.clone())
                .connect(name()?, tcp)
                .await?;
            health(s, &setup.addr).await
        }
        Shape::PeerPlain => peering(tcp, &setup.mesh_key, id).await.map(drop),
        Shape::PeerTls => {
            let s = TlsConnector::from(setup.peer.clone())
                .connect(name()?, tcp)
                .await?;
            peering(s, &setup.mesh_key, id).await.map(drop)
        }
    }
}

/// `GET /v1/health` (anonymous may read it) and its whole answer.
async fn health<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, host: &str) -> anyhow::Result<()> {
    let head = format!("GET /v1/health HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!(
            "GET /v1/health answered {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }
    Ok(())
}

/// The peering handshake as endpoint `id`, both proofs exchanged and the node's checked.
pub(crate) async fn peering<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    mesh_key: &str,
    id: String,
) -> anyhow::Result<S> {
    s.write_all(&Preamble::ours().encode()).await?;
    let mut pre = [0u8; Preamble::LEN];
    s.read_exact(&mut pre).await?;
    let mut dec = FrameDecoder::new(1 << 20);
    let mut buf = [0u8; 4096];
    let (peer, their_nonce) = match next_frame(&mut s, &mut dec, &mut buf).await? {
        Frame::Hello {
            endpoint, nonce, ..
        } => (
            endpoint,
            unhex(&nonce).context("the node's hello carries no hex nonce")?,
        ),
        other => bail!("expected the node's hello, got {other:?}"),
    };
    let my_nonce: [u8; 32] = rand_nonce();
    let hello = Frame::Hello {
        endpoint: id.clone(),
        listen: String::new(),
        nonce: hex(&my_nonce),
    };
    s.write_all(&hello.encode()).await?;
    let key = mesh_key.as_bytes();
    let mac = yard_fabric::peering_proof(key, true, &id, &peer, &my_nonce, &their_nonce);
    s.write_all(&Frame::Proof { mac: hex(&mac) }.encode())
        .await?;
    let expected = yard_fabric::peering_proof(key, false, &peer, &id, &their_nonce, &my_nonce);
    loop {
        match next_frame(&mut s, &mut dec, &mut buf).await? {
            Frame::Proof { mac } if unhex(&mac).as_deref() == Some(&expected[..]) => return Ok(s),
            Frame::Proof { .. } => bail!("the node's proof does not check: another mesh key"),
            Frame::Bye { code, reason } => bail!("the node refused the peering: {code}: {reason}"),
            _ => {}
        }
    }
}

async fn next_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    dec: &mut FrameDecoder,
    buf: &mut [u8],
) -> anyhow::Result<Frame> {
    loop {
        if let Some(f) = dec.next_frame()? {
            return Ok(f);
        }
        let n = s.read(buf).await?;
        anyhow::ensure!(n > 0, "the node closed the connection during the handshake");
        dec.push(&buf[..n]);
    }
}

/// A nonce that differs per connection (the bench's peers are not adversaries; uniqueness is
/// what the node's bookkeeping needs).
fn rand_nonce() -> [u8; 32] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut out = [0u8; 32];
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    out[..8].copy_from_slice(&n.to_le_bytes());
    out[8..16].copy_from_slice(&t.to_le_bytes());
    out[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    out
}
