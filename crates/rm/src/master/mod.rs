//! The master as a state machine: no I/O, no clock. The shell ([`server`]) feeds it calls
//! from schedulers, messages from agents and ticks with the time, and carries out what it emits
//! ([`Out`]): events for framework streams, messages for agents, records to persist.
//!
//! It owns frameworks, agents, offers and tasks. Offers come from [`allocator::allocate`] and
//! expire after `offer_timeout` (rescinded, so no framework hoards). Agents silent for
//! `agent_timeout` become unreachable: their tasks are reported `TASK_UNREACHABLE` to
//! partition-aware frameworks and `TASK_LOST` to the others. A framework whose stream broke is
//! removed after its `failover_timeout`, its tasks killed.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Value};

pub mod allocator;
pub mod server;
pub mod views;

use self::allocator::{AgentSlot, FrameworkSlot, Snapshot};
use crate::error::KillError;
use crate::mesos::resources::{number, ResourceError, Resources};
use crate::mesos::{get_id, is_terminal, mid, MESOS_VERSION};
use crate::proto::{Registration, TaskReport, Wire};

/// Completed tasks kept per framework, and completed frameworks kept (Mesos's figures).
pub const MAX_COMPLETED_TASKS: usize = 1000;
pub const MAX_COMPLETED_FRAMEWORKS: usize = 50;
/// `refuse_seconds` when a framework gives none, and its cap (365 days).
pub const DEFAULT_REFUSE_S: f64 = 5.0;
pub const MAX_REFUSE_S: f64 = 31_536_000.0;

#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// A fresh id per start: framework, agent and offer ids are made from it.
    pub id: String,
    pub hostname: String,
    pub ip: String,
    pub port: u16,
    pub offer_timeout_ms: u64,
    pub agent_timeout_ms: u64,
    pub heartbeat_interval_s: f64,
    pub min_allocatable: Vec<Resources>,
    pub weights: HashMap<String, f64>,
    /// The kill grace period when a KILL gives no kill policy.
    pub kill_grace_ms: u64,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A scheduler event for the framework's stream (dropped when it has none).
    Event { framework: String, event: Value },
    /// End the framework's stream (after TEARDOWN, or removal).
    Close { framework: String },
    /// A message for an agent's endpoint.
    Agent { endpoint: String, msg: Wire },
    /// Write `value` under `key` in the master's store (`None` deletes).
    Persist { key: String, value: Option<Value> },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotImplemented(String),
}

impl CallError {
    pub fn status(&self) -> u16 {
        match self {
            CallError::BadRequest(_) => 400,
            CallError::Forbidden(_) => 403,
            CallError::NotImplemented(_) => 501,
        }
    }
}

fn bad(m: impl Into<String>) -> CallError {
    CallError::BadRequest(m.into())
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    /// The TaskInfo as launched (with `agent_id`).
    pub info: Value,
    pub resources: Resources,
    pub state: String,
    /// Every status, oldest first.
    pub statuses: Vec<Value>,
    pub role: String,
    /// Reported unreachable (its agent is silent).
    pub unreachable: bool,
}

#[derive(Debug, Clone)]
pub struct Framework {
    pub id: String,
    pub info: Value,
    pub role: String,
    pub partition_aware: bool,
    pub connected: bool,
    /// The `Mesos-Stream-Id` of its live stream.
    pub stream: Option<String>,
    pub suppressed: bool,
    pub filters: HashMap<String, u64>,
    pub registered_s: f64,
    pub reregistered_s: Option<f64>,
    pub unregistered_s: Option<f64>,
    pub failover_timeout_ms: u64,
    pub disconnected_at_ms: Option<u64>,
    pub used: Resources,
    pub offered: Resources,
    /// Why it got no offer in the last allocation cycle, if it got none.
    pub waiting: Option<String>,
    pub completed: VecDeque<Task>,
    /// Known from the store after a restart, not yet subscribed again.
    pub recovered: bool,
}

impl Framework {
    /// A framework known by id only; [`Framework::apply_info`] fills in what its info says.
    fn new(id: &str, registered_s: f64) -> Framework {
        Framework {
            id: id.to_string(),
            info: Value::Null,
            role: "*".into(),
            partition_aware: false,
            connected: false,
            stream: None,
            suppressed: false,
            filters: HashMap::new(),
            registered_s,
            reregistered_s: None,
            unregistered_s: None,
            failover_timeout_ms: 0,
            disconnected_at_ms: None,
            used: Resources::new(),
            offered: Resources::new(),
            waiting: None,
            completed: VecDeque::new(),
            recovered: false,
        }
    }

    /// Takes a FrameworkInfo (with its `id`): its role (the first of `roles`, else `role`, else
    /// `*`), whether it is PARTITION_AWARE, its failover timeout (capped at 365 days).
    fn apply_info(&mut self, info: Value) {
        self.role = info
            .get("roles")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .or_else(|| info.get("role"))
            .and_then(Value::as_str)
            .unwrap_or("*")
            .to_string();
        self.partition_aware = info
            .get("capabilities")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("type").and_then(Value::as_str) == Some("PARTITION_AWARE"))
            });
        self.failover_timeout_ms = info
            .get("failover_timeout")
            .and_then(number)
            .filter(|f| f.is_finite())
            .map(|f| (f.clamp(0.0, MAX_REFUSE_S) * 1000.0) as u64)
            .unwrap_or(0);
        self.info = info;
    }
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub endpoint: String,
    pub total: Resources,
    pub used: Resources,
    pub offered: Resources,
    pub attributes: BTreeMap<String, String>,
    pub registered_s: f64,
    pub reregistered_s: Option<f64>,
    pub last_seen_ms: u64,
    pub reachable: bool,
}

impl Agent {
    pub fn available(&self) -> Resources {
        let mut r = self.total.clone();
        let _ = r.subtract(&self.used);
        let _ = r.subtract(&self.offered);
        r
    }
}

#[derive(Debug, Clone)]
pub struct Offer {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    pub resources: Resources,
    pub expires_ms: u64,
}

pub struct Master {
    pub cfg: MasterConfig,
    pub frameworks: BTreeMap<String, Framework>,
    pub completed_frameworks: VecDeque<Framework>,
    pub agents: BTreeMap<String, Agent>,
    pub offers: BTreeMap<String, Offer>,
    /// (framework id, task id) → task, for tasks not yet terminal.
    pub tasks: BTreeMap<(String, String), Task>,
    /// Custom executors in use, (agent, framework, executor id) → (live tasks on it, its
    /// resources): an executor's resources count once, from its first task to its last.
    executors: BTreeMap<(String, String, String), (usize, Resources)>,
    next_framework: u64,
    next_agent: u64,
    next_offer: u64,
    rotation: usize,
    pub started_s: f64,
    pub last_allocation_ms: f64,
    out: Vec<Out>,
}

fn secs(now_ms: u64) -> f64 {
    now_ms as f64 / 1000.0
}

impl Master {
    pub fn new(cfg: MasterConfig, now_ms: u64) -> Master {
        Master {
            cfg,
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            agents: BTreeMap::new(),
            offers: BTreeMap::new(),
            tasks: BTreeMap::new(),
            executors: BTreeMap::new(),
            next_framework: 0,
            next_agent: 0,
            next_offer: 0,
            rotation: 0,
            started_s: secs(now_ms),
            last_allocation_ms: 0.0,
            out: Vec::new(),
        }
    }

    /// What the last inputs produced, in order.
    pub fn take_out(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    fn event(&mut self, framework: &str, event: Value) {
        self.out.push(Out::Event {
            framework: framework.to_string(),
            event,
        });
    }

    fn send_agent(&mut self, agent_id: &str, msg: Wire) {
        if let Some(a) = self.agents.get(agent_id) {
            self.out.push(Out::Agent {
                endpoint: a.endpoint.clone(),
                msg,
            });
        }
    }

    pub fn master_info(&self) -> Value {
        json!({
            "id": self.cfg.id, "ip": ip_as_u32(&self.cfg.ip), "port": self.cfg.port,
            "hostname": self.cfg.hostname, "version": MESOS_VERSION,
            "address": {"hostname": self.cfg.hostname, "ip": self.cfg.ip, "port": self.cfg.port},
            "pid": format!("master@{}:{}", self.cfg.ip, self.cfg.port),
        })
    }

    // ---------------------------------------------------------------- schedulers

    /// SUBSCRIBE on a new stream `stream`. Returns the framework id; the first event on the
    /// stream (SUBSCRIBED) is emitted.
    pub fn subscribe(
        &mut self,
        call: &Value,
        stream: &str,
        now_ms: u64,
    ) -> Result<String, CallError> {
        let info = call
            .pointer("/subscribe/framework_info")
            .filter(|v| v.is_object())
            .ok_or_else(|| {
                bad("Failed to validate scheduler::Call: Expecting 'subscribe' to be present")
            })?
            .clone();
        for field in ["user", "name"] {
            if !info.get(field).is_some_and(Value::is_string) {
                return Err(bad(format!(
                    "Failed to validate scheduler::Call: framework_info.{field} is required"
                )));
            }
        }
        let call_id = get_id(call, "framework_id");
        let info_id = get_id(&info, "id");
        if call_id != info_id {
            return Err(bad(
                "Failed to validate scheduler::Call: 'framework_id' differs from 'subscribe.framework_info.id'",
            ));
        }
        let id = match call_id {
            Some(id) => {
                if !self.frameworks.contains_key(id) {
                    return Err(bad(format!("Framework {id} is not known (it was removed, or never subscribed to this master)")));
                }
                id.to_string()
            }
            None => {
                let id = format!("{}-{:04}", self.cfg.id, self.next_framework);
                self.next_framework += 1;
                id
            }
        };
        let mut stored_info = info;
        stored_info["id"] = mid(&id);
        let resubscribe = self.frameworks.contains_key(&id);
        let f = self
            .frameworks
            .entry(id.clone())
            .or_insert_with(|| Framework::new(&id, secs(now_ms)));
        if resubscribe {
            f.reregistered_s = Some(secs(now_ms));
        }
        if f.stream.is_some() {
            // One subscription per framework: the old stream ends.
            self.out.push(Out::Close {
                framework: id.clone(),
            });
        }
        f.apply_info(stored_info);
        f.connected = true;
        f.recovered = false;
        f.stream = Some(stream.to_string());
        f.disconnected_at_ms = None;
        f.unregistered_s = None;
        f.suppressed = call
            .pointer("/subscribe/suppressed_roles")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(f.role.as_str())));
        let record = json!({"info": f.info, "registered_s": f.registered_s});
        self.out.push(Out::Persist {
            key: format!("framework/{id}"),
            value: Some(record),
        });
        let subscribed = json!({"type": "SUBSCRIBED", "subscribed": {
            "framework_id": mid(&id),
            "heartbeat_interval_seconds": self.cfg.heartbeat_interval_s,
            "master_info": self.master_info(),
        }});
        self.event(&id, subscribed);
        Ok(id)
    }

    /// The stream `stream` of `framework` ended (the connection closed).
    pub fn disconnected(&mut self, framework: &str, stream: &str, now_ms: u64) {
        let Some(f) = self.frameworks.get_mut(framework) else {
            return;
        };
        if f.stream.as_deref() != Some(stream) {
            return; // an older stream, already replaced
        }
        f.connected = false;
        f.stream = None;
        f.disconnected_at_ms = Some(now_ms);
        f.unregistered_s = Some(secs(now_ms));
        // Its offers go back: nobody is there to use them.
        let ids: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.framework_id == framework)
            .map(|o| o.id.clone())
            .collect();
        for id in ids {
            self.remove_offer(&id);
        }
    }

    /// A call other than SUBSCRIBE; `Ok(202)` or `Ok(200)` is the HTTP status to answer.
    pub fn call(
        &mut self,
        call: &Value,
        stream: Option<&str>,
        now_ms: u64,
    ) -> Result<u16, CallError> {
        let kind = call.get("type").and_then(Value::as_str).ok_or_else(|| {
            bad("Failed to validate scheduler::Call: Expecting 'type' to be present")
        })?;
        let fid = get_id(call, "framework_id")
            .ok_or_else(|| {
                bad("Failed to validate scheduler::Call: Expecting 'framework_id' to be present")
            })?
            .to_string();
        let Some(f) = self.frameworks.get(&fid) else {
            return Err(bad("Framework cannot be found"));
        };
        if !f.connected {
            return Err(CallError::Forbidden("Framework is not subscribed".into()));
        }
        if f.stream.as_deref() != stream {
            return Err(bad(format!(
                "The stream ID '{}' included in this request didn't match the stream ID currently associated with framework ID {fid}",
                stream.unwrap_or("")
            )));
        }
        match kind {
            "TEARDOWN" => {
                self.remove_framework(&fid, now_ms);
                Ok(202)
            }
            "ACCEPT" => self
                .accept(&fid, call.get("accept").unwrap_or(&Value::Null), now_ms)
                .map(|_| 202),
            "DECLINE" => {
                let body = call.get("decline").unwrap_or(&Value::Null);
                self.decline(&fid, body, now_ms);
                Ok(202)
            }
            "REVIVE" => {
                let f = self.frameworks.get_mut(&fid).expect("checked");
                f.suppressed = false;
                f.filters.clear();
                Ok(202)
            }
            "SUPPRESS" => {
                self.frameworks.get_mut(&fid).expect("checked").suppressed = true;
                Ok(202)
            }
            "KILL" => {
                let task = call
                    .pointer("/kill/task_id/value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("Failed to validate scheduler::Call: Expecting 'kill.task_id' to be present"))?;
                let grace = call
                    .pointer("/kill/kill_policy/grace_period/nanoseconds")
                    .and_then(number)
                    .map(|n| (n / 1e6) as u64)
                    .unwrap_or(self.cfg.kill_grace_ms);
                self.kill(&fid, task, grace, now_ms);
                Ok(202)
            }
            "ACKNOWLEDGE" => {
                let a = call.get("acknowledge").unwrap_or(&Value::Null);
                let (Some(agent), Some(task), Some(uuid)) = (
                    get_id(a, "agent_id"),
                    get_id(a, "task_id"),
                    a.get("uuid").and_then(Value::as_str),
                ) else {
                    return Err(bad(
                        "Failed to validate scheduler::Call: ACKNOWLEDGE needs agent_id, task_id and uuid",
                    ));
                };
                use base64::Engine;
                match base64::engine::general_purpose::STANDARD.decode(uuid) {
                    Ok(b) if b.len() == 16 => {}
                    _ => {
                        return Err(bad(format!(
                        "Failed to validate scheduler::Call: uuid {uuid:?} is not a base64 UUID"
                    )))
                    }
                }
                self.send_agent(
                    agent,
                    Wire::Ack {
                        framework_id: fid.clone(),
                        task_id: task.to_string(),
                        uuid: uuid.to_string(),
                    },
                );
                Ok(202)
            }
            "RECONCILE" => {
                let tasks = call
                    .pointer("/reconcile/tasks")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                self.reconcile(&fid, &tasks, now_ms);
                Ok(202)
            }
            "MESSAGE" => {
                let m = call.get("message").unwrap_or(&Value::Null);
                let (Some(agent), Some(exec), Some(data)) = (
                    get_id(m, "agent_id"),
                    get_id(m, "executor_id"),
                    m.get("data").and_then(Value::as_str),
                ) else {
                    return Err(bad("Failed to validate scheduler::Call: MESSAGE needs agent_id, executor_id and data"));
                };
                self.send_agent(
                    agent,
                    Wire::FrameworkMessage {
                        framework_id: fid.clone(),
                        executor_id: exec.to_string(),
                        data: data.to_string(),
                    },
                );
                Ok(202)
            }
            "SHUTDOWN" => {
                let s = call.get("shutdown").unwrap_or(&Value::Null);
                let (Some(agent), Some(exec)) = (get_id(s, "agent_id"), get_id(s, "executor_id"))
                else {
                    return Err(bad("Failed to validate scheduler::Call: SHUTDOWN needs agent_id and executor_id"));
                };
                // The agent sends the executor SHUTDOWN, then kills it after its grace period;
                // its unfinished tasks are reported then.
                self.send_agent(
                    agent,
                    Wire::ShutdownExecutor {
                        framework_id: fid.clone(),
                        executor_id: exec.to_string(),
                    },
                );
                Ok(202)
            }
            "UPDATE_FRAMEWORK" => {
                let info = call
                    .pointer("/update_framework/framework_info")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| bad("Failed to validate scheduler::Call: Expecting 'update_framework.framework_info'"))?;
                let mut info = info.clone();
                info["id"] = mid(&fid);
                self.frameworks
                    .get_mut(&fid)
                    .expect("checked")
                    .apply_info(info);
                Ok(200)
            }
            // Accepted and ignored, as Mesos's built-in allocator does; no inverse offers
            // or operation feedback are ever produced here.
            "REQUEST"
            | "ACCEPT_INVERSE_OFFERS"
            | "DECLINE_INVERSE_OFFERS"
            | "ACKNOWLEDGE_OPERATION_STATUS"
            | "RECONCILE_OPERATIONS" => Ok(202),
            "SUBSCRIBE" => Err(bad("SUBSCRIBE must not carry a Mesos-Stream-Id header")),
            other => Err(CallError::NotImplemented(format!(
                "call type {other:?} is not supported"
            ))),
        }
    }

    fn remove_offer(&mut self, id: &str) -> Option<Offer> {
        let o = self.offers.remove(id)?;
        if let Some(a) = self.agents.get_mut(&o.agent_id) {
            let _ = a.offered.subtract(&o.resources);
        }
        if let Some(f) = self.frameworks.get_mut(&o.framework_id) {
            let _ = f.offered.subtract(&o.resources);
        }
        Some(o)
    }

    /// Withdraws every offer of the agent, telling each framework (RESCIND).
    fn rescind_offers_on(&mut self, agent_id: &str) {
        let offers: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.agent_id == agent_id)
            .map(|o| o.id.clone())
            .collect();
        for o in offers {
            let framework = self.offers[&o].framework_id.clone();
            self.remove_offer(&o);
            self.event(
                &framework,
                json!({"type": "RESCIND", "rescind": {"offer_id": mid(&o)}}),
            );
        }
    }

    fn refuse_filter(&mut self, fid: &str, agent: &str, filters: Option<&Value>, now_ms: u64) {
        let s = filters
            .and_then(|f| f.get("refuse_seconds"))
            .and_then(number)
            .unwrap_or(DEFAULT_REFUSE_S)
            .clamp(0.0, MAX_REFUSE_S);
        if s > 0.0 {
            if let Some(f) = self.frameworks.get_mut(fid) {
                f.filters
                    .insert(agent.to_string(), now_ms + (s * 1000.0) as u64);
            }
        }
    }

    fn offer_ids(body: &Value) -> Vec<String> {
        body.get("offer_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.get("value")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn decline(&mut self, fid: &str, body: &Value, now_ms: u64) {
        for id in Self::offer_ids(body) {
            if self.offers.get(&id).is_some_and(|o| o.framework_id == fid) {
                let o = self.remove_offer(&id).expect("present");
                self.refuse_filter(fid, &o.agent_id, body.get("filters"), now_ms);
            }
        }
    }

    /// A status from the master (no `uuid`: not acknowledged).
    fn master_status(
        &self,
        task_id: &str,
        agent_id: &str,
        state: &str,
        reason: &str,
        message: &str,
        now_ms: u64,
    ) -> Value {
        let mut s = json!({
            "task_id": mid(task_id), "state": state, "source": "SOURCE_MASTER",
            "agent_id": mid(agent_id), "timestamp": secs(now_ms), "message": message,
        });
        if !reason.is_empty() {
            s["reason"] = json!(reason);
        }
        s
    }

    fn update_event(status: Value) -> Value {
        json!({"type": "UPDATE", "update": {"status": status}})
    }

    fn accept(&mut self, fid: &str, body: &Value, now_ms: u64) -> Result<(), CallError> {
        let ops = body
            .get("operations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for op in &ops {
            match op.get("type").and_then(Value::as_str) {
                Some("LAUNCH") => {}
                Some(other) => {
                    return Err(bad(format!(
                        "Failed to validate scheduler::Call: offer operation {other} is not supported (only LAUNCH)"
                    )))
                }
                None => return Err(bad("Failed to validate scheduler::Call: an operation has no 'type'")),
            }
        }
        let ids = Self::offer_ids(body);
        let partition_aware = self.frameworks.get(fid).is_some_and(|f| f.partition_aware);
        let mut invalid = None;
        if ids.is_empty() {
            invalid = Some("no offer ids".to_string());
        }
        let mut agent_id: Option<String> = None;
        for id in &ids {
            match self.offers.get(id) {
                None => invalid = Some(format!("Offer {id} is no longer valid")),
                Some(o) if o.framework_id != fid => {
                    invalid = Some(format!("Offer {id} is not for this framework"))
                }
                Some(o) => match &agent_id {
                    Some(a) if *a != o.agent_id => {
                        invalid = Some("Aggregated offers must belong to one single agent".into())
                    }
                    _ => agent_id = Some(o.agent_id.clone()),
                },
            }
        }
        let tasks: Vec<Value> = ops
            .iter()
            .filter_map(|op| op.pointer("/launch/task_infos").and_then(Value::as_array))
            .flatten()
            .cloned()
            .collect();
        if let Some(why) = invalid {
            // The valid offers among them still go back.
            for id in &ids {
                if self.offers.get(id).is_some_and(|o| o.framework_id == fid) {
                    self.remove_offer(id);
                }
            }
            let state = if partition_aware {
                "TASK_DROPPED"
            } else {
                "TASK_LOST"
            };
            for t in &tasks {
                let tid = get_id(t, "task_id").unwrap_or("");
                let agent = get_id(t, "agent_id").unwrap_or("");
                let s = self.master_status(
                    tid,
                    agent,
                    state,
                    "REASON_INVALID_OFFERS",
                    &format!("Task launched with invalid offers: {why}"),
                    now_ms,
                );
                self.event(fid, Self::update_event(s));
            }
            return Ok(());
        }
        let agent_id = agent_id.expect("at least one valid offer");
        let mut pool = Resources::new();
        for id in &ids {
            pool.add(&self.remove_offer(id).expect("validated").resources);
        }
        let role = self
            .frameworks
            .get(fid)
            .map(|f| f.role.clone())
            .unwrap_or_default();
        let mut launched = Vec::new();
        for t in tasks {
            let tid = get_id(&t, "task_id").unwrap_or("").to_string();
            match self.validate_task(fid, &agent_id, &t, &pool, &launched) {
                Err(why) => {
                    let s = self.master_status(
                        &tid,
                        &agent_id,
                        "TASK_ERROR",
                        "REASON_TASK_INVALID",
                        &why,
                        now_ms,
                    );
                    self.event(fid, Self::update_event(s));
                }
                Ok((res, need)) => {
                    pool.subtract(&need).expect("validated");
                    let mut info = t.clone();
                    if let Some(o) = info.as_object_mut() {
                        o.remove("slave_id");
                    }
                    info["agent_id"] = mid(&agent_id);
                    let status = json!({"state": "TASK_STAGING", "timestamp": secs(now_ms)});
                    let task = Task {
                        id: tid.clone(),
                        framework_id: fid.to_string(),
                        agent_id: agent_id.clone(),
                        info: info.clone(),
                        resources: res.clone(),
                        state: "TASK_STAGING".into(),
                        statuses: vec![status],
                        role: role.clone(),
                        unreachable: false,
                    };
                    if let Some(a) = self.agents.get_mut(&agent_id) {
                        a.used.add(&res);
                    }
                    if let Some(f) = self.frameworks.get_mut(fid) {
                        f.used.add(&res);
                    }
                    self.executor_ref(&task, true);
                    self.persist_task(&task);
                    self.tasks.insert((fid.to_string(), tid.clone()), task);
                    launched.push(info);
                }
            }
        }
        self.refuse_filter(fid, &agent_id, body.get("filters"), now_ms);
        if !launched.is_empty() {
            let framework_info = self
                .frameworks
                .get(fid)
                .map(|f| f.info.clone())
                .unwrap_or_default();
            self.send_agent(
                &agent_id,
                Wire::Launch {
                    framework_id: fid.to_string(),
                    framework_info,
                    tasks: launched,
                },
            );
        }
        Ok(())
    }

    /// The task's own resources, and what it takes from `pool` (its executor's too when that
    /// executor does not run on the agent yet), when it may launch.
    fn validate_task(
        &self,
        fid: &str,
        agent_id: &str,
        t: &Value,
        pool: &Resources,
        batch: &[Value],
    ) -> Result<(Resources, Resources), String> {
        let tid = get_id(t, "task_id").ok_or("Task has no task_id")?;
        if tid.is_empty() {
            return Err("Task ID must not be empty".into());
        }
        if self.tasks.contains_key(&(fid.to_string(), tid.to_string()))
            || batch.iter().any(|b| get_id(b, "task_id") == Some(tid))
        {
            return Err(format!("Task has duplicate ID: {tid}"));
        }
        if !t.get("name").is_some_and(Value::is_string) {
            return Err("Task has no name".into());
        }
        let has_cmd = t.get("command").is_some_and(Value::is_object);
        let has_exec = t.get("executor").is_some_and(Value::is_object);
        if has_cmd == has_exec {
            return Err("Task should have at least one (but not both) of CommandInfo or ExecutorInfo present".into());
        }
        if has_cmd && !t.pointer("/command/value").is_some_and(Value::is_string) {
            return Err("Task's CommandInfo has no 'value' (the command to run)".into());
        }
        if has_exec && get_id(&t["executor"], "executor_id").is_none() {
            return Err("Task's ExecutorInfo has no executor_id".into());
        }
        if let Some(hc) = t.get("health_check") {
            crate::agent::health::HealthCheck::parse(hc)?;
        }
        let res = Resources::from_json(t.get("resources").unwrap_or(&json!([])))
            .map_err(|e| e.to_string())?;
        let mut need = res.clone();
        if has_exec {
            let eid = get_id(&t["executor"], "executor_id").unwrap_or("");
            let running = self.executors.contains_key(&(
                agent_id.to_string(),
                fid.to_string(),
                eid.to_string(),
            )) || batch.iter().any(|b| {
                b.pointer("/executor/executor_id/value")
                    .and_then(Value::as_str)
                    == Some(eid)
            });
            if !running {
                if let Some(r) = t.pointer("/executor/resources") {
                    need.add(&Resources::from_json(r).map_err(|e| format!("executor: {e}"))?);
                }
            }
        }
        if need.is_empty() {
            return Err("Task uses no resources".into());
        }
        if !pool.contains(&need) {
            return Err(format!(
                "Task uses more resources {need} than available {pool}"
            ));
        }
        Ok((res, need))
    }

    /// An operator kills a task (with its own kill policy's grace, or the default); the
    /// framework may be left out when only one has a task of that id.
    pub fn operator_kill(
        &mut self,
        task: &str,
        framework: Option<&str>,
        now_ms: u64,
    ) -> Result<(String, String), KillError> {
        let live = |t: &&Task| t.id == task && !is_terminal(&t.state);
        let matches: Vec<&Task> = self
            .tasks
            .values()
            .filter(live)
            .filter(|t| framework.is_none_or(|f| t.framework_id == f))
            .collect();
        let t = match matches.as_slice() {
            [] => return Err(KillError::NoTask(task.to_string())),
            [t] => *t,
            many => {
                let mut frameworks: Vec<String> =
                    many.iter().map(|t| t.framework_id.clone()).collect();
                frameworks.sort();
                return Err(KillError::Ambiguous {
                    task: task.to_string(),
                    frameworks,
                });
            }
        };
        let grace = t
            .info
            .pointer("/kill_policy/grace_period/nanoseconds")
            .and_then(number)
            .map(|n| (n / 1e6) as u64)
            .unwrap_or(self.cfg.kill_grace_ms);
        let (f, id) = (t.framework_id.clone(), t.id.clone());
        self.kill(&f, &id, grace, now_ms);
        Ok((f, id))
    }

    fn kill(&mut self, fid: &str, task: &str, grace_ms: u64, now_ms: u64) {
        match self.tasks.get(&(fid.to_string(), task.to_string())) {
            Some(t) if !t.unreachable => {
                let agent = t.agent_id.clone();
                self.send_agent(
                    &agent,
                    Wire::Kill {
                        framework_id: fid.to_string(),
                        task_id: task.to_string(),
                        grace_ms,
                    },
                );
            }
            Some(_) => {} // the agent is unreachable: it will be reconciled when it returns
            None => {
                let s = self.master_status(
                    task,
                    "",
                    "TASK_LOST",
                    "REASON_RECONCILIATION",
                    "Attempted to kill an unknown task",
                    now_ms,
                );
                self.event(fid, Self::update_event(s));
            }
        }
    }

    fn latest(t: &Task) -> Value {
        t.statuses.last().cloned().unwrap_or(Value::Null)
    }

    fn reconcile(&mut self, fid: &str, asked: &[Value], now_ms: u64) {
        let partition_aware = self.frameworks.get(fid).is_some_and(|f| f.partition_aware);
        let mut out = Vec::new();
        let own = |t: &Task| {
            let mut s = Self::latest(t);
            let full = json!({"task_id": mid(&t.id), "agent_id": mid(&t.agent_id), "state": t.state,
                "source": "SOURCE_MASTER", "reason": "REASON_RECONCILIATION", "timestamp": secs(now_ms)});
            if let (Some(o), Some(f)) = (s.as_object_mut(), full.as_object()) {
                for (k, v) in f {
                    o.insert(k.clone(), v.clone());
                }
                o.remove("uuid");
            }
            s
        };
        if asked.is_empty() {
            for t in self.tasks.values().filter(|t| t.framework_id == fid) {
                out.push(own(t));
            }
        } else {
            for a in asked {
                let tid = get_id(a, "task_id").unwrap_or("");
                match self.tasks.get(&(fid.to_string(), tid.to_string())) {
                    Some(t) => out.push(own(t)),
                    None => {
                        let done = self
                            .frameworks
                            .get(fid)
                            .and_then(|f| f.completed.iter().find(|t| t.id == tid));
                        match done {
                            Some(t) => out.push(own(t)),
                            None => {
                                let state = if partition_aware {
                                    "TASK_UNKNOWN"
                                } else {
                                    "TASK_LOST"
                                };
                                let agent = get_id(a, "agent_id").unwrap_or("");
                                out.push(self.master_status(
                                    tid,
                                    agent,
                                    state,
                                    "REASON_RECONCILIATION",
                                    "Reconciliation: task is unknown",
                                    now_ms,
                                ));
                            }
                        }
                    }
                }
            }
        }
        for s in out {
            self.event(fid, Self::update_event(s));
        }
    }

    fn persist_task(&mut self, t: &Task) {
        let key = format!("task/{}/{}", t.framework_id, t.id);
        let value = (!is_terminal(&t.state)).then(|| {
            json!({"info": t.info, "state": t.state, "statuses": t.statuses, "role": t.role, "unreachable": t.unreachable})
        });
        self.out.push(Out::Persist { key, value });
    }

    /// Counts a live task on its custom executor (or stops counting it): the executor's
    /// resources are charged to the agent and the framework with its first task and freed with
    /// its last.
    fn executor_ref(&mut self, t: &Task, add: bool) {
        let Some(eid) = t
            .info
            .pointer("/executor/executor_id/value")
            .and_then(Value::as_str)
        else {
            return;
        };
        let key = (t.agent_id.clone(), t.framework_id.clone(), eid.to_string());
        let res = if add {
            let e = self.executors.entry(key).or_insert_with(|| {
                let r = t
                    .info
                    .pointer("/executor/resources")
                    .unwrap_or(&Value::Null);
                (0, Resources::from_json(r).unwrap_or_default())
            });
            e.0 += 1;
            if e.0 > 1 {
                return;
            }
            e.1.clone()
        } else {
            match self.executors.get_mut(&key) {
                Some(e) if e.0 > 1 => {
                    e.0 -= 1;
                    return;
                }
                Some(_) => self.executors.remove(&key).expect("present").1,
                None => return,
            }
        };
        if let Some(a) = self.agents.get_mut(&t.agent_id) {
            if add {
                a.used.add(&res);
            } else {
                let _ = a.used.subtract(&res);
            }
        }
        if let Some(f) = self.frameworks.get_mut(&t.framework_id) {
            if add {
                f.used.add(&res);
            } else {
                let _ = f.used.subtract(&res);
            }
        }
    }

    /// Moves a task to its framework's completed list and frees its resources.
    fn complete(&mut self, fid: &str, tid: &str) {
        let Some(t) = self.tasks.remove(&(fid.to_string(), tid.to_string())) else {
            return;
        };
        self.executor_ref(&t, false);
        if let Some(a) = self.agents.get_mut(&t.agent_id) {
            let _ = a.used.subtract(&t.resources);
        }
        if let Some(f) = self.frameworks.get_mut(fid) {
            let _ = f.used.subtract(&t.resources);
            f.completed.push_back(t);
            if f.completed.len() > MAX_COMPLETED_TASKS {
                f.completed.pop_front();
            }
        }
    }

    fn remove_framework(&mut self, fid: &str, now_ms: u64) {
        let ids: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.framework_id == fid)
            .map(|o| o.id.clone())
            .collect();
        for id in ids {
            self.remove_offer(&id);
        }
        let agents: std::collections::BTreeSet<String> = self
            .tasks
            .values()
            .filter(|t| t.framework_id == fid)
            .map(|t| t.agent_id.clone())
            .collect();
        for a in agents {
            self.send_agent(
                &a,
                Wire::ShutdownFramework {
                    framework_id: fid.to_string(),
                },
            );
        }
        let tids: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.framework_id == fid)
            .map(|t| t.id.clone())
            .collect();
        for tid in tids {
            if let Some(t) = self.tasks.get_mut(&(fid.to_string(), tid.clone())) {
                t.state = "TASK_KILLED".into();
                t.statuses
                    .push(json!({"state": "TASK_KILLED", "timestamp": secs(now_ms)}));
                let t = t.clone();
                self.persist_task(&t);
            }
            self.complete(fid, &tid);
        }
        self.out.push(Out::Close {
            framework: fid.to_string(),
        });
        self.out.push(Out::Persist {
            key: format!("framework/{fid}"),
            value: None,
        });
        if let Some(mut f) = self.frameworks.remove(fid) {
            f.connected = false;
            f.stream = None;
            f.unregistered_s = Some(secs(now_ms));
            self.completed_frameworks.push_back(f);
            if self.completed_frameworks.len() > MAX_COMPLETED_FRAMEWORKS {
                self.completed_frameworks.pop_front();
            }
        }
    }

    // ---------------------------------------------------------------- agents

    /// An agent (re-)registers: it keeps its id when the master knows it.
    pub fn register_agent(&mut self, r: Registration, now_ms: u64) -> Result<Wire, ResourceError> {
        let total = Resources::parse(&r.resources)?;
        let known = r
            .agent_id
            .as_ref()
            .filter(|id| self.agents.contains_key(*id))
            .cloned();
        let id = match known.or(r.agent_id.clone()) {
            Some(id) => id,
            None => {
                let id = format!("{}-S{}", self.cfg.id, self.next_agent);
                self.next_agent += 1;
                id
            }
        };
        // Another registration under the same name (an agent restarted without its id).
        let stale: Vec<String> = self
            .agents
            .values()
            .filter(|a| a.name == r.name && a.id != id)
            .map(|a| a.id.clone())
            .collect();
        for s in stale {
            self.agent_gone(&s, now_ms);
        }
        let prev = self.agents.get(&id).cloned();
        let was_unreachable = prev.as_ref().is_some_and(|a| !a.reachable);
        let agent = Agent {
            id: id.clone(),
            name: r.name.clone(),
            hostname: r.hostname.clone(),
            port: r.port,
            endpoint: r.endpoint.clone(),
            total,
            used: Resources::new(),
            offered: Resources::new(),
            attributes: r.attributes.clone(),
            registered_s: prev
                .as_ref()
                .map(|a| a.registered_s)
                .unwrap_or(secs(now_ms)),
            reregistered_s: prev.as_ref().map(|_| secs(now_ms)),
            last_seen_ms: now_ms,
            reachable: true,
        };
        // Offers on the agent are rescinded: its resources are recounted from its tasks.
        self.rescind_offers_on(&id);
        self.agents.insert(id.clone(), agent);
        self.out.push(Out::Persist {
            key: format!("agent/{id}"),
            value: Some(json!({"name": r.name, "hostname": r.hostname, "port": r.port, "endpoint": r.endpoint,
                "resources": r.resources, "attributes": r.attributes, "registered_s": self.agents[&id].registered_s})),
        });
        // Reconcile: what the agent runs against what the master knows.
        let mut kill = Vec::new();
        let mut reported = std::collections::HashSet::new();
        for rep in &r.tasks {
            let tid = get_id(&rep.task, "task_id").unwrap_or("").to_string();
            reported.insert((rep.framework_id.clone(), tid.clone()));
            let key = (rep.framework_id.clone(), tid.clone());
            let state = rep
                .status
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("TASK_RUNNING")
                .to_string();
            let fw = self.frameworks.get(&rep.framework_id);
            match (self.tasks.get_mut(&key), fw) {
                (Some(t), Some(f)) => {
                    if t.unreachable && !f.partition_aware {
                        // Reported lost to a framework that cannot take it back: killed.
                        kill.push(key.clone());
                        continue;
                    }
                    let back = t.unreachable;
                    t.unreachable = false;
                    t.agent_id = id.clone();
                    if back || t.state != state {
                        t.state = state.clone();
                        t.statuses
                            .push(json!({"state": state, "timestamp": secs(now_ms)}));
                    }
                    let res = t.resources.clone();
                    self.agents.get_mut(&id).expect("inserted").used.add(&res);
                    if back {
                        let mut s = rep.status.clone();
                        if let Some(o) = s.as_object_mut() {
                            o.remove("uuid");
                            o.insert("reason".into(), json!("REASON_AGENT_REREGISTERED"));
                            o.insert("source".into(), json!("SOURCE_MASTER"));
                        }
                        let fid = rep.framework_id.clone();
                        self.event(&fid, Self::update_event(s));
                    }
                }
                (None, Some(_)) if !is_terminal(&state) => {
                    // Known to the agent only (the master restarted without it): adopt it.
                    let res = Resources::from_json(rep.task.get("resources").unwrap_or(&json!([])))
                        .unwrap_or_default();
                    let role = fw.map(|f| f.role.clone()).unwrap_or_default();
                    let t = Task {
                        id: tid.clone(),
                        framework_id: rep.framework_id.clone(),
                        agent_id: id.clone(),
                        info: rep.task.clone(),
                        resources: res.clone(),
                        state: state.clone(),
                        statuses: vec![json!({"state": state, "timestamp": secs(now_ms)})],
                        role,
                        unreachable: false,
                    };
                    self.agents.get_mut(&id).expect("inserted").used.add(&res);
                    if let Some(f) = self.frameworks.get_mut(&rep.framework_id) {
                        f.used.add(&res);
                    }
                    self.executor_ref(&t, true);
                    self.persist_task(&t);
                    self.tasks.insert(key, t);
                }
                (_, None) => kill.push(key.clone()),
                _ => {}
            }
        }
        // Tasks the master placed there that the agent does not run any more: gone.
        let missing: Vec<(String, String)> = self
            .tasks
            .iter()
            .filter(|(k, t)| {
                t.agent_id == id
                    && !reported.contains(*k)
                    && (was_unreachable || t.state != "TASK_STAGING")
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (fid, tid) in missing {
            let pa = self.frameworks.get(&fid).is_some_and(|f| f.partition_aware);
            let state = if pa { "TASK_GONE" } else { "TASK_LOST" };
            self.task_state(
                &fid,
                &tid,
                self.master_status(
                    &tid,
                    &id,
                    state,
                    "REASON_AGENT_REREGISTERED",
                    "The agent does not run this task any more",
                    now_ms,
                ),
            );
        }
        Ok(Wire::Registered { agent_id: id, kill })
    }

    pub fn heartbeat(&mut self, agent_id: &str, now_ms: u64) -> Wire {
        match self.agents.get_mut(agent_id) {
            Some(a) if a.reachable => {
                a.last_seen_ms = now_ms;
                Wire::HeartbeatAck { known: true }
            }
            // Unreachable agents must register again, which reconciles their tasks.
            _ => Wire::HeartbeatAck { known: false },
        }
    }

    /// Records a status and forwards it; `from_agent` statuses carry a uuid and are acked.
    fn task_state(&mut self, fid: &str, tid: &str, status: Value) {
        let state = status
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let key = (fid.to_string(), tid.to_string());
        let Some(t) = self.tasks.get_mut(&key) else {
            self.event(fid, Self::update_event(status));
            return;
        };
        let dup = status.get("uuid").is_some()
            && t.statuses.last().and_then(|s| s.get("uuid")) == status.get("uuid");
        if !dup {
            t.state = state.clone();
            let mut brief = json!({"state": state, "timestamp": status.get("timestamp").cloned().unwrap_or(json!(0))});
            for k in ["healthy", "container_status", "uuid"] {
                if let Some(v) = status.get(k) {
                    brief[k] = v.clone();
                }
            }
            t.statuses.push(brief);
            let t = t.clone();
            self.persist_task(&t);
        }
        self.event(fid, Self::update_event(status));
        if is_terminal(&state) {
            self.complete(fid, tid);
        }
    }

    /// A status update from an agent's task.
    pub fn agent_update(&mut self, agent_id: &str, fid: &str, mut status: Value, now_ms: u64) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.last_seen_ms = now_ms;
        }
        status["agent_id"] = mid(agent_id);
        let tid = get_id(&status, "task_id").unwrap_or("").to_string();
        let uuid = status
            .get("uuid")
            .and_then(Value::as_str)
            .map(str::to_string);
        if !self.frameworks.contains_key(fid) {
            // Nobody will acknowledge it: the master does, so the agent stops resending.
            if let Some(uuid) = uuid {
                self.send_agent(
                    agent_id,
                    Wire::Ack {
                        framework_id: fid.to_string(),
                        task_id: tid,
                        uuid,
                    },
                );
            }
            return;
        }
        self.task_state(fid, &tid, status);
    }

    /// An executor's MESSAGE, for its framework.
    pub fn executor_message(&mut self, agent_id: &str, fid: &str, executor_id: &str, data: &str) {
        let e = json!({"type": "MESSAGE", "message": {"agent_id": mid(agent_id),
                        "executor_id": mid(executor_id), "data": data}});
        self.event(fid, e);
    }

    /// An executor's process ended: FAILURE for its framework.
    pub fn executor_exited(&mut self, agent_id: &str, fid: &str, executor_id: &str, status: i32) {
        let e = json!({"type": "FAILURE", "failure": {"agent_id": mid(agent_id),
                        "executor_id": mid(executor_id), "status": status}});
        self.event(fid, e);
    }

    fn agent_gone(&mut self, agent_id: &str, now_ms: u64) {
        self.mark_unreachable(agent_id, now_ms);
        self.agents.remove(agent_id);
        self.out.push(Out::Persist {
            key: format!("agent/{agent_id}"),
            value: None,
        });
    }

    fn mark_unreachable(&mut self, agent_id: &str, now_ms: u64) {
        let Some(a) = self.agents.get_mut(agent_id) else {
            return;
        };
        if !a.reachable {
            return;
        }
        a.reachable = false;
        self.rescind_offers_on(agent_id);
        let tasks: Vec<(String, String)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.agent_id == agent_id && !t.unreachable)
            .map(|(k, _)| k.clone())
            .collect();
        for (fid, tid) in tasks {
            let pa = self.frameworks.get(&fid).is_some_and(|f| f.partition_aware);
            let mut s = if pa {
                self.master_status(
                    &tid,
                    agent_id,
                    "TASK_UNREACHABLE",
                    "REASON_AGENT_REMOVED",
                    "The agent is unreachable",
                    now_ms,
                )
            } else {
                self.master_status(
                    &tid,
                    agent_id,
                    "TASK_LOST",
                    "REASON_AGENT_REMOVED",
                    "The agent is unreachable",
                    now_ms,
                )
            };
            if pa {
                s["unreachable_time"] = json!({"nanoseconds": now_ms as u128 * 1_000_000});
            }
            let t = self
                .tasks
                .get_mut(&(fid.clone(), tid.clone()))
                .expect("present");
            t.unreachable = true;
            t.state = s["state"].as_str().unwrap_or("").to_string();
            t.statuses
                .push(json!({"state": t.state, "timestamp": secs(now_ms)}));
            let t = t.clone();
            self.persist_task(&t);
            self.event(&fid, Self::update_event(s));
        }
        let connected: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| f.connected)
            .map(|f| f.id.clone())
            .collect();
        for f in connected {
            self.event(
                &f,
                json!({"type": "FAILURE", "failure": {"agent_id": mid(agent_id)}}),
            );
        }
    }

    // ---------------------------------------------------------------- time

    /// Expires offers, agents and disconnected frameworks.
    pub fn tick(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.expires_ms <= now_ms)
            .map(|o| o.id.clone())
            .collect();
        for id in expired {
            let o = self.remove_offer(&id).expect("present");
            self.event(
                &o.framework_id,
                json!({"type": "RESCIND", "rescind": {"offer_id": mid(&id)}}),
            );
        }
        let silent: Vec<String> = self
            .agents
            .values()
            .filter(|a| {
                a.reachable && now_ms.saturating_sub(a.last_seen_ms) > self.cfg.agent_timeout_ms
            })
            .map(|a| a.id.clone())
            .collect();
        for a in silent {
            self.mark_unreachable(&a, now_ms);
        }
        let gone: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| {
                f.disconnected_at_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= f.failover_timeout_ms)
            })
            .map(|f| f.id.clone())
            .collect();
        for f in gone {
            self.remove_framework(&f, now_ms);
        }
    }

    /// One allocation cycle: offers for connected frameworks, waiting reasons for the others.
    pub fn allocate(&mut self, now_ms: u64) {
        let agent_ids: Vec<String> = self.agents.keys().cloned().collect();
        let agents: Vec<AgentSlot> = self
            .agents
            .values()
            .map(|a| AgentSlot {
                id: a.id.clone(),
                available: a.available(),
                active: a.reachable,
                total: a.total.clone(),
            })
            .collect();
        let fids: Vec<String> = self.frameworks.keys().cloned().collect();
        let frameworks: Vec<FrameworkSlot> = self
            .frameworks
            .values()
            .map(|f| {
                let mut allocated = f.used.clone();
                allocated.add(&f.offered);
                FrameworkSlot {
                    id: f.id.clone(),
                    role: f.role.clone(),
                    allocated,
                    active: f.connected,
                    suppressed: f.suppressed,
                    filters: f.filters.clone(),
                }
            })
            .collect();
        let started = std::time::Instant::now();
        let result = allocator::allocate(&Snapshot {
            agents: &agents,
            frameworks: &frameworks,
            weights: &self.cfg.weights,
            min_allocatable: &self.cfg.min_allocatable,
            now_ms,
            rotation: self.rotation,
        });
        self.last_allocation_ms = started.elapsed().as_secs_f64() * 1e3;
        self.rotation = self.rotation.wrapping_add(1);
        let mut per_framework: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
        for g in &result.grants {
            let fid = fids[g.framework].clone();
            let aid = agent_ids[g.agent].clone();
            let oid = format!("{}-O{}", self.cfg.id, self.next_offer);
            self.next_offer += 1;
            let a = self.agents.get_mut(&aid).expect("agent");
            a.offered.add(&g.resources);
            let (hostname, port, attrs) = (
                a.hostname.clone(),
                a.port,
                crate::mesos::resources::attributes_json(&a.attributes),
            );
            let f = self.frameworks.get_mut(&fid).expect("framework");
            f.offered.add(&g.resources);
            f.waiting = None;
            let role = f.role.clone();
            per_framework.entry(g.framework).or_default().push(json!({
                "id": mid(&oid), "framework_id": mid(&fid), "agent_id": mid(&aid), "hostname": hostname,
                "url": {"scheme": "http", "address": {"hostname": hostname, "ip": hostname, "port": port}, "path": "/slave(1)"},
                "resources": g.resources.to_json(Some(&role)), "attributes": attrs,
                "allocation_info": {"role": role},
            }));
            self.offers.insert(
                oid.clone(),
                Offer {
                    id: oid,
                    framework_id: fid,
                    agent_id: aid,
                    resources: g.resources.clone(),
                    expires_ms: now_ms + self.cfg.offer_timeout_ms,
                },
            );
        }
        for (fi, offers) in per_framework {
            let fid = fids[fi].clone();
            self.event(
                &fid,
                json!({"type": "OFFERS", "offers": {"offers": offers}}),
            );
        }
        for (fi, why) in result.waiting {
            let fid = &fids[fi];
            let holding = self
                .offers
                .values()
                .filter(|o| &o.framework_id == fid)
                .count();
            let text = if holding > 0 {
                format!("holding {holding} offers (they are rescinded after the offer timeout)")
            } else {
                why.describe(&self.cfg.min_allocatable, now_ms)
            };
            if let Some(f) = self.frameworks.get_mut(fid) {
                f.waiting = Some(text);
            }
        }
    }

    // ---------------------------------------------------------------- recovery

    /// Rebuilds frameworks, agents and tasks from the store's records (after a restart). The
    /// agents are expected back within `agent_timeout`; frameworks within their failover timeout.
    pub fn recover(&mut self, records: Vec<(String, Value)>, now_ms: u64) {
        for (k, v) in &records {
            if let Some(id) = k.strip_prefix("framework/") {
                let info = v.get("info").cloned().unwrap_or(Value::Null);
                let registered_s = v
                    .get("registered_s")
                    .and_then(Value::as_f64)
                    .unwrap_or(secs(now_ms));
                let mut f = Framework::new(id, registered_s);
                f.apply_info(info);
                // Not connected until it subscribes again; the failover timeout counts from
                // the master's start.
                f.failover_timeout_ms = f.failover_timeout_ms.max(self.cfg.agent_timeout_ms);
                f.unregistered_s = Some(secs(now_ms));
                f.disconnected_at_ms = Some(now_ms);
                f.recovered = true;
                self.frameworks.insert(id.to_string(), f);
            }
        }
        for (k, v) in &records {
            if let Some(id) = k.strip_prefix("agent/") {
                let attrs = v
                    .get("attributes")
                    .and_then(|a| serde_json::from_value(a.clone()).ok())
                    .unwrap_or_default();
                let Ok(total) =
                    Resources::parse(v.get("resources").and_then(Value::as_str).unwrap_or(""))
                else {
                    continue;
                };
                self.agents.insert(
                    id.to_string(),
                    Agent {
                        id: id.to_string(),
                        name: v["name"].as_str().unwrap_or("").into(),
                        hostname: v["hostname"].as_str().unwrap_or("").into(),
                        port: v["port"].as_u64().unwrap_or(5051) as u16,
                        endpoint: v["endpoint"].as_str().unwrap_or("").into(),
                        total,
                        used: Resources::new(),
                        offered: Resources::new(),
                        attributes: attrs,
                        registered_s: v
                            .get("registered_s")
                            .and_then(Value::as_f64)
                            .unwrap_or(secs(now_ms)),
                        reregistered_s: None,
                        // A grace period to come back, then unreachable.
                        last_seen_ms: now_ms,
                        reachable: true,
                    },
                );
                if let Some(n) = id.rsplit("-S").next().and_then(|n| n.parse::<u64>().ok()) {
                    self.next_agent = self.next_agent.max(n + 1);
                }
            }
        }
        for (k, v) in &records {
            let Some(rest) = k.strip_prefix("task/") else {
                continue;
            };
            let Some((fid, tid)) = rest.split_once('/') else {
                continue;
            };
            if !self.frameworks.contains_key(fid) {
                continue;
            }
            let info = v.get("info").cloned().unwrap_or(Value::Null);
            let agent_id = get_id(&info, "agent_id").unwrap_or("").to_string();
            let res = Resources::from_json(info.get("resources").unwrap_or(&json!([])))
                .unwrap_or_default();
            if let Some(a) = self.agents.get_mut(&agent_id) {
                a.used.add(&res);
            }
            if let Some(f) = self.frameworks.get_mut(fid) {
                f.used.add(&res);
            }
            let task = Task {
                id: tid.to_string(),
                framework_id: fid.to_string(),
                agent_id,
                info,
                resources: res,
                state: v["state"].as_str().unwrap_or("TASK_STAGING").into(),
                statuses: v
                    .get("statuses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                role: v["role"].as_str().unwrap_or("*").into(),
                unreachable: v["unreachable"].as_bool().unwrap_or(false),
            };
            self.executor_ref(&task, true);
            self.tasks.insert((fid.to_string(), tid.to_string()), task);
        }
    }

    /// Task reports to send an agent that registers with the tasks it runs, for tests and tools.
    pub fn task_report(&self, fid: &str, tid: &str) -> Option<TaskReport> {
        let t = self.tasks.get(&(fid.to_string(), tid.to_string()))?;
        Some(TaskReport {
            framework_id: fid.to_string(),
            framework_info: self
                .frameworks
                .get(fid)
                .map(|f| f.info.clone())
                .unwrap_or_default(),
            task: t.info.clone(),
            status: json!({"task_id": mid(tid), "state": t.state}),
        })
    }
}

fn ip_as_u32(ip: &str) -> u32 {
    ip.parse::<std::net::Ipv4Addr>()
        .map(|a| u32::from_le_bytes(a.octets()))
        .unwrap_or(0)
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").finish_non_exhaustive()
    }
}
