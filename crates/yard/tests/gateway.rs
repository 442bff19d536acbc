//! The WebSocket gateway of a real `yard node` process, driven over loopback.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn ack_is_broker_shaped_and_unique_per_client() {
    let node = Node::start(&[]);
    let (_a, ack_a) = client(&node, &["/x"]).await;
    let (_b, ack_b) = client(&node, &[]).await;
    let status = node.status().await;
    let id = status["endpoint"].as_str().unwrap();
    for ack in [&ack_a, &ack_b] {
        let keys: Vec<&String> = ack.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3);
        assert!(ack["endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id}-websocket-")));
        assert_eq!(ack["version"], env!("CARGO_PKG_VERSION"));
    }
    assert_ne!(ack_a["endpoint"], ack_b["endpoint"]);
}

#[tokio::test]
async fn publications_reach_matching_subscribers_once_and_never_the_sender() {
    let node = Node::start(&[]);
    let (mut foo, _) = client(&node, &["/foo"]).await;
    let (mut all, _) = client(&node, &[""]).await;
    let (mut other, _) = client(&node, &["/bar"]).await;
    let (mut publisher, _) = client(&node, &["/foo"]).await;
    publisher
        .send(Message::text(data("/foobar", &count(1))))
        .await
        .unwrap();
    // A binary frame carrying JSON is accepted too (zeek-websocket-rs sends those).
    publisher
        .send(Message::binary(data("/bar/1", &count(2)).into_bytes()))
        .await
        .unwrap();
    let m = next_text(&mut foo).await;
    assert_eq!(
        m,
        data("/foobar", &count(1)),
        "raw prefix match, exact output"
    );
    assert_eq!(next_json(&mut all).await["data"], 1);
    assert_eq!(next_json(&mut all).await["data"], 2);
    assert_eq!(next_json(&mut other).await["data"], 2);
    // The publisher subscribes to /foo but never gets its own /foobar back: the next thing it
    // sees is what someone else publishes.
    other
        .send(Message::text(data("/foo/x", &count(3))))
        .await
        .unwrap();
    assert_eq!(next_json(&mut publisher).await["data"], 3);
    assert_eq!(next_json(&mut foo).await["data"], 3);
}

#[tokio::test]
async fn bad_messages_get_precise_errors_and_the_connection_stays_usable() {
    let node = Node::start(&[]);
    let (mut sub, _) = client(&node, &["/ok"]).await;
    let (mut ws, _) = client(&node, &[]).await;
    let cases = [
        ("{not json", "malformed JSON"),
        ("[1,2]", "expected a JSON object"),
        (
            r#"{"topic":"/ok","@data-type":"phone","data":1}"#,
            "unknown @data-type \"phone\"",
        ),
        (
            r#"{"topic":"/ok","@data-type":"count","data":"seven"}"#,
            "count needs a non-negative integer, got a string",
        ),
        (
            r#"{"topic":"/ok","@data-type":"vector","data":[{"@data-type":"address","data":"999.1.1.1"}]}"#,
            "$.data[0].data",
        ),
        (r#"{"@data-type":"count","data":1}"#, "no topic"),
    ];
    for (i, (input, expect)) in cases.iter().enumerate() {
        ws.send(Message::text(*input)).await.unwrap();
        let e = next_json(&mut ws).await;
        assert_eq!(e["type"], "error");
        assert_eq!(e["code"], "deserialization_failed");
        let ctx = e["context"].as_str().unwrap();
        assert!(ctx.starts_with(&format!("input #{}:", i + 1)), "{ctx}");
        assert!(ctx.contains(expect), "{ctx} should mention {expect}");
    }
    ws.send(Message::text(data("<$>/local/data/statuses", &count(1))))
        .await
        .unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(e["code"], "invalid_topic_key");
    // Still usable: a good message goes through.
    ws.send(Message::text(data("/ok", &count(9))))
        .await
        .unwrap();
    assert_eq!(next_json(&mut sub).await["data"], 9);
    let status = node.status().await;
    assert_eq!(status["websocket"]["rejected_messages"], 7);
}

#[tokio::test]
async fn oversized_frames_are_refused_without_harming_others() {
    let node = Node::start(&["--max-message-size", "4096"]);
    let (mut sub, _) = client(&node, &["/t"]).await;
    let (mut big, _) = client(&node, &[]).await;
    let huge = data(
        "/t",
        &format!(
            "{{\"@data-type\":\"string\",\"data\":\"{}\"}}",
            "x".repeat(10_000)
        ),
    );
    big.send(Message::text(huge)).await.unwrap();
    let (code, texts) = until_close(&mut big).await;
    assert_eq!(code, 1009);
    let e: serde_json::Value = serde_json::from_str(&texts[0]).unwrap();
    assert_eq!(e["code"], "deserialization_failed");
    assert!(
        e["context"]
            .as_str()
            .unwrap()
            .contains("max_message_size = 4096"),
        "{e}"
    );
    let (mut publisher, _) = client(&node, &[]).await;
    publisher
        .send(Message::text(data("/t", &count(5))))
        .await
        .unwrap();
    assert_eq!(next_json(&mut sub).await["data"], 5);
}

#[tokio::test]
async fn a_handshake_that_is_not_an_array_is_refused() {
    let node = Node::start(&[]);
    for (handshake, expect) in [
        (r#"{"topics":["/a"]}"#, "subscriptions not an array"),
        (r#"["/a", 7]"#, "individual subscription not a string"),
        ("nope", "malformed JSON"),
    ] {
        let mut ws = open(&node, handshake).await;
        let (code, texts) = until_close(&mut ws).await;
        assert_eq!(code, 1008);
        let e: serde_json::Value = serde_json::from_str(&texts[0]).unwrap();
        assert_eq!(e["type"], "error");
        assert!(e["context"].as_str().unwrap().contains(expect), "{e}");
        assert!(texts.iter().all(|t| !t.contains("\"ack\"")), "never acked");
    }
}

#[tokio::test]
async fn other_paths_get_invalid_uri_or_404() {
    let node = Node::start(&[]);
    let url = format!("ws://{}/v1/other", node.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (code, texts) = until_close(&mut ws).await;
    assert_eq!(code, 1008);
    assert_eq!(
        texts[0],
        r#"{"type":"error","code":"invalid_uri","context":"Invalid URI - use /v1/messages/json"}"#
    );
    assert!(node.get("/nothing").await.contains("no such path"));
}

#[tokio::test]
async fn a_thousand_clients_vanishing_mid_handshake_leave_the_endpoint_healthy() {
    let node = Node::start(&[]);
    let (mut good, _) = client(&node, &["/steady"]).await;
    let (mut publisher, _) = client(&node, &[]).await;
    let rss_before = node.rss_kib();
    let mut next = 0u64;
    for round in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let addr = node.addr.clone();
            let url = node.url();
            tasks.push(tokio::spawn(async move {
                match i % 4 {
                    // TCP only, then gone.
                    0 => drop(tokio::net::TcpStream::connect(&addr).await.unwrap()),
                    // Half an HTTP upgrade request.
                    1 => {
                        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                        let _ = s
                            .write_all(
                                b"GET /v1/messages/json HTTP/1.1\r\nHost: x\r\nUpgrade: websock",
                            )
                            .await;
                    }
                    // A full WebSocket upgrade, then gone before the handshake.
                    2 => drop(tokio_tungstenite::connect_async(url).await.unwrap()),
                    // Half a handshake frame.
                    _ => {
                        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                        let mut tcp = ws.into_inner();
                        let _ = match &mut tcp {
                            tokio_tungstenite::MaybeTlsStream::Plain(s) => {
                                s.write_all(&[0x81, 0x85, 1, 2]).await
                            }
                            _ => Ok(()),
                        };
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // The well-behaved client keeps receiving everything, in order, meanwhile.
        for _ in 0..10 {
            publisher
                .send(Message::text(data("/steady", &count(next))))
                .await
                .unwrap();
            next += 1;
        }
        for expect in next - 10..next {
            assert_eq!(next_json(&mut good).await["data"], expect, "round {round}");
        }
    }
    wait_until(
        "vanished connections to be cleaned up",
        Duration::from_secs(15),
        || async { node.status().await["websocket"]["open"] == 2 },
    )
    .await;
    let grown = node.rss_kib().saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
}

#[tokio::test]
async fn a_slow_client_is_told_why_it_is_disconnected_and_others_get_everything() {
    let node = Node::start(&["--client-queue", "1024", "--overflow-policy", "disconnect"]);
    let (mut slow, _) = client(&node, &["/load"]).await;
    let (mut fast, _) = client(&node, &["/load"]).await;
    let (mut publisher, _) = client(&node, &[]).await;
    let payload = format!(
        "{{\"@data-type\":\"string\",\"data\":\"{}\"}}",
        "x".repeat(1024)
    );
    // The fast client keeps up (we read its copies before publishing more); the slow one reads
    // nothing, so once its socket buffers are full its 1024-message queue overflows.
    let mut published = 0;
    while published < 20_000 {
        for _ in 0..500 {
            publisher
                .feed(Message::text(data("/load", &payload)))
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        published += 500;
        for _ in 0..500 {
            assert_eq!(next_json(&mut fast).await["type"], "data-message");
        }
    }
    // The slow client read nothing so far; what it finds now ends with the reason, then 1008.
    let (code, texts) = until_close(&mut slow).await;
    assert_eq!(code, 1008);
    let last: serde_json::Value = serde_json::from_str(texts.last().unwrap()).unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["code"], "backpressure_overflow");
    assert!(
        last["context"].as_str().unwrap().contains("1024 messages"),
        "{last}"
    );
    assert!(node.metric("yard_overflow_disconnects_total").await >= 1.0);
    assert!(node.metric("yard_messages_dropped_total").await >= 1.0);
}

#[tokio::test]
async fn drop_oldest_keeps_a_slow_client_connected_with_the_newest_messages() {
    let node = Node::start(&["--client-queue", "16", "--overflow-policy", "drop_oldest"]);
    let (mut slow, _) = client(&node, &["/load"]).await;
    let (mut publisher, _) = client(&node, &[]).await;
    let payload = format!(
        "{{\"@data-type\":\"string\",\"data\":\"{}\"}}",
        "x".repeat(1024)
    );
    for _ in 0..20_000 {
        publisher
            .feed(Message::text(data("/load", &payload)))
            .await
            .unwrap();
    }
    publisher
        .send(Message::text(data("/load/last", &count(1))))
        .await
        .unwrap();
    wait_until("drops to be counted", Duration::from_secs(20), || async {
        node.metric("yard_messages_dropped_total").await > 0.0
    })
    .await;
    // Still connected; the newest message arrives after whatever survived.
    loop {
        let m = next_json(&mut slow).await;
        assert_eq!(m["type"], "data-message");
        if m["topic"] == "/load/last" {
            break;
        }
    }
    assert_eq!(node.metric("yard_overflow_disconnects_total").await, 0.0);
}

#[tokio::test]
async fn silent_clients_are_closed_and_answering_ones_are_kept() {
    let node = Node::start(&["--ping-interval", "100ms"]);
    let (silent, _) = client(&node, &[]).await;
    let (mut alive, _) = client(&node, &["/a"]).await;
    // `alive` reads (and so answers pings); `silent` does not read at all.
    let mut pings = 0;
    while pings < 8 {
        if let Some(Ok(Message::Ping(_))) = alive.next().await {
            pings += 1;
        }
    }
    wait_until(
        "the silent client to be closed",
        Duration::from_secs(10),
        || async { node.status().await["websocket"]["open"] == 1 },
    )
    .await;
    let raw = raw_until_eof(silent).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains(r#""code":"connection_timeout""#), "{text}");
    assert!(has_close_frame(&raw, 1011));
    let (mut publisher, _) = client(&node, &[]).await;
    publisher
        .send(Message::text(data("/a", &count(1))))
        .await
        .unwrap();
    assert_eq!(next_json(&mut alive).await["data"], 1);
}

#[tokio::test]
async fn status_and_metrics_describe_clients() {
    let node = Node::start(&[]);
    let (_a, _) = client(&node, &["/a", "/b"]).await;
    let s = node.status().await;
    assert_eq!(s["clients"].as_array().unwrap().len(), 1);
    assert_eq!(
        s["clients"][0]["subscriptions"],
        serde_json::json!(["/a", "/b"])
    );
    assert_eq!(s["subscriptions"], 2);
    assert!(s["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let metrics = node.get("/metrics").await;
    assert!(metrics.contains("# TYPE yard_messages_published_total counter"));
    assert!(metrics.contains("yard_client_queue_depth{client=\"1\",kind=\"websocket\"} 0"));
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_cleanly() {
    let mut node = Node::start(&[]);
    let (mut ws, _) = client(&node, &["/a"]).await;
    node.signal("TERM");
    let (code, _) = until_close(&mut ws).await;
    assert_eq!(code, 1001);
    let status = tokio::task::spawn_blocking(move || {
        let s = node.child.wait().unwrap();
        (s, node)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_client_that_never_sends_its_handshake_is_told_and_closed() {
    let dir = std::env::temp_dir().join(format!("yard-hs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("node.toml");
    std::fs::write(&cfg, "handshake_timeout = \"200ms\"\n").unwrap();
    let node = Node::start(&["--config", cfg.to_str().unwrap()]);
    let (mut ws, _) = tokio_tungstenite::connect_async(node.url()).await.unwrap();
    let (code, texts) = until_close(&mut ws).await;
    assert_eq!(code, 1008);
    let e: serde_json::Value = serde_json::from_str(&texts[0]).unwrap();
    assert_eq!(e["code"], "connection_timeout");
    assert!(
        e["context"]
            .as_str()
            .unwrap()
            .contains("no handshake within"),
        "{e}"
    );
    assert_eq!(node.status().await["websocket"]["handshake_failures"], 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_bad_application_name_is_refused_and_a_good_one_accepted() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let node = Node::start(&[]);
    let mut req = node.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Application-Name", "bad name!".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (code, texts) = until_close(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(
        texts[0].contains("invalid_application_name"),
        "{}",
        texts[0]
    );
    let mut req = node.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Application-Name", "zeek-client/1.5".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("[]")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "ack");
}

/// Issue 19: subscriptions change on a live connection. `subscribe` and `unsubscribe` take
/// effect before their confirmation comes back (so a publication sent after it is delivered,
/// or not), a prefix the policy refuses is refused with `forbidden` and changes nothing, bad
/// input gets a precise error, and the connection stays usable throughout.
#[tokio::test]
async fn subscriptions_change_on_a_live_connection_within_the_policy() {
    let node = Node::start(&[]);
    let (mut ws, _) = client(&node, &["/marker"]).await;
    let (mut publisher, _) = client(&node, &[]).await;
    let publish = |topic: &'static str, n: u64| Message::text(data(topic, &count(n)));

    // Not subscribed yet: /a is not delivered (the marker after it is).
    publisher.send(publish("/a/1", 1)).await.unwrap();
    publisher.send(publish("/marker", 2)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["topic"], "/marker");

    ws.send(Message::text(
        r#"{"type":"subscribe","id":1,"topics":["/a/","/b"]}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"{"type":"subscribed","id":1,"topics":["/a/","/b"]}"#
    );
    publisher.send(publish("/a/1", 3)).await.unwrap();
    publisher.send(publish("/bx", 4)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["data"], 3);
    assert_eq!(next_json(&mut ws).await["data"], 4);

    // Without an id, the confirmation has none.
    ws.send(Message::text(r#"{"type":"unsubscribe","topics":["/a/"]}"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"{"type":"unsubscribed","topics":["/a/"]}"#
    );
    publisher.send(publish("/a/2", 5)).await.unwrap();
    publisher.send(publish("/b", 6)).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await["data"],
        6,
        "/a/ is no longer delivered"
    );

    // The policy decides: an anonymous client may not subscribe to local events, and the
    // refused change leaves the rest as it was.
    ws.send(Message::text(
        r#"{"type":"subscribe","id":"s2","topics":["/c","<$>/local/data/statuses"]}"#,
    ))
    .await
    .unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{e}"
    );
    assert_eq!(e["id"], "s2");
    publisher.send(publish("/c", 7)).await.unwrap();
    publisher.send(publish("/b", 8)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["data"], 8, "/c was not added");

    // Bad input: precise errors, the connection kept.
    for (input, code, expect) in [
        (
            r#"{"type":"subscribe"}"#,
            "deserialization_failed",
            "subscribe needs topics",
        ),
        (
            r#"{"type":"subscribe","topics":"/x"}"#,
            "deserialization_failed",
            "topics must be an array",
        ),
        (
            r#"{"type":"unsubscribe","topics":["/x",3]}"#,
            "deserialization_failed",
            "element 1 is a number",
        ),
        (
            r#"{"type":"subscribe","topics":["<$>/store/"]}"#,
            "forbidden",
            "input #",
        ),
    ] {
        ws.send(Message::text(input)).await.unwrap();
        let e = next_json(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{input}: {e}"
        );
        assert!(
            e["context"].as_str().unwrap().contains(expect),
            "{input}: {e}"
        );
    }
    publisher.send(publish("/b", 9)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["data"], 9);
}

#[tokio::test]
async fn a_connection_can_ask_for_nanosecond_timestamps_and_others_keep_the_default() {
    let node = Node::start(&[]);
    let (mut ms, _) = client(&node, &["/ts"]).await;
    let url = format!("{}?timestamp_precision=ns", node.url());
    let (mut ns, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ns.send(Message::text(r#"["/ts"]"#)).await.unwrap();
    assert_eq!(next_json(&mut ns).await["type"], "ack");
    let (mut publisher, _) = client(&node, &[]).await;
    publisher
        .send(Message::text(
            r#"{"type":"data-message","topic":"/ts","@data-type":"timestamp","data":"2026-01-02T03:04:05.123456789"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ns).await["data"],
        "2026-01-02T03:04:05.123456789"
    );
    assert_eq!(next_json(&mut ms).await["data"], "2026-01-02T03:04:05.123");
    // A misspelt option is refused before the upgrade, not ignored.
    for bad in ["?timestamp_precision=ps", "?precision=ns"] {
        let err = tokio_tungstenite::connect_async(format!("{}{bad}", node.url()))
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 400),
            other => panic!("{bad}: {other}"),
        }
    }
}
