//! Read views of the master in Mesos's JSON shapes: the legacy endpoints (`/master/state`,
//! `/slaves`, `/master/frameworks`, `/tasks`, `/metrics/snapshot`) and the v1 operator API
//! (`GET_STATE`, `GET_AGENTS`, `GET_FRAMEWORKS`, `GET_TASKS`). Pure functions of [`Master`].
//!
//! Beyond Mesos, each framework carries `waiting` (why it got no offer in the last cycle) and
//! each agent `name`: unknown keys are ignored by Mesos clients.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::master::{Agent, Framework, Master, Task};
use crate::mesos::legacy::{FrameworkRow, Frameworks, OfferRow, Slave, Slaves, TaskRow, Tasks};
use crate::mesos::resources::Resources;
use crate::mesos::{mid, MESOS_VERSION};

fn agent_pid(a: &Agent) -> String {
    format!("slave(1)@{}:{}", a.hostname, a.port)
}

fn text(info: &Value, key: &str) -> String {
    info.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub fn slave(a: &Agent) -> Slave {
    Slave {
        id: a.id.clone(),
        name: a.name.clone(),
        hostname: a.hostname.clone(),
        port: a.port,
        pid: agent_pid(a),
        attributes: a.attributes.clone(),
        registered_time: a.registered_s,
        reregistered_time: a.reregistered_s,
        resources: a.total.summary(),
        used_resources: a.used.summary(),
        offered_resources: a.offered.summary(),
        reserved_resources: BTreeMap::new(),
        unreserved_resources: a.total.summary(),
        active: a.reachable,
        deactivated: !a.reachable,
        version: MESOS_VERSION.to_string(),
        capabilities: ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"]
            .map(String::from)
            .to_vec(),
        reserved_resources_full: BTreeMap::new(),
        unreserved_resources_full: a.total.to_json(None),
        used_resources_full: a.used.to_json(None),
        offered_resources_full: a.offered.to_json(None),
    }
}

/// A task in the legacy shape (`statuses` oldest first; `executor_id` "" for command tasks).
pub fn task(t: &Task) -> TaskRow {
    let exec = t
        .info
        .pointer("/executor/executor_id/value")
        .and_then(Value::as_str)
        .unwrap_or("");
    let part = |k: &str| t.info.get(k).cloned();
    TaskRow {
        id: t.id.clone(),
        name: text(&t.info, "name"),
        framework_id: t.framework_id.clone(),
        executor_id: exec.to_string(),
        slave_id: t.agent_id.clone(),
        agent_id: t.agent_id.clone(),
        state: t.state,
        resources: t.resources.summary(),
        role: t.role.clone(),
        statuses: t.statuses.clone(),
        labels: part("labels"),
        discovery: part("discovery"),
        container: part("container"),
        health_check: part("health_check"),
        user: part("user"),
    }
}

fn framework(m: &Master, f: &Framework) -> FrameworkRow {
    let info = &f.info;
    let capabilities = info
        .get("capabilities")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("type").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut allocated = f.used.clone();
    allocated.add(&f.offered);
    let active: Vec<&Task> = m
        .tasks
        .values()
        .filter(|t| t.framework_id == f.id)
        .collect();
    FrameworkRow {
        id: f.id.clone(),
        name: text(info, "name"),
        user: text(info, "user"),
        hostname: text(info, "hostname"),
        webui_url: text(info, "webui_url"),
        principal: info
            .get("principal")
            .and_then(Value::as_str)
            .map(String::from),
        failover_timeout: info
            .get("failover_timeout")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        checkpoint: info
            .get("checkpoint")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        role: f.role.clone(),
        roles: vec![f.role.clone()],
        capabilities,
        active: f.connected && !f.suppressed,
        connected: f.connected,
        recovered: f.recovered,
        suppressed: f.suppressed,
        registered_time: f.registered_s,
        reregistered_time: f.reregistered_s,
        unregistered_time: f.unregistered_s.unwrap_or(0.0),
        resources: allocated.summary(),
        used_resources: f.used.summary(),
        offered_resources: f.offered.summary(),
        waiting: f.waiting.clone(),
        offer_constraints: BTreeMap::new(),
        labels: info.get("labels").cloned(),
        tasks: active
            .iter()
            .filter(|t| !t.unreachable)
            .map(|t| task(t))
            .collect(),
        unreachable_tasks: active
            .iter()
            .filter(|t| t.unreachable)
            .map(|t| task(t))
            .collect(),
        completed_tasks: f.completed.iter().map(task).collect(),
        offers: m
            .offers
            .values()
            .filter(|o| o.framework_id == f.id)
            .map(|o| OfferRow {
                id: o.id.clone(),
                framework_id: o.framework_id.clone(),
                slave_id: o.agent_id.clone(),
                resources: o.resources.summary(),
            })
            .collect(),
        executors: Vec::new(),
    }
}

pub fn slaves(m: &Master) -> Slaves {
    Slaves {
        slaves: m.agents.values().map(slave).collect(),
        recovered_slaves: Vec::new(),
    }
}

pub fn frameworks(m: &Master, only: Option<&str>) -> Frameworks {
    let pick = |f: &&Framework| only.is_none_or(|id| f.id == id);
    Frameworks {
        frameworks: m
            .frameworks
            .values()
            .filter(pick)
            .map(|f| framework(m, f))
            .collect(),
        completed_frameworks: m
            .completed_frameworks
            .iter()
            .filter(pick)
            .map(|f| framework(m, f))
            .collect(),
        unregistered_frameworks: Vec::new(),
    }
}

/// Query of `/tasks`: `limit` (default 100, -1 all), `offset`, `order` (`asc`/`des`, by first
/// status time), `framework_id`, `task_id`.
#[derive(Debug, Default, Clone)]
pub struct TaskQuery {
    pub limit: Option<i64>,
    pub offset: Option<usize>,
    pub order: Option<String>,
    pub framework_id: Option<String>,
    pub task_id: Option<String>,
}

pub fn all_tasks(m: &Master) -> Vec<&Task> {
    let mut all: Vec<&Task> = m.tasks.values().collect();
    for f in m.frameworks.values().chain(m.completed_frameworks.iter()) {
        all.extend(f.completed.iter());
    }
    all
}

pub fn tasks(m: &Master, q: &TaskQuery) -> Tasks {
    let first = |t: &Task| {
        t.statuses
            .first()
            .and_then(|s| s.get("timestamp"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    let mut all: Vec<&Task> = all_tasks(m)
        .into_iter()
        .filter(|t| q.framework_id.as_ref().is_none_or(|f| &t.framework_id == f))
        .filter(|t| q.task_id.as_ref().is_none_or(|id| &t.id == id))
        .collect();
    all.sort_by(|a, b| first(a).total_cmp(&first(b)).then_with(|| a.id.cmp(&b.id)));
    if q.order.as_deref() != Some("asc") {
        all.reverse();
    }
    let limit = match q.limit {
        Some(n) if n < 0 => usize::MAX,
        Some(n) => n as usize,
        None => 100,
    };
    Tasks {
        tasks: all
            .into_iter()
            .skip(q.offset.unwrap_or(0))
            .take(limit)
            .map(task)
            .collect(),
    }
}

pub fn version() -> Value {
    json!({"version": MESOS_VERSION, "build_date": "2026-01-01 00:00:00", "build_time": 1767225600.0, "build_user": "switchyard",
           "git_tag": format!("switchyard-{}", env!("CARGO_PKG_VERSION"))})
}

pub fn state(m: &Master, now_s: f64) -> Value {
    let (active, inactive) =
        m.agents.values().fold(
            (0, 0),
            |(a, i), x| if x.reachable { (a + 1, i) } else { (a, i + 1) },
        );
    let mut v = version();
    let extra = json!({
        "start_time": m.started_s, "elected_time": m.started_s, "id": m.cfg.id,
        "pid": format!("master@{}:{}", m.cfg.ip, m.cfg.port), "hostname": m.cfg.hostname,
        "capabilities": ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"],
        "activated_slaves": active, "deactivated_slaves": 0, "unreachable_slaves": inactive,
        "leader": format!("master@{}:{}", m.cfg.ip, m.cfg.port), "leader_info": m.master_info(),
        "flags": {
            "offer_timeout": format!("{}secs", m.cfg.offer_timeout_ms as f64 / 1000.0),
            "agent_ping_timeout": format!("{}secs", m.cfg.agent_timeout_ms as f64 / 1000.0),
            "min_allocatable_resources": m.cfg.min_allocatable.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("|"),
        },
        "uptime_secs": now_s - m.started_s,
        "slaves": m.agents.values().map(slave).collect::<Vec<_>>(),
        "frameworks": m.frameworks.values().map(|f| framework(m, f)).collect::<Vec<_>>(),
        "completed_frameworks": m.completed_frameworks.iter().map(|f| framework(m, f)).collect::<Vec<_>>(),
        "orphan_tasks": [], "unregistered_frameworks": [],
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

pub fn metrics(m: &Master, now_s: f64) -> Value {
    let mut total = Resources::new();
    let mut used = Resources::new();
    for a in m.agents.values().filter(|a| a.reachable) {
        total.add(&a.total);
        used.add(&a.used);
    }
    let count = |s: &str| m.tasks.values().filter(|t| t.state == s).count();
    let done = |s: &str| all_tasks(m).iter().filter(|t| t.state == s).count();
    let r = |x: &Resources, k: &str| x.scalar(k) as f64 / 1000.0;
    json!({
        "master/elected": 1, "master/uptime_secs": now_s - m.started_s,
        "master/slaves_active": m.agents.values().filter(|a| a.reachable).count(),
        "master/slaves_connected": m.agents.values().filter(|a| a.reachable).count(),
        "master/slaves_unreachable": m.agents.values().filter(|a| !a.reachable).count(),
        "master/frameworks_active": m.frameworks.values().filter(|f| f.connected).count(),
        "master/frameworks_connected": m.frameworks.values().filter(|f| f.connected).count(),
        "master/frameworks_disconnected": m.frameworks.values().filter(|f| !f.connected).count(),
        "master/outstanding_offers": m.offers.len(),
        "master/tasks_staging": count("TASK_STAGING"), "master/tasks_starting": count("TASK_STARTING"),
        "master/tasks_running": count("TASK_RUNNING"), "master/tasks_killing": count("TASK_KILLING"),
        "master/tasks_unreachable": m.tasks.values().filter(|t| t.unreachable).count(),
        "master/tasks_finished": done("TASK_FINISHED"), "master/tasks_failed": done("TASK_FAILED"),
        "master/tasks_killed": done("TASK_KILLED"), "master/tasks_lost": done("TASK_LOST"),
        "master/tasks_error": done("TASK_ERROR"),
        "master/cpus_total": r(&total, "cpus"), "master/cpus_used": r(&used, "cpus"),
        "master/mem_total": r(&total, "mem"), "master/mem_used": r(&used, "mem"),
        "master/disk_total": r(&total, "disk"), "master/disk_used": r(&used, "disk"),
        "master/gpus_total": r(&total, "gpus"), "master/gpus_used": r(&used, "gpus"),
        "allocator/mesos/allocation_run_ms": m.last_allocation_ms,
    })
}

// ---------------------------------------------------------------- operator API (v1)

fn ns(s: f64) -> Value {
    json!({"nanoseconds": (s * 1e9) as i64})
}

fn v1_task(t: &Task) -> Value {
    let statuses: Vec<Value> = t
        .statuses
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s["task_id"] = mid(&t.id);
            s["agent_id"] = mid(&t.agent_id);
            s
        })
        .collect();
    let mut v = json!({
        "name": t.info.get("name").cloned().unwrap_or(json!("")), "task_id": mid(&t.id),
        "framework_id": mid(&t.framework_id), "agent_id": mid(&t.agent_id), "state": t.state,
        "resources": t.resources.to_json(Some(&t.role)), "statuses": statuses,
    });
    if let Some(e) = t.info.pointer("/executor/executor_id") {
        v["executor_id"] = e.clone();
    }
    v
}

fn v1_agent(a: &Agent) -> Value {
    json!({
        "agent_info": {"hostname": a.hostname, "port": a.port, "id": mid(&a.id), "resources": a.total.to_json(None),
                        "attributes": crate::mesos::resources::attributes_json(&a.attributes)},
        "active": a.reachable, "deactivated": !a.reachable, "version": MESOS_VERSION, "pid": agent_pid(a),
        "registered_time": ns(a.registered_s), "total_resources": a.total.to_json(None),
        "allocated_resources": a.used.to_json(None), "offered_resources": a.offered.to_json(None),
        "capabilities": [{"type": "MULTI_ROLE"}],
    })
}

fn v1_framework(f: &Framework) -> Value {
    json!({
        "framework_info": f.info, "active": f.connected && !f.suppressed, "connected": f.connected,
        "recovered": f.recovered, "registered_time": ns(f.registered_s),
        "allocated_resources": f.used.to_json(Some(&f.role)), "offered_resources": f.offered.to_json(Some(&f.role)),
    })
}

pub fn get_agents(m: &Master) -> Value {
    json!({"agents": m.agents.values().map(v1_agent).collect::<Vec<_>>(), "recovered_agents": []})
}

pub fn get_frameworks(m: &Master) -> Value {
    json!({
        "frameworks": m.frameworks.values().map(v1_framework).collect::<Vec<_>>(),
        "completed_frameworks": m.completed_frameworks.iter().map(v1_framework).collect::<Vec<_>>(),
    })
}

pub fn get_tasks(m: &Master) -> Value {
    let mut completed = Vec::new();
    for f in m.frameworks.values().chain(m.completed_frameworks.iter()) {
        completed.extend(f.completed.iter().map(v1_task));
    }
    json!({
        "tasks": m.tasks.values().filter(|t| !t.unreachable && !t.state.is_terminal()).map(v1_task).collect::<Vec<_>>(),
        "unreachable_tasks": m.tasks.values().filter(|t| t.unreachable).map(v1_task).collect::<Vec<_>>(),
        "completed_tasks": completed, "pending_tasks": [], "orphan_tasks": [],
    })
}

/// Answers a v1 operator call `{"type": T}`: `(status, body)`.
pub fn operator(m: &Master, call: &Value, now_s: f64) -> (u16, Value) {
    let kind = call.get("type").and_then(Value::as_str).unwrap_or("");
    let body = match kind {
        "GET_HEALTH" => json!({"healthy": true}),
        "GET_VERSION" => json!({"version_info": version()}),
        "GET_MASTER" => json!({"master_info": m.master_info(), "start_time": m.started_s, "elected_time": m.started_s}),
        "GET_METRICS" => {
            let metrics = metrics(m, now_s);
            let list: Vec<Value> = metrics.as_object().map(|o| o.iter().map(|(k, v)| json!({"name": k, "value": v})).collect()).unwrap_or_default();
            json!({"metrics": list})
        }
        "GET_AGENTS" => get_agents(m),
        "GET_FRAMEWORKS" => get_frameworks(m),
        "GET_TASKS" => get_tasks(m),
        "GET_EXECUTORS" => json!({"executors": []}),
        "GET_STATE" => json!({"get_tasks": get_tasks(m), "get_executors": {"executors": []},
                              "get_frameworks": get_frameworks(m), "get_agents": get_agents(m)}),
        "GET_ROLES" => {
            let mut roles: Vec<&str> = m.frameworks.values().map(|f| f.role.as_str()).collect();
            roles.sort();
            roles.dedup();
            json!({"roles": roles.iter().map(|r| json!({"name": r, "weight": m.cfg.weights.get(*r).copied().unwrap_or(1.0)})).collect::<Vec<_>>()})
        }
        "" => return (400, json!("Failed to validate master::Call: Expecting 'type' to be present")),
        other => return (501, json!(format!("operator call {other} is not supported; supported: GET_HEALTH, GET_VERSION, GET_MASTER, GET_METRICS, GET_AGENTS, GET_FRAMEWORKS, GET_TASKS, GET_EXECUTORS, GET_STATE, GET_ROLES"))),
    };
    let key = kind.to_ascii_lowercase();
    (200, json!({"type": kind, key: body}))
}
