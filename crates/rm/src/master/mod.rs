//! The master as a state machine: no I/O, no clock. The shell ([`server`]) parses what
//! schedulers and agents send into typed inputs ([`Call`], [`crate::proto::Wire`]), feeds them
//! with the time, and carries out what the core emits ([`Out`]): events for framework streams,
//! messages for agents, records to persist.
//!
//! It owns frameworks, agents, offers and tasks. Offers come from [`allocator::allocate`] and
//! expire after `offer_timeout` (rescinded, so no framework hoards). Agents silent for
//! `agent_timeout` become unreachable: their tasks are reported `TASK_UNREACHABLE` to
//! partition-aware frameworks and `TASK_LOST` to the others. A framework whose stream broke is
//! removed after its `failover_timeout`, its tasks killed.
//!
//! The core's handlers are split by what they handle, as one `impl Master` per file:
//! [`calls`] (SUBSCRIBE and every other scheduler call, kills, reconciliation, removal),
//! [`accept`] (ACCEPT: offers and task validation), [`agents`] (registration, heartbeats,
//! status updates, unreachable agents), [`clock`] (the tick's expiries and the allocation
//! cycle), [`recovery`] (rebuilding from the store's records). This file holds the state and
//! the helpers they share.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Value};

pub mod accept;
pub mod agents;
pub mod allocator;
pub mod calls;
pub mod clock;
pub mod recovery;
pub mod server;
pub mod views;

use crate::mesos::resources::{number, Resources};
pub use crate::mesos::scheduler::{Call, CallError, SchedulerCall};
use crate::mesos::scheduler::{Event, Filters};
use crate::mesos::state::TaskState;
use crate::mesos::{get_id, mid, MESOS_VERSION};
use crate::proto::Wire;

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
    Event { framework: String, event: Event },
    /// End the framework's stream (after TEARDOWN, or removal).
    Close { framework: String },
    /// A message for an agent's endpoint.
    Agent { endpoint: String, msg: Wire },
    /// Write `value` under `key` in the master's store (`None` deletes).
    Persist { key: String, value: Option<Value> },
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    /// The TaskInfo as launched (with `agent_id`).
    pub info: Value,
    pub resources: Resources,
    pub state: TaskState,
    /// Every status, oldest first.
    pub statuses: Vec<Value>,
    pub role: String,
    /// Reported unreachable (its agent is silent).
    pub unreachable: bool,
    /// The grace period of a KILL asked for it (ms): sent again when its agent registers, since
    /// one asked while the agent is away (unreachable, or not back yet with a restarted master)
    /// may never reach it. Kept in memory only: a framework asks again after a restart.
    pub kill_grace_ms: Option<u64>,
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
    /// Known from the master's records only: it has not registered with this master since its
    /// restart. Its next heartbeat is answered "unknown", so that it registers and reports its
    /// tasks (reconciling them, and hearing the kills asked meanwhile); until then it is not
    /// offered.
    pub recovered: bool,
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

    pub(super) fn event(&mut self, framework: &str, event: Event) {
        self.out.push(Out::Event {
            framework: framework.to_string(),
            event,
        });
    }

    pub(super) fn send_agent(&mut self, agent_id: &str, msg: Wire) {
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

    pub(super) fn remove_offer(&mut self, id: &str) -> Option<Offer> {
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
    pub(super) fn rescind_offers_on(&mut self, agent_id: &str) {
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
                Event::Rescind {
                    offer_id: o.clone(),
                },
            );
        }
    }

    pub(super) fn refuse_filter(&mut self, fid: &str, agent: &str, filters: Filters, now_ms: u64) {
        let s = filters
            .refuse_seconds
            .filter(|s| !s.is_nan())
            .unwrap_or(DEFAULT_REFUSE_S)
            .clamp(0.0, MAX_REFUSE_S);
        if s > 0.0 {
            if let Some(f) = self.frameworks.get_mut(fid) {
                f.filters
                    .insert(agent.to_string(), now_ms + (s * 1000.0) as u64);
            }
        }
    }

    /// A status from the master (no `uuid`: not acknowledged).
    pub(super) fn master_status(
        &self,
        task_id: &str,
        agent_id: &str,
        state: TaskState,
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

    pub(super) fn update_event(status: Value) -> Event {
        Event::Update { status }
    }

    pub(super) fn latest(t: &Task) -> Value {
        t.statuses.last().cloned().unwrap_or(Value::Null)
    }

    pub(super) fn persist_task(&mut self, t: &Task) {
        let key = format!("task/{}/{}", t.framework_id, t.id);
        let value = (!t.state.is_terminal()).then(|| {
            json!({"info": t.info, "state": t.state, "statuses": t.statuses, "role": t.role, "unreachable": t.unreachable})
        });
        self.out.push(Out::Persist { key, value });
    }

    /// Counts a live task on its custom executor (or stops counting it): the executor's
    /// resources are charged to the agent and the framework with its first task and freed with
    /// its last.
    pub(super) fn executor_ref(&mut self, t: &Task, add: bool) {
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
    pub(super) fn complete(&mut self, fid: &str, tid: &str) {
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
