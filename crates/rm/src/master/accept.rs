//! ACCEPT: the offers it names are checked (live, this framework's, one agent), each task is
//! validated against what they hold, and the valid ones are launched on the agent.

use super::*;

impl Master {
    pub(super) fn accept(
        &mut self,
        fid: &str,
        ids: &[String],
        tasks: &[Value],
        filters: Filters,
        now_ms: u64,
    ) {
        let partition_aware = self.frameworks.get(fid).is_some_and(|f| f.partition_aware);
        let mut invalid = None;
        if ids.is_empty() {
            invalid = Some("no offer ids".to_string());
        }
        let mut agent_id: Option<String> = None;
        for id in ids {
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
        if let Some(why) = invalid {
            // The valid offers among them still go back.
            for id in ids {
                if self.offers.get(id).is_some_and(|o| o.framework_id == fid) {
                    self.remove_offer(id);
                }
            }
            let state = if partition_aware {
                TaskState::Dropped
            } else {
                TaskState::Lost
            };
            for t in tasks {
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
            return;
        }
        let agent_id = agent_id.expect("at least one valid offer");
        let mut pool = Resources::new();
        for id in ids {
            pool.add(&self.remove_offer(id).expect("validated").resources);
        }
        let role = self
            .frameworks
            .get(fid)
            .map(|f| f.role.clone())
            .unwrap_or_default();
        let mut launched = Vec::new();
        for t in tasks {
            let tid = get_id(t, "task_id").unwrap_or("").to_string();
            match self.validate_task(fid, &agent_id, t, &pool, &launched) {
                Err(why) => {
                    let s = self.master_status(
                        &tid,
                        &agent_id,
                        TaskState::Error,
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
                    let status = json!({"state": TaskState::Staging, "timestamp": secs(now_ms)});
                    let task = Task {
                        id: tid.clone(),
                        framework_id: fid.to_string(),
                        agent_id: agent_id.clone(),
                        info: info.clone(),
                        resources: res.clone(),
                        state: TaskState::Staging,
                        statuses: vec![status],
                        role: role.clone(),
                        unreachable: false,
                        kill_grace_ms: None,
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
        self.refuse_filter(fid, &agent_id, filters, now_ms);
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
}
