//! TLS 1.3 on the gateway's one port, between real `yard node` processes: the cluster's
//! authority (`yard ca init`, `yard cert issue`), peering over mutual TLS, HTTPS and WSS beside
//! it, and what is refused: plain text, TLS 1.2, a certificate of another authority, plain text
//! beyond loopback.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, Daemon};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use yard_tls::rustls::ClientConfig;
use yard_tls::TlsConnector;

/// `yard ARGS` with its own credentials home; its stdout, asserting success.
fn yard_ok(home: &Path, args: &[&str]) -> String {
    let out = common::yard()
        .env("YARD_HOME", home)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "yard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A node with `NAME.crt`/`NAME.key` from `certs` and that directory's root.
fn tls_node(home: &Path, certs: &Path, name: &str, extra: &[&str]) -> (Daemon, String) {
    let p = |f: String| certs.join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (
        p(format!("{name}.crt")),
        p(format!("{name}.key")),
        p("ca.crt".into()),
    );
    let mut args = tls_args("127.0.0.1:0", &cert, &key, &ca);
    args.extend(extra);
    let mut cmd = common::yard();
    cmd.env("YARD_HOME", home)
        .args(&args)
        .env("YARD_LOG", "warn")
        .stderr(std::process::Stdio::inherit());
    let (child, line) = Daemon::spawn(cmd, common::Stop::Kill);
    assert!(
        line.contains("wss://") && line.contains("TLS 1.3 only"),
        "{line}"
    );
    let addr = yard_testkit::listening_addr(&line).unwrap().to_string();
    (child, addr)
}

/// `node --listen LISTEN` with a certificate, its key and the root.
fn tls_args<'a>(listen: &'a str, cert: &'a str, key: &'a str, ca: &'a str) -> Vec<&'a str> {
    vec![
        "node",
        "--listen",
        listen,
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-ca",
        ca,
    ]
}

fn client_config(ca: &Path) -> Arc<ClientConfig> {
    let ca = std::fs::read_to_string(ca).unwrap();
    yard_tls::config::client(&ca, None, yard_tls::ALPN_HTTP).unwrap()
}

async fn tls_connect(
    cfg: &Arc<ClientConfig>,
    addr: &str,
) -> yard_tls::tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(cfg.clone())
        .connect(yard_tls::config::server_name(addr).unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// `GET path` over TLS with `token`: status and body.
async fn https_get(cfg: &Arc<ClientConfig>, addr: &str, path: &str, token: &str) -> (u16, String) {
    let mut s = tls_connect(cfg, addr).await;
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.ok();
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, common::body_of(&answer))
}

async fn peers(cfg: &Arc<ClientConfig>, addr: &str, token: &str) -> Vec<Json> {
    let (code, body) = https_get(cfg, addr, "/v1/peers", token).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Whether the node at `addr` has a connected peer.
async fn linked(cfg: &Arc<ClientConfig>, addr: &str, token: &str) -> bool {
    peers(cfg, addr, token)
        .await
        .iter()
        .any(|p| p["state"] == "connected")
}

type Wss = tokio_tungstenite::WebSocketStream<yard_tls::tokio_rustls::client::TlsStream<TcpStream>>;

/// A WebSocket client over TLS, subscribed to `prefixes`.
async fn wss(cfg: &Arc<ClientConfig>, addr: &str, token: &str, prefixes: &[&str]) -> Wss {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://{addr}/v1/messages/json")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let stream = tls_connect(cfg, addr).await;
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    ws.send(Message::text(serde_json::to_string(prefixes).unwrap()))
        .await
        .unwrap();
    let ack = next(&mut ws).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ws
}

async fn next(ws: &mut Wss) -> Json {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

struct Bed {
    _tmp: common::TempDir,
    home: PathBuf,
    certs: PathBuf,
    token: String,
}

fn bed(tag: &str) -> Bed {
    let tmp = common::TempDir::new(tag);
    let home = tmp.join("home");
    let certs = tmp.join("certs");
    let made = yard_ok(&home, &["ca", "init"]);
    assert!(made.contains("fingerprint sha256:"), "{made}");
    for n in ["n1", "n2"] {
        let out = certs.to_string_lossy().into_owned();
        yard_ok(
            &home,
            &[
                "cert",
                "issue",
                &format!("node:{n}"),
                "--host",
                "127.0.0.1",
                "--out",
                &out,
            ],
        );
        std::fs::rename(
            certs.join(format!("node-{n}.crt")),
            certs.join(format!("{n}.crt")),
        )
        .unwrap();
        std::fs::rename(
            certs.join(format!("node-{n}.key")),
            certs.join(format!("{n}.key")),
        )
        .unwrap();
    }
    let token = yard_auth::Home::open_or_init(&home)
        .unwrap()
        .admin_token()
        .unwrap();
    Bed {
        _tmp: tmp,
        home,
        certs,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_link_over_mutual_tls_and_clients_reach_them_over_https_and_wss() {
    let b = bed("tls-mesh");
    let cfg = client_config(&b.certs.join("ca.crt"));
    let (_n1, a1) = tls_node(&b.home, &b.certs, "n1", &[]);
    let (_n2, a2) = tls_node(&b.home, &b.certs, "n2", &["--peer", &a1]);
    wait_until("n2 linked to n1 over TLS", Duration::from_secs(15), || {
        linked(&cfg, &a1, &b.token)
    })
    .await;
    // A message published at n1 reaches a subscriber of n2 across the TLS link.
    let mut sub = wss(&cfg, &a2, &b.token, &["/tls"]).await;
    let mut publisher = wss(&cfg, &a1, &b.token, &[]).await;
    let msg = common::data("/tls/a", &common::count(7));
    // Published until it arrives (the advert of n2's subscription may still be on its way),
    // for 10 s at most.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing crossed the TLS link"
        );
        publisher.send(Message::text(msg.clone())).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), next(&mut sub)).await {
            Ok(m) => break m,
            Err(_) => continue,
        }
    };
    assert_eq!(got["topic"], "/tls/a", "{got}");
    assert_eq!(got["data"], 7, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_refuses_plain_text_tls_1_2_and_certificates_of_another_authority() {
    let b = bed("tls-refuse");
    let (_n1, a1) = tls_node(&b.home, &b.certs, "n1", &[]);

    // Plain HTTP gets a 400 that says what to do.
    let head = format!("GET /v1/health HTTP/1.1\r\nHost: {a1}");
    let (code, answer) = common::raw_http(&a1, &head, b"").await;
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("TLS only: use https://"), "{answer}");

    // TLS 1.2: the handshake fails with a protocol-version alert (OpenSSL as the client).
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &a1, "-tls1_2"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("protocol version"), "{text}");
    // TLS 1.3 from the same client works, and the root verifies the server.
    let ca = b.certs.join("ca.crt").to_string_lossy().into_owned();
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &a1,
            "-tls1_3",
            "-CAfile",
            &ca,
            "-verify_return_error",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("TLSv1.3") && text.contains("Verify return code: 0 (ok)"),
        "{text}"
    );

    // A node whose certificate another authority issued: its link never comes up, and it says
    // why; the listener has no peer.
    let other = bed("tls-other");
    let (_stranger, s) = tls_node(&other.home, &other.certs, "n2", &["--peer", &a1]);
    let theirs = client_config(&other.certs.join("ca.crt"));
    wait_until(
        "the stranger's dial fails on the certificate",
        Duration::from_secs(15),
        || async {
            peers(&theirs, &s, &other.token).await.iter().any(|p| {
                p["state"] == "connecting"
                    && p["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("certificate"))
            })
        },
    )
    .await;
    let ours = client_config(&b.certs.join("ca.crt"));
    assert!(peers(&ours, &a1, &b.token).await.is_empty());
    // Each refusal is counted where the operator looks.
    let (code, metrics) = https_get(&ours, &a1, "/metrics", &b.token).await;
    assert_eq!(code, 200);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    };
    assert!(value("yard_tls_plain_refused_total") >= 1.0);
    // TLS 1.2, the stranger's dials: each a failed handshake.
    assert!(value("yard_tls_handshake_failures_total") >= 2.0);

    // A TLS peering connection without a certificate: closed before a byte of peering.
    let ca_pem = std::fs::read_to_string(b.certs.join("ca.crt")).unwrap();
    let anonymous = yard_tls::config::client(&ca_pem, None, yard_tls::ALPN_PEER).unwrap();
    let mut s = tls_connect(&anonymous, &a1).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the listener answers at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}: {:?}", &buf);

    // A plain node's dial: refused too (the listener speaks TLS only).
    let (_plain, p) =
        common::spawn_yard(&["node", "--listen", "127.0.0.1:0", "--peer", &a1], "warn");
    wait_until("the plain dial fails", Duration::from_secs(15), || async {
        let list: Vec<Json> =
            serde_json::from_str(&common::Node::get_from(&p, "/v1/peers").await).unwrap();
        list.iter()
            .any(|x| x["state"] == "connecting" && !x["last_error"].is_null())
    })
    .await;
    assert!(peers(&ours, &a1, &b.token).await.is_empty());
}

#[test]
fn plain_text_beside_tls_is_refused_beyond_loopback_and_half_a_tls_setting_is_named() {
    let b = bed("tls-config");
    let p = |f: &str| b.certs.join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (p("n1.crt"), p("n1.key"), p("ca.crt"));
    let run = |args: &[&str]| {
        let out = common::yard()
            .env("YARD_HOME", &b.home)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mut args = tls_args("0.0.0.0:0", &cert, &key, &ca);
    args.push("--tls-plain");
    let e = run(&args);
    assert!(e.contains("beyond loopback"), "{e}");
    let e = run(&["node", "--listen", "127.0.0.1:0", "--tls-cert", &cert]);
    assert!(e.contains("go together"), "{e}");
    let e = run(&["node", "--listen", "127.0.0.1:0", "--tls-plain"]);
    assert!(e.contains("TLS is off"), "{e}");
}

/// Issue 18: over mutual TLS a daemon's certificate authenticates a peer without the mesh key.
/// Two nodes of one root but different homes (so different mesh keys) link; the same two in
/// plain text are refused; an operator's certificate of the same root is not a peer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_certificate_replaces_the_mesh_key_and_an_operator_s_does_not() {
    let b = bed("tls-certified");
    let cfg = client_config(&b.certs.join("ca.crt"));
    let other_home = b.home.parent().unwrap().join("other-home");
    yard_ok(&other_home, &["token", "list"]);
    let key = |h: &Path| std::fs::read_to_string(h.join("mesh.key")).unwrap();
    assert_ne!(key(&b.home), key(&other_home), "two mesh keys");

    let (_n1, a1) = tls_node(&b.home, &b.certs, "n1", &[]);
    let (_n2, _) = tls_node(&other_home, &b.certs, "n2", &["--peer", &a1]);
    wait_until(
        "n2 (another mesh key) linked to n1 by its certificate",
        Duration::from_secs(15),
        || linked(&cfg, &a1, &b.token),
    )
    .await;

    // In plain text the mesh key is the only proof: refused.
    let plain = |home: &Path, extra: &[&str]| {
        let mut cmd = common::yard();
        cmd.env("YARD_HOME", home)
            .args(["node", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("YARD_LOG", "warn");
        let (d, line) = Daemon::spawn(cmd, common::Stop::Kill);
        (d, yard_testkit::listening_addr(&line).unwrap().to_string())
    };
    let (_p1, pa1) = plain(&b.home, &[]);
    let (_p2, _) = plain(&other_home, &["--peer", &pa1]);
    let refused = || async {
        let (code, body) = common::Node::get_as(&pa1, "/metrics", &b.token).await;
        code == 200
            && body.lines().any(|l| {
                l.starts_with("yard_mesh_refused_peers_total")
                    && l.split_whitespace().last() != Some("0")
            })
    };
    wait_until(
        "the plain peer with another key refused",
        Duration::from_secs(15),
        refused,
    )
    .await;
    let (code, body) = common::Node::get_as(&pa1, "/v1/peers", &b.token).await;
    assert_eq!(code, 200, "{body}");
    let plain_peers: Vec<Json> = serde_json::from_str(&body).unwrap();
    assert!(
        !plain_peers.iter().any(|p| p["state"] == "connected"),
        "{plain_peers:?}"
    );

    // An operator's certificate of the same root, as a node's: its peering is refused.
    yard_ok(
        &b.home,
        &[
            "cert",
            "issue",
            "operator:olga",
            "--host",
            "127.0.0.1",
            "--out",
            b.certs.to_str().unwrap(),
        ],
    );
    std::fs::rename(b.certs.join("operator-olga.crt"), b.certs.join("olga.crt")).unwrap();
    std::fs::rename(b.certs.join("operator-olga.key"), b.certs.join("olga.key")).unwrap();
    let (_n3, a3) = tls_node(&b.home, &b.certs, "n1", &[]);
    let (_o, _) = tls_node(&b.home, &b.certs, "olga", &["--peer", &a3]);
    let handshakes = || async {
        let (_, body) = https_get(&cfg, &a3, "/metrics", &b.token).await;
        body.lines()
            .find(|l| l.starts_with("yard_tls_handshake_failures_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            >= 1.0
    };
    wait_until(
        "the operator's peering refused",
        Duration::from_secs(15),
        handshakes,
    )
    .await;
    assert!(
        !linked(&cfg, &a3, &b.token).await,
        "an operator's certificate is not a peer's"
    );
}
