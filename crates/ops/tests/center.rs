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

#[tokio::test]
async fn a_manager_that_falls_silent_is_lost_on_the_center_s_clock() {
    let dir = TempDir::new("center-actor");
    let shutdown = CancellationToken::new();
    let (ep, _router) =
        Endpoint::spawn("center".into(), EndpointConfig::default(), shutdown.clone());
    let stores = yard_store::Stores::new(ep.clone(), shutdown.clone());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let cfg = CenterConfig {
        dir: dir.join("center"),
        manager_timeout: Duration::from_secs(10),
        retention: Retention::default(),
        clock: clock.clone(),
    };
    let registry = Arc::new(yard_auth::Registry::in_memory(vec![]));
    let (ext, task) = center::start(cfg, ep.clone(), stores, registry, shutdown.clone())
        .await
        .unwrap();
    let routes = ext.routes.unwrap();

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

    shutdown.cancel();
    task.await.unwrap();
}
