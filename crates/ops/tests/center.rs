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

/// Stands in for the clusters' Mesos masters: records what the center forwards and answers
/// each with its path (or, for the address `down`, not at all).
#[derive(Debug, Default)]
struct Masters {
    seen: std::sync::Mutex<Vec<yard_ops::rm_proxy::Forward>>,
}

impl yard_ops::rm_proxy::MesosProxy for Masters {
    fn task_log(&self, l: yard_ops::rm_proxy::TaskLog) -> yard_ops::rm_proxy::Pending {
        Box::pin(async move {
            Ok(yard_ops::rm_proxy::Answer {
                status: 200,
                content_type: Some("application/json".into()),
                body: serde_json::to_vec(&serde_json::json!({"task": l.task, "offset": l.offset,
                    "data": if l.stderr { "err" } else { "out" }, "ended": false, "by": l.authorization}))
                .unwrap(),
            })
        })
    }

    fn forward(&self, f: yard_ops::rm_proxy::Forward) -> yard_ops::rm_proxy::Pending {
        self.seen.lock().unwrap().push(f.clone());
        Box::pin(async move {
            if f.addr == "down" {
                return Err(yard_ops::rm_proxy::Unreachable {
                    addr: f.addr,
                    why: "connection refused".into(),
                });
            }
            Ok(yard_ops::rm_proxy::Answer {
                status: 200,
                content_type: Some("application/json".into()),
                body: serde_json::to_vec(&serde_json::json!({"path": f.path})).unwrap(),
            })
        })
    }
}

/// A center in this process on `clock`, with an empty in-memory token registry.
struct TestCenter {
    _dir: TempDir,
    /// What the center passed to the Mesos masters.
    mesos: Arc<Masters>,
    ep: Endpoint,
    routes: axum::Router,
    registry: Arc<yard_auth::Registry>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestCenter {
    async fn start(name: &str, clock: Arc<ManualClock>, manager_timeout: Duration) -> TestCenter {
        let dir = TempDir::new(name);
        let mesos = Arc::new(Masters::default());
        let shutdown = CancellationToken::new();
        let (ep, _router) =
            Endpoint::spawn("center".into(), EndpointConfig::default(), shutdown.clone());
        let stores = yard_store::Stores::new(ep.clone(), shutdown.clone());
        let cfg = CenterConfig {
            dir: dir.join("center"),
            manager_timeout,
            retention: Retention::default(),
            clock,
            mesos: Some(mesos.clone()),
            joins: None,
        };
        let registry = Arc::new(yard_auth::Registry::in_memory(vec![]));
        let (ext, task) =
            center::start(cfg, ep.clone(), stores, registry.clone(), shutdown.clone())
                .await
                .unwrap();
        TestCenter {
            _dir: dir,
            mesos,
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
            mesos: None,
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
        matches!(&answer, Msg::Registered { center, manager_timeout_ms } if center == "center" && *manager_timeout_ms > 0),
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
    // Paged: a page of one says how many remain and where the next starts.
    let first = get(&routes, "/v1/events?limit=1").await;
    assert_eq!(first["events"][0]["event"], "cluster_registered");
    assert_eq!(first["total"], 2);
    assert_eq!(first["oldest"], first["events"][0]["seq"]);
    let next = first["next"].as_u64().expect("a next page");
    let second = get(&routes, &format!("/v1/events?after={next}&limit=1")).await;
    assert_eq!(second["events"][0]["event"], "manager_lost");
    assert_eq!(
        (&second["total"], &second["next"]),
        (&Json::from(1), &Json::Null)
    );
    for bad in ["limit=0", "limit=1001"] {
        let answer = routes
            .clone()
            .oneshot(
                Request::get(format!("/v1/events?{bad}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{bad}");
    }

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
            mesos: None,
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

/// `/v1/clusters/C/rm/...` reaches the master cluster C's manager reported, with the caller's
/// own credential and only on the listed routes; a cluster without a master, a route not
/// listed and a master that does not answer each get their own error, and reach nothing.
#[tokio::test]
async fn resource_manager_calls_go_to_the_reported_master_with_the_caller_s_credential() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let c = TestCenter::start("center-rm", clock, Duration::from_secs(60)).await;
    for (cluster, mesos) in [
        ("c1", Some("127.0.0.1:5050")),
        ("c2", None),
        ("c3", Some("down")),
    ] {
        let report = ClusterReport {
            cluster: cluster.into(),
            manager: ManagerView {
                id: format!("M-{cluster}"),
                address: "127.0.0.1:9901".into(),
                started_ms: 0,
                mesos: mesos.map(str::to_string),
            },
            agents: vec![],
        };
        rpc::call(
            &c.ep,
            format!("{CENTER}register"),
            &Msg::Register(report),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    let call = |method: &str, path: &str, body: &str| {
        let r = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer caller-token")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let routes = c.routes.clone();
        async move {
            let a = routes.oneshot(r).await.unwrap();
            let status = a.status().as_u16();
            let bytes = axum::body::to_bytes(a.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<Json>(&bytes).unwrap())
        }
    };
    let (status, body) = call("GET", "/v1/clusters/c1/rm/tasks?limit=5&path=/etc", "").await;
    assert_eq!(
        (status, body["path"].as_str()),
        (200, Some("/master/tasks?limit=5"))
    );
    let (status, _) = call(
        "POST",
        "/v1/clusters/c1/rm/services/hello/scale",
        r#"{"instances":2}"#,
    )
    .await;
    assert_eq!(status, 200);
    let seen = c.mesos.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            yard_ops::rm_proxy::Forward {
                addr: "127.0.0.1:5050".into(),
                method: "GET",
                path: "/master/tasks?limit=5".into(),
                body: vec![],
                authorization: Some("Bearer caller-token".into()),
            },
            yard_ops::rm_proxy::Forward {
                addr: "127.0.0.1:5050".into(),
                method: "POST",
                path: "/services/hello/scale".into(),
                body: br#"{"instances":2}"#.to_vec(),
                authorization: Some("Bearer caller-token".into()),
            },
        ]
    );
    // A task's output is gathered by the proxy (master, agent, sandbox), not forwarded.
    let (status, body) = call(
        "GET",
        "/v1/clusters/c1/rm/tasks/web.1/log?stream=stderr&offset=7",
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"task": "web.1", "offset": 7, "data": "err", "ended": false, "by": "Bearer caller-token"})
    );
    let (status, body) = call("GET", "/v1/clusters/c1/rm/tasks/web.1/log?stream=both", "").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    let (status, body) = call("GET", "/v1/clusters/c2/rm/agents", "").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("no_rm")));
    let (status, body) = call("GET", "/v1/clusters/nope/rm/agents", "").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown_cluster"))
    );
    let (status, body) = call("POST", "/v1/clusters/c1/rm/api/v1", "{}").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    assert_eq!(
        c.mesos.seen.lock().unwrap().len(),
        2,
        "refused calls reach no master"
    );
    let (status, body) = call("GET", "/v1/clusters/c3/rm/state", "").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("rm_unreachable"))
    );
    assert!(
        body["context"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{body}"
    );
    c.stop().await;
}
