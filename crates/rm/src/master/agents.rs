//! What agents send: registration (with the tasks they run, reconciled against the master's
//! own), heartbeats, task status updates, executor messages and exits; and what happens to an
//! agent that falls silent (its tasks unreachable or lost, its offers rescinded).

use super::*;
use crate::mesos::resources::ResourceError;
use crate::proto::{Registration, TaskReport};

impl Master {
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
            recovered: false,
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
        let mut pending_kills = Vec::new();
        let mut reported = std::collections::HashSet::new();
        for rep in &r.tasks {
            let tid = get_id(&rep.task, "task_id").unwrap_or("").to_string();
            reported.insert((rep.framework_id.clone(), tid.clone()));
            let key = (rep.framework_id.clone(), tid.clone());
            let state = rep
                .status
                .get("state")
                .and_then(Value::as_str)
                .and_then(|s| TaskState::parse(s).ok())
                .unwrap_or(TaskState::Running);
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
                    if let (Some(grace_ms), false) = (t.kill_grace_ms, state.is_terminal()) {
                        // Asked to stop while the agent was away: it hears it now.
                        pending_kills.push((key.clone(), grace_ms));
                    }
                    if back || t.state != state {
                        t.state = state;
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
                (None, Some(_)) if !state.is_terminal() => {
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
                        state,
                        statuses: vec![json!({"state": state, "timestamp": secs(now_ms)})],
                        role,
                        unreachable: false,
                        kill_grace_ms: None,
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
                    && (was_unreachable || t.state != TaskState::Staging)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (fid, tid) in missing {
            let pa = self.frameworks.get(&fid).is_some_and(|f| f.partition_aware);
            let state = if pa { TaskState::Gone } else { TaskState::Lost };
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
        for ((fid, tid), grace_ms) in pending_kills {
            self.send_agent(
                &id,
                Wire::Kill {
                    framework_id: fid,
                    task_id: tid,
                    grace_ms,
                },
            );
        }
        Ok(Wire::Registered { agent_id: id, kill })
    }

    pub fn heartbeat(&mut self, agent_id: &str, now_ms: u64) -> Wire {
        match self.agents.get_mut(agent_id) {
            Some(a) if a.reachable && !a.recovered => {
                a.last_seen_ms = now_ms;
                Wire::HeartbeatAck { known: true }
            }
            // Unreachable agents, and those known only from the records of a restarted master,
            // must register again, which reconciles their tasks.
            _ => Wire::HeartbeatAck { known: false },
        }
    }

    /// Records a status and forwards it (an agent's statuses carry a uuid, and the framework
    /// acknowledges them). A status whose state is not a Mesos state is forwarded only.
    fn task_state(&mut self, fid: &str, tid: &str, status: Value) {
        let state = status
            .get("state")
            .and_then(Value::as_str)
            .map(TaskState::parse);
        let key = (fid.to_string(), tid.to_string());
        let (Some(Ok(state)), Some(t)) = (state, self.tasks.get_mut(&key)) else {
            self.event(fid, Self::update_event(status));
            return;
        };
        let dup = status.get("uuid").is_some()
            && t.statuses.last().and_then(|s| s.get("uuid")) == status.get("uuid");
        if !dup {
            t.state = state;
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
        if state.is_terminal() {
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
        let e = Event::Message {
            agent_id: agent_id.to_string(),
            executor_id: executor_id.to_string(),
            data: data.to_string(),
        };
        self.event(fid, e);
    }

    /// An executor's process ended: FAILURE for its framework.
    pub fn executor_exited(&mut self, agent_id: &str, fid: &str, executor_id: &str, status: i32) {
        let e = Event::Failure {
            agent_id: agent_id.to_string(),
            executor_id: Some(executor_id.to_string()),
            status: Some(status),
        };
        self.event(fid, e);
    }

    pub(super) fn agent_gone(&mut self, agent_id: &str, now_ms: u64) {
        self.mark_unreachable(agent_id, now_ms);
        self.agents.remove(agent_id);
        self.out.push(Out::Persist {
            key: format!("agent/{agent_id}"),
            value: None,
        });
    }

    pub(super) fn mark_unreachable(&mut self, agent_id: &str, now_ms: u64) {
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
            let state = if pa {
                TaskState::Unreachable
            } else {
                TaskState::Lost
            };
            let mut s = self.master_status(
                &tid,
                agent_id,
                state,
                "REASON_AGENT_REMOVED",
                "The agent is unreachable",
                now_ms,
            );
            if pa {
                s["unreachable_time"] = json!({"nanoseconds": now_ms as u128 * 1_000_000});
            }
            let t = self
                .tasks
                .get_mut(&(fid.clone(), tid.clone()))
                .expect("present");
            t.unreachable = true;
            t.state = state;
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
            let lost = Event::Failure {
                agent_id: agent_id.to_string(),
                executor_id: None,
                status: None,
            };
            self.event(&f, lost);
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
