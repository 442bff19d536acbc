//! Services: long-running applications kept at their instance count, the layer Marathon adds on
//! top of Mesos. The controller is a framework like any other (it subscribes to the master,
//! takes offers from the same allocator, launches command tasks); this module is its pure core:
//! inputs (specs from the API, scheduler events, the clock) in, scheduler calls and store writes
//! out. [`crate::services::actor`] is its shell.
//!
//! - **Placement**: an instance goes where an offer holds its resources (`cpus`, `mem`, `disk`
//!   and `ports` host ports) and its constraints hold: `[field, "UNIQUE"]`, `[field, "CLUSTER",
//!   value]`, `[field, "MAX_PER", n]`, where the field is `hostname`, `agent` (the agent's id)
//!   or an agent attribute.
//! - **Restarts**: an instance that ends (fails, finishes, is killed by its health check, is lost
//!   with its agent) is replaced, after a back-off that doubles with each failure in a row (1 s
//!   to 60 s) and resets once an instance has stayed up for `STABLE_AFTER`.
//! - **Rolling upgrades** (a new spec version): as Marathon's upgrade strategy. With N
//!   instances, at least ⌈N × minimum_healthy_capacity⌉ healthy instances (old or new) remain,
//!   and at most N + ⌊N × maximum_over_capacity⌋ run at once; old instances are killed only as
//!   new ones become healthy. Scaling alone changes no version.
//! - **Waiting is explained**: each service says why it lacks instances (back-off, suppressed
//!   offers, or the last offer that did not fit and why).

pub mod actor;

use crate::error::ServiceError;
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::agent::health::HealthCheck;
use crate::mesos::resources::{Ranges, Resources, MILLI};
use crate::mesos::scheduler::{Filters, SchedulerCall};
use crate::mesos::state::TaskState;
use crate::mesos::{get_id, mid};

/// An instance up this long resets its service's back-off.
pub const STABLE_AFTER_MS: u64 = 10_000;
const BACKOFF_MIN_MS: u64 = 1000;
const BACKOFF_MAX_MS: u64 = 60_000;
/// Ended instances remembered against late duplicates.
const ENDED_KEPT: usize = 4096;
/// How long declined offers stay away while a service still needs them.
const DECLINE_NEEDED_S: f64 = 1.0;
/// How long declined offers stay away when nothing is needed (offers are suppressed too).
const DECLINE_IDLE_S: f64 = 30.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// `http`, `tcp` or `command`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `http`.
    #[serde(default)]
    pub path: Option<String>,
    /// For `http` and `tcp`: which of the service's ports (`PORT0`, …) to check.
    #[serde(default)]
    pub port_index: Option<usize>,
    /// For `http` and `tcp`: a fixed port instead.
    #[serde(default)]
    pub port: Option<u16>,
    /// For `command`.
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub delay: Option<f64>,
    #[serde(default)]
    pub interval: Option<f64>,
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub grace: Option<f64>,
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSpec {
    #[serde(default = "one")]
    pub minimum_healthy_capacity: f64,
    #[serde(default = "one")]
    pub maximum_over_capacity: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for UpgradeSpec {
    fn default() -> Self {
        UpgradeSpec {
            minimum_healthy_capacity: 1.0,
            maximum_over_capacity: 1.0,
        }
    }
}

/// A service as deployed (the TOML file, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub instances: u32,
    /// Run with `sh -c`; `$PORT0`… hold the instance's ports.
    pub command: String,
    pub cpus: f64,
    pub mem: f64,
    #[serde(default)]
    pub disk: f64,
    /// How many host ports each instance takes.
    #[serde(default)]
    pub ports: u32,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub constraints: Vec<Vec<String>>,
    #[serde(default)]
    pub health_check: Option<HealthSpec>,
    #[serde(default)]
    pub upgrade: UpgradeSpec,
    /// Seconds between SIGTERM and SIGKILL when an instance is stopped.
    #[serde(default = "default_grace")]
    pub kill_grace: f64,
    /// The account its instances run as (`root` needs agents started with
    /// `--allow-root-tasks`).
    #[serde(default = "default_user")]
    pub user: String,
}

fn default_grace() -> f64 {
    3.0
}

fn default_user() -> String {
    "nobody".into()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    Unique(String),
    Cluster(String, String),
    MaxPer(String, u32),
}

impl Constraint {
    fn parse(c: &[String]) -> Result<Constraint, String> {
        let s: Vec<&str> = c.iter().map(String::as_str).collect();
        match s.as_slice() {
            [f, "UNIQUE"] => Ok(Constraint::Unique(f.to_string())),
            [f, "CLUSTER", v] => Ok(Constraint::Cluster(f.to_string(), v.to_string())),
            [f, "MAX_PER", n] => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Constraint::MaxPer(f.to_string(), n)),
                _ => Err(format!("constraint {c:?}: MAX_PER needs a whole number ≥ 1")),
            },
            _ => Err(format!(
                "constraint {c:?} is not one of [field, \"UNIQUE\"], [field, \"CLUSTER\", value], [field, \"MAX_PER\", n]"
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Constraint::Unique(f) => format!("{f} UNIQUE"),
            Constraint::Cluster(f, v) => format!("{f} CLUSTER {v}"),
            Constraint::MaxPer(f, n) => format!("{f} MAX_PER {n}"),
        }
    }
}

impl ServiceSpec {
    /// Checks the spec; the error names the field.
    pub fn validate(&self) -> Result<(), ServiceError> {
        self.check().map_err(ServiceError::Invalid)
    }

    fn check(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 63
            || !n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || n.starts_with('-')
        {
            return Err(format!(
                "name {n:?}: lower-case letters, digits and '-' (at most 63), not starting with '-'"
            ));
        }
        if self.command.trim().is_empty() {
            return Err("command is empty".into());
        }
        for (what, v) in [("cpus", self.cpus), ("mem", self.mem), ("disk", self.disk)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{what} must be a number ≥ 0, got {v}"));
            }
        }
        if self.cpus <= 0.0 && self.mem <= 0.0 {
            return Err("an instance needs some cpus or mem".into());
        }
        if self.ports > 100 {
            return Err(format!(
                "ports: {} is more than 100 per instance",
                self.ports
            ));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(format!("env: {k:?} is not a variable name"));
            }
        }
        for c in &self.constraints {
            Constraint::parse(c)?;
        }
        let u = &self.upgrade;
        if !(0.0..=1.0).contains(&u.minimum_healthy_capacity)
            || !(0.0..=1.0).contains(&u.maximum_over_capacity)
        {
            return Err("upgrade: minimum_healthy_capacity and maximum_over_capacity are fractions between 0 and 1".into());
        }
        if u.minimum_healthy_capacity >= 1.0 && u.maximum_over_capacity <= 0.0 {
            return Err("upgrade: minimum_healthy_capacity 1 with maximum_over_capacity 0 leaves no room to replace any instance".into());
        }
        if !self.kill_grace.is_finite() || self.kill_grace < 0.0 {
            return Err(format!(
                "kill_grace must be seconds ≥ 0, got {}",
                self.kill_grace
            ));
        }
        if let Some(h) = &self.health_check {
            if let (Some(i), None) = (h.port_index, h.port) {
                if i >= self.ports as usize {
                    return Err(format!(
                        "health_check.port_index {i}: the service has {} port(s)",
                        self.ports
                    ));
                }
            }
            HealthCheck::parse(&self.health_json(h, &[1; 100])?)?;
        }
        Ok(())
    }

    fn constraints(&self) -> Vec<Constraint> {
        self.constraints
            .iter()
            .filter_map(|c| Constraint::parse(c).ok())
            .collect()
    }

    /// The version: a hash of everything but the instance count.
    pub fn version(&self) -> String {
        let mut s = self.clone();
        s.instances = 0;
        let text = serde_json::to_string(&s).expect("specs serialize");
        // FNV-1a, 64 bits.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{:012x}", h & 0xffff_ffff_ffff)
    }

    /// The Mesos HealthCheck for an instance with these ports.
    fn health_json(&self, h: &HealthSpec, ports: &[u64]) -> Result<Value, String> {
        let port = || -> Result<u64, String> {
            match (h.port, h.port_index) {
                (Some(p), _) => Ok(p as u64),
                (None, i) => ports.get(i.unwrap_or(0)).copied().ok_or_else(|| {
                    "health_check: give port, or port_index of one of the service's ports"
                        .to_string()
                }),
            }
        };
        let mut v = match h.kind.as_str() {
            "http" => {
                json!({"type": "HTTP", "http": {"port": port()?, "path": h.path.clone().unwrap_or_else(|| "/".into())}})
            }
            "tcp" => json!({"type": "TCP", "tcp": {"port": port()?}}),
            "command" => {
                json!({"type": "COMMAND", "command": {"value": h.command.clone().ok_or("health_check.command is missing")?}})
            }
            other => {
                return Err(format!(
                    "health_check.type {other:?} is not one of http, tcp, command"
                ))
            }
        };
        for (k, x) in [
            ("delay_seconds", h.delay),
            ("interval_seconds", h.interval),
            ("timeout_seconds", h.timeout),
            ("grace_period_seconds", h.grace),
        ] {
            if let Some(x) = x {
                v[k] = json!(x);
            }
        }
        if let Some(n) = h.consecutive_failures {
            v["consecutive_failures"] = json!(n);
        }
        Ok(v)
    }

    fn resources(&self) -> Resources {
        let mut r = Resources::new();
        r.set_scalar("cpus", (self.cpus * MILLI as f64).round() as i64);
        r.set_scalar("mem", (self.mem * MILLI as f64).round() as i64);
        r.set_scalar("disk", (self.disk * MILLI as f64).round() as i64);
        r
    }
}

/// What the controller asks of its shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    /// A scheduler call (the shell adds the framework id).
    Call(SchedulerCall),
    /// Store write (`None` erases).
    Persist(String, Option<Value>),
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub service: String,
    pub version: String,
    pub agent_id: String,
    pub state: TaskState,
    pub healthy: Option<bool>,
    pub ports: Vec<u64>,
    /// Its agent's host name, as offered (empty when not known).
    pub hostname: String,
    /// When it reached TASK_RUNNING (ms).
    pub running_since_ms: Option<u64>,
    /// Asked to stop (scale down, upgrade, removal): its end is no failure.
    pub stopping: bool,
    /// When the last KILL for it was sent (ms); the kill is sent again until it ends.
    pub kill_sent_ms: Option<u64>,
}

/// How long past its grace period a stopping instance waits before its KILL is sent again.
pub const KILL_RETRY_MS: u64 = 3_000;

fn kill_call(id: &str, grace_ns: u64) -> Cmd {
    Cmd::Call(SchedulerCall::Kill {
        task_id: id.to_string(),
        grace_ns: Some(grace_ns),
    })
}

/// Where an instance was placed: what a restarted controller cannot learn from the master's
/// status updates, kept in the store under [`placement_key`] from its launch to its end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub ports: Vec<u64>,
    pub hostname: String,
}

/// The store key of an instance's placement.
pub fn placement_key(task_id: &str) -> String {
    format!("instance/{task_id}")
}

impl Instance {
    /// Counts as healthy: running, and healthy when the service checks health.
    fn healthy(&self, checked: bool) -> bool {
        self.state == TaskState::Running && (!checked || self.healthy == Some(true))
    }
}

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Every instance of its version runs (and is healthy when it is checked).
    Stable,
    /// Instances of its version are missing or not yet healthy.
    Deploying,
    /// Instances of an older version still run.
    Upgrading,
    /// Removed: its instances are stopping.
    Removing,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Phase::Stable => "stable",
            Phase::Deploying => "deploying",
            Phase::Upgrading => "upgrading",
            Phase::Removing => "removing",
        })
    }
}

/// A service as `GET /services/NAME` and `yard service status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub version: String,
    pub phase: Phase,
    /// Instances wanted.
    pub instances: u32,
    pub running: u32,
    pub healthy: u32,
    pub failures_in_a_row: u32,
    /// Why instances are missing, if they are.
    pub waiting: Option<String>,
    pub spec: ServiceSpec,
    pub tasks: Vec<InstanceRow>,
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    /// Its task id.
    pub id: String,
    pub version: String,
    pub agent_id: String,
    pub hostname: Option<String>,
    pub state: TaskState,
    pub healthy: Option<bool>,
    pub ports: Vec<u64>,
    pub stopping: bool,
    pub up_seconds: Option<u64>,
}

/// `GET /services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceList {
    pub services: Vec<ServiceStatus>,
}

/// The answer to `POST /services`: the version now rolling out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub name: String,
    pub version: String,
}

/// The body of `POST /services/NAME/scale`, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub instances: u32,
}

/// The answer to `DELETE /services/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removing {
    pub name: String,
    pub removing: bool,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub spec: ServiceSpec,
    pub version: String,
    pub removing: bool,
    failures: u32,
    not_before_ms: u64,
    /// Why it lacks instances, as of the last offers.
    waiting: Option<String>,
}

#[derive(Debug, Clone)]
struct AgentFacts {
    hostname: String,
    attributes: BTreeMap<String, String>,
}

/// The services framework's core.
#[derive(Debug, Default)]
pub struct Controller {
    pub services: BTreeMap<String, Service>,
    pub instances: BTreeMap<String, Instance>,
    agents: HashMap<String, AgentFacts>,
    /// Instances that ended lately, oldest first: a late duplicate of an earlier update (the
    /// agent resends until acknowledged) must not bring one back.
    ended: VecDeque<String>,
    suppressed: bool,
    subscribed: bool,
    seq: u64,
    out: Vec<Cmd>,
    /// Placements read back from the store, for the instances reconciliation adopts.
    placements: HashMap<String, Placement>,
}

fn offer_attributes(o: &Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for a in o
        .get("attributes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = a.get("name").and_then(Value::as_str) else {
            continue;
        };
        let v = a
            .pointer("/text/value")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| a.pointer("/scalar/value").map(|v| v.to_string()));
        if let Some(v) = v {
            m.insert(name.to_string(), v);
        }
    }
    m
}

/// An instance in this state is gone (TASK_LOST included: this framework is not partition-aware,
/// so the master kills a lost task that comes back).
fn ended(state: TaskState) -> bool {
    state.is_terminal() || matches!(state, TaskState::Lost | TaskState::Unknown)
}

/// A service instance's task id: `<service>.<version>.<n>`.
pub fn instance_service(task_id: &str) -> Option<(&str, &str)> {
    let mut it = task_id.splitn(3, '.');
    Some((it.next()?, it.next()?)).filter(|_| it.next().is_some())
}

impl Controller {
    pub fn new(seed: u64) -> Controller {
        Controller {
            seq: seed,
            ..Controller::default()
        }
    }

    pub fn take_out(&mut self) -> Vec<Cmd> {
        std::mem::take(&mut self.out)
    }

    fn call(&mut self, c: SchedulerCall) {
        self.out.push(Cmd::Call(c));
    }

    /// Services and their instances' placements recovered from the store (before
    /// subscribing).
    pub fn recover(&mut self, specs: Vec<ServiceSpec>, placements: HashMap<String, Placement>) {
        self.placements = placements;
        for spec in specs {
            let version = spec.version();
            self.services.insert(
                spec.name.clone(),
                Service {
                    spec,
                    version,
                    removing: false,
                    failures: 0,
                    not_before_ms: 0,
                    waiting: None,
                },
            );
        }
    }

    /// Deploys a new service or a new version of one; returns its version.
    pub fn deploy(&mut self, spec: ServiceSpec) -> Result<String, ServiceError> {
        spec.validate()?;
        let version = spec.version();
        if let Some(s) = self.services.get(&spec.name) {
            if s.removing {
                return Err(ServiceError::Removing(spec.name.clone()));
            }
        }
        self.out.push(Cmd::Persist(
            format!("service/{}", spec.name),
            Some(serde_json::to_value(&spec).expect("specs serialize")),
        ));
        let s = self
            .services
            .entry(spec.name.clone())
            .or_insert_with(|| Service {
                spec: spec.clone(),
                version: version.clone(),
                removing: false,
                failures: 0,
                not_before_ms: 0,
                waiting: None,
            });
        if s.version != version {
            // A new version starts with a clean slate.
            s.failures = 0;
            s.not_before_ms = 0;
        }
        s.spec = spec;
        s.version = version.clone();
        self.revive();
        Ok(version)
    }

    pub fn scale(&mut self, name: &str, instances: u32) -> Result<(), ServiceError> {
        let s = match self.services.get_mut(name) {
            Some(s) if s.removing => return Err(ServiceError::Removing(name.to_string())),
            Some(s) => s,
            None => return Err(ServiceError::NotFound(name.to_string())),
        };
        s.spec.instances = instances;
        let spec = serde_json::to_value(&s.spec).expect("specs serialize");
        self.out
            .push(Cmd::Persist(format!("service/{name}"), Some(spec)));
        self.revive();
        Ok(())
    }

    /// Stops every instance; the service is gone once they all ended.
    pub fn remove(&mut self, name: &str) -> Result<(), ServiceError> {
        let s = self
            .services
            .get_mut(name)
            .ok_or_else(|| ServiceError::NotFound(name.to_string()))?;
        s.removing = true;
        s.spec.instances = 0;
        self.out.push(Cmd::Persist(format!("service/{name}"), None));
        Ok(())
    }

    fn revive(&mut self) {
        if self.suppressed && self.subscribed {
            self.suppressed = false;
            self.call(SchedulerCall::Revive);
        }
    }

    /// An event of the scheduler API.
    pub fn event(&mut self, e: &Value, now_ms: u64) {
        match e.get("type").and_then(Value::as_str).unwrap_or("") {
            "SUBSCRIBED" => {
                self.subscribed = true;
                self.suppressed = false;
                // Implicit reconciliation: the master tells the state of all our tasks.
                self.call(SchedulerCall::Reconcile { tasks: vec![] });
                self.call(SchedulerCall::Revive);
            }
            "OFFERS" => {
                let offers = e
                    .pointer("/offers/offers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                self.offers(&offers, now_ms);
            }
            "UPDATE" => self.update(&e["update"]["status"], now_ms),
            _ => {}
        }
    }

    fn update(&mut self, s: &Value, now_ms: u64) {
        if let (Some(uuid), Some(agent), Some(task)) = (
            s.get("uuid").and_then(Value::as_str),
            get_id(s, "agent_id"),
            get_id(s, "task_id"),
        ) {
            self.call(SchedulerCall::Acknowledge {
                agent_id: agent.to_string(),
                task_id: task.to_string(),
                uuid: uuid.to_string(),
            });
        }
        let Some(tid) = get_id(s, "task_id") else {
            return;
        };
        // The master forwards only Mesos states; a name it does not know changes nothing.
        let Some(Ok(state)) = s.get("state").and_then(Value::as_str).map(TaskState::parse) else {
            return;
        };
        let Some((svc, ver)) = instance_service(tid) else {
            return;
        };
        if !self.instances.contains_key(tid) {
            if ended(state) || self.ended.iter().any(|e| e == tid) {
                // One that never came back after a restart: its placement goes.
                if ended(state) && self.placements.remove(tid).is_some() {
                    self.out.push(Cmd::Persist(placement_key(tid), None));
                }
                return;
            }
            // Known to the master (reconciliation after a restart): ours again, where it was
            // placed.
            let placed = self.placements.remove(tid).unwrap_or_default();
            self.instances.insert(
                tid.to_string(),
                Instance {
                    id: tid.to_string(),
                    service: svc.to_string(),
                    version: ver.to_string(),
                    agent_id: get_id(s, "agent_id").unwrap_or("").to_string(),
                    state,
                    healthy: None,
                    ports: placed.ports,
                    hostname: placed.hostname,
                    running_since_ms: None,
                    stopping: false,
                    kill_sent_ms: None,
                },
            );
        }
        let inst = self.instances.get_mut(tid).expect("present");
        if let Some(h) = s.get("healthy").and_then(Value::as_bool) {
            inst.healthy = Some(h);
        }
        if state == TaskState::Running && inst.running_since_ms.is_none() {
            inst.running_since_ms = Some(now_ms);
        }
        inst.state = state;
        if !ended(state) {
            return;
        }
        let inst = self.instances.remove(tid).expect("present");
        self.out.push(Cmd::Persist(placement_key(&inst.id), None));
        self.ended.push_back(inst.id.clone());
        if self.ended.len() > ENDED_KEPT {
            self.ended.pop_front();
        }
        let Some(svc) = self.services.get_mut(&inst.service) else {
            return;
        };
        if !inst.stopping && state != TaskState::Finished {
            // A failure (or a loss): the replacement waits out a growing back-off.
            svc.failures += 1;
            let delay = (BACKOFF_MIN_MS << (svc.failures - 1).min(10)).min(BACKOFF_MAX_MS);
            svc.not_before_ms = now_ms + delay;
        }
        self.revive();
    }

    /// The clock: back-offs reset, removals finish, rolling upgrades and scale-downs proceed.
    pub fn tick(&mut self, now_ms: u64) {
        for s in self.services.values_mut() {
            let stable = self.instances.values().any(|i| {
                i.service == s.spec.name
                    && i.version == s.version
                    && i.running_since_ms
                        .is_some_and(|t| now_ms.saturating_sub(t) >= STABLE_AFTER_MS)
            });
            if stable {
                s.failures = 0;
            }
        }
        let gone: Vec<String> = self
            .services
            .values()
            .filter(|s| s.removing && !self.instances.values().any(|i| i.service == s.spec.name))
            .map(|s| s.spec.name.clone())
            .collect();
        for g in gone {
            self.services.remove(&g);
        }
        let names: Vec<String> = self.services.keys().cloned().collect();
        for n in names {
            self.stop_surplus(&n, now_ms);
        }
        self.repeat_kills(now_ms);
        if self.subscribed && !self.suppressed && self.needs().is_empty() {
            self.suppressed = true;
            self.call(SchedulerCall::Suppress);
        }
    }

    /// Kills what a service has too much of: old-version instances as the rolling upgrade
    /// allows, and instances above the count.
    fn stop_surplus(&mut self, name: &str, now_ms: u64) {
        let s = &self.services[name];
        let checked = s.spec.health_check.is_some();
        let n = s.spec.instances as usize;
        let live: Vec<&Instance> = self
            .instances
            .values()
            .filter(|i| i.service == name && !i.stopping)
            .collect();
        let (new, old): (Vec<&Instance>, Vec<&Instance>) =
            live.iter().partition(|i| i.version == s.version);
        let healthy = live.iter().filter(|i| i.healthy(checked)).count();
        let min_healthy = (n as f64 * s.spec.upgrade.minimum_healthy_capacity).ceil() as usize;
        let mut kill: Vec<String> = Vec::new();
        // Old instances that are not healthy add no capacity: they go at once. Healthy ones go
        // while at least `min_healthy` healthy instances remain.
        let mut spare = healthy.saturating_sub(min_healthy);
        for i in &old {
            if !i.healthy(checked) {
                kill.push(i.id.clone());
            } else if spare > 0 {
                spare -= 1;
                kill.push(i.id.clone());
            }
        }
        // Too many of the current version (scaled down): the newest, unhealthy first, go.
        if new.len() > n {
            let mut extra: Vec<&&Instance> = new.iter().collect();
            extra.sort_by_key(|i| {
                (
                    i.healthy(checked),
                    std::cmp::Reverse(i.running_since_ms.unwrap_or(u64::MAX)),
                )
            });
            for i in extra.into_iter().take(new.len() - n) {
                kill.push(i.id.clone());
            }
        }
        let grace_ns = (s.spec.kill_grace * 1e9) as u64;
        for id in kill {
            if let Some(i) = self.instances.get_mut(&id) {
                if i.stopping {
                    continue;
                }
                i.stopping = true;
                i.kill_sent_ms = Some(now_ms);
                self.out.push(kill_call(&id, grace_ns));
            }
        }
    }

    /// Sends the KILL again for instances that were asked to stop and have not ended within
    /// their grace period and [`KILL_RETRY_MS`]: a kill can be lost on the way (an agent not
    /// yet back with a restarted master, an unreachable agent), and Mesos does not keep it.
    fn repeat_kills(&mut self, now_ms: u64) {
        for i in self.instances.values_mut().filter(|i| i.stopping) {
            let grace_ms = self
                .services
                .get(&i.service)
                .map_or(0, |s| (s.spec.kill_grace * 1e3) as u64);
            let due = i
                .kill_sent_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= grace_ms + KILL_RETRY_MS);
            if due {
                i.kill_sent_ms = Some(now_ms);
                self.out.push(kill_call(&i.id, grace_ms * 1_000_000));
            }
        }
    }

    /// How many instances each service may launch now.
    fn needs(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in self.services.values().filter(|s| !s.removing) {
            let n = s.spec.instances as usize;
            let mine = |i: &&Instance| i.service == s.spec.name && !i.stopping;
            let new = self
                .instances
                .values()
                .filter(mine)
                .filter(|i| i.version == s.version)
                .count();
            let total = self
                .instances
                .values()
                .filter(|i| i.service == s.spec.name)
                .count();
            let max_total = n + (n as f64 * s.spec.upgrade.maximum_over_capacity).floor() as usize;
            // During an upgrade, room is made by killing old instances; with no room at all
            // (maximum_over_capacity 0) one at a time goes first.
            let want = n.saturating_sub(new).min(max_total.saturating_sub(total));
            if want > 0 {
                out.insert(s.spec.name.clone(), want);
            }
        }
        out
    }

    /// Places what services need on a batch of offers: each instance goes to the offer whose
    /// agent holds the fewest instances of its service (instances spread), where it fits and
    /// its constraints hold. Unused offers are declined.
    fn offers(&mut self, offers: &[Value], now_ms: u64) {
        let needs = self.needs();
        struct Slot {
            id: String,
            agent: String,
            pool: Resources,
            tasks: Vec<Value>,
        }
        let mut slots = Vec::new();
        for o in offers {
            let (Some(oid), Some(agent)) = (get_id(o, "id"), get_id(o, "agent_id")) else {
                continue;
            };
            let facts = AgentFacts {
                hostname: o
                    .get("hostname")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                attributes: offer_attributes(o),
            };
            self.agents.insert(agent.to_string(), facts);
            slots.push(Slot {
                id: oid.to_string(),
                agent: agent.to_string(),
                pool: Resources::from_json(o.get("resources").unwrap_or(&json!([])))
                    .unwrap_or_default(),
                tasks: Vec::new(),
            });
        }
        let mut unmet = false;
        for (name, want) in needs {
            let s = &self.services[&name];
            if now_ms < s.not_before_ms {
                let wait = (s.not_before_ms - now_ms).div_ceil(1000);
                let msg = format!(
                    "backing off {wait}s after {} failure(s) in a row",
                    s.failures
                );
                self.services.get_mut(&name).expect("present").waiting = Some(msg);
                unmet = true;
                continue;
            }
            for _ in 0..want {
                let mut order: Vec<usize> = (0..slots.len()).collect();
                order.sort_by_key(|&i| {
                    self.instances
                        .values()
                        .filter(|x| {
                            x.service == name && !x.stopping && x.agent_id == slots[i].agent
                        })
                        .count()
                });
                let mut why = None;
                let mut placed = false;
                for i in order {
                    match self.place(&name, &slots[i].agent, &slots[i].pool) {
                        Ok((task, used)) => {
                            let slot = &mut slots[i];
                            slot.pool.subtract(&used).expect("placement fits the offer");
                            slot.tasks.push(task);
                            placed = true;
                            break;
                        }
                        Err(e) => {
                            let host = &self.agents[&slots[i].agent].hostname;
                            why = Some(format!(
                                "the last offer (agent {} on {host}) did not fit: {e}",
                                slots[i].agent
                            ));
                        }
                    }
                }
                let svc = self.services.get_mut(&name).expect("present");
                if placed {
                    svc.waiting = None;
                } else {
                    if let Some(w) = why {
                        svc.waiting = Some(w);
                    }
                    unmet = true;
                    break;
                }
            }
        }
        for slot in slots {
            if slot.tasks.is_empty() {
                let refuse = if unmet {
                    DECLINE_NEEDED_S
                } else {
                    DECLINE_IDLE_S
                };
                self.call(SchedulerCall::Decline {
                    offer_ids: vec![slot.id],
                    filters: Filters {
                        refuse_seconds: Some(refuse),
                    },
                });
            } else {
                self.call(SchedulerCall::Accept {
                    offer_ids: vec![slot.id],
                    tasks: slot.tasks,
                    filters: Filters {
                        refuse_seconds: Some(DECLINE_NEEDED_S),
                    },
                });
            }
        }
    }

    fn field_value(&self, agent: &str, field: &str) -> Option<String> {
        match field {
            "agent" => Some(agent.to_string()),
            "hostname" => self.agents.get(agent).map(|a| a.hostname.clone()),
            f => self.agents.get(agent)?.attributes.get(f).cloned(),
        }
    }

    /// An instance of `name` on `agent` from `pool`: its TaskInfo and the resources it takes.
    fn place(
        &mut self,
        name: &str,
        agent: &str,
        pool: &Resources,
    ) -> Result<(Value, Resources), String> {
        let s = &self.services[name];
        for c in s.spec.constraints() {
            let field = match &c {
                Constraint::Unique(f) | Constraint::Cluster(f, _) | Constraint::MaxPer(f, _) => f,
            };
            let here = self.field_value(agent, field);
            let same = self
                .instances
                .values()
                .filter(|i| i.service == name && !i.stopping)
                .filter(|i| here.is_some() && self.field_value(&i.agent_id, field) == here)
                .count();
            let ok = match &c {
                Constraint::Unique(_) => here.is_some() && same == 0,
                Constraint::Cluster(_, v) => here.as_deref() == Some(v.as_str()),
                Constraint::MaxPer(_, n) => here.is_some() && same < *n as usize,
            };
            if !ok {
                return Err(format!("constraint {} does not hold there", c.describe()));
            }
        }
        let mut used = s.spec.resources();
        if !pool.contains(&used) {
            return Err(format!("needs {used}, the offer has {pool}"));
        }
        let mut ports = Vec::new();
        if s.spec.ports > 0 {
            let free: Vec<u64> = pool
                .ranges("ports")
                .map(|r| {
                    r.ranges()
                        .iter()
                        .flat_map(|(a, b)| *a..=*b)
                        .take(s.spec.ports as usize)
                        .collect()
                })
                .unwrap_or_default();
            if free.len() < s.spec.ports as usize {
                return Err(format!(
                    "needs {} port(s), the offer has {}",
                    s.spec.ports,
                    free.len()
                ));
            }
            ports = free;
            used.set_ranges(
                "ports",
                Ranges::new(ports.iter().map(|p| (*p, *p)).collect()),
            );
        }
        self.seq += 1;
        let id = format!("{name}.{}.{:x}", s.version, self.seq);
        let mut env = vec![
            json!({"name": "YARD_SERVICE", "value": name}),
            json!({"name": "YARD_SERVICE_VERSION", "value": s.version}),
            json!({"name": "YARD_INSTANCE", "value": id}),
        ];
        for (i, p) in ports.iter().enumerate() {
            env.push(json!({"name": format!("PORT{i}"), "value": p.to_string()}));
        }
        if let Some(p) = ports.first() {
            env.push(json!({"name": "PORT", "value": p.to_string()}));
        }
        for (k, v) in &s.spec.env {
            env.push(json!({"name": k, "value": v}));
        }
        let mut res = vec![
            json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": s.spec.cpus}}),
            json!({"name": "mem", "type": "SCALAR", "scalar": {"value": s.spec.mem}}),
        ];
        if s.spec.disk > 0.0 {
            res.push(json!({"name": "disk", "type": "SCALAR", "scalar": {"value": s.spec.disk}}));
        }
        if !ports.is_empty() {
            let ranges: Vec<Value> = ports
                .iter()
                .map(|p| json!({"begin": p, "end": p}))
                .collect();
            res.push(json!({"name": "ports", "type": "RANGES", "ranges": {"range": ranges}}));
        }
        let mut task = json!({"name": name, "task_id": mid(&id), "agent_id": mid(agent), "resources": res,
            "command": {"value": s.spec.command, "shell": true, "user": s.spec.user, "environment": {"variables": env}},
            "kill_policy": {"grace_period": {"nanoseconds": (s.spec.kill_grace * 1e9) as u64}},
            "labels": {"labels": [{"key": "yard.service", "value": name}, {"key": "yard.version", "value": s.version}]}});
        if let Some(h) = &s.spec.health_check {
            task["health_check"] = s.spec.health_json(h, &ports)?;
        }
        let placed = Placement {
            ports,
            hostname: self
                .agents
                .get(agent)
                .map(|a| a.hostname.clone())
                .unwrap_or_default(),
        };
        self.out.push(Cmd::Persist(
            placement_key(&id),
            Some(serde_json::to_value(&placed).expect("placements serialize")),
        ));
        let inst = Instance {
            id: id.clone(),
            service: name.to_string(),
            version: s.version.clone(),
            agent_id: agent.to_string(),
            state: TaskState::Staging,
            healthy: None,
            ports: placed.ports,
            hostname: placed.hostname,
            running_since_ms: None,
            stopping: false,
            kill_sent_ms: None,
        };
        self.instances.insert(id, inst);
        Ok((task, used))
    }

    /// A service's status, as the API and `yard service status` show it; `offers` is why the
    /// master offers this framework nothing right now, if it does not.
    pub fn status(&self, name: &str, now_ms: u64, offers: Option<&str>) -> Option<ServiceStatus> {
        let s = self.services.get(name)?;
        let checked = s.spec.health_check.is_some();
        let mine: Vec<&Instance> = self
            .instances
            .values()
            .filter(|i| i.service == name)
            .collect();
        let running = mine
            .iter()
            .filter(|i| i.state == TaskState::Running)
            .count();
        let healthy = mine.iter().filter(|i| i.healthy(checked)).count();
        let current = mine
            .iter()
            .filter(|i| i.version == s.version && !i.stopping)
            .count();
        let outdated = mine.iter().filter(|i| i.version != s.version).count();
        let phase = if s.removing {
            Phase::Removing
        } else if outdated > 0 {
            Phase::Upgrading
        } else if current < s.spec.instances as usize || healthy < s.spec.instances as usize {
            Phase::Deploying
        } else {
            Phase::Stable
        };
        let waiting = if current < s.spec.instances as usize && !s.removing {
            if now_ms < s.not_before_ms {
                Some(format!(
                    "backing off {}s after {} failure(s) in a row",
                    (s.not_before_ms - now_ms).div_ceil(1000),
                    s.failures
                ))
            } else {
                Some(s.waiting.clone().unwrap_or_else(|| match offers {
                    Some(why) => format!("waiting for offers: {why}"),
                    None => "waiting for offers".into(),
                }))
            }
        } else {
            None
        };
        let tasks = mine
            .iter()
            .map(|i| InstanceRow {
                id: i.id.clone(),
                version: i.version.clone(),
                agent_id: i.agent_id.clone(),
                hostname: Some(i.hostname.clone())
                    .filter(|h| !h.is_empty())
                    .or_else(|| self.agents.get(&i.agent_id).map(|a| a.hostname.clone())),
                state: i.state,
                healthy: i.healthy,
                ports: i.ports.clone(),
                stopping: i.stopping,
                up_seconds: i.running_since_ms.map(|t| now_ms.saturating_sub(t) / 1000),
            })
            .collect();
        Some(ServiceStatus {
            name: name.to_string(),
            version: s.version.clone(),
            phase,
            instances: s.spec.instances,
            running: running as u32,
            healthy: healthy as u32,
            failures_in_a_row: s.failures,
            waiting,
            spec: s.spec.clone(),
            tasks,
        })
    }
}
