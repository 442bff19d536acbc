//! Scheduler calls: SUBSCRIBE and the calls of a subscribed framework, kills (the
//! framework's and the operator's), reconciliation, and a framework's removal. ACCEPT has its
//! own file ([`super::accept`]).

use super::*;
use crate::error::KillError;
use crate::mesos::scheduler::ReconcileTask;

impl Master {
    /// SUBSCRIBE on a new stream `stream`. Returns the framework id; the first event on the
    /// stream (SUBSCRIBED) is emitted. A call that is not a SUBSCRIBE is refused.
    pub fn subscribe(
        &mut self,
        call: &Call,
        stream: &str,
        now_ms: u64,
    ) -> Result<String, CallError> {
        let SchedulerCall::Subscribe {
            framework_info,
            suppressed_roles,
        } = &call.call
        else {
            return Err(CallError::BadRequest(format!(
                "{} is not a SUBSCRIBE call",
                call.call.kind()
            )));
        };
        let id = match &call.framework_id {
            Some(id) => {
                if !self.frameworks.contains_key(id) {
                    return Err(CallError::BadRequest(format!("Framework {id} is not known (it was removed, or never subscribed to this master)")));
                }
                id.clone()
            }
            None => {
                let id = format!("{}-{:04}", self.cfg.id, self.next_framework);
                self.next_framework += 1;
                id
            }
        };
        let mut stored_info = framework_info.clone();
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
        f.suppressed = suppressed_roles.contains(&f.role);
        let record = json!({"info": f.info, "registered_s": f.registered_s});
        self.out.push(Out::Persist {
            key: format!("framework/{id}"),
            value: Some(record),
        });
        let subscribed = Event::Subscribed {
            framework_id: id.clone(),
            heartbeat_interval_s: self.cfg.heartbeat_interval_s,
            master_info: self.master_info(),
        };
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

    /// A call other than SUBSCRIBE, on the framework's stream `stream`. Nothing changes when
    /// it is refused; [`SchedulerCall::success_status`] is the HTTP status of one taken.
    pub fn call(
        &mut self,
        call: &Call,
        stream: Option<&str>,
        now_ms: u64,
    ) -> Result<(), CallError> {
        let Some(fid) = call.framework_id.clone() else {
            return Err(CallError::BadRequest(
                "Failed to validate scheduler::Call: Expecting 'framework_id' to be present".into(),
            ));
        };
        let Some(f) = self.frameworks.get_mut(&fid) else {
            return Err(CallError::BadRequest("Framework cannot be found".into()));
        };
        if !f.connected {
            return Err(CallError::Forbidden("Framework is not subscribed".into()));
        }
        if f.stream.as_deref() != stream {
            return Err(CallError::BadRequest(format!(
                "The stream ID '{}' included in this request didn't match the stream ID currently associated with framework ID {fid}",
                stream.unwrap_or("")
            )));
        }
        match &call.call {
            SchedulerCall::Subscribe { .. } => {
                return Err(CallError::BadRequest(
                    "SUBSCRIBE must not carry a Mesos-Stream-Id header".into(),
                ))
            }
            SchedulerCall::Revive => {
                f.suppressed = false;
                f.filters.clear();
            }
            SchedulerCall::Suppress => f.suppressed = true,
            SchedulerCall::UpdateFramework { framework_info } => {
                let mut info = framework_info.clone();
                info["id"] = mid(&fid);
                f.apply_info(info);
            }
            SchedulerCall::Teardown => self.remove_framework(&fid, now_ms),
            SchedulerCall::Accept {
                offer_ids,
                tasks,
                filters,
            } => self.accept(&fid, offer_ids, tasks, *filters, now_ms),
            SchedulerCall::Decline { offer_ids, filters } => {
                for id in offer_ids {
                    if self.offers.get(id).is_some_and(|o| o.framework_id == fid) {
                        let o = self.remove_offer(id).expect("present");
                        self.refuse_filter(&fid, &o.agent_id, *filters, now_ms);
                    }
                }
            }
            SchedulerCall::Kill { task_id, grace_ns } => {
                let grace = grace_ns.map_or(self.cfg.kill_grace_ms, |ns| ns / 1_000_000);
                self.kill(&fid, task_id, grace, now_ms);
            }
            SchedulerCall::Acknowledge {
                agent_id,
                task_id,
                uuid,
            } => self.send_agent(
                agent_id,
                Wire::Ack {
                    framework_id: fid.clone(),
                    task_id: task_id.clone(),
                    uuid: uuid.clone(),
                },
            ),
            SchedulerCall::Reconcile { tasks } => self.reconcile(&fid, tasks, now_ms),
            SchedulerCall::Message {
                agent_id,
                executor_id,
                data,
            } => self.send_agent(
                agent_id,
                Wire::FrameworkMessage {
                    framework_id: fid.clone(),
                    executor_id: executor_id.clone(),
                    data: data.clone(),
                },
            ),
            // The agent sends the executor SHUTDOWN, then kills it after its grace period;
            // its unfinished tasks are reported then.
            SchedulerCall::Shutdown {
                agent_id,
                executor_id,
            } => self.send_agent(
                agent_id,
                Wire::ShutdownExecutor {
                    framework_id: fid.clone(),
                    executor_id: executor_id.clone(),
                },
            ),
            // No inverse offers or operation feedback are ever produced here.
            SchedulerCall::Ignored(_) => {}
        }
        Ok(())
    }

    /// An operator kills a task (with its own kill policy's grace, or the default); the
    /// framework may be left out when only one has a task of that id.
    pub fn operator_kill(
        &mut self,
        task: &str,
        framework: Option<&str>,
        now_ms: u64,
    ) -> Result<(String, String), KillError> {
        let live = |t: &&Task| t.id == task && !t.state.is_terminal();
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
        match self.tasks.get_mut(&(fid.to_string(), task.to_string())) {
            Some(t) => {
                // Kept, so that the agent gets it again when it registers (below, and in
                // `register_agent`): sent now it may be lost on the way.
                t.kill_grace_ms = Some(grace_ms);
                if !t.unreachable {
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
            }
            None => {
                let s = self.master_status(
                    task,
                    "",
                    TaskState::Lost,
                    "REASON_RECONCILIATION",
                    "Attempted to kill an unknown task",
                    now_ms,
                );
                self.event(fid, Self::update_event(s));
            }
        }
    }

    fn reconcile(&mut self, fid: &str, asked: &[ReconcileTask], now_ms: u64) {
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
                let tid = a.task_id.as_str();
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
                                    TaskState::Unknown
                                } else {
                                    TaskState::Lost
                                };
                                let agent = a.agent_id.as_deref().unwrap_or("");
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

    pub(super) fn remove_framework(&mut self, fid: &str, now_ms: u64) {
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
                t.state = TaskState::Killed;
                t.statuses
                    .push(json!({"state": t.state, "timestamp": secs(now_ms)}));
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
}
