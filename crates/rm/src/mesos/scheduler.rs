//! The scheduler API's calls and events (`scheduler.proto`), typed. [`Call::parse`] checks a
//! `scheduler::Call` in Mesos JSON and gives the master's core a [`SchedulerCall`]; a framework
//! written here (the services) builds calls typed and [`Call::to_json`] writes them. The core
//! emits [`Event`]s; the shell writes them with [`Event::to_json`].

use base64::Engine;
use serde_json::{json, Map, Value};

use super::resources::number;
use super::{get_id, mid};

/// Why a call is refused, and the HTTP status Mesos answers it with.
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

fn invalid(m: impl std::fmt::Display) -> CallError {
    CallError::BadRequest(format!("Failed to validate scheduler::Call: {m}"))
}

/// A `scheduler::Call`: the framework it is for (absent only in a first SUBSCRIBE) and what
/// it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub framework_id: Option<String>,
    pub call: SchedulerCall,
}

/// What a scheduler asks the master. FrameworkInfo and TaskInfo stay JSON: the master keeps
/// them as given and shows them back.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerCall {
    Subscribe {
        /// Has `user` and `name`; its `id`, when set, is the call's framework id.
        framework_info: Value,
        suppressed_roles: Vec<String>,
    },
    Teardown,
    /// Only LAUNCH operations are taken: `tasks` are their TaskInfos, in order.
    Accept {
        offer_ids: Vec<String>,
        tasks: Vec<Value>,
        filters: Filters,
    },
    Decline {
        offer_ids: Vec<String>,
        filters: Filters,
    },
    Revive,
    Suppress,
    Kill {
        task_id: String,
        /// The kill policy's grace period, when the call gives one.
        grace_ns: Option<u64>,
    },
    Acknowledge {
        agent_id: String,
        task_id: String,
        /// Base64 of the status's 16-byte UUID.
        uuid: String,
    },
    /// Empty `tasks`: every task of the framework (implicit reconciliation).
    Reconcile {
        tasks: Vec<ReconcileTask>,
    },
    Message {
        agent_id: String,
        executor_id: String,
        data: String,
    },
    Shutdown {
        agent_id: String,
        executor_id: String,
    },
    UpdateFramework {
        framework_info: Value,
    },
    /// Accepted and ignored, as Mesos's built-in allocator does (REQUEST,
    /// ACCEPT_INVERSE_OFFERS, DECLINE_INVERSE_OFFERS, ACKNOWLEDGE_OPERATION_STATUS,
    /// RECONCILE_OPERATIONS).
    Ignored(&'static str),
}

/// A task a framework asks about in RECONCILE.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileTask {
    pub task_id: String,
    pub agent_id: Option<String>,
}

/// An offer's filters (`refuse_seconds` only).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Filters {
    pub refuse_seconds: Option<f64>,
}

const IGNORED: [&str; 5] = [
    "REQUEST",
    "ACCEPT_INVERSE_OFFERS",
    "DECLINE_INVERSE_OFFERS",
    "ACKNOWLEDGE_OPERATION_STATUS",
    "RECONCILE_OPERATIONS",
];

fn ids(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("value")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn filters(v: Option<&Value>) -> Filters {
    Filters {
        refuse_seconds: v.and_then(|f| f.get("refuse_seconds")).and_then(number),
    }
}

fn id_list(v: &[String]) -> Value {
    Value::Array(v.iter().map(|i| mid(i)).collect())
}

impl SchedulerCall {
    /// The call's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            SchedulerCall::Subscribe { .. } => "SUBSCRIBE",
            SchedulerCall::Teardown => "TEARDOWN",
            SchedulerCall::Accept { .. } => "ACCEPT",
            SchedulerCall::Decline { .. } => "DECLINE",
            SchedulerCall::Revive => "REVIVE",
            SchedulerCall::Suppress => "SUPPRESS",
            SchedulerCall::Kill { .. } => "KILL",
            SchedulerCall::Acknowledge { .. } => "ACKNOWLEDGE",
            SchedulerCall::Reconcile { .. } => "RECONCILE",
            SchedulerCall::Message { .. } => "MESSAGE",
            SchedulerCall::Shutdown { .. } => "SHUTDOWN",
            SchedulerCall::UpdateFramework { .. } => "UPDATE_FRAMEWORK",
            SchedulerCall::Ignored(kind) => kind,
        }
    }

    /// The HTTP status a call the master takes is answered with (UPDATE_FRAMEWORK is answered
    /// 200 OK, every other call 202 Accepted).
    pub fn success_status(&self) -> u16 {
        match self {
            SchedulerCall::UpdateFramework { .. } => 200,
            _ => 202,
        }
    }
}

impl Call {
    /// A call for an already subscribed framework.
    pub fn new(framework_id: &str, call: SchedulerCall) -> Call {
        Call {
            framework_id: Some(framework_id.to_string()),
            call,
        }
    }

    /// Checks a `scheduler::Call` as Mesos's validation does, with its error messages.
    pub fn parse(v: &Value) -> Result<Call, CallError> {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Expecting 'type' to be present"))?;
        let framework_id = get_id(v, "framework_id").map(str::to_string);
        if kind == "SUBSCRIBE" {
            let info = v
                .pointer("/subscribe/framework_info")
                .filter(|i| i.is_object())
                .ok_or_else(|| invalid("Expecting 'subscribe' to be present"))?;
            for field in ["user", "name"] {
                if !info.get(field).is_some_and(Value::is_string) {
                    return Err(invalid(format!("framework_info.{field} is required")));
                }
            }
            if framework_id.as_deref() != get_id(info, "id") {
                return Err(invalid(
                    "'framework_id' differs from 'subscribe.framework_info.id'",
                ));
            }
            let suppressed_roles = v
                .pointer("/subscribe/suppressed_roles")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let call = SchedulerCall::Subscribe {
                framework_info: info.clone(),
                suppressed_roles,
            };
            return Ok(Call { framework_id, call });
        }
        if framework_id.is_none() {
            return Err(invalid("Expecting 'framework_id' to be present"));
        }
        let body = |key: &str| v.get(key).unwrap_or(&Value::Null);
        let call = match kind {
            "TEARDOWN" => SchedulerCall::Teardown,
            "ACCEPT" => {
                let a = body("accept");
                let mut tasks = Vec::new();
                for op in a
                    .get("operations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match op.get("type").and_then(Value::as_str) {
                        Some("LAUNCH") => tasks.extend(
                            op.pointer("/launch/task_infos")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .cloned(),
                        ),
                        Some(other) => {
                            return Err(invalid(format!(
                                "offer operation {other} is not supported (only LAUNCH)"
                            )))
                        }
                        None => return Err(invalid("an operation has no 'type'")),
                    }
                }
                SchedulerCall::Accept {
                    offer_ids: ids(a.get("offer_ids")),
                    tasks,
                    filters: filters(a.get("filters")),
                }
            }
            "DECLINE" => {
                let d = body("decline");
                SchedulerCall::Decline {
                    offer_ids: ids(d.get("offer_ids")),
                    filters: filters(d.get("filters")),
                }
            }
            "REVIVE" => SchedulerCall::Revive,
            "SUPPRESS" => SchedulerCall::Suppress,
            "KILL" => {
                let task_id = v
                    .pointer("/kill/task_id/value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("Expecting 'kill.task_id' to be present"))?;
                let grace_ns = v
                    .pointer("/kill/kill_policy/grace_period/nanoseconds")
                    .and_then(number)
                    .filter(|n| n.is_finite())
                    .map(|n| n.max(0.0) as u64);
                SchedulerCall::Kill {
                    task_id: task_id.to_string(),
                    grace_ns,
                }
            }
            "ACKNOWLEDGE" => {
                let a = body("acknowledge");
                let (Some(agent), Some(task), Some(uuid)) = (
                    get_id(a, "agent_id"),
                    get_id(a, "task_id"),
                    a.get("uuid").and_then(Value::as_str),
                ) else {
                    return Err(invalid("ACKNOWLEDGE needs agent_id, task_id and uuid"));
                };
                match base64::engine::general_purpose::STANDARD.decode(uuid) {
                    Ok(b) if b.len() == 16 => {}
                    _ => return Err(invalid(format!("uuid {uuid:?} is not a base64 UUID"))),
                }
                SchedulerCall::Acknowledge {
                    agent_id: agent.to_string(),
                    task_id: task.to_string(),
                    uuid: uuid.to_string(),
                }
            }
            "RECONCILE" => {
                let tasks = v
                    .pointer("/reconcile/tasks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|t| ReconcileTask {
                        task_id: get_id(t, "task_id").unwrap_or("").to_string(),
                        agent_id: get_id(t, "agent_id").map(str::to_string),
                    })
                    .collect();
                SchedulerCall::Reconcile { tasks }
            }
            "MESSAGE" => {
                let m = body("message");
                let (Some(agent), Some(exec), Some(data)) = (
                    get_id(m, "agent_id"),
                    get_id(m, "executor_id"),
                    m.get("data").and_then(Value::as_str),
                ) else {
                    return Err(invalid("MESSAGE needs agent_id, executor_id and data"));
                };
                SchedulerCall::Message {
                    agent_id: agent.to_string(),
                    executor_id: exec.to_string(),
                    data: data.to_string(),
                }
            }
            "SHUTDOWN" => {
                let s = body("shutdown");
                let (Some(agent), Some(exec)) = (get_id(s, "agent_id"), get_id(s, "executor_id"))
                else {
                    return Err(invalid("SHUTDOWN needs agent_id and executor_id"));
                };
                SchedulerCall::Shutdown {
                    agent_id: agent.to_string(),
                    executor_id: exec.to_string(),
                }
            }
            "UPDATE_FRAMEWORK" => {
                let info = v
                    .pointer("/update_framework/framework_info")
                    .filter(|i| i.is_object())
                    .ok_or_else(|| invalid("Expecting 'update_framework.framework_info'"))?;
                SchedulerCall::UpdateFramework {
                    framework_info: info.clone(),
                }
            }
            other => match IGNORED.iter().find(|k| **k == other) {
                Some(k) => SchedulerCall::Ignored(k),
                None => {
                    return Err(CallError::NotImplemented(format!(
                        "call type {other:?} is not supported"
                    )))
                }
            },
        };
        Ok(Call { framework_id, call })
    }

    /// The call in Mesos JSON ([`Call::parse`] reads it back the same).
    pub fn to_json(&self) -> Value {
        let mut v = Map::new();
        v.insert("type".into(), json!(self.call.kind()));
        if let Some(f) = &self.framework_id {
            v.insert("framework_id".into(), mid(f));
        }
        let filters_json = |f: &Filters| match f.refuse_seconds {
            Some(s) => json!({ "refuse_seconds": s }),
            None => json!({}),
        };
        let body = match &self.call {
            SchedulerCall::Subscribe {
                framework_info,
                suppressed_roles,
            } => Some((
                "subscribe",
                json!({"framework_info": framework_info, "suppressed_roles": suppressed_roles}),
            )),
            SchedulerCall::Accept {
                offer_ids,
                tasks,
                filters,
            } => {
                let operations: Vec<Value> = if tasks.is_empty() {
                    vec![]
                } else {
                    vec![json!({"type": "LAUNCH", "launch": {"task_infos": tasks}})]
                };
                Some((
                    "accept",
                    json!({"offer_ids": id_list(offer_ids), "operations": operations, "filters": filters_json(filters)}),
                ))
            }
            SchedulerCall::Decline { offer_ids, filters } => Some((
                "decline",
                json!({"offer_ids": id_list(offer_ids), "filters": filters_json(filters)}),
            )),
            SchedulerCall::Kill { task_id, grace_ns } => {
                let mut k = json!({ "task_id": mid(task_id) });
                if let Some(ns) = grace_ns {
                    k["kill_policy"] = json!({"grace_period": {"nanoseconds": ns}});
                }
                Some(("kill", k))
            }
            SchedulerCall::Acknowledge {
                agent_id,
                task_id,
                uuid,
            } => Some((
                "acknowledge",
                json!({"agent_id": mid(agent_id), "task_id": mid(task_id), "uuid": uuid}),
            )),
            SchedulerCall::Reconcile { tasks } => {
                let tasks: Vec<Value> = tasks
                    .iter()
                    .map(|t| {
                        let mut r = json!({ "task_id": mid(&t.task_id) });
                        if let Some(a) = &t.agent_id {
                            r["agent_id"] = mid(a);
                        }
                        r
                    })
                    .collect();
                Some(("reconcile", json!({ "tasks": tasks })))
            }
            SchedulerCall::Message {
                agent_id,
                executor_id,
                data,
            } => Some((
                "message",
                json!({"agent_id": mid(agent_id), "executor_id": mid(executor_id), "data": data}),
            )),
            SchedulerCall::Shutdown {
                agent_id,
                executor_id,
            } => Some((
                "shutdown",
                json!({"agent_id": mid(agent_id), "executor_id": mid(executor_id)}),
            )),
            SchedulerCall::UpdateFramework { framework_info } => Some((
                "update_framework",
                json!({ "framework_info": framework_info }),
            )),
            SchedulerCall::Teardown
            | SchedulerCall::Revive
            | SchedulerCall::Suppress
            | SchedulerCall::Ignored(_) => None,
        };
        if let Some((key, b)) = body {
            v.insert(key.into(), b);
        }
        Value::Object(v)
    }
}

/// An event on a framework's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Subscribed {
        framework_id: String,
        heartbeat_interval_s: f64,
        master_info: Value,
    },
    /// Offers in Mesos JSON (the master builds them from its agents).
    Offers(Vec<Value>),
    Rescind {
        offer_id: String,
    },
    /// A TaskStatus in Mesos JSON.
    Update {
        status: Value,
    },
    Message {
        agent_id: String,
        executor_id: String,
        data: String,
    },
    /// An agent was lost (`executor_id` absent), or an executor ended with `status`.
    Failure {
        agent_id: String,
        executor_id: Option<String>,
        status: Option<i32>,
    },
    Heartbeat,
}

impl Event {
    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Subscribed { .. } => "SUBSCRIBED",
            Event::Offers(_) => "OFFERS",
            Event::Rescind { .. } => "RESCIND",
            Event::Update { .. } => "UPDATE",
            Event::Message { .. } => "MESSAGE",
            Event::Failure { .. } => "FAILURE",
            Event::Heartbeat => "HEARTBEAT",
        }
    }

    /// The event in Mesos JSON.
    pub fn to_json(&self) -> Value {
        let body = match self {
            Event::Subscribed {
                framework_id,
                heartbeat_interval_s,
                master_info,
            } => json!({"framework_id": mid(framework_id),
                "heartbeat_interval_seconds": heartbeat_interval_s, "master_info": master_info}),
            Event::Offers(offers) => json!({ "offers": offers }),
            Event::Rescind { offer_id } => json!({ "offer_id": mid(offer_id) }),
            Event::Update { status } => json!({ "status": status }),
            Event::Message {
                agent_id,
                executor_id,
                data,
            } => json!({"agent_id": mid(agent_id), "executor_id": mid(executor_id), "data": data}),
            Event::Failure {
                agent_id,
                executor_id,
                status,
            } => {
                let mut f = json!({ "agent_id": mid(agent_id) });
                if let Some(e) = executor_id {
                    f["executor_id"] = mid(e);
                }
                if let Some(s) = status {
                    f["status"] = json!(s);
                }
                f
            }
            Event::Heartbeat => return json!({"type": "HEARTBEAT"}),
        };
        let mut v = Map::new();
        v.insert("type".into(), json!(self.kind()));
        v.insert(self.kind().to_ascii_lowercase(), body);
        Value::Object(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls() -> Vec<Call> {
        let f = |c| Call::new("F1", c);
        vec![
            Call {
                framework_id: None,
                call: SchedulerCall::Subscribe {
                    framework_info: json!({"user": "u", "name": "n"}),
                    suppressed_roles: vec!["r".into()],
                },
            },
            f(SchedulerCall::Teardown),
            f(SchedulerCall::Accept {
                offer_ids: vec!["O1".into(), "O2".into()],
                tasks: vec![json!({"name": "t", "task_id": {"value": "t1"}})],
                filters: Filters {
                    refuse_seconds: Some(2.5),
                },
            }),
            f(SchedulerCall::Accept {
                offer_ids: vec!["O1".into()],
                tasks: vec![],
                filters: Filters::default(),
            }),
            f(SchedulerCall::Decline {
                offer_ids: vec!["O1".into()],
                filters: Filters::default(),
            }),
            f(SchedulerCall::Revive),
            f(SchedulerCall::Suppress),
            f(SchedulerCall::Kill {
                task_id: "t1".into(),
                grace_ns: Some(3_000_000_000),
            }),
            f(SchedulerCall::Kill {
                task_id: "t1".into(),
                grace_ns: None,
            }),
            f(SchedulerCall::Acknowledge {
                agent_id: "A".into(),
                task_id: "t1".into(),
                uuid: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
            }),
            f(SchedulerCall::Reconcile {
                tasks: vec![
                    ReconcileTask {
                        task_id: "t1".into(),
                        agent_id: Some("A".into()),
                    },
                    ReconcileTask {
                        task_id: "t2".into(),
                        agent_id: None,
                    },
                ],
            }),
            f(SchedulerCall::Message {
                agent_id: "A".into(),
                executor_id: "e".into(),
                data: "aGk=".into(),
            }),
            f(SchedulerCall::Shutdown {
                agent_id: "A".into(),
                executor_id: "e".into(),
            }),
            f(SchedulerCall::UpdateFramework {
                framework_info: json!({"user": "u", "name": "m"}),
            }),
            f(SchedulerCall::Ignored("REQUEST")),
        ]
    }

    #[test]
    fn every_call_written_reads_back_the_same() {
        for c in calls() {
            assert_eq!(Call::parse(&c.to_json()), Ok(c.clone()), "{}", c.to_json());
        }
    }

    #[test]
    fn invalid_calls_get_mesos_s_messages() {
        let err = |v: Value| Call::parse(&v).unwrap_err();
        assert_eq!(
            err(json!({})),
            CallError::BadRequest(
                "Failed to validate scheduler::Call: Expecting 'type' to be present".into()
            )
        );
        assert_eq!(
            err(json!({"type": "REVIVE"})),
            CallError::BadRequest(
                "Failed to validate scheduler::Call: Expecting 'framework_id' to be present".into()
            )
        );
        assert_eq!(
            err(json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u"}}})),
            CallError::BadRequest(
                "Failed to validate scheduler::Call: framework_info.name is required".into()
            )
        );
        assert_eq!(
            err(json!({"type": "SUBSCRIBE", "framework_id": {"value": "F"},
                "subscribe": {"framework_info": {"user": "u", "name": "n"}}})),
            CallError::BadRequest("Failed to validate scheduler::Call: 'framework_id' differs from 'subscribe.framework_info.id'".into())
        );
        let f = json!({"value": "F"});
        assert!(matches!(
            err(json!({"type": "ACCEPT", "framework_id": f, "accept": {"operations": [{"type": "RESERVE"}]}})),
            CallError::BadRequest(m) if m.contains("RESERVE is not supported")
        ));
        assert!(matches!(
            err(json!({"type": "ACKNOWLEDGE", "framework_id": f, "acknowledge": {
                "agent_id": {"value": "A"}, "task_id": {"value": "t"}, "uuid": "short"}})),
            CallError::BadRequest(m) if m.contains("not a base64 UUID")
        ));
        assert!(matches!(
            err(json!({"type": "KILL", "framework_id": f, "kill": {}})),
            CallError::BadRequest(m) if m.contains("kill.task_id")
        ));
        assert_eq!(
            err(json!({"type": "FROB", "framework_id": f})),
            CallError::NotImplemented("call type \"FROB\" is not supported".into())
        );
        assert_eq!(
            err(json!({"type": "FROB", "framework_id": f})).status(),
            501
        );
    }

    #[test]
    fn events_are_written_as_mesos_does() {
        let e = Event::Failure {
            agent_id: "A".into(),
            executor_id: None,
            status: None,
        };
        assert_eq!(
            e.to_json(),
            json!({"type": "FAILURE", "failure": {"agent_id": {"value": "A"}}})
        );
        assert_eq!(
            Event::Rescind {
                offer_id: "O".into()
            }
            .to_json(),
            json!({"type": "RESCIND", "rescind": {"offer_id": {"value": "O"}}})
        );
        assert_eq!(Event::Heartbeat.to_json(), json!({"type": "HEARTBEAT"}));
    }
}
