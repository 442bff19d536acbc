//! The master core, driven by inputs and a clock, asserting what it emits.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use yard_rm::master::allocator::default_min_allocatable;
use yard_rm::master::{Call, CallError, Master, MasterConfig, Out};
use yard_rm::proto::{Registration, TaskReport, Wire};
use yard_rm::KillError;

fn master() -> Master {
    Master::new(
        MasterConfig {
            id: "M".into(),
            hostname: "127.0.0.1".into(),
            ip: "127.0.0.1".into(),
            port: 5050,
            offer_timeout_ms: 30_000,
            agent_timeout_ms: 10_000,
            heartbeat_interval_s: 15.0,
            min_allocatable: default_min_allocatable(),
            weights: HashMap::new(),
            kill_grace_ms: 3000,
        },
        0,
    )
}

/// The shell's path: a call in Mesos JSON is parsed ([`Call::parse`]), then handed to the
/// core; `Ok` holds the HTTP status the shell answers.
trait Scheduler {
    fn call_json(&mut self, v: &Value, stream: Option<&str>, now: u64) -> Result<u16, CallError>;
    fn subscribe_json(&mut self, v: &Value, stream: &str, now: u64) -> Result<String, CallError>;
}

impl Scheduler for Master {
    fn call_json(&mut self, v: &Value, stream: Option<&str>, now: u64) -> Result<u16, CallError> {
        let c = Call::parse(v)?;
        self.call(&c, stream, now).map(|()| c.call.success_status())
    }
    fn subscribe_json(&mut self, v: &Value, stream: &str, now: u64) -> Result<String, CallError> {
        self.subscribe(&Call::parse(v)?, stream, now)
    }
}

fn register(
    m: &mut Master,
    name: &str,
    resources: &str,
    tasks: Vec<TaskReport>,
    now: u64,
) -> String {
    let r = m
        .register_agent(
            Registration {
                agent_id: None,
                name: name.into(),
                hostname: "127.0.0.1".into(),
                port: 5051,
                endpoint: format!("ep-{name}"),
                resources: resources.into(),
                attributes: BTreeMap::new(),
                tasks,
            },
            now,
        )
        .unwrap();
    match r {
        Wire::Registered { agent_id, .. } => agent_id,
        other => panic!("{other:?}"),
    }
}

fn subscribe(m: &mut Master, caps: &[&str], now: u64) -> String {
    let caps: Vec<Value> = caps.iter().map(|c| json!({"type": c})).collect();
    let call = json!({"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"t","capabilities":caps,"failover_timeout":5}}});
    m.subscribe_json(&call, "stream-1", now).unwrap()
}

fn events(out: &[Out], fid: &str, kind: &str) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Out::Event { framework, event } if framework == fid && event.kind() == kind => {
                Some(event.to_json())
            }
            _ => None,
        })
        .collect()
}

fn offer_ids(out: &[Out], fid: &str) -> Vec<String> {
    events(out, fid, "OFFERS")
        .iter()
        .flat_map(|e| e["offers"]["offers"].as_array().unwrap().clone())
        .map(|o| o["id"]["value"].as_str().unwrap().to_string())
        .collect()
}

fn launch(fid: &str, offer: &str, task: &str, cpus: f64) -> Value {
    json!({"type":"ACCEPT","framework_id":{"value":fid},"accept":{"offer_ids":[{"value":offer}],
        "operations":[{"type":"LAUNCH","launch":{"task_infos":[{"task_id":{"value":task},"agent_id":{"value":"x"},"name":task,
        "command":{"value":"true"},"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":cpus}},{"name":"mem","type":"SCALAR","scalar":{"value":32}}]}]}}],
        "filters":{"refuse_seconds":0}}})
}

#[test]
fn subscribe_offer_launch_update_complete() {
    let mut m = master();
    let agent = register(&mut m, "a", "cpus:2;mem:1024", vec![], 0);
    let fid = subscribe(&mut m, &[], 0);
    let out = m.take_out();
    assert_eq!(
        events(&out, &fid, "SUBSCRIBED")[0]["subscribed"]["framework_id"]["value"],
        json!(fid)
    );
    m.allocate(0);
    let out = m.take_out();
    let offers = offer_ids(&out, &fid);
    assert_eq!(offers.len(), 1);
    assert_eq!(
        m.call_json(&launch(&fid, &offers[0], "t1", 0.5), Some("stream-1"), 10),
        Ok(202)
    );
    let out = m.take_out();
    let launched = out.iter().find_map(|o| match o {
        Out::Agent {
            endpoint,
            msg: Wire::Launch { tasks, .. },
        } if endpoint == "ep-a" => Some(tasks.clone()),
        _ => None,
    });
    let tasks = launched.expect("a Launch for the agent");
    assert_eq!(tasks[0]["agent_id"]["value"], json!(agent));
    // The rest of the agent is offered again.
    m.allocate(20);
    let out = m.take_out();
    let again = events(&out, &fid, "OFFERS");
    let cpus = &again[0]["offers"]["offers"][0]["resources"];
    assert!(cpus.to_string().contains("1.5"), "{cpus}");
    // Statuses from the agent go to the framework, in order, and the terminal one frees the task.
    for (state, uuid) in [
        ("TASK_STARTING", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ("TASK_RUNNING", "AQAAAAAAAAAAAAAAAAAAAA=="),
        ("TASK_FINISHED", "AgAAAAAAAAAAAAAAAAAAAA=="),
    ] {
        m.agent_update(
            &agent,
            &fid,
            json!({"task_id":{"value":"t1"},"state":state,"uuid":uuid,"source":"SOURCE_EXECUTOR"}),
            30,
        );
    }
    let out = m.take_out();
    let states: Vec<Value> = events(&out, &fid, "UPDATE")
        .iter()
        .map(|e| e["update"]["status"]["state"].clone())
        .collect();
    assert_eq!(
        states,
        vec![
            json!("TASK_STARTING"),
            json!("TASK_RUNNING"),
            json!("TASK_FINISHED")
        ]
    );
    assert!(m.tasks.is_empty());
    assert_eq!(m.agents[&agent].used.scalar("cpus"), 0);
    assert_eq!(m.frameworks[&fid].completed.len(), 1);
    // The framework's ACK reaches the agent.
    let ack = json!({"type":"ACKNOWLEDGE","framework_id":{"value":fid},"acknowledge":{"agent_id":{"value":agent},"task_id":{"value":"t1"},"uuid":"AgAAAAAAAAAAAAAAAAAAAA=="}});
    assert_eq!(m.call_json(&ack, Some("stream-1"), 40), Ok(202));
    assert!(matches!(
        &m.take_out()[..],
        [Out::Agent {
            msg: Wire::Ack { .. },
            ..
        }]
    ));
}

#[test]
fn calls_are_checked_before_anything_changes() {
    let mut m = master();
    register(&mut m, "a", "cpus:1;mem:256", vec![], 0);
    let fid = subscribe(&mut m, &[], 0);
    m.take_out();
    let revive = json!({"type":"REVIVE","framework_id":{"value":fid}});
    assert!(
        matches!(m.call_json(&revive, Some("other"), 0), Err(CallError::BadRequest(e)) if e.contains("stream ID"))
    );
    let unknown = json!({"type":"REVIVE","framework_id":{"value":"nope"}});
    assert_eq!(
        m.call_json(&unknown, Some("stream-1"), 0),
        Err(CallError::BadRequest("Framework cannot be found".into()))
    );
    m.allocate(0);
    let offer = offer_ids(&m.take_out(), &fid)[0].clone();
    // Too much: TASK_ERROR with the reason, and the offer's resources come back.
    m.call_json(&launch(&fid, &offer, "big", 4.0), Some("stream-1"), 0)
        .unwrap();
    let out = m.take_out();
    let upd = &events(&out, &fid, "UPDATE")[0]["update"]["status"];
    assert_eq!(upd["state"], "TASK_ERROR");
    assert_eq!(upd["reason"], "REASON_TASK_INVALID");
    assert!(
        upd["message"].as_str().unwrap().contains("more resources"),
        "{upd}"
    );
    assert!(m.offers.is_empty());
    // An offer used twice: TASK_LOST with REASON_INVALID_OFFERS.
    m.call_json(&launch(&fid, &offer, "again", 0.1), Some("stream-1"), 0)
        .unwrap();
    let out = m.take_out();
    assert_eq!(
        events(&out, &fid, "UPDATE")[0]["update"]["status"]["reason"],
        "REASON_INVALID_OFFERS"
    );
    // Unsupported operations are refused whole.
    let reserve = json!({"type":"ACCEPT","framework_id":{"value":fid},"accept":{"offer_ids":[{"value":offer}],"operations":[{"type":"RESERVE"}]}});
    assert!(
        matches!(m.call_json(&reserve, Some("stream-1"), 0), Err(CallError::BadRequest(e)) if e.contains("RESERVE"))
    );
}

#[test]
fn decline_filters_until_refuse_seconds_and_revive_clears() {
    let mut m = master();
    register(&mut m, "a", "cpus:1;mem:256", vec![], 0);
    let fid = subscribe(&mut m, &[], 0);
    m.allocate(0);
    let offer = offer_ids(&m.take_out(), &fid)[0].clone();
    let decline = json!({"type":"DECLINE","framework_id":{"value":fid},"decline":{"offer_ids":[{"value":offer}],"filters":{"refuse_seconds":10}}});
    m.call_json(&decline, Some("stream-1"), 1000).unwrap();
    m.allocate(2000);
    assert!(offer_ids(&m.take_out(), &fid).is_empty());
    let why = m.frameworks[&fid].waiting.clone().unwrap();
    assert!(
        why.starts_with("filtered") && why.contains("9.0 s"),
        "{why}"
    );
    m.allocate(11_001);
    assert_eq!(
        offer_ids(&m.take_out(), &fid).len(),
        1,
        "offered again once the filter expired"
    );
    // SUPPRESS stops offers; REVIVE resumes them.
    let offer = m.offers.keys().next().unwrap().clone();
    m.call_json(&json!({"type":"DECLINE","framework_id":{"value":fid},"decline":{"offer_ids":[{"value":offer}],"filters":{"refuse_seconds":100}}}), Some("stream-1"), 11_002).unwrap();
    m.call_json(
        &json!({"type":"SUPPRESS","framework_id":{"value":fid}}),
        Some("stream-1"),
        11_002,
    )
    .unwrap();
    m.allocate(200_000);
    assert!(offer_ids(&m.take_out(), &fid).is_empty());
    assert!(m.frameworks[&fid]
        .waiting
        .as_ref()
        .unwrap()
        .starts_with("suppressed"));
    m.call_json(
        &json!({"type":"REVIVE","framework_id":{"value":fid}}),
        Some("stream-1"),
        11_003,
    )
    .unwrap();
    m.allocate(11_004);
    assert_eq!(
        offer_ids(&m.take_out(), &fid).len(),
        1,
        "REVIVE cleared the 100 s filter too"
    );
}

#[test]
fn offers_time_out_and_are_rescinded() {
    let mut m = master();
    register(&mut m, "a", "cpus:1;mem:256", vec![], 0);
    let fid = subscribe(&mut m, &[], 0);
    m.allocate(0);
    let offer = offer_ids(&m.take_out(), &fid)[0].clone();
    let agent = m.agents.keys().next().unwrap().clone();
    m.heartbeat(&agent, 25_000);
    m.tick(29_999);
    assert!(m.take_out().is_empty());
    m.tick(30_000);
    let out = m.take_out();
    assert_eq!(
        events(&out, &fid, "RESCIND")[0]["rescind"]["offer_id"]["value"],
        json!(offer)
    );
    assert!(m.offers.is_empty());
    assert_eq!(m.agents.values().next().unwrap().offered.scalar("cpus"), 0);
}

#[test]
fn a_silent_agent_is_lost_or_unreachable_and_reconciled_when_back() {
    let mut m = master();
    let agent = register(&mut m, "a", "cpus:2;mem:1024", vec![], 0);
    let plain = subscribe(&mut m, &[], 0);
    let aware = m
        .subscribe_json(&json!({"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"pa","capabilities":[{"type":"PARTITION_AWARE"}]}}}), "stream-2", 0)
        .unwrap();
    m.allocate(0);
    let out = m.take_out();
    let (o1, o2) = (offer_ids(&out, &plain), offer_ids(&out, &aware));
    // The agent goes to one framework per cycle; the second gets the rest next cycle.
    let (first, first_stream, other, other_stream) = if o1.is_empty() {
        (&aware, "stream-2", &plain, "stream-1")
    } else {
        (&plain, "stream-1", &aware, "stream-2")
    };
    let first_offer = if o1.is_empty() {
        o2[0].clone()
    } else {
        o1[0].clone()
    };
    m.call_json(
        &launch(first, &first_offer, "t1", 0.5),
        Some(first_stream),
        0,
    )
    .unwrap();
    m.allocate(10);
    let o = offer_ids(&m.take_out(), other);
    m.call_json(&launch(other, &o[0], "t2", 0.5), Some(other_stream), 10)
        .unwrap();
    m.take_out();
    for (f, t) in [(&plain, "t1"), (&aware, "t2")] {
        let _ = t;
        for tid in ["t1", "t2"] {
            m.agent_update(&agent, f, json!({"task_id":{"value":tid},"state":"TASK_RUNNING","uuid":"AAAAAAAAAAAAAAAAAAAAAA=="}), 20);
        }
    }
    m.take_out();
    assert!(matches!(
        m.heartbeat(&agent, 5_000),
        Wire::HeartbeatAck { known: true }
    ));
    m.tick(15_000);
    assert!(m.take_out().is_empty(), "10 s of silence is allowed");
    m.tick(15_001);
    let out = m.take_out();
    let plain_update = &events(&out, &plain, "UPDATE")[0]["update"]["status"];
    let aware_update = &events(&out, &aware, "UPDATE")[0]["update"]["status"];
    assert_eq!(plain_update["state"], "TASK_LOST");
    assert_eq!(aware_update["state"], "TASK_UNREACHABLE");
    assert!(
        aware_update["unreachable_time"]["nanoseconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        events(&out, &plain, "FAILURE")[0]["failure"]["agent_id"]["value"],
        json!(agent)
    );
    // The agent comes back with both tasks: the partition-aware one is RUNNING again, the
    // other is killed.
    assert!(matches!(
        m.heartbeat(&agent, 16_000),
        Wire::HeartbeatAck { known: false }
    ));
    let reports: Vec<TaskReport> = m
        .tasks
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .iter()
        .map(|(f, t)| {
            let mut r = m.task_report(f, t).unwrap();
            r.status = json!({"task_id":{"value":t},"state":"TASK_RUNNING"});
            r
        })
        .collect();
    let back = m
        .register_agent(
            Registration {
                agent_id: Some(agent.clone()),
                name: "a".into(),
                hostname: "127.0.0.1".into(),
                port: 5051,
                endpoint: "ep-a".into(),
                resources: "cpus:2;mem:1024".into(),
                attributes: BTreeMap::new(),
                tasks: reports,
            },
            16_000,
        )
        .unwrap();
    let Wire::Registered { kill, .. } = back else {
        panic!()
    };
    assert_eq!(kill.len(), 1);
    assert_eq!(&kill[0].0, &plain);
    let out = m.take_out();
    let again = &events(&out, &aware, "UPDATE")[0]["update"]["status"];
    assert_eq!(again["state"], "TASK_RUNNING");
    assert_eq!(again["reason"], "REASON_AGENT_REREGISTERED");
}

/// An operator's kill finds the one live task of that id, or says why not, and asks its agent
/// to kill it with the task's own grace period (here the master's default).
#[test]
fn an_operator_kill_names_one_task() {
    let mut m = master();
    register(&mut m, "a", "cpus:4;mem:1024", vec![], 0);
    let call = json!({"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"t","failover_timeout":5}}});
    let f1 = m.subscribe_json(&call, "stream-1", 0).unwrap();
    let f2 = m.subscribe_json(&call, "stream-2", 0).unwrap();
    m.take_out();
    for (fid, stream) in [(&f1, "stream-1"), (&f2, "stream-2")] {
        m.allocate(1);
        let offers = offer_ids(&m.take_out(), fid);
        assert_eq!(
            m.call_json(&launch(fid, &offers[0], "web", 0.5), Some(stream), 2),
            Ok(202)
        );
        m.take_out();
    }
    assert_eq!(
        m.operator_kill("ghost", None, 3),
        Err(KillError::NoTask("ghost".into()))
    );
    let mut both = vec![f1.clone(), f2.clone()];
    both.sort();
    let e = m.operator_kill("web", None, 3).unwrap_err();
    assert_eq!(
        e,
        KillError::Ambiguous {
            task: "web".into(),
            frameworks: both
        }
    );
    assert_eq!(e.status(), 409);
    assert!(m.take_out().is_empty(), "a refused kill changes nothing");
    assert_eq!(
        m.operator_kill("web", Some(&f2), 3),
        Ok((f2.clone(), "web".to_string()))
    );
    let out = m.take_out();
    let kills: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Out::Agent {
                endpoint,
                msg:
                    Wire::Kill {
                        framework_id,
                        task_id,
                        grace_ms,
                    },
            } => Some((
                endpoint.clone(),
                framework_id.clone(),
                task_id.clone(),
                *grace_ms,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(kills, [("ep-a".to_string(), f2, "web".to_string(), 3000)]);
}

#[test]
fn reconcile_and_kill_of_unknown_tasks() {
    let mut m = master();
    let fid = subscribe(&mut m, &[], 0);
    m.take_out();
    m.call_json(&json!({"type":"RECONCILE","framework_id":{"value":fid},"reconcile":{"tasks":[{"task_id":{"value":"ghost"}}]}}), Some("stream-1"), 0).unwrap();
    m.call_json(
        &json!({"type":"KILL","framework_id":{"value":fid},"kill":{"task_id":{"value":"ghost"}}}),
        Some("stream-1"),
        0,
    )
    .unwrap();
    let out = m.take_out();
    let ups = events(&out, &fid, "UPDATE");
    assert_eq!(ups.len(), 2);
    for u in ups {
        assert_eq!(u["update"]["status"]["state"], "TASK_LOST");
        assert!(
            u["update"]["status"].get("uuid").is_none(),
            "master statuses are not acknowledged"
        );
    }
}

#[test]
fn teardown_kills_tasks_and_a_broken_stream_waits_for_failover() {
    let mut m = master();
    let agent = register(&mut m, "a", "cpus:2;mem:1024", vec![], 0);
    let fid = subscribe(&mut m, &[], 0);
    m.allocate(0);
    let offer = offer_ids(&m.take_out(), &fid)[0].clone();
    m.call_json(&launch(&fid, &offer, "t1", 0.5), Some("stream-1"), 0)
        .unwrap();
    m.take_out();
    m.disconnected(&fid, "stream-1", 1000);
    assert_eq!(
        m.call_json(
            &json!({"type":"REVIVE","framework_id":{"value":fid}}),
            Some("stream-1"),
            1000
        ),
        Err(CallError::Forbidden("Framework is not subscribed".into()))
    );
    m.tick(5_999);
    assert!(
        m.frameworks.contains_key(&fid),
        "within failover_timeout (5 s)"
    );
    m.tick(6_000);
    let out = m.take_out();
    assert!(!m.frameworks.contains_key(&fid));
    assert!(out.iter().any(|o| matches!(o, Out::Agent { msg: Wire::ShutdownFramework { framework_id }, .. } if *framework_id == fid)));
    assert_eq!(m.agents[&agent].used.scalar("cpus"), 0);
    assert_eq!(m.completed_frameworks.len(), 1);
}

#[test]
fn an_executor_counts_once_from_its_first_task_to_its_last() {
    let mut m = master();
    let agent = register(&mut m, "a", "cpus:4;mem:4096", vec![], 0);
    let fid = subscribe(&mut m, &[], 0);
    m.allocate(0);
    let offers = offer_ids(&m.take_out(), &fid);
    let res = |cpus: f64, mem: f64| json!([{"name":"cpus","type":"SCALAR","scalar":{"value":cpus}},{"name":"mem","type":"SCALAR","scalar":{"value":mem}}]);
    let exec = json!({"executor_id": {"value": "e"}, "command": {"value": "run-executor"}, "resources": res(0.5, 256.0)});
    let task = |id: &str| json!({"task_id": {"value": id}, "agent_id": {"value": agent}, "name": id, "resources": res(1.0, 100.0), "executor": exec});
    let accept = |offer: &str, tasks: Vec<Value>| {
        json!({"type":"ACCEPT","framework_id":{"value":fid},"accept":{"offer_ids":[{"value":offer}],
        "operations":[{"type":"LAUNCH","launch":{"task_infos":tasks}}],"filters":{"refuse_seconds":0}}})
    };
    assert_eq!(
        m.call_json(
            &accept(&offers[0], vec![task("t1"), task("t2")]),
            Some("stream-1"),
            10
        ),
        Ok(202)
    );
    let used = |m: &Master| {
        (
            m.agents[&agent].used.cpus(),
            m.agents[&agent].used.mem(),
            m.frameworks[&fid].used.cpus(),
        )
    };
    assert_eq!(used(&m), (2.5, 456.0, 2.5), "two tasks, one executor");
    m.take_out();
    m.allocate(20);
    let offers = offer_ids(&m.take_out(), &fid);
    assert_eq!(
        m.call_json(&accept(&offers[0], vec![task("t3")]), Some("stream-1"), 30),
        Ok(202)
    );
    assert_eq!(
        used(&m),
        (3.5, 556.0, 3.5),
        "a third task on the running executor"
    );
    for (i, t) in ["t1", "t2"].iter().enumerate() {
        m.agent_update(
            &agent,
            &fid,
            json!({"task_id": {"value": t}, "state": "TASK_FINISHED"}),
            40 + i as u64,
        );
    }
    assert_eq!(
        used(&m),
        (1.5, 356.0, 1.5),
        "the executor stays while t3 runs"
    );
    m.agent_update(
        &agent,
        &fid,
        json!({"task_id": {"value": "t3"}, "state": "TASK_FINISHED"}),
        50,
    );
    assert_eq!(used(&m), (0.0, 0.0, 0.0), "freed with its last task");
}

/// The store as the shell keeps it: every `Persist` applied in order.
fn persisted(store: &mut BTreeMap<String, Value>, out: &[Out]) {
    for o in out {
        if let Out::Persist { key, value } = o {
            match value {
                Some(v) => store.insert(key.clone(), v.clone()),
                None => store.remove(key),
            };
        }
    }
}

#[test]
fn a_launch_emits_its_record_then_the_agent_s_launch_and_a_restart_recovers_from_the_records() {
    let mut m = master();
    let mut store = BTreeMap::new();
    let agent = register(&mut m, "a", "cpus:2;mem:1024", vec![], 0);
    let fid = subscribe(&mut m, &["PARTITION_AWARE"], 0);
    persisted(&mut store, &m.take_out());
    m.allocate(0);
    let offer = offer_ids(&m.take_out(), &fid)[0].clone();
    assert_eq!(
        m.call_json(&launch(&fid, &offer, "t1", 0.5), Some("stream-1"), 10),
        Ok(202)
    );
    // Exactly: the task's record, then the agent's LAUNCH (the record first, so that a crash
    // between them leaves a task the agent is asked about, never one nobody knows).
    let out = m.take_out();
    let mut info = launch(&fid, &offer, "t1", 0.5)["accept"]["operations"][0]["launch"]
        ["task_infos"][0]
        .clone();
    info["agent_id"] = json!({ "value": agent });
    let framework_info = m.frameworks[&fid].info.clone();
    assert_eq!(
        out,
        vec![
            Out::Persist {
                key: format!("task/{fid}/t1"),
                value: Some(
                    json!({"info": info, "state": "TASK_STAGING", "role": "*", "unreachable": false,
                    "statuses": [{"state": "TASK_STAGING", "timestamp": 0.01}]})
                ),
            },
            Out::Agent {
                endpoint: "ep-a".into(),
                msg: Wire::Launch {
                    framework_id: fid.clone(),
                    framework_info,
                    tasks: vec![info.clone()],
                },
            },
        ]
    );
    persisted(&mut store, &out);
    m.agent_update(
        &agent,
        &fid,
        json!({"task_id":{"value":"t1"},"state":"TASK_RUNNING","uuid":"AAAAAAAAAAAAAAAAAAAAAA==","source":"SOURCE_EXECUTOR","timestamp":0.02}),
        20,
    );
    persisted(&mut store, &m.take_out());
    assert_eq!(
        store.keys().cloned().collect::<Vec<_>>(),
        [
            format!("agent/{agent}"),
            format!("framework/{fid}"),
            format!("task/{fid}/t1")
        ]
    );

    // A new master from the records alone: the framework waits to subscribe again, the task
    // holds its agent's resources, the agent has its timeout to come back.
    let mut m = master();
    m.recover(store.clone().into_iter().collect(), 100_000);
    assert!(m.take_out().is_empty(), "recovery emits nothing");
    let f = &m.frameworks[&fid];
    assert!(f.recovered && !f.connected && f.partition_aware);
    let t = &m.tasks[&(fid.clone(), "t1".to_string())];
    assert_eq!(t.state, yard_rm::mesos::state::TaskState::Running);
    assert_eq!(m.agents[&agent].used.scalar("cpus"), 500);
    // The framework subscribes again with its id: its record, then SUBSCRIBED, nothing else.
    let again = json!({"type":"SUBSCRIBE","framework_id":{"value":fid},"subscribe":{"framework_info":
        {"id":{"value":fid},"user":"root","name":"t","capabilities":[{"type":"PARTITION_AWARE"}],"failover_timeout":5}}});
    assert_eq!(
        m.subscribe_json(&again, "stream-2", 100_010),
        Ok(fid.clone())
    );
    let out = m.take_out();
    assert!(
        matches!(&out[..], [Out::Persist { key, value: Some(_) }, Out::Event { framework, event }]
            if *key == format!("framework/{fid}") && *framework == fid && event.kind() == "SUBSCRIBED"),
        "{out:?}"
    );
    // The agent never comes back: past its timeout the task is unreachable (the framework is
    // partition-aware), its record says so, and every connected framework hears of the agent.
    m.tick(100_000 + 10_001);
    let out = m.take_out();
    let updates = events(&out, &fid, "UPDATE");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["update"]["status"]["state"], "TASK_UNREACHABLE");
    assert_eq!(
        events(&out, &fid, "FAILURE")[0]["failure"]["agent_id"]["value"],
        json!(agent)
    );
    persisted(&mut store, &out);
    assert_eq!(
        store[&format!("task/{fid}/t1")]["state"],
        "TASK_UNREACHABLE"
    );
    assert_eq!(store[&format!("task/{fid}/t1")]["unreachable"], true);
}

/// The KILLs in `out`, as (agent endpoint, task, grace).
fn kills(out: &[Out]) -> Vec<(String, String, u64)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Agent {
                endpoint,
                msg: Wire::Kill {
                    task_id, grace_ms, ..
                },
            } => Some((endpoint.clone(), task_id.clone(), *grace_ms)),
            _ => None,
        })
        .collect()
}

/// A restarted master knows its tasks from its records before their agents are back; a KILL
/// asked in that window may never reach the agent (nothing links to it yet). The master keeps
/// the kill and sends it again when the agent registers and reports the task (the services'
/// adopted instances stopped at once after a manager restart, not only when their framework's
/// retry came round). The same holds for a task whose agent is unreachable.
#[test]
fn a_kill_asked_before_the_agent_is_back_reaches_it_when_it_registers() {
    let mut m = master();
    let mut store = BTreeMap::new();
    let agent = register(&mut m, "a", "cpus:2;mem:1024", vec![], 0);
    let fid = subscribe(&mut m, &["PARTITION_AWARE"], 0);
    persisted(&mut store, &m.take_out());
    m.allocate(0);
    let offer = offer_ids(&m.take_out(), &fid)[0].clone();
    m.call_json(&launch(&fid, &offer, "t1", 0.5), Some("stream-1"), 10)
        .unwrap();
    persisted(&mut store, &m.take_out());
    let running = json!({"task_id":{"value":"t1"},"state":"TASK_RUNNING","uuid":"AAAAAAAAAAAAAAAAAAAAAA==","source":"SOURCE_EXECUTOR","timestamp":0.02});
    m.agent_update(&agent, &fid, running.clone(), 20);
    persisted(&mut store, &m.take_out());

    let mut m = master();
    m.recover(store.clone().into_iter().collect(), 100_000);
    let again = json!({"type":"SUBSCRIBE","framework_id":{"value":fid},"subscribe":{"framework_info":
        {"id":{"value":fid},"user":"root","name":"t","capabilities":[{"type":"PARTITION_AWARE"}],"failover_timeout":5}}});
    m.subscribe_json(&again, "stream-2", 100_010).unwrap();
    m.take_out();
    // The agent, still beating, is told the restarted master does not know it yet: it must
    // register (an agent answered "known" here never did, and a lost kill waited for the
    // framework's own retry: the known flake). Until then it is not offered.
    assert!(matches!(
        m.heartbeat(&agent, 100_015),
        Wire::HeartbeatAck { known: false }
    ));
    m.allocate(100_015);
    assert!(offer_ids(&m.take_out(), &fid).is_empty());
    let kill = json!({"type":"KILL","framework_id":{"value":fid},"kill":{"task_id":{"value":"t1"},"kill_policy":{"grace_period":{"nanoseconds":2_000_000_000u64}}}});
    assert_eq!(m.call_json(&kill, Some("stream-2"), 100_020), Ok(202));
    // Sent at once to the endpoint the records name (it may be lost on the way)...
    assert_eq!(
        kills(&m.take_out()),
        [("ep-a".to_string(), "t1".to_string(), 2000)]
    );
    // ...and again when the agent registers with the task still running.
    let report = TaskReport {
        framework_id: fid.clone(),
        framework_info: m.frameworks[&fid].info.clone(),
        task: json!({"task_id":{"value":"t1"},"name":"t1","resources":[]}),
        status: running,
    };
    let r = m
        .register_agent(
            Registration {
                agent_id: Some(agent.clone()),
                name: "a".into(),
                hostname: "127.0.0.1".into(),
                port: 5051,
                endpoint: "ep-a2".into(),
                resources: "cpus:2;mem:1024".into(),
                attributes: BTreeMap::new(),
                tasks: vec![report.clone()],
            },
            100_030,
        )
        .unwrap();
    assert!(matches!(r, Wire::Registered { .. }), "{r:?}");
    assert_eq!(
        kills(&m.take_out()),
        [("ep-a2".to_string(), "t1".to_string(), 2000)]
    );
    assert!(matches!(
        m.heartbeat(&agent, 100_035),
        Wire::HeartbeatAck { known: true }
    ));
    // A task that ended is not killed again when its agent registers once more.
    m.agent_update(
        &agent,
        &fid,
        json!({"task_id":{"value":"t1"},"state":"TASK_KILLED","uuid":"AAAAAAAAAAAAAAAAAAAAAQ==","source":"SOURCE_EXECUTOR","timestamp":100.04}),
        100_040,
    );
    m.take_out();
    m.register_agent(
        Registration {
            agent_id: Some(agent.clone()),
            name: "a".into(),
            hostname: "127.0.0.1".into(),
            port: 5051,
            endpoint: "ep-a2".into(),
            resources: "cpus:2;mem:1024".into(),
            attributes: BTreeMap::new(),
            tasks: vec![],
        },
        100_050,
    )
    .unwrap();
    assert!(kills(&m.take_out()).is_empty());
}
