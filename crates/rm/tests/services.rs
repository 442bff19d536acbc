//! The services controller's core, driven by scheduler events; its calls are asserted.

use std::collections::HashMap;

use serde_json::{json, Value};
use yard_rm::master::Call;
use yard_rm::services::{Cmd, Controller, Phase, Placement, ServiceSpec};
use yard_rm::ServiceError;

fn spec(name: &str, instances: u32, extra: Value) -> ServiceSpec {
    let mut v = json!({"name": name, "instances": instances, "command": "sleep 100", "cpus": 0.5, "mem": 64});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn offer(id: &str, agent: &str, cpus: f64) -> Value {
    json!({"id": {"value": id}, "agent_id": {"value": agent}, "hostname": format!("host-{agent}"),
           "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                         {"name": "mem", "type": "SCALAR", "scalar": {"value": 4096}},
                         {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31009}]}}],
           "attributes": [{"name": "rack", "type": "TEXT", "text": {"value": if agent == "a2" { "r2" } else { "r1" }}}]})
}

fn offers(c: &mut Controller, list: &[Value], now: u64) -> Vec<Value> {
    c.event(&json!({"type": "OFFERS", "offers": {"offers": list}}), now);
    calls(c)
}

fn calls(c: &mut Controller) -> Vec<Value> {
    c.take_out()
        .into_iter()
        .filter_map(|x| match x {
            Cmd::Call(c) => Some(
                Call {
                    framework_id: None,
                    call: c,
                }
                .to_json(),
            ),
            Cmd::Persist(..) => None,
        })
        .collect()
}

fn launched(calls: &[Value]) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| c["type"] == "ACCEPT")
        .flat_map(|c| {
            c["accept"]["operations"][0]["launch"]["task_infos"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

fn killed(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c["type"] == "KILL")
        .map(|c| c["kill"]["task_id"]["value"].as_str().unwrap().to_string())
        .collect()
}

fn update(
    c: &mut Controller,
    task: &str,
    agent: &str,
    state: &str,
    healthy: Option<bool>,
    now: u64,
) -> Vec<Value> {
    let mut s = json!({"task_id": {"value": task}, "agent_id": {"value": agent}, "state": state, "uuid": "dXVpZA=="});
    if let Some(h) = healthy {
        s["healthy"] = json!(h);
    }
    c.event(&json!({"type": "UPDATE", "update": {"status": s}}), now);
    calls(c)
}

fn subscribed() -> Controller {
    let mut c = Controller::new(0);
    c.event(
        &json!({"type": "SUBSCRIBED", "subscribed": {"framework_id": {"value": "f"}}}),
        0,
    );
    let first = calls(&mut c);
    assert_eq!(
        first[0]["type"], "RECONCILE",
        "implicit reconciliation first"
    );
    assert_eq!(first[1]["type"], "REVIVE");
    c
}

/// Deploys and runs every launched instance to RUNNING (healthy when `healthy`).
fn run_all(c: &mut Controller, tasks: &[Value], healthy: Option<bool>, now: u64) {
    for t in tasks {
        let id = t["task_id"]["value"].as_str().unwrap();
        let agent = t["agent_id"]["value"].as_str().unwrap();
        update(c, id, agent, "TASK_RUNNING", healthy, now);
    }
}

#[test]
fn places_instances_on_offers_with_their_resources_ports_and_environment() {
    let mut c = subscribed();
    c.deploy(spec("web", 3, json!({"ports": 2}))).unwrap();
    // No offer yet: the master's reason is passed on.
    let st = c
        .status("web", 0, Some("no agent has free resources"))
        .unwrap();
    assert_eq!(
        st.waiting.as_deref(),
        Some("waiting for offers: no agent has free resources")
    );
    let out = offers(&mut c, &[offer("o1", "a1", 1.2)], 0);
    let tasks = launched(&out);
    assert_eq!(tasks.len(), 2, "1.2 cpus hold two 0.5-cpu instances");
    let env: Vec<String> = tasks[0]["command"]["environment"]["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{}={}",
                v["name"].as_str().unwrap(),
                v["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        env.contains(&"PORT0=31000".to_string()) && env.contains(&"PORT1=31001".to_string()),
        "{env:?}"
    );
    let second_ports = &tasks[1]["resources"][2]["ranges"]["range"];
    assert_eq!(
        second_ports,
        &json!([{"begin": 31002, "end": 31002}, {"begin": 31003, "end": 31003}]),
        "no port given twice"
    );
    assert_eq!(c.status("web", 0, None).unwrap().waiting.unwrap(),
               "the last offer (agent a1 on host-a1) did not fit: needs cpus:0.5;mem:64, the offer has cpus:0.2;mem:3968;ports:[31004-31009]");
    let out = offers(&mut c, &[offer("o2", "a2", 4.0)], 0);
    assert_eq!(launched(&out).len(), 1);
    assert_eq!(c.status("web", 0, None).unwrap().waiting, None);
}

#[test]
fn constraints_spread_instances() {
    let mut c = subscribed();
    c.deploy(spec(
        "one-per-agent",
        3,
        json!({"constraints": [["agent", "UNIQUE"]]}),
    ))
    .unwrap();
    c.deploy(spec(
        "rack-two",
        2,
        json!({"constraints": [["rack", "CLUSTER", "r2"]]}),
    ))
    .unwrap();
    calls(&mut c);
    let out = offers(&mut c, &[offer("o1", "a1", 8.0), offer("o2", "a2", 8.0)], 0);
    let tasks = launched(&out);
    let on = |svc: &str, agent: &str| {
        tasks
            .iter()
            .filter(|t| t["name"] == svc && t["agent_id"]["value"] == agent)
            .count()
    };
    assert_eq!(
        (on("one-per-agent", "a1"), on("one-per-agent", "a2")),
        (1, 1)
    );
    assert_eq!((on("rack-two", "a1"), on("rack-two", "a2")), (0, 2));
    let w = c.status("one-per-agent", 0, None).unwrap().waiting.unwrap();
    assert!(
        w.contains("constraint agent UNIQUE does not hold there"),
        "{w}"
    );
    // A third agent takes the third instance.
    assert_eq!(
        launched(&offers(&mut c, &[offer("o3", "a3", 8.0)], 0)).len(),
        1
    );
}

#[test]
fn a_failed_instance_is_replaced_after_a_growing_back_off() {
    let mut c = subscribed();
    c.deploy(spec("app", 1, json!({}))).unwrap();
    let t = launched(&offers(&mut c, &[offer("o1", "a1", 4.0)], 0));
    let id = t[0]["task_id"]["value"].as_str().unwrap().to_string();
    update(&mut c, &id, "a1", "TASK_RUNNING", None, 100);
    let acks = update(&mut c, &id, "a1", "TASK_FAILED", None, 1000);
    // A late duplicate of the RUNNING update does not bring it back.
    update(&mut c, &id, "a1", "TASK_RUNNING", None, 1001);
    assert_eq!(c.status("app", 1001, None).unwrap().running, 0);
    assert!(
        acks.iter()
            .any(|a| a["type"] == "ACKNOWLEDGE"
                && a["acknowledge"]["task_id"]["value"] == id.as_str())
    );
    // Within a second: declined, and the service says why it waits.
    let out = offers(&mut c, &[offer("o2", "a1", 4.0)], 1500);
    assert!(launched(&out).is_empty());
    assert_eq!(out[0]["type"], "DECLINE");
    assert_eq!(
        c.status("app", 1500, None).unwrap().waiting.as_deref(),
        Some("backing off 1s after 1 failure(s) in a row")
    );
    let t = launched(&offers(&mut c, &[offer("o3", "a1", 4.0)], 2000));
    assert_eq!(t.len(), 1, "replaced once the back-off is over");
    let id2 = t[0]["task_id"]["value"].as_str().unwrap().to_string();
    update(&mut c, &id2, "a1", "TASK_FAILED", None, 2100);
    assert!(
        launched(&offers(&mut c, &[offer("o4", "a1", 4.0)], 3500)).is_empty(),
        "the second back-off is 2 s"
    );
    let t = launched(&offers(&mut c, &[offer("o5", "a1", 4.0)], 4100));
    assert_eq!(t.len(), 1);
    // Up for STABLE_AFTER: the back-off resets.
    let id3 = t[0]["task_id"]["value"].as_str().unwrap().to_string();
    update(&mut c, &id3, "a1", "TASK_RUNNING", None, 4200);
    c.tick(4200 + yard_rm::services::STABLE_AFTER_MS);
    assert_eq!(c.status("app", 20_000, None).unwrap().failures_in_a_row, 0);
}

#[test]
fn instances_lost_with_their_agent_come_back_elsewhere() {
    let mut c = subscribed();
    c.deploy(spec(
        "svc",
        2,
        json!({"constraints": [["agent", "UNIQUE"]]}),
    ))
    .unwrap();
    let t = launched(&offers(
        &mut c,
        &[offer("o1", "a1", 4.0), offer("o2", "a2", 4.0)],
        0,
    ));
    run_all(&mut c, &t, None, 10);
    let on_a1 = t.iter().find(|x| x["agent_id"]["value"] == "a1").unwrap()["task_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    update(&mut c, &on_a1, "a1", "TASK_LOST", None, 5000);
    let out = offers(
        &mut c,
        &[offer("o3", "a2", 4.0), offer("o4", "a3", 4.0)],
        7000,
    );
    let t2 = launched(&out);
    assert_eq!(t2.len(), 1);
    assert_eq!(
        t2[0]["agent_id"]["value"], "a3",
        "not next to the other instance"
    );
}

#[test]
fn a_rolling_upgrade_keeps_minimum_healthy_capacity() {
    let hc = json!({"type": "command", "command": "true"});
    let upgrade = json!({"minimum_healthy_capacity": 0.5, "maximum_over_capacity": 0.0});
    let mut c = subscribed();
    let v1 = c
        .deploy(spec(
            "api",
            2,
            json!({"health_check": hc, "upgrade": upgrade}),
        ))
        .unwrap();
    let old = launched(&offers(&mut c, &[offer("o1", "a1", 8.0)], 0));
    run_all(&mut c, &old, Some(true), 10);
    c.tick(20);
    assert_eq!(c.status("api", 20, None).unwrap().phase, Phase::Stable);
    let v2 = c
        .deploy(spec(
            "api",
            2,
            json!({"health_check": hc, "upgrade": upgrade, "command": "sleep 200"}),
        ))
        .unwrap();
    assert_ne!(v1, v2);
    calls(&mut c);
    c.tick(30);
    let k = killed(&calls(&mut c));
    assert_eq!(
        k.len(),
        1,
        "one old instance at a time: one healthy must remain"
    );
    // No room for a new one (maximum_over_capacity 0) until the killed one is gone.
    assert!(launched(&offers(&mut c, &[offer("o2", "a1", 8.0)], 40)).is_empty());
    update(&mut c, &k[0], "a1", "TASK_KILLED", None, 50);
    let new = launched(&offers(&mut c, &[offer("o3", "a1", 8.0)], 60));
    assert_eq!(new.len(), 1);
    assert!(new[0]["task_id"]["value"]
        .as_str()
        .unwrap()
        .starts_with(&format!("api.{v2}.")));
    // Running but not yet healthy: the last old instance stays.
    update(
        &mut c,
        new[0]["task_id"]["value"].as_str().unwrap(),
        "a1",
        "TASK_RUNNING",
        None,
        70,
    );
    c.tick(80);
    assert!(killed(&calls(&mut c)).is_empty());
    assert_eq!(c.status("api", 80, None).unwrap().phase, Phase::Upgrading);
    update(
        &mut c,
        new[0]["task_id"]["value"].as_str().unwrap(),
        "a1",
        "TASK_RUNNING",
        Some(true),
        90,
    );
    c.tick(100);
    let k2 = killed(&calls(&mut c));
    assert_eq!(k2.len(), 1);
    assert_ne!(k2[0], k[0]);
    update(&mut c, &k2[0], "a1", "TASK_KILLED", None, 110);
    let last = launched(&offers(&mut c, &[offer("o4", "a1", 8.0)], 120));
    assert_eq!(last.len(), 1);
    update(
        &mut c,
        last[0]["task_id"]["value"].as_str().unwrap(),
        "a1",
        "TASK_RUNNING",
        Some(true),
        130,
    );
    c.tick(140);
    let st = c.status("api", 140, None).unwrap();
    assert_eq!((st.phase, st.healthy), (Phase::Stable, 2));
}

#[test]
fn scaling_and_removal_stop_instances_and_suppress_offers() {
    let mut c = subscribed();
    c.deploy(spec("s", 3, json!({}))).unwrap();
    let t = launched(&offers(&mut c, &[offer("o1", "a1", 8.0)], 0));
    run_all(&mut c, &t, None, 10);
    c.tick(20);
    assert!(
        calls(&mut c).iter().any(|x| x["type"] == "SUPPRESS"),
        "nothing needed: offers suppressed"
    );
    let v = c.status("s", 20, None).unwrap().version;
    c.scale("s", 1).unwrap();
    assert!(calls(&mut c).iter().any(|x| x["type"] == "REVIVE"));
    c.tick(30);
    assert_eq!(killed(&calls(&mut c)).len(), 2);
    assert_eq!(
        c.status("s", 30, None).unwrap().version,
        v,
        "scaling is no new version"
    );
    c.remove("s").unwrap();
    // A service being removed takes no new version or scale until it is gone (409), and
    // one that never existed is not found (404).
    let e = c.deploy(spec("s", 3, json!({}))).unwrap_err();
    assert_eq!((e.status(), &e), (409, &ServiceError::Removing("s".into())));
    let e = c.scale("s", 2).unwrap_err();
    assert_eq!((e.status(), &e), (409, &ServiceError::Removing("s".into())));
    let e = c.scale("ghost", 2).unwrap_err();
    assert_eq!(
        (e.status(), &e),
        (404, &ServiceError::NotFound("ghost".into()))
    );
    assert_eq!(
        c.remove("ghost"),
        Err(ServiceError::NotFound("ghost".into()))
    );
    c.tick(40);
    let k = killed(&calls(&mut c));
    assert_eq!(
        k.len(),
        1,
        "the last one; the other two are already stopping"
    );
    for x in &t {
        update(
            &mut c,
            x["task_id"]["value"].as_str().unwrap(),
            "a1",
            "TASK_KILLED",
            None,
            50,
        );
    }
    c.tick(60);
    assert!(
        c.status("s", 60, None).is_none(),
        "gone once every instance ended"
    );
    assert!(c.scale("s", 2).is_err());
}

#[test]
fn reconciliation_adopts_running_instances_after_a_restart() {
    let mut c = Controller::new(99);
    c.recover(vec![spec("kept", 2, json!({}))], HashMap::new());
    let v = c.services["kept"].version.clone();
    c.event(&json!({"type": "SUBSCRIBED"}), 0);
    calls(&mut c);
    update(
        &mut c,
        &format!("kept.{v}.1"),
        "a1",
        "TASK_RUNNING",
        None,
        10,
    );
    update(
        &mut c,
        &format!("kept.{v}.2"),
        "a2",
        "TASK_RUNNING",
        None,
        10,
    );
    let st = c.status("kept", 10, None).unwrap();
    assert_eq!(st.running, 2);
    assert!(
        launched(&offers(&mut c, &[offer("o1", "a3", 8.0)], 20)).is_empty(),
        "nothing relaunched"
    );
}

/// What the controller persisted: key → value (`None`: erased), in order, later ones winning.
fn persisted(out: &[Cmd]) -> Vec<(String, Option<Value>)> {
    out.iter()
        .filter_map(|x| match x {
            Cmd::Persist(k, v) => Some((k.clone(), v.clone())),
            Cmd::Call(_) => None,
        })
        .collect()
}

#[test]
fn an_adopted_instance_keeps_its_ports_and_host_across_a_restart_and_its_record_goes_with_it() {
    let mut c = subscribed();
    c.deploy(spec("web", 1, json!({"ports": 2}))).unwrap();
    c.take_out();
    c.event(
        &json!({"type": "OFFERS", "offers": {"offers": [offer("o1", "a1", 1.0)]}}),
        0,
    );
    let out = c.take_out();
    let tid = c.instances.keys().next().unwrap().clone();
    let want = Placement {
        ports: vec![31000, 31001],
        hostname: "host-a1".into(),
    };
    assert_eq!(
        persisted(&out),
        vec![(
            format!("instance/{tid}"),
            Some(serde_json::to_value(&want).unwrap())
        )],
        "the placement is kept at the launch"
    );

    // A restarted controller: the spec and the placement from the store, the task from the
    // master's reconciliation.
    let mut r = Controller::new(7);
    let specs = vec![c.services["web"].spec.clone()];
    r.recover(specs, HashMap::from([(tid.clone(), want.clone())]));
    r.event(&json!({"type": "SUBSCRIBED"}), 0);
    calls(&mut r);
    update(&mut r, &tid, "a1", "TASK_RUNNING", None, 10);
    let st = r.status("web", 10, None).unwrap();
    assert_eq!(st.tasks[0].ports, vec![31000, 31001]);
    assert_eq!(st.tasks[0].hostname.as_deref(), Some("host-a1"));

    // Its end erases the record.
    let mut s = json!({"task_id": {"value": tid}, "agent_id": {"value": "a1"}, "state": "TASK_KILLED", "uuid": "dXVpZA=="});
    s["healthy"] = json!(false);
    r.event(&json!({"type": "UPDATE", "update": {"status": s}}), 20);
    assert!(persisted(&r.take_out()).contains(&(format!("instance/{tid}"), None)));

    // A placement whose task never comes back is erased when the master says it is gone.
    let mut g = Controller::new(8);
    g.recover(
        vec![c.services["web"].spec.clone()],
        HashMap::from([("web.x.9".to_string(), want)]),
    );
    g.event(&json!({"type": "SUBSCRIBED"}), 0);
    g.take_out();
    let s = json!({"task_id": {"value": "web.x.9"}, "agent_id": {"value": "a9"}, "state": "TASK_LOST", "uuid": "dXVpZA=="});
    g.event(&json!({"type": "UPDATE", "update": {"status": s}}), 5);
    assert!(persisted(&g.take_out()).contains(&("instance/web.x.9".to_string(), None)));
}

#[test]
fn bad_specs_are_refused_with_the_field() {
    let mut c = Controller::new(0);
    for (extra, why) in [
        (json!({"name": "Bad_Name"}), "name"),
        (json!({"command": " "}), "command is empty"),
        (json!({"cpus": -1.0}), "cpus"),
        (
            json!({"constraints": [["agent", "SOMETIMES"]]}),
            "is not one of",
        ),
        (
            json!({"upgrade": {"minimum_healthy_capacity": 1.0, "maximum_over_capacity": 0.0}}),
            "no room",
        ),
        (
            json!({"health_check": {"type": "http", "port_index": 1}, "ports": 1}),
            "port_index 1",
        ),
        (
            json!({"health_check": {"type": "grpc"}}),
            "not one of http, tcp, command",
        ),
    ] {
        let e = c.deploy(spec("x", 1, extra.clone()));
        let e = e.unwrap_err();
        assert!(
            matches!(&e, ServiceError::Invalid(m) if m.contains(why)),
            "{extra}: {e}"
        );
    }
}

#[test]
fn instances_spread_over_the_offered_agents() {
    let mut c = subscribed();
    c.deploy(spec("spread", 4, json!({}))).unwrap();
    let t = launched(&offers(
        &mut c,
        &[
            offer("o1", "a1", 8.0),
            offer("o2", "a2", 8.0),
            offer("o3", "a3", 8.0),
        ],
        0,
    ));
    let mut per: Vec<usize> = ["a1", "a2", "a3"]
        .iter()
        .map(|a| t.iter().filter(|x| x["agent_id"]["value"] == *a).count())
        .collect();
    per.sort();
    assert_eq!(per, vec![1, 1, 2]);
}

/// The known flake of the manager-restart test: after a restart, `service rm` killed the adopted
/// instances once; a kill lost on the way (their agent not yet back with the new master) left
/// the service "removing" for ever. The kill is now sent again until the instance ends.
#[test]
fn a_lost_kill_of_an_adopted_instance_is_sent_again_until_it_ends() {
    use yard_rm::services::KILL_RETRY_MS;
    let mut c = Controller::new(99);
    c.recover(
        vec![spec("kept", 1, json!({"kill_grace": 1.0}))],
        HashMap::new(),
    );
    let v = c.services["kept"].version.clone();
    c.event(&json!({"type": "SUBSCRIBED"}), 0);
    calls(&mut c);
    let id = format!("kept.{v}.1");
    update(&mut c, &id, "a1", "TASK_RUNNING", None, 10);
    c.remove("kept").unwrap();
    c.tick(100);
    assert_eq!(killed(&calls(&mut c)), std::slice::from_ref(&id));
    // Within the grace period and the retry delay: nothing more.
    c.tick(100 + 1000 + KILL_RETRY_MS - 1);
    assert!(killed(&calls(&mut c)).is_empty());
    // The instance did not end: the kill goes again, and again after as long.
    c.tick(100 + 1000 + KILL_RETRY_MS);
    assert_eq!(killed(&calls(&mut c)), std::slice::from_ref(&id));
    c.tick(100 + 2 * (1000 + KILL_RETRY_MS));
    assert_eq!(killed(&calls(&mut c)), std::slice::from_ref(&id));
    update(&mut c, &id, "a1", "TASK_KILLED", None, 20_000);
    c.tick(20_001);
    assert!(killed(&calls(&mut c)).is_empty());
    assert!(c.status("kept", 20_001, None).is_none(), "gone");
}
