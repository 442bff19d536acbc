//! Recovery: after a restart the master rebuilds its frameworks, agents and tasks from the
//! records it persisted ([`Out::Persist`]); agents and frameworks then have their timeouts to
//! come back.

use super::*;

impl Master {
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
                        recovered: true,
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
                state: v["state"]
                    .as_str()
                    .and_then(|s| TaskState::parse(s).ok())
                    .unwrap_or(TaskState::Staging),
                statuses: v
                    .get("statuses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                role: v["role"].as_str().unwrap_or("*").into(),
                unreachable: v["unreachable"].as_bool().unwrap_or(false),
                kill_grace_ms: None,
            };
            self.executor_ref(&task, true);
            self.tasks.insert((fid.to_string(), tid.to_string()), task);
        }
    }
}
