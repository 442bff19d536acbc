//! Endpoints in one process, peered over real loopback TCP: routing, retraction, requests and
//! statuses through the real peering code. (Multi-process meshes are in crates/yard/tests.)

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use yard_data::topic;
use yard_data::Value;
use yard_fabric::{Client, Endpoint, EndpointConfig, Message, OverflowPolicy, RequestError};

struct Node {
    ep: Endpoint,
    addr: String,
    token: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

const KEY: &str = "the-test-mesh-key";

async fn node(name: &str) -> Node {
    node_with_key(name, Some(KEY)).await
}

async fn node_with_key(name: &str, key: Option<&str>) -> Node {
    let token = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = EndpointConfig {
        listen: addr.clone(),
        mesh_key: key.map(str::to_string),
        ..EndpointConfig::default()
    };
    let (ep, _task) = Endpoint::spawn(name.to_string(), config, token.clone());
    ep.serve_peers(listener);
    Node { ep, addr, token }
}

async fn attach(n: &Node, prefixes: &[&str]) -> Client {
    let prefixes = prefixes.iter().map(|p| p.to_string()).collect();
    n.ep.attach("test", prefixes, 100_000, OverflowPolicy::Disconnect)
        .await
        .unwrap()
}

/// Waits until `f` holds, polling; panics after 10 s.
async fn until<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    yard_testkit::wait_until(what, Duration::from_secs(10), f).await;
}

async fn reaches(n: &Node, count: usize) {
    until("the mesh to converge", || async {
        n.ep.snapshot().await.unwrap().reachable.len() == count
    })
    .await;
}

async fn recv(c: &Client, n: usize) -> Vec<Arc<Message>> {
    let mut got = Vec::new();
    while got.len() < n {
        let want = n - got.len();
        tokio::time::timeout(Duration::from_secs(10), c.recv_batch(&mut got, want))
            .await
            .expect("messages in time")
            .unwrap();
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_of_three_routes_exactly_once_and_retracts() {
    let (a, b, c) = (node("a").await, node("b").await, node("c").await);
    assert_eq!(a.ep.peer(&b.addr).await.unwrap(), Ok("b".to_string()));
    assert_eq!(c.ep.peer(&b.addr).await.unwrap(), Ok("b".to_string()));
    let sub = attach(&c, &["/t"]).await;
    let publ = attach(&a, &[]).await;
    reaches(&a, 2).await;
    // Adverts converge asynchronously: wait until a forwards /t at all.
    until("a route from a to c", || async {
        publ.publish("/t/warmup".into(), Value::Count(0))
            .await
            .unwrap();
        sub.outbox().depth() > 0
    })
    .await;
    for i in 1..=1000u64 {
        publ.publish("/t/x".into(), Value::Count(i)).await.unwrap();
    }
    publ.publish("/t/end".into(), Value::None).await.unwrap();
    let mut got = Vec::new();
    while got
        .last()
        .is_none_or(|m: &Arc<Message>| m.topic != "/t/end")
    {
        got.extend(recv(&sub, 1).await);
    }
    got.retain(|m| m.topic == "/t/x");
    let values: Vec<u64> = got.iter().map(|m| m.value.as_count().unwrap()).collect();
    assert_eq!(
        values,
        (1..=1000).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    assert!(got.iter().all(|m| &*m.origin == "a"));

    // Retraction: once c unsubscribes, a stops sending /t across the mesh.
    sub.unsubscribe(vec!["/t".into()]).await.unwrap();
    until("the retraction to reach a", || async {
        let before = a.ep.stats().forwarded;
        publ.publish("/t/y".into(), Value::None).await.unwrap();
        a.ep.snapshot().await.unwrap();
        a.ep.stats().forwarded == before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_across_the_mesh_and_fail_clearly() {
    let (a, b, c) = (node("a").await, node("b").await, node("c").await);
    a.ep.peer(&b.addr).await.unwrap().unwrap();
    b.ep.peer(&c.addr).await.unwrap().unwrap();
    let responder = attach(&c, &["/svc/echo"]).await;
    reaches(&a, 2).await;
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while responder.recv_batch(&mut batch, 64).await.is_ok() {
            for m in batch.drain(..) {
                let answer = Value::Vector(vec![Value::string("echo"), m.value.clone()]);
                responder.reply(&m, answer).await.unwrap();
            }
        }
    });
    until("c's service to be known at a", || async {
        !matches!(
            a.ep.request("/svc/echo".into(), Value::Count(0), Duration::from_secs(5))
                .await,
            Err(RequestError::NoResponder(_))
        )
    })
    .await;
    for i in 0..50u64 {
        let answer =
            a.ep.request("/svc/echo".into(), Value::Count(i), Duration::from_secs(5))
                .await
                .unwrap();
        assert_eq!(
            answer.value,
            Value::Vector(vec![Value::string("echo"), Value::Count(i)])
        );
    }
    let err =
        a.ep.request("/svc/none".into(), Value::None, Duration::from_secs(5))
            .await
            .unwrap_err();
    assert!(matches!(err, RequestError::NoResponder(_)), "{err}");
    // A subscriber that never answers: a timeout, with the topic in the message.
    let _silent = attach(&b, &["/svc/silent"]).await;
    until("b's silent service to be known at a", || async {
        !matches!(
            a.ep.request("/svc/silent".into(), Value::None, Duration::from_millis(50))
                .await,
            Err(RequestError::NoResponder(_))
        )
    })
    .await;
    let err =
        a.ep.request(
            "/svc/silent".into(),
            Value::None,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "request_timeout");
    assert!(err.to_string().contains("/svc/silent"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_report_peers_and_simultaneous_dials_keep_one_link() {
    let (a, b) = (node("a").await, node("b").await);
    let watcher = attach(&a, &[topic::STATUSES]).await;
    let (ra, rb) = tokio::join!(a.ep.peer(&b.addr), b.ep.peer(&a.addr));
    assert_eq!(ra.unwrap(), Ok("b".into()));
    assert_eq!(rb.unwrap(), Ok("a".into()));
    let got = recv(&watcher, 2).await;
    let code = |m: &Message| m.value.as_vector().unwrap()[1].clone();
    assert_eq!(code(&got[0]), Value::Enum("endpoint_discovered".into()));
    assert_eq!(code(&got[1]), Value::Enum("peer_added".into()));
    until("one link per pair", || async {
        let pa = a.ep.snapshot().await.unwrap().peers;
        let pb = b.ep.snapshot().await.unwrap().peers;
        let linked =
            |p: &[yard_fabric::PeerInfo]| p.iter().filter(|i| i.state == "connected").count();
        linked(&pa) == 1 && linked(&pb) == 1
    })
    .await;
    a.ep.unpeer(&b.addr).await.unwrap();
    b.ep.unpeer(&a.addr).await.ok();
    let got = recv(&watcher, 2).await;
    let codes: Vec<Value> = got.iter().map(|m| code(m)).collect();
    assert!(
        codes.contains(&Value::Enum("endpoint_unreachable".into())),
        "{codes:?}"
    );
    assert!(
        codes.contains(&Value::Enum("peer_removed".into()))
            || codes.contains(&Value::Enum("peer_lost".into())),
        "{codes:?}"
    );
    assert!(a.ep.unpeer("127.0.0.1:1").await.is_err());
}

/// Hole 1 of the trust issue: a listening node answered a bare preamble with its Hello, which
/// carried the shared token. Now the Hello carries a nonce, the key never travels, and a
/// stranger who cannot prove the key is refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_learns_no_secret_and_cannot_peer_without_the_key() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use yard_fabric::wire::{Frame, FrameDecoder, Preamble};
    let victim = node("victim").await;
    let mut s = tokio::net::TcpStream::connect(&victim.addr).await.unwrap();
    s.write_all(&Preamble::ours().encode()).await.unwrap();
    let mut pre = [0u8; Preamble::LEN];
    s.read_exact(&mut pre).await.unwrap();
    // The victim speaks first after the preamble: read everything it volunteers.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains(KEY),
        "the key never crosses the wire: {text:?}"
    );
    let mut dec = FrameDecoder::new(1 << 20);
    dec.push(&got);
    let Some(Frame::Hello {
        endpoint, nonce, ..
    }) = dec.next_frame().unwrap()
    else {
        panic!("a hello first: {text:?}");
    };
    assert_eq!(endpoint, victim.ep.id());
    assert_eq!(nonce.len(), 64, "a 32-byte nonce");
    // Our own hello, then a proof made without the key.
    let hello = Frame::Hello {
        endpoint: "intruder".into(),
        listen: String::new(),
        nonce: "11".repeat(32),
    };
    s.write_all(&hello.encode()).await.unwrap();
    let fake = yard_fabric::peering_proof(
        b"a guess",
        true,
        "intruder",
        &endpoint,
        &[0x11; 32],
        &[0; 32],
    );
    let fake: String = fake.iter().map(|b| format!("{b:02x}")).collect();
    s.write_all(&Frame::Proof { mac: fake }.encode())
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("refused at once")
        .unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("authentication_failed") && text.contains("mesh"),
        "a bye naming the mesh key: {text:?}"
    );
    assert!(!text.contains(KEY));
    assert_eq!(victim.ep.stats().refused_peers, 1);
    assert_eq!(victim.ep.snapshot().await.unwrap().peers.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_with_different_keys_or_none_do_not_peer() {
    let a = node("a").await;
    let other = node_with_key("other", Some("another-key")).await;
    let keyless = node_with_key("keyless", None).await;
    // An authentication failure says what it is, on both sides, and is not retried.
    let why = a.ep.peer(&other.addr).await.unwrap().unwrap_err();
    assert!(why.why.contains("mesh"), "{why}");
    assert_eq!((why.code, why.permanent), ("authentication_failed", true));
    let why = a.ep.peer(&keyless.addr).await.unwrap().unwrap_err();
    assert!(why.why.contains("no mesh key"), "{why}");
    assert_eq!((why.code, why.permanent), ("authentication_failed", true));
    let same = node("same").await;
    a.ep.peer(&same.addr).await.unwrap().unwrap();
    assert_eq!(
        a.ep.snapshot()
            .await
            .unwrap()
            .peers
            .iter()
            .filter(|p| p.state == "connected")
            .count(),
        1
    );
}

/// On tokio's paused clock: a request to a subscriber that never answers ends with
/// `request_timeout` when its timeout has passed, not before, and the test waits no real time.
#[tokio::test]
async fn a_request_nobody_answers_ends_at_its_timeout() {
    let n = node("solo").await;
    let _silent = attach(&n, &["/svc/silent"]).await;
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    let err =
        n.ep.request("/svc/silent".into(), Value::None, Duration::from_secs(30))
            .await
            .unwrap_err();
    assert_eq!(err.code(), "request_timeout", "{err}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_millis(30_100),
        "{waited:?}"
    );
}

/// A stream that holds what is written until it is flushed (as TLS may hold records it could
/// not write at once).
struct HoldsUntilFlush {
    inner: tokio::net::TcpStream,
    held: Vec<u8>,
}

impl tokio::io::AsyncRead for HoldsUntilFlush {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for HoldsUntilFlush {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get_mut().held.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let me = self.get_mut();
        while !me.held.is_empty() {
            let n = std::task::ready!(std::pin::Pin::new(&mut me.inner).poll_write(cx, &me.held))?;
            me.held.drain(..n);
        }
        std::pin::Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn held(s: tokio::net::TcpStream) -> yard_fabric::transport::PeerStream {
    yard_fabric::transport::PeerStream::Wrapped(Box::new(HoldsUntilFlush {
        inner: s,
        held: Vec::new(),
    }))
}

struct Holding;

impl yard_fabric::transport::Dialer for Holding {
    fn wrap<'a>(
        &'a self,
        tcp: tokio::net::TcpStream,
        _: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::io::Result<yard_fabric::transport::PeerStream>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async move { Ok(held(tcp)) })
    }
}

/// A link over a wrapped stream flushes every write: over a stream that holds bytes until
/// flushed, the handshake completes and every message arrives, none left waiting for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_over_a_wrapped_stream_flushes_every_write() {
    let token = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = |dialer: yard_fabric::transport::SharedDialer| EndpointConfig {
        mesh_key: Some(KEY.into()),
        dialer,
        // No keepalive write to push a held message out by chance.
        peer_ping: Duration::from_secs(3600),
        peer_timeout: Duration::from_secs(7200),
        ..EndpointConfig::default()
    };
    let (b, _) = Endpoint::spawn("b".into(), config(None), token.clone());
    let accepting = b.clone();
    tokio::spawn(async move {
        while let Ok((s, remote)) = listener.accept().await {
            accepting.accept_peer_stream(held(s), remote);
        }
    });
    let (a, _) = Endpoint::spawn("a".into(), config(Some(Arc::new(Holding))), token.clone());
    let linked = tokio::time::timeout(Duration::from_secs(10), a.peer(&addr))
        .await
        .expect("the handshake completes over held streams")
        .unwrap();
    assert_eq!(linked.unwrap(), b.id());
    let sub = b
        .attach(
            "sub",
            vec!["/held/".into()],
            1000,
            OverflowPolicy::Disconnect,
        )
        .await
        .unwrap();
    let publ = a
        .attach("pub", vec![], 1000, OverflowPolicy::Disconnect)
        .await
        .unwrap();
    until("b's subscription reaches a", || async {
        publ.publish("/held/probe".into(), Value::None)
            .await
            .unwrap();
        sub.outbox().depth() > 0
    })
    .await;
    let mut drain = Vec::new();
    sub.recv_batch(&mut drain, usize::MAX).await.unwrap();
    // One message, then nothing else written: it must arrive on its own.
    publ.publish("/held/one".into(), Value::Count(1))
        .await
        .unwrap();
    let got = loop {
        let m = recv(&sub, 1).await;
        if m[0].topic == "/held/one" {
            break m;
        }
    };
    assert_eq!(got[0].value, Value::Count(1));
    token.cancel();
}
