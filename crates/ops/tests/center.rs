//! The center's actor in one process, on a hand-set clock and tokio's paused clock: what a
//! manager's report and its silence do to the topology and the event log, asserted through the
//! center's own HTTP routes. No sleeps in real time: once the center runs, tokio's clock is
//! paused and moves only as far as the center's tick needs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use yard_fabric::{Endpoint, EndpointConfig};
use yard_ops::center::{self, CenterConfig};
use yard_ops::manager::CENTER;
use yard_ops::proto::{ClusterReport, ManagerView, Msg};
use yard_ops::tsdb::Retention;
use yard_ops::{rpc, ManualClock};
use yard_testkit::{wait_until, TempDir};

async fn get(routes: &axum::Router, path: &str) -> Json {
    let answer = routes
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{path}");
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A center in this process on `clock`, with an empty in-memory token registry.
struct TestCenter {
    _dir: TempDir,
    ep: Endpoint,
    routes: axum::Router,
    registry: Arc<yard_auth::Registry>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestCenter {
    async fn start(name: &str, clock: Arc<ManualClock>, manager_timeout: Duration) -> TestCenter {
        let dir = TempDir::new(name);
        let shutdown = CancellationToken::new();
        let (ep, _router) =
            Endpoint::spawn("center".into(), EndpointConfig::default(), shutdown.clone());
        let stores = yard_store::Stores::new(ep.clone(), shutdown.clone());
        let cfg = CenterConfig {
            dir: dir.join("center"),
            manager_timeout,
            retention: Retention::default(),
            clock,
        };
        let registry = Arc::new(yard_auth::Registry::in_memory(vec![]));
        let (ext, task) =
            center::start(cfg, ep.clone(), stores, registry.clone(), shutdown.clone())
                .await
                .unwrap();
        TestCenter {
            _dir: dir,
            ep,
            routes: ext.routes.unwrap(),
            registry,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn a_manager_that_falls_silent_is_lost_on_the_center_s_clock() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let c = TestCenter::start("center-actor", clock.clone(), Duration::from_secs(10)).await;
    let (ep, routes) = (c.ep.clone(), c.routes.clone());

    let report = ClusterReport {
        cluster: "c1".into(),
        manager: ManagerView {
            id: "M1".into(),
            address: "127.0.0.1:9901".into(),
            started_ms: 0,
        },
        agents: vec![],
    };
    let answer = rpc::call(
        &ep,
        format!("{CENTER}register"),
        &Msg::Register(report),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(
        matches!(&answer, Msg::Registered { center } if center == "center"),
        "{answer:?}"
    );
    let t = get(&routes, "/v1/topology").await;
    assert_eq!(t["clusters"][0]["manager_state"], "up");
    // From here tokio's clock moves only when every task waits on it. (Paused from the start,
    // it would jump past the report's timeout while the store's first write runs on a
    // blocking thread.)
    tokio::time::pause();

    // Within the bound on the center's clock: still up, however many ticks pass. (Moving
    // tokio's clock makes four ticks due; the actor takes a due tick before any HTTP input.)
    clock.advance(10_000);
    tokio::time::advance(Duration::from_secs(2)).await;
    let t = get(&routes, "/v1/topology").await;
    assert_eq!(t["clusters"][0]["manager_state"], "up");

    // Past it: the next tick marks the manager lost.
    clock.advance(1);
    wait_until("the manager lost", Duration::from_secs(5), || async {
        get(&routes, "/v1/topology").await["clusters"][0]["manager_state"] == "lost"
    })
    .await;
    // The event log says so, in order, stamped with the center's clock.
    let events = get(&routes, "/v1/events").await;
    let seen: Vec<(String, u64)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["ts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("cluster_registered".to_string(), 1_000_000),
            ("manager_lost".to_string(), 1_010_001)
        ]
    );

    c.stop().await;
}

/// Reads server-sent events from a streaming body.
struct Sse {
    body: Body,
    buf: String,
}

impl Sse {
    async fn open(routes: &axum::Router, path: &str, last_id: Option<&str>) -> Sse {
        let mut req = Request::get(path);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let answer = routes
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        assert_eq!(answer.headers()["content-type"], "text/event-stream");
        Sse {
            body: answer.into_body(),
            buf: String::new(),
        }
    }

    /// The next event: its name, id and data.
    async fn next(&mut self) -> (String, Option<u64>, Json) {
        use http_body_util::BodyExt;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..i + 2).collect();
                if frame.starts_with(':') {
                    continue;
                }
                let (mut event, mut id, mut data) = (String::new(), None, String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                return (event, id, serde_json::from_str(&data).unwrap());
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("a frame within 10 s")
                .expect("the stream goes on")
                .unwrap();
            if let Ok(bytes) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn the_stream_starts_from_a_snapshot_carries_each_change_and_resumes_where_it_left() {
    let clock = Arc::new(ManualClock::new(5_000));
    let c = TestCenter::start("center-stream", clock, Duration::from_secs(60)).await;
    let (ep, routes) = (c.ep.clone(), c.routes.clone());

    // A new client: the snapshot of an empty system, at event 0.
    let mut live = Sse::open(&routes, "/v1/stream", None).await;
    let (event, id, data) = live.next().await;
    assert_eq!((event.as_str(), id), ("snapshot", Some(0)));
    assert_eq!(data["seq"], 0);
    assert_eq!(data["topology"]["clusters"], serde_json::json!([]));
    assert_eq!(data["commands"], serde_json::json!([]));

    // A manager registers: one topology event, id 1, carrying the cluster's whole record.
    let report = ClusterReport {
        cluster: "c1".into(),
        manager: ManagerView {
            id: "M1".into(),
            address: "127.0.0.1:9901".into(),
            started_ms: 0,
        },
        agents: vec![],
    };
    rpc::call(
        &ep,
        format!("{CENTER}register"),
        &Msg::Register(report),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let (event, id, data) = live.next().await;
    assert_eq!((event.as_str(), id), ("topology", Some(1)));
    assert_eq!(data["cluster"]["name"], "c1");
    assert_eq!(data["cluster"]["manager_state"], "up");
    let events: Vec<&str> = data["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["cluster_registered"]);

    // A client back from event 0: the event it missed, then `resumed` at 1; no snapshot.
    let mut back = Sse::open(&routes, "/v1/stream", Some("0")).await;
    let (event, id, data) = back.next().await;
    assert_eq!((event.as_str(), id), ("topology", Some(1)));
    assert_eq!(data["cluster"]["name"], "c1");
    assert_eq!(back.next().await.0, "resumed");
    // Up to date already: `resumed` only.
    let mut current = Sse::open(&routes, "/v1/stream", Some("1")).await;
    let (event, id, _) = current.next().await;
    assert_eq!((event.as_str(), id), ("resumed", Some(1)));
    // An id this center never gave (from before a restart): a snapshot.
    let mut stale = Sse::open(&routes, "/v1/stream", Some("99")).await;
    let (event, id, data) = stale.next().await;
    assert_eq!((event.as_str(), id), ("snapshot", Some(1)));
    assert_eq!(data["topology"]["clusters"][0]["name"], "c1");

    // A series parameter that would ask for everything is refused with the reason.
    let bad = routes
        .clone()
        .oneshot(
            Request::get("/v1/stream?series=a/,,b/")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    drop((live, back, current, stale));
    c.stop().await;
}

async fn post(routes: &axum::Router, path: &str, body: Json) -> (u16, Json) {
    let answer = routes
        .clone()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_login_code_gives_one_token_of_its_role_once_and_not_after_it_expires() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let c = TestCenter::start("center-login", clock.clone(), Duration::from_secs(60)).await;
    let (routes, registry) = (c.routes.clone(), c.registry.clone());

    let (status, link) = post(
        &routes,
        "/v1/login/links",
        serde_json::json!({"role": "viewer", "ttl_s": 60}),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    let code = link["code"].as_str().unwrap().to_string();
    assert_eq!(link["path"], format!("/ui/#login={code}"));
    assert_eq!(link["expires_ms"], 1_060_000);

    let (status, got) = post(&routes, "/v1/login", serde_json::json!({"code": code})).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["role"], "viewer");
    let who = registry
        .authenticate(None, got["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(who.name, got["name"].as_str().unwrap());
    assert!(who.name.starts_with("dashboard-"), "{}", who.name);
    assert!(!who.policy.allows(&yard_auth::Permission::Command));

    // Once only.
    let (status, again) = post(&routes, "/v1/login", serde_json::json!({"code": code})).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (401, Some("bad_login_code"))
    );
    // A code past its time is refused and says so.
    let (_, link) = post(&routes, "/v1/login/links", serde_json::json!({})).await;
    clock.advance(900_000);
    let (status, late) = post(
        &routes,
        "/v1/login",
        serde_json::json!({"code": link["code"]}),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        late["context"].as_str().unwrap().contains("expired"),
        "{late}"
    );

    c.stop().await;
}
