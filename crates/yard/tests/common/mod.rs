//! Helpers for multi-process tests: real `yard` processes on loopback port 0, killed on drop.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use yard_testkit::listening_addr;
#[allow(unused_imports)]
pub(crate) use yard_testkit::{wait_until, Daemon, Stop, TempDir};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) fn yard_bin() -> &'static str {
    env!("CARGO_BIN_EXE_yard")
}

/// The credentials home every process of these tests shares (made on first use, 0700).
pub(crate) fn home() -> std::path::PathBuf {
    static HOME: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("yard-home");
        yard_auth::Home::open_or_init(&dir).expect("test credentials home");
        dir
    })
    .clone()
}

/// A new token `name` of `role` in [`home`] (what `yard token create` prints).
pub(crate) fn create_token(name: &str, role: &str) -> String {
    let out = yard()
        .args(["token", "create", name, "--role", role])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The admin token of [`home`].
pub(crate) fn admin_token() -> String {
    yard_auth::Home::open_or_init(home())
        .unwrap()
        .admin_token()
        .unwrap()
}

/// `yard` as a command, with the tests' credentials home.
pub(crate) fn yard() -> Command {
    let mut c = Command::new(yard_bin());
    c.env("YARD_HOME", home()).env_remove("YARD_CREDENTIALS");
    c
}

/// Starts `yard ARGS…` (a daemon, SIGKILLed when dropped) with `YARD_LOG=log` and reads the
/// address it listens on from its first line.
pub(crate) fn spawn_yard(args: &[&str], log: &str) -> (Daemon, String) {
    spawn_yard_stopped(args, log, Stop::Kill)
}

/// [`spawn_yard`], stopped as `stop` says when dropped.
pub(crate) fn spawn_yard_stopped(args: &[&str], log: &str, stop: Stop) -> (Daemon, String) {
    let mut cmd = yard();
    cmd.args(args).env("YARD_LOG", log).stderr(Stdio::inherit());
    let (child, line) = Daemon::spawn(cmd, stop);
    let addr = listening_addr(&line)
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (child, addr)
}

/// Sends `head` (request line and headers, without the blank line), `Connection: close`, the
/// length and `body`; the status and the whole answer.
pub(crate) async fn raw_http(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// The body of a whole HTTP answer.
pub(crate) fn body_of(answer: &str) -> String {
    answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// A running `yard node`; killed (and reaped) when dropped.
pub(crate) struct Node {
    pub child: Daemon,
    pub addr: String,
}

impl Node {
    pub(crate) fn start(extra: &[&str]) -> Node {
        Node::start_at("127.0.0.1:0", extra)
    }

    pub(crate) fn start_at(listen: &str, extra: &[&str]) -> Node {
        let mut args = vec!["node", "--listen", listen];
        args.extend_from_slice(extra);
        let (child, addr) = spawn_yard(&args, "warn");
        Node { child, addr }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/v1/messages/json", self.addr)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the node process, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    pub(crate) fn signal(&self, sig: &str) {
        self.child.signal(sig);
    }

    pub(crate) async fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/v1/status/json").await).unwrap()
    }

    pub(crate) async fn get(&self, path: &str) -> String {
        Node::get_from(&self.addr, path).await
    }

    /// `GET path` from the node at `addr` as the tests' admin; returns the body.
    pub(crate) async fn get_from(addr: &str, path: &str) -> String {
        Node::get_as(addr, path, &admin_token()).await.1
    }

    /// `GET path` with `token`; the status and the body.
    pub(crate) async fn get_as(addr: &str, path: &str, token: &str) -> (u16, String) {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}");
        let (code, text) = raw_http(addr, &head, b"").await;
        (code, body_of(&text))
    }

    /// A metric's value from /metrics (unlabelled series).
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(' '))
                    .map(|v| v.parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no metric {name}"))
    }
}

/// Connects and sends the handshake; does not read the ack.
pub(crate) async fn open(node: &Node, handshake: &str) -> Ws {
    open_as(node, handshake, None).await
}

/// [`open`] with `Authorization: Bearer TOKEN` on the upgrade request.
pub(crate) async fn open_as(node: &Node, handshake: &str, token: Option<&str>) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = node.url().into_client_request().unwrap();
    if let Some(t) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .expect("connect");
    ws.send(Message::text(handshake)).await.unwrap();
    ws
}

/// Connects, subscribes and returns the socket and the ack.
pub(crate) async fn client(node: &Node, prefixes: &[&str]) -> (Ws, serde_json::Value) {
    client_as(node, prefixes, None).await
}

/// [`client`] with a credential; prefixes under `<$>/local/` need one.
pub(crate) async fn client_as(
    node: &Node,
    prefixes: &[&str],
    token: Option<&str>,
) -> (Ws, serde_json::Value) {
    let mut ws = open_as(node, &serde_json::to_string(prefixes).unwrap(), token).await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    (ws, ack)
}

/// The next text frame as JSON (pings and pongs skipped), within 10 s.
pub(crate) async fn next_json(ws: &mut Ws) -> serde_json::Value {
    let text = next_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub(crate) async fn next_text(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection ended")
            .expect("connection error");
        match m {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code and the text frames seen before it.
pub(crate) async fn until_close(ws: &mut Ws) -> (u16, Vec<String>) {
    let mut texts = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("timed out waiting for close");
        match m {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(Message::Close(f))) => {
                return (f.map(|f| u16::from(f.code)).unwrap_or(1005), texts)
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("connection error before close: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// Everything the server sent on a socket we never read, down to EOF, as raw bytes (reading it as
/// WebSocket would make the client answer old pings into a socket the server has closed).
pub(crate) async fn raw_until_eof(ws: Ws) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let MaybeTlsStream::Plain(mut tcp) = ws.into_inner() else {
        panic!("plain TCP expected")
    };
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut buf))
        .await
        .expect("EOF in time");
    buf
}

/// Whether `raw` holds a close frame with `code` (server frames are unmasked).
pub(crate) fn has_close_frame(raw: &[u8], code: u16) -> bool {
    let [hi, lo] = code.to_be_bytes();
    raw.windows(4)
        .any(|w| w[0] == 0x88 && w[1] >= 2 && w[1] < 126 && w[2] == hi && w[3] == lo)
}

pub(crate) fn data(topic: &str, value_json: &str) -> String {
    let inner = value_json
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .expect("value object");
    format!("{{\"type\":\"data-message\",\"topic\":\"{topic}\",{inner}}}")
}

pub(crate) fn count(n: u64) -> String {
    format!("{{\"@data-type\":\"count\",\"data\":{n}}}")
}
