//! Peer connections (the I/O shell around [`crate::wire`]): handshake, one reader and one writer
//! per link, and the dialer that keeps a link to an address up.
//!
//! **Handshake.** Both sides send their preamble at once, then read the other's: a wrong magic or
//! no common version is known after six bytes and ends the connection with a `Bye` naming the
//! error, on both sides, without waiting for a timeout. Then both send `Hello` (endpoint id,
//! peering address, a fresh 32-byte nonce), and then a `Proof`: an HMAC-SHA-256 under the mesh
//! key over the sender's role (dialer or acceptor), both ids and both nonces ([`proof`]). Each
//! side checks the other's proof in constant time before anything else crosses the link. The key
//! itself never travels, a proof is good for one connection only (the nonces), and one side's
//! proof cannot be reflected back as the other's (the role). An endpoint without a mesh key
//! peers with nobody: there is no "loopback is trusted" rule. The router then registers the link
//! or refuses it as redundant (see `Router::peer_up`). The whole handshake has
//! [`EndpointConfig::handshake_timeout`](crate::EndpointConfig::handshake_timeout).
//!
//! **Reader.** Decodes frames as bytes arrive, hands publications to the router in batches of at
//! most [`PEER_BATCH`] over the data queue (waiting when it is full, which pushes back on the
//! peer through TCP) and adverts over the control queue. Any frame counts as a sign of life; a
//! link silent for `peer_timeout` is lost. An invalid frame ends the link with an error event.
//!
//! **Writer.** Drains the link's control outbox (adverts, first) and data outbox (publications)
//! and writes everything drained in one `write`, so a busy link carries many frames per system
//! call. It pings every `peer_ping`. When the router closes the outboxes it says `Bye` with the
//! reason and shuts the connection down.
//!
//! **Dialer.** Re-dials with capped exponential backoff ([`Backoff`]). After losing a
//! simultaneous-dial tie-break it waits until the winning link is gone; after the peer unpeers it
//! stops; a permanent error (incompatible version, not a yard endpoint, wrong mesh key) is retried
//! at the longest interval only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::transport::{PeerStream, Rd, Wr};
use tokio::sync::oneshot;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use crate::endpoint::{Control, Down, Endpoint, Inbound, Message, PeerUp, Refusal, PEER_BATCH};
use crate::outbox::{CloseReason, Outbox, OverflowPolicy};
use crate::routing::Advert;
use crate::wire::{hex, unhex};
use crate::wire::{Frame, FrameDecoder, FrameRef, Preamble, WireError};

/// Capacity of a link's control outbox (adverts); overflowing it drops the link.
const CONTROL_QUEUE: usize = 4096;
/// The most bytes one write gathers before it is sent.
const WRITE_CHUNK: usize = 256 * 1024;
/// How long a goodbye may take.
const BYE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the router and the connection tasks share about one link.
pub(crate) struct Link {
    pub data: Outbox<Arc<Message>>,
    /// Encoded control frames (adverts), shared by every link they go to.
    pub ctrl: Outbox<bytes::Bytes>,
    /// Stops the reader.
    pub cancel: CancellationToken,
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl Link {
    fn new(capacity: usize, policy: OverflowPolicy) -> Link {
        Link {
            data: Outbox::new(capacity.max(1), policy),
            ctrl: Outbox::new(CONTROL_QUEUE, OverflowPolicy::Disconnect),
            cancel: CancellationToken::new(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Ends the link: the writer says goodbye with `reason`, the reader stops.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.ctrl.close(reason.clone());
        self.data.close(reason);
        self.cancel.cancel();
    }
}

/// Why a connection did not become a link.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("{0}")]
    Io(String),
    #[error("the peer did not complete the handshake within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the peer refused the connection: {code}: {reason}")]
    Refused { code: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    /// The peer could not be authenticated (no proof of the mesh key that checks).
    #[error("{0}")]
    Unauthenticated(String),
    #[error("already linked with {0}")]
    Redundant(String),
}

impl HandshakeError {
    fn code(&self) -> &'static str {
        match self {
            HandshakeError::Io(_) => "peer_unavailable",
            HandshakeError::Timeout(_) => "peer_timeout",
            HandshakeError::Wire(e) => e.code(),
            // The other side could not authenticate this one: it says so, and so does this.
            HandshakeError::Refused { code, .. } if code == "authentication_failed" => {
                "authentication_failed"
            }
            HandshakeError::Refused { .. } | HandshakeError::Invalid(_) => "peer_invalid",
            HandshakeError::Unauthenticated(_) => "authentication_failed",
            HandshakeError::Redundant(_) => "redundant_connection",
        }
    }

    /// Errors that re-dialing soon will not fix.
    fn permanent(&self) -> bool {
        match self {
            HandshakeError::Wire(WireError::WrongMagic { .. } | WireError::Incompatible { .. })
            | HandshakeError::Invalid(_)
            | HandshakeError::Unauthenticated(_) => true,
            HandshakeError::Refused { code, .. } => {
                matches!(
                    code.as_str(),
                    "peer_incompatible"
                        | "wrong_magic_number"
                        | "peer_invalid"
                        | "authentication_failed"
                )
            }
            _ => false,
        }
    }
}

/// Capped exponential backoff between dial attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt; each call doubles the following one, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

struct Established {
    conn: u64,
    peer: String,
    remote: SocketAddr,
    rd: Rd,
    wr: Wr,
    dec: FrameDecoder,
    link: Arc<Link>,
}

/// Writes `bytes` and flushes: a TLS stream may keep records it could not write at once until
/// the next write or flush, and a link must never leave them there while it waits (a plain TCP
/// half's flush does nothing).
async fn send(wr: &mut Wr, bytes: &[u8]) -> std::io::Result<()> {
    wr.write_all(bytes).await?;
    wr.flush().await
}

async fn bye(wr: &mut Wr, code: &str, reason: &str) {
    let frame = Frame::Bye {
        code: code.into(),
        reason: reason.into(),
    };
    let _ = timeout(BYE_TIMEOUT, send(wr, &frame.encode())).await;
    let _ = timeout(BYE_TIMEOUT, wr.shutdown()).await;
}

fn io_error(e: std::io::Error) -> HandshakeError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        HandshakeError::Io("the peer closed the connection during the handshake".into())
    } else {
        HandshakeError::Io(e.to_string())
    }
}

/// Bytes of each side's handshake nonce.
const NONCE_LEN: usize = 32;

fn random_nonce() -> Vec<u8> {
    let mut b = vec![0u8; NONCE_LEN];
    getrandom::fill(&mut b).expect("the operating system's random generator failed");
    b
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// What one side sends to prove it holds the mesh key: HMAC-SHA-256 under `key` over the
/// sender's role, the sender's and the receiver's ids and nonces (each part length-prefixed).
pub fn proof(
    key: &[u8],
    sender_is_dialer: bool,
    sender: &str,
    receiver: &str,
    sender_nonce: &[u8],
    receiver_nonce: &[u8],
) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    let role: &[u8] = if sender_is_dialer {
        b"dialer"
    } else {
        b"acceptor"
    };
    for part in [
        b"yard-peering-v2".as_slice(),
        role,
        sender.as_bytes(),
        receiver.as_bytes(),
        sender_nonce,
        receiver_nonce,
    ] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The next frame of the handshake; a `Bye` from the peer ends it as a refusal.
async fn next_handshake_frame(
    rd: &mut Rd,
    wr: &mut Wr,
    dec: &mut FrameDecoder,
    buf: &mut [u8],
    deadline: Instant,
    limit: Duration,
) -> Result<Frame, HandshakeError> {
    loop {
        match dec.next_frame() {
            Ok(Some(Frame::Bye { code, reason })) => {
                return Err(HandshakeError::Refused { code, reason })
            }
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {
                let n = timeout_at(deadline, rd.read(buf))
                    .await
                    .map_err(|_| HandshakeError::Timeout(limit))?
                    .map_err(io_error)?;
                if n == 0 {
                    return Err(io_error(std::io::ErrorKind::UnexpectedEof.into()));
                }
                dec.push(&buf[..n]);
            }
            Err(e) => {
                bye(wr, e.code(), &e.to_string()).await;
                return Err(e.into());
            }
        }
    }
}

async fn handshake(
    ep: &Endpoint,
    stream: PeerStream,
    remote: SocketAddr,
    dialed: Option<String>,
) -> Result<Established, HandshakeError> {
    let cfg = ep.config();
    let limit = cfg.handshake_timeout;
    let deadline = Instant::now() + limit;
    let certified = stream.is_certified();
    let (mut rd, mut wr) = stream.split();
    let timed_out = |_| HandshakeError::Timeout(limit);

    timeout_at(deadline, send(&mut wr, &Preamble::ours().encode()))
        .await
        .map_err(timed_out)?
        .map_err(io_error)?;
    let mut pre = [0u8; Preamble::LEN];
    timeout_at(deadline, rd.read_exact(&mut pre))
        .await
        .map_err(timed_out)?
        .map_err(io_error)?;
    if let Err(e) = Preamble::decode(&pre).and_then(|p| Preamble::ours().negotiate(&p)) {
        bye(&mut wr, e.code(), &e.to_string()).await;
        return Err(e.into());
    }

    let my_nonce = random_nonce();
    let hello = Frame::Hello {
        endpoint: ep.id().to_string(),
        listen: cfg.listen.clone(),
        nonce: hex(&my_nonce),
    };
    timeout_at(deadline, send(&mut wr, &hello.encode()))
        .await
        .map_err(timed_out)?
        .map_err(io_error)?;
    let mut dec = FrameDecoder::new(cfg.max_frame);
    let mut buf = [0u8; 4096];
    let (peer, listen, nonce) =
        match next_handshake_frame(&mut rd, &mut wr, &mut dec, &mut buf, deadline, limit).await? {
            Frame::Hello {
                endpoint,
                listen,
                nonce,
            } => (endpoint, listen, nonce),
            other => {
                let e =
                    HandshakeError::Invalid(format!("expected a hello frame first, got {other:?}"));
                bye(&mut wr, "unexpected_handshake_message", &e.to_string()).await;
                return Err(e);
            }
        };
    let their_nonce = match unhex(&nonce) {
        Some(n) if n.len() == NONCE_LEN => n,
        _ => {
            let e = HandshakeError::Invalid(format!(
                "the peer's hello carries no {NONCE_LEN}-byte nonce (an older yard, or not a yard endpoint)"
            ));
            bye(&mut wr, "peer_invalid", &e.to_string()).await;
            return Err(e);
        }
    };
    if peer == ep.id() {
        let why = "this endpoint connected to itself".to_string();
        bye(&mut wr, "invalid_peering_request", &why).await;
        return Err(HandshakeError::Invalid(why));
    }
    // Both ends always send a proof, so the frames are the same on every link (and a peer of
    // an older version, which checks it, gets one). On a certified link the certificate has
    // authenticated the peer already: a proof that does not check (another mesh key, or
    // none) is no reason to refuse it.
    let key = match cfg.mesh_key.clone() {
        Some(k) => k,
        None if certified => hex(&random_nonce()),
        None => {
            let why = "this endpoint has no mesh key, so it peers with nobody on a plain link: give it the mesh's key (--mesh-key FILE, or its home's mesh.key), or TLS (--tls-cert)".to_string();
            bye(&mut wr, "authentication_failed", &why).await;
            return Err(HandshakeError::Unauthenticated(why));
        }
    };
    let dialer = dialed.is_some();
    let mine = proof(
        key.as_bytes(),
        dialer,
        ep.id(),
        &peer,
        &my_nonce,
        &their_nonce,
    );
    timeout_at(
        deadline,
        send(&mut wr, &Frame::Proof { mac: hex(&mine) }.encode()),
    )
    .await
    .map_err(timed_out)?
    .map_err(io_error)?;
    let expected = proof(
        key.as_bytes(),
        !dialer,
        &peer,
        ep.id(),
        &their_nonce,
        &my_nonce,
    );
    match next_handshake_frame(&mut rd, &mut wr, &mut dec, &mut buf, deadline, limit).await? {
        Frame::Proof { mac } if unhex(&mac).is_some_and(|m| ct_eq(&m, &expected)) => {}
        Frame::Proof { .. } if certified => {
            tracing::debug!(%remote, "the peer's mesh key is not this endpoint's; its certificate authenticates it");
        }
        Frame::Proof { .. } => {
            ep.shared
                .counters
                .refused_peers
                .fetch_add(1, Ordering::Relaxed);
            let why = format!(
                "the peer at {remote} could not prove it holds this mesh's key: the endpoints have different mesh keys"
            );
            bye(&mut wr, "authentication_failed", &why).await;
            return Err(HandshakeError::Unauthenticated(why));
        }
        other => {
            let e = HandshakeError::Invalid(format!("expected a proof frame, got {other:?}"));
            bye(&mut wr, "unexpected_handshake_message", &e.to_string()).await;
            return Err(e);
        }
    }

    let conn = ep.shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let link = Arc::new(Link::new(cfg.peer_queue, cfg.peer_overflow_policy));
    let registered = ep
        .call(|reply| Control::PeerUp {
            up: PeerUp {
                conn,
                id: peer.clone(),
                listen,
                remote,
                dialed,
                link: link.clone(),
            },
            reply,
        })
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))?;
    if let Err(Refusal::Redundant) = registered {
        bye(
            &mut wr,
            "redundant_connection",
            "a link between these endpoints exists",
        )
        .await;
        return Err(HandshakeError::Redundant(peer));
    }
    Ok(Established {
        conn,
        peer,
        remote,
        rd,
        wr,
        dec,
        link,
    })
}

/// Runs an established link until it ends; tells the router how.
async fn run_link(ep: Endpoint, est: Established) -> Down {
    let Established {
        conn,
        peer,
        remote,
        rd,
        wr,
        dec,
        link,
    } = est;
    ep.shared
        .tasks
        .spawn(write_loop(ep.clone(), conn, wr, link.clone()));
    let down = read_loop(&ep, conn, &peer, remote, rd, dec, &link).await;
    link.cancel.cancel();
    let _ = ep
        .control
        .send(Control::PeerDown {
            conn,
            why: down.clone(),
        })
        .await;
    down
}

async fn flush(ep: &Endpoint, conn: u64, batch: &mut Vec<Message>) -> bool {
    if batch.is_empty() {
        return true;
    }
    let msgs = std::mem::take(batch);
    ep.data.send(Inbound::Remote { conn, msgs }).await.is_ok()
}

async fn read_loop(
    ep: &Endpoint,
    conn: u64,
    peer: &str,
    remote: SocketAddr,
    mut rd: Rd,
    mut dec: FrameDecoder,
    link: &Link,
) -> Down {
    let idle = ep.config().peer_timeout;
    // 16 KiB holds hundreds of small frames per read; idle links should stay cheap.
    let mut buf = vec![0u8; 16 * 1024];
    let mut batch: Vec<Message> = Vec::new();
    let mut origin: Option<Arc<str>> = None;
    let shut = || Down::Lost("the endpoint is shutting down".into());
    loop {
        loop {
            let frame = match dec.next_ref() {
                Ok(Some(FrameRef::Data(d))) => {
                    let o = match &origin {
                        Some(cached) if **cached == *d.origin => cached.clone(),
                        _ => {
                            let fresh: Arc<str> = Arc::from(d.origin);
                            origin = Some(fresh.clone());
                            fresh
                        }
                    };
                    batch.push(Message::remote(
                        o,
                        d.seq,
                        d.ttl,
                        d.topic.to_string(),
                        d.reply_to.to_string(),
                        d.value,
                    ));
                    if batch.len() >= PEER_BATCH && !flush(ep, conn, &mut batch).await {
                        return shut();
                    }
                    continue;
                }
                Ok(Some(FrameRef::Other(f))) => f,
                Ok(None) => break,
                Err(e) => {
                    let message = format!("invalid frame from peer {peer}: {e}");
                    tracing::warn!("{message}");
                    let _ = ep
                        .control
                        .send(Control::Error {
                            code: e.code(),
                            id: Some(peer.to_string()),
                            addr: Some(remote),
                            message: message.clone(),
                        })
                        .await;
                    flush(ep, conn, &mut batch).await;
                    return Down::Lost(message);
                }
            };
            match frame {
                Frame::Data { .. } => unreachable!("data frames are decoded borrowed above"),
                Frame::Advert {
                    origin,
                    version,
                    prefixes,
                    peers,
                } => {
                    if !flush(ep, conn, &mut batch).await {
                        return shut();
                    }
                    let advert = Advert {
                        origin,
                        version,
                        prefixes,
                        peers,
                    };
                    if ep
                        .control
                        .send(Control::PeerAdvert { conn, advert })
                        .await
                        .is_err()
                    {
                        return shut();
                    }
                }
                Frame::Ping { .. } | Frame::Pong { .. } => {}
                Frame::Bye { code, reason } => {
                    flush(ep, conn, &mut batch).await;
                    return Down::Bye { code, reason };
                }
                Frame::Hello { .. } | Frame::Proof { .. } => {
                    flush(ep, conn, &mut batch).await;
                    return Down::Lost(
                        "protocol error: a handshake frame on an established link".into(),
                    );
                }
            }
        }
        let n = batch.len() as u64;
        if !flush(ep, conn, &mut batch).await {
            return shut();
        }
        link.received.fetch_add(n, Ordering::Relaxed);
        tokio::select! {
            biased;
            _ = link.cancel.cancelled() => return Down::Local,
            r = timeout(idle, rd.read(&mut buf)) => match r {
                Err(_) => return Down::Lost(format!("nothing received for {idle:?} (connection_timeout)")),
                Ok(Ok(0)) => return Down::Lost("the connection closed".into()),
                Ok(Err(e)) => return Down::Lost(e.to_string()),
                Ok(Ok(n)) => dec.push(&buf[..n]),
            }
        }
    }
}

async fn write_loop(ep: Endpoint, conn: u64, mut wr: Wr, link: Arc<Link>) {
    // Grows with the load; an idle link holds no buffer.
    let mut out: Vec<u8> = Vec::new();
    let mut items: Vec<Arc<Message>> = Vec::new();
    let mut ctrl: Vec<bytes::Bytes> = Vec::new();
    let mut ping = tokio::time::interval(ep.config().peer_ping);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut nonce = 0u64;
    let reason = loop {
        tokio::select! {
            biased;
            r = link.ctrl.recv_batch(&mut ctrl, 256) => if let Err(reason) = r { break reason },
            r = link.data.recv_batch(&mut items, 1024) => if let Err(reason) = r { break reason },
            _ = ping.tick() => {
                nonce += 1;
                Frame::Ping { nonce }.encode_into(&mut out);
            }
        }
        loop {
            link.ctrl.drain_now(&mut ctrl, 256);
            for f in ctrl.drain(..) {
                out.extend_from_slice(&f);
            }
            let n = items.len();
            for m in items.drain(..) {
                m.encode_frame(&mut out);
            }
            link.sent.fetch_add(n as u64, Ordering::Relaxed);
            if out.len() >= WRITE_CHUNK || link.data.drain_now(&mut items, 1024) == 0 {
                break;
            }
        }
        if out.is_empty() {
            continue;
        }
        if let Err(e) = send(&mut wr, &out).await {
            let _ = ep
                .control
                .send(Control::PeerDown {
                    conn,
                    why: Down::Lost(format!("write failed: {e}")),
                })
                .await;
            link.cancel.cancel();
            return;
        }
        out.clear();
        if out.capacity() > 4 * WRITE_CHUNK {
            out.shrink_to(WRITE_CHUNK);
        }
    };
    let (code, why) = match reason {
        CloseReason::Shutdown => ("shutting_down", "the endpoint is shutting down".to_string()),
        CloseReason::Unpeered => ("unpeered", "the peer unpeered this endpoint".to_string()),
        CloseReason::Overflow { capacity } => (
            "backpressure_overflow",
            format!("the outbound queue of {capacity} messages overflowed"),
        ),
        CloseReason::Detached => ("none", "the link was closed".to_string()),
    };
    bye(&mut wr, code, &why).await;
}

/// Serves a connection accepted on the peering listener.
pub(crate) async fn accepted(ep: Endpoint, stream: PeerStream, remote: SocketAddr) {
    let shutdown = ep.shared.shutdown.clone();
    let result = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = handshake(&ep, stream, remote, None) => r,
    };
    match result {
        Ok(est) => {
            run_link(ep, est).await;
        }
        Err(HandshakeError::Redundant(_)) => {}
        Err(e) => {
            let message = format!("peering connection from {remote}: {e}");
            tracing::warn!("{message}");
            let _ = ep
                .control
                .send(Control::Error {
                    code: e.code(),
                    id: None,
                    addr: Some(remote),
                    message,
                })
                .await;
        }
    }
}

async fn connect(ep: &Endpoint, addr: &str) -> Result<Established, HandshakeError> {
    let limit = ep.config().handshake_timeout;
    let stream = timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| HandshakeError::Timeout(limit))?
        .map_err(|e| HandshakeError::Io(format!("unable to connect to remote peer: {e}")))?;
    let remote = stream
        .peer_addr()
        .map_err(|e| HandshakeError::Io(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let stream = match ep.config().dialer.clone() {
        None => PeerStream::Tcp(stream),
        Some(d) => timeout(limit, d.wrap(stream, addr))
            .await
            .map_err(|_| HandshakeError::Timeout(limit))?
            .map_err(|e| HandshakeError::Io(format!("securing the link to {addr}: {e}")))?,
    };
    handshake(ep, stream, remote, Some(addr.to_string())).await
}

/// Keeps a link to `addr` up until `cancel`; `first` gets the outcome of the first attempt.
pub(crate) async fn dial(
    ep: Endpoint,
    addr: String,
    cancel: CancellationToken,
    first: oneshot::Sender<Result<String, crate::endpoint::DialFailed>>,
) {
    let cfg = ep.config().clone();
    let mut first = Some(first);
    let mut backoff = Backoff::new(cfg.redial_min, cfg.redial_max);
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => break,
            r = connect(&ep, &addr) => r,
        };
        match attempt {
            Ok(est) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(est.peer.clone()));
                }
                backoff.reset();
                failures = 0;
                let down = run_link(ep.clone(), est).await;
                if cancel.is_cancelled() {
                    break;
                }
                if let Down::Bye { code, .. } = &down {
                    if code == "unpeered" {
                        tracing::info!(%addr, "the peer unpeered this endpoint; not re-dialing");
                        break;
                    }
                }
            }
            Err(HandshakeError::Redundant(peer)) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(peer.clone()));
                }
                // The other direction won the tie-break; dial again once that link is gone.
                let mut linked = ep.shared.linked.subscribe();
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = linked.wait_for(|ids| !ids.contains(&peer)) => {}
                }
                continue;
            }
            Err(e) => {
                failures += 1;
                let error = e.to_string();
                let report = failures == 1 || e.permanent();
                if report {
                    tracing::warn!(%addr, "peering failed: {error}");
                }
                let _ = ep
                    .control
                    .send(Control::DialFailed {
                        addr: addr.clone(),
                        error: error.clone(),
                        code: e.code(),
                        report,
                    })
                    .await;
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(crate::endpoint::DialFailed {
                        code: e.code(),
                        why: error,
                        permanent: e.permanent(),
                    }));
                }
                let wait = if e.permanent() {
                    cfg.redial_max
                } else {
                    backoff.next_wait()
                };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        }
        let wait = backoff.next_wait();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    cancel.cancel();
    let _ = ep.control.send(Control::DialerGone { addr }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let waits: Vec<u64> = (0..5).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }
}
