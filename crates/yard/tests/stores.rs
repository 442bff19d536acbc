//! Replicated stores across real `yard node` processes: a master and a clone followed over HTTP,
//! WebSocket and the CLI; kill -9 of a SQLite master under load; a partition healed; backups
//! taken under load, restored, and refused when damaged.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{admin_token, client_as, next_json, wait_until, Node, TempDir, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tokio_tungstenite::tungstenite::Message;

/// Runs the real CLI; (success, stdout, stderr).
fn yard(args: &[&str]) -> (bool, String, String) {
    let out = common::yard().args(args).output().expect("run yard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn store(addr: &str, args: &[&str]) -> String {
    let mut all = vec!["store", "-e", addr];
    all.extend_from_slice(args);
    let (ok, out, err) = yard(&all);
    assert!(ok, "yard {all:?} failed: {err}");
    out
}

/// A store's contents as key → (value, expiry) JSON, via `yard store dump`.
fn dump(addr: &str, name: &str) -> BTreeMap<String, String> {
    store(addr, &["dump", name])
        .lines()
        .map(|l| {
            let j: Json = serde_json::from_str(l).unwrap();
            (
                j["key"].to_string(),
                format!("{} {}", j["value"], j["expiry"]),
            )
        })
        .collect()
}

fn put_op(id: u64, key: &str, value: u64) -> String {
    json!({"type": "store", "id": id, "store": "s", "op": "put",
           "key": {"@data-type": "string", "data": key},
           "value": {"@data-type": "count", "data": value}})
    .to_string()
}

fn idle(addr: &str, name: &str) {
    let out = store(addr, &["await-idle", name, "--timeout", "20s"]);
    assert_eq!(out.trim(), "idle");
}

/// Writes `key-i = i` for i in `from..to`, pipelined in windows of 64, and returns the
/// numbers the endpoint acknowledged before the connection ended (or all of them).
async fn pipelined_puts(ws: &mut Ws, from: u64, to: u64) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut i = from;
    while i < to {
        let end = (i + 64).min(to);
        for n in i..end {
            if ws
                .send(Message::text(put_op(n, &format!("key-{n}"), n)))
                .await
                .is_err()
            {
                return acked;
            }
        }
        for _ in i..end {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let j: Json = serde_json::from_str(&t).unwrap();
                    assert_eq!(j["type"], "store-result", "{j}");
                    acked.push(j["id"].as_u64().unwrap());
                }
                _ => return acked,
            }
        }
        i = end;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_follows_its_master_over_http_websocket_and_the_cli() {
    let dir = TempDir::new("follow");
    let db = format!("s=sqlite:{}", dir.arg("s.db"));
    let master = Node::start(&["--master", &db]);
    let clone = Node::start(&["--clone", "s", "--peer", &master.addr]);
    // Change events on the clone's endpoint.
    let (mut events, _) = client_as(
        &clone,
        &["<$>/local/data/store-events"],
        Some(&admin_token()),
    )
    .await;
    // The clone has its (empty) copy before the first write, so the write reaches it as a change
    // with its event, not inside a snapshot (seen once in a full run: the first event was bob's).
    idle(&clone.addr, "s");
    store(&master.addr, &["put", "s", "alice", "42"]);
    // Writes through the clone reach the master and show in the clone's own copy.
    store(&clone.addr, &["put", "s", "bob", "\"hi\""]);
    assert_eq!(store(&clone.addr, &["get", "s", "bob"]).trim(), "\"hi\"");
    assert_eq!(store(&clone.addr, &["incr", "s", "n", "5"]).trim(), "5");
    assert_eq!(
        store(&clone.addr, &["put-unique", "s", "n", "1"]).trim(),
        "false"
    );
    store(&master.addr, &["push", "s", "vec", "1"]);
    store(&master.addr, &["push", "s", "vec", "2"]);
    assert_eq!(store(&master.addr, &["pop", "s", "vec"]).trim(), "2");
    idle(&clone.addr, "s");
    assert_eq!(store(&clone.addr, &["get", "s", "alice"]).trim(), "42");
    assert_eq!(dump(&clone.addr, "s"), dump(&master.addr, "s"));
    // Type clashes and missing keys fail clearly and change nothing.
    let (ok, _, err) = yard(&["store", "-e", &clone.addr, "incr", "s", "bob"]);
    assert!(!ok && err.contains("type_clash"), "{err}");
    let (ok, _, err) = yard(&["store", "-e", &clone.addr, "get", "s", "nobody"]);
    assert!(!ok && err.contains("no_such_key"), "{err}");
    // The HTTP key API and prefix listing, on the clone.
    let v = common::Node::get_from(&clone.addr, "/v1/stores/s/keys/alice").await;
    assert_eq!(v, r#"{"@data-type":"count","data":42}"#);
    let keys: Json = serde_json::from_str(&clone.get("/v1/stores/s/keys?prefix=b").await).unwrap();
    assert_eq!(keys, json!([{"@data-type": "string", "data": "bob"}]));
    // The WebSocket envelope, with pipelined operations answered in order.
    let (mut ws, _) = client_as(&clone, &[], Some(&admin_token())).await;
    for (id, op) in [
        (
            1,
            json!({"op": "increment", "key": {"@data-type": "string", "data": "n"}, "amount": {"@data-type": "count", "data": 2}}),
        ),
        (
            2,
            json!({"op": "get", "key": {"@data-type": "string", "data": "n"}}),
        ),
        (
            3,
            json!({"op": "increment", "key": {"@data-type": "string", "data": "bob"}, "amount": {"@data-type": "count", "data": 2}}),
        ),
        (4, json!({"op": "frobnicate"})),
    ] {
        let mut env = op.as_object().unwrap().clone();
        env.insert("type".into(), "store".into());
        env.insert("id".into(), id.into());
        env.insert("store".into(), "s".into());
        ws.send(Message::text(Json::Object(env).to_string()))
            .await
            .unwrap();
    }
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "store-result", "id": 1, "result": {"@data-type": "count", "data": 7}})
    );
    assert_eq!(next_json(&mut ws).await["result"]["data"], 7);
    let clash = next_json(&mut ws).await;
    assert_eq!(
        (
            clash["type"].as_str(),
            clash["id"].as_u64(),
            clash["code"].as_str()
        ),
        (Some("error"), Some(3), Some("type_clash"))
    );
    let unknown = next_json(&mut ws).await;
    assert_eq!(unknown["code"], "invalid_data", "{unknown}");
    assert!(unknown["context"].as_str().unwrap().contains("frobnicate"));
    // The connection is still healthy after the errors.
    ws.send(Message::text(put_op(5, "carol", 3))).await.unwrap();
    assert_eq!(next_json(&mut ws).await["id"], 5);
    // Events on the clone: alice's insert came through.
    let first = next_json(&mut events).await;
    assert_eq!(first["data"][0]["data"], "insert", "{first}");
    assert_eq!(first["data"][2]["data"], "alice", "{first}");
    // A second master for the name is refused (and does not start: it would run until killed).
    let second = common::yard()
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--master",
            "s",
            "--peer",
            &master.addr,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = second.id().to_string();
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || second.wait_with_output()),
    )
    .await;
    let Ok(out) = waited else {
        let _ = Command::new("kill").args(["-9", &pid]).status();
        panic!("a second master of \"s\" started instead of being refused");
    };
    let out = out.unwrap().unwrap();
    let (status, err) = (out.status, String::from_utf8_lossy(&out.stderr).to_string());
    assert!(!status.success() && err.contains("already exists"), "{err}");
    // Expiry: the master expires the key and the clone follows.
    store(
        &master.addr,
        &["put", "s", "temp", "1", "--expiry", "300ms"],
    );
    idle(&clone.addr, "s");
    wait_until(
        "the clone to drop the expired key",
        Duration::from_secs(10),
        || async {
            !yard(&["store", "-e", &clone.addr, "exists", "s", "temp"])
                .1
                .contains("true")
        },
    )
    .await;
}

async fn kill_master_under_load(synchronous: &str) {
    let dir = TempDir::new(&format!("kill-{synchronous}"));
    let db = format!("s=sqlite:{}?synchronous={synchronous}", dir.arg("s.db"));
    let master = Node::start(&["--master", &db]);
    let addr = master.addr.clone();
    let clone = Node::start(&["--clone", "s", "--peer", &addr]);
    let (mut ws, _) = client_as(&master, &[], Some(&admin_token())).await;
    let writer = tokio::spawn(async move { pipelined_puts(&mut ws, 0, 10_000_000).await });
    // Let a good number of writes be acknowledged, then kill -9 mid-stream.
    wait_until("writes to be applied", Duration::from_secs(30), || async {
        let info: Json =
            serde_json::from_str(&Node::get_from(&addr, "/v1/stores/s").await).unwrap_or_default();
        info["seq"].as_u64().unwrap_or(0) > 3000
    })
    .await;
    master.signal("KILL");
    let acked = writer.await.unwrap();
    assert!(
        acked.len() >= 3000,
        "only {} writes acknowledged",
        acked.len()
    );
    drop(master);
    // Restart on the same file: every acknowledged write is there.
    // On a fresh port (the old one may be taken by another test's node by now); the clone is
    // told the new address.
    let master = Node::start(&["--master", &db]);
    let (ok, _, err) = yard(&["peer", "-e", &clone.addr, &master.addr]);
    assert!(ok, "{err}");
    let contents = dump(&master.addr, "s");
    let missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| {
            !contents.contains_key(
                &json!({"@data-type": "string", "data": format!("key-{n}")}).to_string(),
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "synchronous={synchronous}: {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // The clone re-synchronises with the restarted master (a new epoch) and converges. Until
    // it hears from the new master it may still call itself idle on the old epoch: wait for
    // the epochs to match first.
    let epoch = |addr: String| async move {
        let info: Json =
            serde_json::from_str(&Node::get_from(&addr, "/v1/stores/s").await).unwrap_or_default();
        info["epoch"].as_u64()
    };
    let (m, c) = (master.addr.clone(), clone.addr.clone());
    wait_until(
        "the clone to follow the restarted master's epoch",
        Duration::from_secs(20),
        || {
            let (m, c) = (m.clone(), c.clone());
            async move {
                let want = epoch(m).await;
                want.is_some() && epoch(c).await == want
            }
        },
    )
    .await;
    idle(&clone.addr, "s");
    assert_eq!(dump(&clone.addr, "s"), contents);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_sqlite_master_loses_no_acknowledged_write_with_synchronous_full() {
    kill_master_under_load("full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_sqlite_master_loses_no_acknowledged_write_with_synchronous_normal() {
    kill_master_under_load("normal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_clone_buffers_its_writes_and_converges_after_healing() {
    let master = Node::start(&["--master", "s"]);
    let clone = Node::start(&[
        "--clone",
        "s",
        "--peer",
        &master.addr,
        "--stale-interval",
        "1s",
    ]);
    store(&clone.addr, &["put", "s", "before", "1"]);
    idle(&clone.addr, "s");
    // Cut the link (the clone's side unpeers; the master's side does not re-dial).
    let (ok, _, err) = yard(&["unpeer", "-e", &clone.addr, &master.addr]);
    assert!(ok, "{err}");
    // Both sides keep writing.
    for i in 0..50 {
        store(
            &master.addr,
            &["put", "s", &format!("m{i}"), &i.to_string()],
        );
    }
    store(&master.addr, &["incr", "s", "shared", "10"]);
    let (ok, _, err) = yard(&["store", "-e", &clone.addr, "put", "s", "c0", "0"]);
    assert!(
        ok && err.contains("buffered"),
        "a write while cut off is buffered: {err}"
    );
    for i in 1..50 {
        store(&clone.addr, &["put", "s", &format!("c{i}"), &i.to_string()]);
    }
    store(&clone.addr, &["incr", "s", "shared", "1"]);
    // Reads on the clone turn stale after stale_interval.
    wait_until(
        "reads on the cut-off clone to fail with stale_data",
        Duration::from_secs(15),
        || async {
            let (ok, _, err) = yard(&["store", "-e", &clone.addr, "get", "s", "before"]);
            !ok && err.contains("stale_data")
        },
    )
    .await;
    // Heal.
    let (ok, _, err) = yard(&["peer", "-e", &clone.addr, &master.addr]);
    assert!(ok, "{err}");
    idle(&clone.addr, "s");
    idle(&master.addr, "s");
    let on_master = dump(&master.addr, "s");
    assert_eq!(
        dump(&clone.addr, "s"),
        on_master,
        "the clone's full contents equal the master's"
    );
    assert_eq!(on_master.len(), 1 + 50 + 50 + 1);
    assert_eq!(store(&master.addr, &["get", "s", "shared"]).trim(), "11");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_a_consistent_point_and_damage_is_refused() {
    let dir = TempDir::new("backup");
    let db = format!("s=sqlite:{}", dir.arg("s.db"));
    let master = Node::start(&["--master", &db]);
    // The writer keeps an invariant: key-i is written before last = i.
    let (mut ws, _) = client_as(&master, &[], Some(&admin_token())).await;
    let writer = tokio::spawn(async move {
        for i in 1u64..=20_000 {
            ws.send(Message::text(put_op(2 * i, &format!("key-{i}"), i)))
                .await
                .unwrap();
            ws.send(Message::text(put_op(2 * i + 1, "last", i)))
                .await
                .unwrap();
            if i % 32 == 0 {
                // Keep the answers flowing so the connection's queues never fill.
                while let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(1), ws.next()).await
                {
                }
            }
        }
        ws
    });
    let addr = master.addr.clone();
    wait_until("some writes", Duration::from_secs(30), || async {
        let info: Json =
            serde_json::from_str(&Node::get_from(&addr, "/v1/stores/s").await).unwrap_or_default();
        info["seq"].as_u64().unwrap_or(0) > 2000
    })
    .await;
    let file = dir.arg("s.bak");
    let out = store(&master.addr, &["backup", "s", &file]);
    assert!(out.contains("entries"), "{out}");
    let _ws = writer.await.unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let backup = yard_store::backup::read(&bytes).unwrap();
    let mut keys = Vec::new();
    let mut last = None;
    for (k, e) in &backup.entries {
        let yard_data::Value::String(k) = k else {
            panic!("unexpected key {k:?}")
        };
        let yard_data::Value::Count(v) = e.value else {
            panic!("unexpected value")
        };
        if k == "last" {
            last = Some(v);
        } else {
            keys.push(v);
        }
    }
    keys.sort();
    let n = keys.len() as u64;
    assert!(n > 1000, "the backup was taken under load");
    assert_eq!(
        keys,
        (1..=n).collect::<Vec<_>>(),
        "a prefix of the writes, no holes"
    );
    let last = last.unwrap();
    assert!(
        last == n || last + 1 == n,
        "last = {last} with {n} keys: not one instant"
    );
    // Restore into another master: its contents equal the backup's.
    let other = Node::start(&["--master", "s"]);
    let out = store(&other.addr, &["restore", "s", &file]);
    assert!(out.contains(&format!("{} entries", n + 1)), "{out}");
    let restored = dump(&other.addr, "s");
    assert_eq!(restored.len() as u64, n + 1);
    assert_eq!(
        store(&other.addr, &["get", "s", "last"]).trim(),
        last.to_string()
    );
    // Damaged files are refused, by the CLI and by the endpoint itself.
    let truncated = dir.arg("truncated.bak");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let corrupt = dir.arg("corrupt.bak");
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    std::fs::write(&corrupt, &flipped).unwrap();
    let foreign = dir.arg("s.db");
    for (f, why) in [
        (&truncated, "truncated backup"),
        (&corrupt, "corrupt backup"),
        (&foreign, "not a yard store backup"),
    ] {
        let (ok, _, err) = yard(&["store", "-e", &other.addr, "restore", "s", f]);
        assert!(!ok && err.contains(why), "{f}: {err}");
    }
    let raw = raw_post(&other.addr, "/v1/stores/s/restore", &flipped).await;
    assert!(
        raw.starts_with("HTTP/1.1 400") && raw.contains("corrupt backup"),
        "{raw}"
    );
    assert_eq!(
        dump(&other.addr, "s"),
        restored,
        "a refused restore changes nothing"
    );
}

async fn raw_post(addr: &str, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        common::admin_token(),
        if path.ends_with("/restore") { "application/octet-stream" } else { "application/json" },
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// An envelope with `type` first, as pipelining clients write it (the fast decoder reads it).
fn envelope(id: u64, store: &str, op: &str, rest: &str) -> String {
    format!(r#"{{"type":"store","id":{id},"store":"{store}","op":"{op}"{rest}}}"#)
}

const KEY_K: &str = r#","key":{"@data-type":"string","data":"k"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_operations_see_the_writes_sent_before_them() {
    let master = Node::start(&["--master", "s", "--master", "t"]);
    let clone = Node::start(&["--clone", "s", "--peer", &master.addr]);
    let count = |n: u64| format!(r#","value":{{"@data-type":"count","data":{n}}}"#);
    // Written in one go so that they reach the endpoint together and are handed to the store
    // in batches: reads between writes must see exactly the writes before them. Envelopes in
    // both key orders (the fast decoder and the reference one), two stores, an await_idle and
    // a bad envelope in the middle.
    let sorted_get = json!({"id": 3, "key": {"@data-type": "string", "data": "k"}, "op": "get", "store": "s", "type": "store"}).to_string();
    let ops: Vec<(String, Json)> = vec![
        (
            envelope(1, "s", "put", &format!("{KEY_K}{}", count(1))),
            json!(null),
        ),
        (envelope(2, "s", "get", KEY_K), json!(1)),
        (sorted_get, json!(1)),
        (
            envelope(4, "s", "put", &format!("{KEY_K}{}", count(2))),
            json!(null),
        ),
        (
            envelope(5, "t", "put", &format!("{KEY_K}{}", count(7))),
            json!(null),
        ),
        (envelope(6, "s", "get", KEY_K), json!(2)),
        (envelope(7, "t", "get", KEY_K), json!(7)),
        (
            envelope(8, "s", "put_unique", &format!("{KEY_K}{}", count(3))),
            json!(false),
        ),
        (envelope(9, "s", "await_idle", ""), json!("idle")),
        (
            envelope(
                10,
                "s",
                "increment",
                &format!(r#"{KEY_K},"amount":{{"@data-type":"count","data":5}}"#),
            ),
            json!(7),
        ),
        (envelope(11, "s", "get", ""), json!("invalid_data")),
        (envelope(12, "s", "get", KEY_K), json!(7)),
        (envelope(13, "s", "erase", KEY_K), json!(null)),
        (envelope(14, "s", "exists", KEY_K), json!(false)),
        (envelope(15, "s", "get", KEY_K), json!("no_such_key")),
    ];
    for (role, node) in [("master", &master), ("clone", &clone)] {
        let (mut ws, _) = client_as(node, &[], Some(&admin_token())).await;
        let mut frames =
            futures_util::stream::iter(ops.iter().map(|(text, _)| Ok(Message::text(text.clone()))));
        ws.send_all(&mut frames).await.unwrap();
        for (i, (text, want)) in ops.iter().enumerate() {
            let got = next_json(&mut ws).await;
            assert_eq!(got["id"], i as u64 + 1, "answers in order: {got}");
            let seen = match got["type"].as_str() {
                Some("store-result") if got.get("idle").is_some() => json!("idle"),
                Some("store-result") if got["result"]["@data-type"] == "none" => json!(null),
                Some("store-result") => got["result"]["data"].clone(),
                _ => got["code"].clone(),
            };
            assert_eq!(&seen, want, "{} answered {got} on the {role}", text);
        }
        // Writes sent right before the client closes are all applied.
        let (mut ws, _) = client_as(node, &[], Some(&admin_token())).await;
        let mut frames = futures_util::stream::iter((0..200).map(|i| {
            let key = format!(r#","key":{{"@data-type":"string","data":"{role}-{i}"}}"#);
            Ok(Message::text(envelope(
                100 + i,
                "t",
                "put",
                &format!("{key}{}", count(i)),
            )))
        }));
        ws.send_all(&mut frames).await.unwrap();
        ws.close(None).await.unwrap();
        drop(ws);
        wait_until(
            "every write sent before the close to be applied",
            Duration::from_secs(10),
            || async {
                store(&master.addr, &["keys", "t"])
                    .matches(&format!("{role}-"))
                    .count()
                    == 200
            },
        )
        .await;
        // The same again from the other node: reset the key it starts from.
        store(&master.addr, &["erase", "s", "k"]);
        store(&master.addr, &["erase", "t", "k"]);
        idle(&clone.addr, "s");
    }
}

#[tokio::test]
async fn a_watcher_subscribed_on_a_live_connection_gets_the_very_next_change() {
    for role in ["master", "clone"] {
        let master = Node::start(&["--master", "w"]);
        let clone = Node::start(&["--clone", "w", "--peer", &master.addr]);
        idle(&clone.addr, "w");
        let watched = if role == "master" { &master } else { &clone };
        // Several rounds: each subscribes while the store's owner idles, then writes at once.
        for round in 0..5 {
            let (mut ws, _) = client_as(watched, &[], Some(&admin_token())).await;
            ws.send(Message::text(
                r#"{"type":"subscribe","id":1,"topics":["<$>/local/data/store-events"]}"#,
            ))
            .await
            .unwrap();
            assert_eq!(next_json(&mut ws).await["type"], "subscribed");
            let key = format!("k{round}");
            store(&master.addr, &["put", "w", &key, "1"]);
            let ev = next_json(&mut ws).await;
            assert_eq!(
                ev["data"][0]["data"], "insert",
                "{role} round {round}: {ev}"
            );
            assert_eq!(ev["data"][2]["data"], key, "{role} round {round}: {ev}");
        }
    }
}
