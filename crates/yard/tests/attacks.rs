//! The trust issue's holes, each written as the attack (raw HTTP with the headers a browser or
//! a stranger sends, WebSocket clients), against real processes.

mod common;

use std::time::Duration;

use common::*;

/// A daemon and its data directory, both gone on drop (the daemon first: fields drop in order).
#[allow(dead_code)]
struct Proc(Daemon, TempDir);

async fn raw(addr: &str, head: &str, body: &str) -> (u16, String) {
    raw_http(addr, head, body.as_bytes()).await
}

fn center() -> (Proc, String) {
    // One directory (and audit log) per center: the tests run at the same time.
    let dir = TempDir::new("attack-center");
    let data = dir.arg("data");
    let (child, addr) = spawn_yard(
        &["center", "--listen", "127.0.0.1:0", "--data", &data],
        "warn",
    );
    (Proc(child, dir), addr)
}

const EXEC: &str = r#"{"op":"exec","argv":["sh","-c","id"],"all":true}"#;

/// Hole 4: a web page the operator opens POSTs a command as `text/plain` (no preflight), with
/// its own Origin; before, loopback without a token counted as allowed and the exec ran.
#[tokio::test]
async fn a_cross_site_post_cannot_run_a_command() {
    let (_c, addr) = center();
    let (code, text) = raw(
        &addr,
        &format!("POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain"),
        EXEC,
    )
    .await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("cross_origin"), "{text}");
    // Sec-Fetch-Site alone (a browser that sends no Origin) is refused too.
    let (code, _) = raw(
        &addr,
        &format!("POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/json"),
        EXEC,
    )
    .await;
    assert_eq!(code, 403);
    // Same origin but no credential: 401 saying what is expected.
    let (code, text) = raw(
        &addr,
        &format!("POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json"),
        EXEC,
    )
    .await;
    assert_eq!(code, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{text}"
    );
    // Even with the admin's credential, a form or text/plain body is not a command.
    let (code, text) = raw(
        &addr,
        &format!(
            "POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: text/plain",
            admin_token()
        ),
        EXEC,
    )
    .await;
    assert_eq!(code, 415, "{text}");
    // Nothing was started by any of them.
    let list = Node::get_from(&addr, "/v1/commands").await;
    assert_eq!(list.trim(), r#"{"commands":[]}"#, "{list}");
    // Every refusal is in the audit log, with the address it came from.
    let audit: serde_json::Value =
        serde_json::from_str(&Node::get_from(&addr, "/v1/audit?action=/v1/commands").await)
            .unwrap();
    let results: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["denied", "unauthenticated", "denied", "denied"],
        "{audit}"
    );
}

/// DNS rebinding: a page served from evil.example, whose name now points at 127.0.0.1, talks
/// to the daemon with `Host: evil.example` (same-origin to the browser).
#[tokio::test]
async fn a_rebound_host_name_is_refused() {
    let node = Node::start(&[]);
    let (code, text) = raw(
        &node.addr,
        "GET /v1/status/json HTTP/1.1\r\nHost: evil.example:9997",
        "",
    )
    .await;
    assert_eq!(code, 421, "{text}");
    let (code, _) = raw(
        &node.addr,
        &format!(
            "GET /v1/status/json HTTP/1.1\r\nHost: localhost:1\r\nAuthorization: Bearer {}",
            admin_token()
        ),
        "",
    )
    .await;
    assert_eq!(code, 200);
}

/// WebSocket upgrades check Origin: a page elsewhere cannot open the API with the operator's
/// browser (which would carry nothing but could publish as anonymous).
#[tokio::test]
async fn a_websocket_upgrade_from_another_origin_is_refused() {
    let node = Node::start(&[]);
    let head = format!(
        "GET /v1/messages/json HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        node.addr
    );
    let (code, text) = raw(&node.addr, &head, "").await;
    assert_eq!(code, 403, "{text}");
}

/// Hole 3: outputs and the system's state need a credential; the system's stores are not
/// readable by anonymous clients over the WebSocket either.
#[tokio::test]
async fn anonymous_callers_read_nothing_of_the_system() {
    let (_c, addr) = center();
    for path in [
        "/v1/commands/1",
        "/v1/topology",
        "/v1/nodes",
        "/metrics",
        "/v1/audit",
    ] {
        let (code, text) = raw(&addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}"), "").await;
        assert_eq!(code, 401, "{path}: {text}");
    }
    // The health probe stays open and says nothing else.
    let (code, text) = raw(
        &addr,
        &format!("GET /v1/health HTTP/1.1\r\nHost: {addr}"),
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert!(text.ends_with(r#"{"status":"ok"}"#), "{text}");
    // A viewer reads the state but not the audit log, and may not run anything.
    let viewer = create_token("attack-viewer", "viewer");
    assert_eq!(Node::get_as(&addr, "/v1/topology", &viewer).await.0, 200);
    let (code, body) = Node::get_as(&addr, "/v1/audit", &viewer).await;
    assert_eq!(code, 403);
    assert!(
        body.contains("admin"),
        "names the missing permission: {body}"
    );
    let (code, text) = raw(
        &addr,
        &format!("POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {viewer}\r\nContent-Type: application/json"),
        EXEC,
    )
    .await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("command"), "{text}");
}

#[tokio::test]
async fn anonymous_websocket_clients_touch_no_store() {
    let node = Node::start(&["--master", "ops-center=memory", "--master", "users=memory"]);
    let (mut ws, _) = client(&node, &[]).await;
    for store in ["users", "ops-center"] {
        let op = serde_json::json!({"type": "store", "id": 1, "store": store, "op": "get",
            "key": {"@data-type": "string", "data": "k"}});
        use futures_util::SinkExt;
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            op.to_string(),
        ))
        .await
        .unwrap();
        let e = next_json(&mut ws).await;
        assert_eq!(e["code"], "forbidden", "{store}: {e}");
    }
    // An app token reads and writes user stores, never the system's.
    let app = create_token("attack-app", "app");
    let (mut ws, _) = client_as(&node, &[], Some(&app)).await;
    for (store, code) in [("users", None), ("ops-center", Some("forbidden"))] {
        let e = store_put(&mut ws, store).await;
        match code {
            None => assert_ne!(e["type"], "error", "{e}"),
            Some(c) => assert_eq!(e["code"], c, "{e}"),
        }
    }
}

/// Puts `k` = 1 into `store` over a WebSocket client; its answer (or error frame).
async fn store_put(ws: &mut Ws, store: &str) -> serde_json::Value {
    use futures_util::SinkExt;
    let op = serde_json::json!({"type": "store", "id": 2, "store": store, "op": "put",
        "key": {"@data-type": "string", "data": "k"}, "value": {"@data-type": "count", "data": 1}});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        op.to_string(),
    ))
    .await
    .unwrap();
    next_json(ws).await
}

/// A browser's WebSocket cannot send `Authorization`: it offers the credential as the
/// subprotocol `yard.bearer.<base64url>` beside `yard.v1`. The credential counts as if it were
/// the header, the server selects `yard.v1` (never echoing the credential), and a bad one gets
/// the same 401 as a bad header.
#[tokio::test]
async fn a_browser_websocket_credential_rides_in_the_subprotocol_and_is_never_echoed() {
    use base64::Engine;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let node = Node::start(&["--master", "users=memory"]);
    let app = create_token("browser-app", "app");
    let offer = |token: &str| {
        let mut request = node.url().into_client_request().unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        request.headers_mut().insert(
            "sec-websocket-protocol",
            format!("yard.v1, yard.bearer.{b64}").parse().unwrap(),
        );
        request
    };
    let (mut ws, answer) = tokio_tungstenite::connect_async(offer(&app))
        .await
        .expect("the credential in the subprotocol is accepted");
    assert_eq!(
        answer.headers().get("sec-websocket-protocol").unwrap(),
        "yard.v1"
    );
    ws.send(tokio_tungstenite::tungstenite::Message::text("[]"))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    let e = store_put(&mut ws, "users").await;
    assert_ne!(
        e["type"], "error",
        "the app's credential writes a user store: {e}"
    );
    let forged = format!("{}x", app);
    match tokio_tungstenite::connect_async(offer(&forged)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a forged credential in the subprotocol must get 401, got {other:?}"),
    }
}

/// Repeated bad credentials from one address are slowed down (and each is audited).
#[tokio::test]
async fn guessing_tokens_gets_slower() {
    let node = Node::start(&[]);
    let head = format!(
        "GET /v1/status/json HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer yard_000000000000_guess",
        node.addr
    );
    for _ in 0..3 {
        assert_eq!(raw(&node.addr, &head, "").await.0, 401);
    }
    let started = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(raw(&node.addr, &head, "").await.0, 401);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the 4th and 5th failures wait (100 ms, 200 ms): {:?}",
        started.elapsed()
    );
    assert!(
        node.metric("yard_audit_records_total{result=\"unauthenticated\"}")
            .await
            >= 5.0
    );
}

/// Hole 7: an authorised `POST /v1/stores` created an SQLite file at any path, and a deploy
/// `path` could be absolute or climb out with `..`.
#[tokio::test]
async fn store_files_and_deployments_stay_in_their_directories() {
    let node = Node::start(&[]);
    let evil = std::env::temp_dir().join(format!("yard-evil-{}.db", std::process::id()));
    let post = |body: String| {
        let addr = node.addr.clone();
        async move {
            raw(
                &addr,
                &format!(
                    "POST /v1/stores HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json",
                    admin_token()
                ),
                &body,
            )
            .await
        }
    };
    for backend in [
        format!("sqlite:{}", evil.display()),
        "sqlite:../up.db".into(),
    ] {
        let body = serde_json::json!({"name": "evil", "role": "master", "backend": backend});
        let (code, text) = post(body.to_string()).await;
        assert_eq!(code, 400, "{backend}: {text}");
        assert!(text.contains("relative to the store directory"), "{text}");
    }
    assert!(!evil.exists());
    let name = format!("attack-{}.db", std::process::id());
    let body =
        serde_json::json!({"name": "fine", "role": "master", "backend": format!("sqlite:{name}")});
    let (code, text) = post(body.to_string()).await;
    assert_eq!(code, 201, "{text}");
    let file = home().join("stores").join(&name);
    assert!(file.exists(), "{}", file.display());
    drop(node);
    let _ = std::fs::remove_file(&file);

    let (_c, addr) = center();
    for path in ["/etc/cron.d/yard", "../../escape", "a/../../b"] {
        let body = serde_json::json!({"op": "deploy", "sha256": "0".repeat(64), "name": "app",
            "size": 1, "path": path, "all": true});
        let (code, text) = raw(
            &addr,
            &format!(
                "POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json",
                admin_token()
            ),
            &body.to_string(),
        )
        .await;
        assert_eq!(code, 400, "{path}: {text}");
        assert!(text.contains("without `..`"), "{text}");
    }
}

/// The routes this issue added: `/v1/health` is open (it says nothing but "ok"), `/v1/audit` is
/// the admin's; a page elsewhere reaches neither, whatever it carries.
#[tokio::test]
async fn the_health_and_audit_routes_answer_their_own_origin_only() {
    let node = Node::start(&[]);
    let addr = &node.addr;
    let (code, text) = raw(
        addr,
        &format!("GET /v1/health HTTP/1.1\r\nHost: {addr}"),
        "",
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let (code, _) = raw(addr, &format!("GET /v1/audit HTTP/1.1\r\nHost: {addr}"), "").await;
    assert_eq!(code, 401);
    for path in ["/v1/health", "/v1/audit"] {
        let (code, text) = raw(
            addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nAuthorization: Bearer {}",
                admin_token()
            ),
            "",
        )
        .await;
        assert_eq!(code, 403, "{path}: {text}");
        assert!(text.contains("cross_origin"), "{text}");
    }
    let (code, text) = raw(
        addr,
        &format!(
            "GET /v1/audit HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}",
            admin_token()
        ),
        "",
    )
    .await;
    assert_eq!(code, 200, "{text}");
    assert!(
        body_of(&text).contains("its own origin only"),
        "the refusals are in the log: {text}"
    );
}
