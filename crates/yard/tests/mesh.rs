//! Multi-process meshes: real `yard node` processes on loopback, peered over the native protocol,
//! driven through their WebSocket APIs and the CLI.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Starts `n` nodes named n0…; node `b` dials node `a` for every edge `(a, b)` with `a < b`.
fn mesh(n: usize, edges: &[(usize, usize)], extra: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let id = format!("n{i}");
        let mut args = vec!["--id".to_string(), id];
        for &(a, b) in edges {
            let (a, b) = (a.min(b), a.max(b));
            if b == i {
                args.push("--peer".into());
                args.push(nodes[a].addr.clone());
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(Node::start(&refs));
    }
    nodes
}

fn labeled(metrics: &str, name: &str, label: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        (rest.starts_with('{') && rest.contains(label))
            .then(|| rest.rsplit(' ').next().unwrap().parse().unwrap())
    })
}

fn pair(tag: &str, i: u64) -> String {
    format!(
        "{{\"@data-type\":\"vector\",\"data\":[{{\"@data-type\":\"string\",\"data\":\"{tag}\"}},{}]}}",
        count(i)
    )
}

/// Reads data messages until `done` says stop; returns (topic, data) pairs.
async fn collect_until(
    ws: &mut Ws,
    mut done: impl FnMut(&[(String, serde_json::Value)]) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let mut got = Vec::new();
    while !done(&got) {
        let v = next_json(ws).await;
        if v["type"] == "data-message" {
            got.push((v["topic"].as_str().unwrap().to_string(), v["data"].clone()));
        }
    }
    got
}

/// Publishes probes from every publisher until every subscriber has seen one from each.
async fn converge(pubs: &mut [Ws], subs: &mut [Ws], topic: &str) {
    let n = pubs.len();
    for s in subs.iter_mut() {
        let mut seen = vec![false; n];
        let mut rounds = 0;
        while !seen.iter().all(|s| *s) {
            rounds += 1;
            assert!(rounds < 500, "the mesh did not converge");
            for (i, p) in pubs.iter_mut().enumerate() {
                p.send(Message::text(data(topic, &pair(&format!("probe{i}"), 0))))
                    .await
                    .unwrap();
            }
            // Read everything that arrives within 50 ms of the last message.
            while let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_millis(50), s.next()).await
            {
                let Message::Text(t) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if let Some(tag) = v["data"][0]["data"].as_str() {
                    if let Some(i) = tag.strip_prefix("probe") {
                        seen[i.parse::<usize>().unwrap()] = true;
                    }
                }
            }
        }
    }
}

/// Two publishers (first and last node) and a subscriber on every node: each subscriber gets
/// each publisher's messages exactly once, in order.
async fn exactly_once(n: usize, edges: &[(usize, usize)]) {
    const N: u64 = 300;
    let nodes = mesh(n, edges, &[]);
    let mut subs = Vec::new();
    for node in &nodes {
        subs.push(client(node, &["/m/"]).await.0);
    }
    let mut pubs = vec![
        client(&nodes[0], &[]).await.0,
        client(&nodes[n - 1], &[]).await.0,
    ];
    converge(&mut pubs, &mut subs, "/m/probe").await;
    for (p, tag) in pubs.iter_mut().zip(["a", "b"]) {
        for i in 1..=N {
            p.feed(Message::text(data("/m/data", &pair(tag, i))))
                .await
                .unwrap();
        }
        p.feed(Message::text(data("/m/end", &pair(tag, 0))))
            .await
            .unwrap();
        p.flush().await.unwrap();
    }
    for (k, s) in subs.iter_mut().enumerate() {
        let got = collect_until(s, |got| {
            got.iter().filter(|(t, _)| t == "/m/end").count() == 2
        })
        .await;
        let mut per: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (_, d) in got.iter().filter(|(t, _)| t == "/m/data") {
            per.entry(d[0]["data"].as_str().unwrap().to_string())
                .or_default()
                .push(d[1]["data"].as_u64().unwrap());
        }
        for tag in ["a", "b"] {
            assert_eq!(
                per.get(tag).cloned().unwrap_or_default(),
                (1..=N).collect::<Vec<_>>(),
                "subscriber on n{k} from publisher {tag} in topology {edges:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_of_four() {
    exactly_once(4, &[(0, 1), (1, 2), (2, 3)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_of_five() {
    exactly_once(5, &[(0, 1), (0, 2), (0, 3), (0, 4)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_of_five() {
    exactly_once(5, &[(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_of_four() {
    exactly_once(4, &[(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_nodes_with_cycles() {
    // A fixed "random" connected graph: a spanning tree plus chords that make three cycles.
    let edges = [
        (0, 1),
        (1, 2),
        (1, 3),
        (3, 4),
        (2, 5),
        (5, 6),
        (0, 3),
        (2, 4),
        (4, 6),
    ];
    exactly_once(7, &edges).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_middle_node_reroutes_and_redial_restores() {
    // A ring a-b-c-d-a, where a and c dial b and d: losing b leaves the path through d.
    let b = Node::start(&["--id", "b"]);
    let d = Node::start(&["--id", "d"]);
    let a = Node::start(&["--id", "a", "--peer", &b.addr, "--peer", &d.addr]);
    let c = Node::start(&["--id", "c", "--peer", &b.addr, "--peer", &d.addr]);
    let (mut statuses, _) = client_as(&a, &["<$>/local/data/statuses"], Some(&admin_token())).await;
    let mut subs = vec![client(&c, &["/k"]).await.0];
    let mut pubs = vec![client(&a, &[]).await.0];
    converge(&mut pubs, &mut subs, "/k/probe").await;

    let b_addr = b.addr.clone();
    b.signal("KILL");
    drop(b);
    let mut codes = Vec::new();
    while !(codes.contains(&"peer_lost".to_string())
        && codes.contains(&"endpoint_unreachable".to_string()))
    {
        let v = next_json(&mut statuses).await;
        let item = &v["data"];
        if item[2]["data"][0]["data"] == "b" {
            codes.push(item[1]["data"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(codes[0], "peer_lost", "{codes:?}");
    // Traffic continues through d.
    for i in 1..=100 {
        pubs[0]
            .send(Message::text(data("/k/after", &count(i))))
            .await
            .unwrap();
    }
    let got = collect_until(&mut subs[0], |g| {
        g.iter().filter(|(t, _)| t == "/k/after").count() == 100
    })
    .await;
    let after: Vec<u64> = got
        .iter()
        .filter(|(t, _)| t == "/k/after")
        .map(|(_, d)| d.as_u64().unwrap())
        .collect();
    assert_eq!(after, (1..=100).collect::<Vec<_>>());

    // b comes back at the same address: a and c re-dial it.
    let b = Node::start_at(&b_addr, &["--id", "b"]);
    wait_until("a and c to re-dial b", Duration::from_secs(30), || async {
        let peers = |n: &Node| {
            let n = n.addr.clone();
            async move {
                let body = Node::get_from(&n, "/v1/peers").await;
                body.contains("\"id\":\"b\"") && body.contains("\"state\":\"connected\"")
            }
        };
        peers(&a).await && peers(&c).await
    })
    .await;
    let v = b.status().await;
    assert_eq!(v["peers"].as_array().unwrap().len(), 2, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_unsubscribe_stops_traffic_across_the_mesh() {
    let nodes = mesh(3, &[(0, 1), (1, 2)], &[]);
    let (sub, _) = client(&nodes[2], &["/u"]).await;
    let mut subs = vec![sub];
    let mut pubs = vec![client(&nodes[0], &[]).await.0];
    converge(&mut pubs, &mut subs, "/u/probe").await;
    let forwarded = |n: &Node| {
        let addr = n.addr.clone();
        async move {
            let m = Node::get_from(&addr, "/metrics").await;
            labeled(&m, "yard_peer_sent_total", "").unwrap_or(0.0)
        }
    };
    assert!(forwarded(&nodes[0]).await > 0.0);
    // The only subscriber of /u goes away: its endpoint retracts the prefix mesh-wide.
    drop(subs);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        let before = forwarded(&nodes[0]).await;
        for i in 0..10 {
            pubs[0]
                .send(Message::text(data("/u/x", &count(i))))
                .await
                .unwrap();
        }
        // A status request is handled after the publications before it.
        nodes[0].status().await;
        if forwarded(&nodes[0]).await == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retraction never reached n0"
        );
    }
    let (sent0, recv2) = (
        forwarded(&nodes[0]).await,
        nodes[2].status().await["mesh"]["from_peers"]
            .as_u64()
            .unwrap(),
    );
    for i in 0..500 {
        pubs[0]
            .feed(Message::text(data("/u/x", &count(i))))
            .await
            .unwrap();
    }
    pubs[0].flush().await.unwrap();
    nodes[0].status().await;
    assert_eq!(
        forwarded(&nodes[0]).await,
        sent0,
        "no frame leaves n0 for /u"
    );
    assert_eq!(
        nodes[2].status().await["mesh"]["from_peers"]
            .as_u64()
            .unwrap(),
        recv2,
        "no frame reaches n2"
    );
}

async fn raw_peer_exchange(addr: &str, send: &[u8]) -> (Vec<u8>, Duration) {
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(send).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("the endpoint closes the connection instead of hanging")
        .unwrap();
    (buf, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_mismatch_and_garbage_get_clear_errors_and_the_endpoint_keeps_serving() {
    let node = Node::start(&["--id", "victim"]);
    let (mut errors, _) = client_as(&node, &["<$>/local/data/errors"], Some(&admin_token())).await;

    let (reply, took) = raw_peer_exchange(&node.addr, b"YARD\x07\x09").await;
    assert_eq!(&reply[..6], b"YARD\x02\x02", "our preamble first");
    let text = String::from_utf8_lossy(&reply[6..]);
    assert!(
        text.contains("peer_incompatible") && text.contains("7..=9"),
        "{text}"
    );
    assert!(took < Duration::from_secs(2), "fails fast: {took:?}");

    let (reply, _) = raw_peer_exchange(&node.addr, b"\x00\x01garbage garbage\r\n").await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("wrong_magic_number"), "{text}");

    for expected in ["peer_incompatible", "wrong_magic_number"] {
        let v = next_json(&mut errors).await;
        assert_eq!(v["data"][1]["data"], expected, "{v}");
    }

    // A yard endpoint dialing a stranger reports why, without spinning.
    let stranger = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stranger_addr = stranger.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = stranger.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    let out = common::yard()
        .args(["peer", "-e", &node.addr, &stranger_addr])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("not a yard endpoint"), "{stdout}");

    // Still serving: pub/sub through the same port works.
    let (mut sub, _) = client(&node, &["/still"]).await;
    let (mut publ, _) = client(&node, &[]).await;
    publ.send(Message::text(data("/still/here", &count(1))))
        .await
        .unwrap();
    assert_eq!(next_json(&mut sub).await["topic"], "/still/here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_never_stalls_the_others() {
    let hub = Node::start(&["--id", "hub", "--peer-queue", "500"]);
    let healthy = Node::start(&["--id", "healthy", "--peer", &hub.addr]);
    let frozen = Node::start(&["--id", "frozen", "--peer", &hub.addr]);
    let (mut errors, _) = client_as(&hub, &["<$>/local/data/errors"], Some(&admin_token())).await;
    let mut subs = vec![
        client(&healthy, &["/f"]).await.0,
        client(&frozen, &["/f"]).await.0,
    ];
    let mut pubs = vec![client(&hub, &[]).await.0];
    converge(&mut pubs, &mut subs, "/f/probe").await;
    let mut healthy_sub = subs.remove(0);
    frozen.signal("STOP");

    let payload = format!(
        "{{\"@data-type\":\"string\",\"data\":\"{}\"}}",
        "x".repeat(1000)
    );
    let mut published = 0u64;
    let mut received = 0u64;
    let dropped = |m: &str| labeled(m, "yard_peer_dropped_total", "peer=\"frozen\"").unwrap_or(0.0);
    loop {
        // A burst, then the healthy subscriber must get all of it: delivery never stalls.
        for _ in 0..500 {
            published += 1;
            pubs[0]
                .feed(Message::text(data("/f/load", &payload)))
                .await
                .unwrap();
        }
        pubs[0].flush().await.unwrap();
        while received < published {
            let v = next_json(&mut healthy_sub).await;
            if v["topic"] == "/f/load" {
                received += 1;
            }
        }
        if dropped(&hub.get("/metrics").await) > 0.0 {
            break;
        }
        assert!(
            published < 200_000,
            "the frozen peer's queue never overflowed"
        );
    }
    let v = next_json(&mut errors).await;
    assert_eq!(v["data"][1]["data"], "backpressure_overflow", "{v}");
    let text = v.to_string();
    assert!(text.contains("frozen"), "the error names the peer: {text}");
    frozen.signal("CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_logs_and_the_peers_verbs_across_the_mesh() {
    let dir = std::env::temp_dir().join(format!("yard-mesh-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a = Node::start(&["--id", "a", "--log-dir", dir.to_str().unwrap()]);
    let b = Node::start(&["--id", "b", "--peer", &a.addr]);
    let c = Node::start(&["--id", "c", "--peer", &b.addr]);
    let yard = |args: &[&str]| common::yard().args(args).output().unwrap();

    // A responder on a (a WebSocket client answering with the reply envelope).
    let (mut responder, _) = client(&a, &["/svc/double"]).await;
    tokio::spawn(async move {
        while let Some(Ok(Message::Text(t))) = responder.next().await {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            let Some(to) = v["reply-to"].as_str() else {
                continue;
            };
            let n = v["data"].as_u64().unwrap();
            let reply = serde_json::json!({"type": "reply", "reply-to": to,
                "@data-type": "count", "data": n * 2});
            responder
                .send(Message::text(reply.to_string()))
                .await
                .unwrap();
        }
    });
    let mut answered = None;
    wait_until(
        "the service to be reachable from c",
        Duration::from_secs(10),
        || {
            let out = yard(&["request", "-e", &c.addr, "/svc/double", "21"]);
            let ok = out.status.success();
            answered = Some(out);
            async move { ok }
        },
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&answered.unwrap().stdout).trim(),
        "42"
    );
    let out = yard(&["request", "-e", &c.addr, "/svc/nobody", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_path_to_peer"));

    // Remote logging: a record written at c lands in a's directory.
    let out = yard(&["log", "-e", &c.addr, "deploys", "\"rolled out\"", "7"]);
    assert!(out.status.success(), "{out:?}");
    let file = dir.join("deploys.log");
    wait_until("the record on disk", Duration::from_secs(10), || {
        let exists = std::fs::read_to_string(&file).is_ok_and(|t| t.contains("rolled out"));
        async move { exists }
    })
    .await;
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["origin"], "c");
    assert_eq!(line["stream"], "deploys");
    assert_eq!(line["data"][1]["data"], 7);
    assert!(!yard(&["log", "-e", &c.addr, "../etc", "1"])
        .status
        .success());

    // The peers verbs.
    let out = yard(&["peers", "-e", &b.addr]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("outbound") && table.contains("inbound"),
        "{table}"
    );
    assert_eq!(table.matches("connected").count(), 2, "{table}");
    assert!(yard(&["unpeer", "-e", &c.addr, &b.addr]).status.success());
    let out = yard(&["peers", "-e", &c.addr]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no peers"));
    let out = yard(&["unpeer", "-e", &c.addr, &b.addr]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown peer"));
    let out = yard(&["peer", "-e", &c.addr, &a.addr]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("peered with"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Holes 2 and 3 of the trust issue, as the attack: an anonymous WebSocket client subscribed
/// to control traffic (`<$>/store/` replication, `<$>/ops/` requests with their reply
/// addresses) and answered requests it was never given. Now it sees none of that traffic,
/// whatever prefix it picks, and a forged answer is refused, counted, and never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_sees_no_control_traffic_and_cannot_forge_answers() {
    let master = Node::start(&["--id", "m", "--master", "users=memory"]);
    let clone = Node::start(&["--id", "c", "--clone", "users", "--peer", &master.addr]);
    // Control prefixes are refused to a principal without the control grant, by name…
    for prefix in ["<$>/store/", "<$>/reply/", "<$>/ops/"] {
        let mut refused = open(&clone, &serde_json::to_string(&[prefix]).unwrap()).await;
        let err = next_json(&mut refused).await;
        assert_eq!(err["code"], "forbidden", "{prefix}: {err}");
    }
    // …and withheld from a subscription to everything.
    let (mut spy, _) = client(&clone, &[""]).await;
    let (mut local, _) = client(&clone, &["/app/"]).await;
    let yard = |args: &[&str]| common::yard().args(args).output().unwrap();
    // Replication traffic flows between master and clone while the spy listens.
    wait_until(
        "the clone to follow the master",
        Duration::from_secs(10),
        || {
            let out = yard(&["store", "-e", &master.addr, "put", "users", "alice", "42"]);
            let got = yard(&["store", "-e", &clone.addr, "get", "users", "alice"]);
            let ok = out.status.success() && String::from_utf8_lossy(&got.stdout).trim() == "42";
            async move { ok }
        },
    )
    .await;
    // A user publication after it: the spy's first frame, with nothing reserved before it.
    local
        .send(Message::text(data("/app/marker", &count(1))))
        .await
        .unwrap();
    let first = next_json(&mut spy).await;
    assert_eq!(
        first["topic"], "/app/marker",
        "no control traffic before it: {first}"
    );

    // A forged answer to a guessed reply address is refused and counted.
    let forged = serde_json::json!({"type": "reply", "reply-to": "<$>/reply/m/1",
        "@data-type": "count", "data": 1});
    spy.send(Message::text(forged.to_string())).await.unwrap();
    let err = next_json(&mut spy).await;
    assert_eq!(err["type"], "error", "{err}");
    assert!(
        err["context"]
            .as_str()
            .unwrap_or("")
            .contains("not the reply address"),
        "{err}"
    );
    assert_eq!(clone.metric("yard_forged_replies_total").await, 1.0);
}

/// Issue 19: a responder can answer with a failure. Across two nodes, the requester gets
/// `request_failed` with the responder's code and context (not a timeout, not a value); a
/// failure code that is not one is refused, and a failure to a request the client was never
/// given is refused and counted as a forged reply, as a forged answer is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_s_failure_reaches_the_requester_across_the_mesh() {
    let a = Node::start(&["--id", "a"]);
    let b = Node::start(&["--id", "b", "--peer", &a.addr]);
    let (mut responder, _) = client(&a, &["/svc/parse"]).await;
    let (mut requester, _) = client(&b, &[]).await;
    let ask = |id: u64, data: &str| {
        Message::text(
            serde_json::json!({"type": "request", "id": id, "topic": "/svc/parse",
                "timeout": "5s", "@data-type": "string", "data": data})
            .to_string(),
        )
    };
    // Once the responder's subscription has reached b, a request arrives at a.
    let mut asked = 0;
    let request = loop {
        asked += 1;
        requester.send(ask(asked, "x")).await.unwrap();
        let m = tokio::time::timeout(Duration::from_millis(500), responder.next()).await;
        if let Ok(Some(Ok(Message::Text(t)))) = m {
            break serde_json::from_str::<serde_json::Value>(&t).unwrap();
        }
        let e = next_json(&mut requester).await;
        assert_eq!(e["code"], "no_path_to_peer", "{e}");
        assert!(asked < 40, "the responder never became reachable from b");
    };
    let to = request["reply-to"].as_str().unwrap().to_string();

    // A code that is not one is refused (and does not spend the request).
    let bad = serde_json::json!({"type": "reply-error", "reply-to": &to, "code": "Bad Code!"});
    responder
        .send(Message::text(bad.to_string()))
        .await
        .unwrap();
    let e = next_json(&mut responder).await;
    assert_eq!(e["code"], "invalid_message", "{e}");
    assert!(
        e["context"]
            .as_str()
            .unwrap()
            .contains("not a failure code"),
        "{e}"
    );

    let fail = serde_json::json!({"type": "reply-error", "reply-to": &to,
        "code": "bad_input", "context": "x is not a number"});
    responder
        .send(Message::text(fail.to_string()))
        .await
        .unwrap();
    let e = next_json(&mut requester).await;
    assert_eq!(
        e,
        serde_json::json!({"type": "error", "code": "request_failed",
            "context": "x is not a number", "id": asked, "failure": "bad_input"}),
    );

    // `yard request` says so, with the responder's code.
    let mut cli_responder = client(&a, &["/svc/strict"]).await.0;
    tokio::spawn(async move {
        while let Some(Ok(Message::Text(t))) = cli_responder.next().await {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if let Some(to) = v["reply-to"].as_str() {
                let f = serde_json::json!({"type": "reply-error", "reply-to": to,
                    "code": "too_small", "context": "at least 10"});
                cli_responder
                    .send(Message::text(f.to_string()))
                    .await
                    .unwrap();
            }
        }
    });
    let mut out = None;
    wait_until(
        "a failure from the CLI's request",
        Duration::from_secs(10),
        || {
            let o = common::yard()
                .args(["request", "-e", &b.addr, "/svc/strict", "3"])
                .output()
                .unwrap();
            let failed = String::from_utf8_lossy(&o.stderr).contains("request_failed");
            out = Some(o);
            async move { failed }
        },
    )
    .await;
    let o = out.unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("request_failed (too_small): at least 10"),
        "{o:?}"
    );

    // The same request cannot be failed (or answered) twice, nor one never given.
    for forged in [&to, "<$>/reply/b/1"] {
        let f = serde_json::json!({"type": "reply-error", "reply-to": forged, "code": "x"});
        responder.send(Message::text(f.to_string())).await.unwrap();
        let e = next_json(&mut responder).await;
        assert!(
            e["context"]
                .as_str()
                .unwrap()
                .contains("not the reply address"),
            "{e}"
        );
    }
    assert_eq!(a.metric("yard_forged_replies_total").await, 2.0);
}
