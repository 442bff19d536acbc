//! The resource manager verbs' output: agents, frameworks, tasks and services as tables.

use std::fmt::Write;

use yard_rm::mesos::legacy::{Frameworks, Slaves, TaskRow, Tasks};
use yard_rm::services::{ServiceList, ServiceStatus};

/// `yes`, `no`, or `-` when unknown.
fn yes_no(b: Option<bool>) -> &'static str {
    b.map_or("-", |b| if b { "yes" } else { "no" })
}

/// The first eight characters of an id nobody has a name for.
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// `yard agents`: each agent with its use of cpus and memory and its running tasks.
pub(crate) fn agents(slaves: &Slaves, tasks: &Tasks) -> String {
    let mut out = format!(
        "{:<40} {:<10} {:<22} {:<7} {:>11} {:>15} {:>5}\n",
        "ID", "NAME", "ADDRESS", "ACTIVE", "CPUS", "MEM (MB)", "TASKS"
    );
    for a in &slaves.slaves {
        let running = tasks
            .tasks
            .iter()
            .filter(|t| t.slave_id == a.id && !t.ended())
            .count();
        let _ = writeln!(
            out,
            "{:<40} {:<10} {:<22} {:<7} {:>11} {:>15} {:>5}",
            a.id,
            a.name,
            a.address(),
            yes_no(Some(a.active)),
            format!("{}/{}", a.used_resources.cpus, a.resources.cpus),
            format!("{}/{}", a.used_resources.mem, a.resources.mem),
            running
        );
    }
    if slaves.slaves.is_empty() {
        out.push_str("(no agent has registered)\n");
    }
    out
}

/// `yard frameworks`: each registered framework, and why it waits for offers.
pub(crate) fn frameworks(f: &Frameworks) -> String {
    let mut out = format!(
        "{:<40} {:<16} {:<6} {:<10} {:>5} {:>6} {:>8}  WAITING\n",
        "ID", "NAME", "ROLE", "CONNECTED", "TASKS", "CPUS", "MEM"
    );
    for fw in &f.frameworks {
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:<6} {:<10} {:>5} {:>6} {:>8}  {}",
            fw.id,
            fw.name,
            fw.role,
            yes_no(Some(fw.connected)),
            fw.tasks.len(),
            fw.used_resources.cpus,
            fw.used_resources.mem,
            fw.waiting.as_deref().unwrap_or("-")
        );
    }
    if f.frameworks.is_empty() {
        out.push_str("(no framework is registered)\n");
    }
    out
}

/// `yard tasks`: each task with its framework's and its agent's names.
pub(crate) fn tasks(list: &[TaskRow], slaves: &Slaves, f: &Frameworks, all: bool) -> String {
    let mut out = format!(
        "{:<36} {:<14} {:<10} {:<16} {:<8} {:>5} {:>7}\n",
        "ID", "FRAMEWORK", "AGENT", "STATE", "HEALTHY", "CPUS", "MEM"
    );
    for t in list {
        let framework = f
            .find(&t.framework_id)
            .map_or_else(|| short(&t.framework_id), |x| x.name.clone());
        let agent = slaves
            .find(&t.slave_id)
            .map_or_else(|| short(&t.slave_id), |x| x.name.clone());
        let _ = writeln!(
            out,
            "{:<36} {:<14} {:<10} {:<16} {:<8} {:>5} {:>7}",
            t.id,
            framework,
            agent,
            t.state.as_str(),
            yes_no(t.healthy()),
            t.resources.cpus,
            t.resources.mem
        );
    }
    if list.is_empty() {
        let _ = writeln!(out, "(no {}task)", if all { "" } else { "running " });
    }
    out
}

/// `yard service list`.
pub(crate) fn services(list: &ServiceList) -> String {
    let mut out = format!(
        "{:<20} {:<13} {:<10} {:>9} {:>8} {:>8}  WAITING\n",
        "NAME", "VERSION", "PHASE", "INSTANCES", "RUNNING", "HEALTHY"
    );
    for x in &list.services {
        let _ = writeln!(
            out,
            "{:<20} {:<13} {:<10} {:>9} {:>8} {:>8}  {}",
            x.name,
            x.version,
            x.phase.to_string(),
            x.instances,
            x.running,
            x.healthy,
            x.waiting.as_deref().unwrap_or("-")
        );
    }
    if list.services.is_empty() {
        out.push_str("(no service; deploy one with `yard service deploy FILE`)\n");
    }
    out
}

/// `yard service status NAME`: the service, then one line per instance (`*`: stopping).
pub(crate) fn service(v: &ServiceStatus, slaves: &Slaves) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "service   {}", v.name);
    let _ = writeln!(out, "version   {}", v.version);
    let _ = writeln!(out, "phase     {}", v.phase);
    let _ = writeln!(
        out,
        "instances {} wanted, {} running, {} healthy",
        v.instances, v.running, v.healthy
    );
    if let Some(w) = &v.waiting {
        let _ = writeln!(out, "waiting   {w}");
    }
    let _ = writeln!(
        out,
        "\n{:<44} {:<13} {:<16} {:<8} {:<24} PORTS",
        "TASK", "VERSION", "STATE", "HEALTHY", "AGENT"
    );
    for t in &v.tasks {
        let agent = slaves.find(&t.agent_id).map_or_else(
            || t.agent_id.clone(),
            |a| format!("{} ({})", a.name, a.hostname),
        );
        let ports: Vec<String> = t.ports.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "{:<44} {:<13} {:<16} {:<8} {:<24} {}",
            t.id,
            t.version,
            format!("{}{}", t.state.as_str(), if t.stopping { "*" } else { "" }),
            yes_no(t.healthy),
            agent,
            ports.join(",")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slaves() -> Slaves {
        serde_json::from_value(json!({"slaves": [{
            "id": "a-1", "name": "web1", "hostname": "10.0.0.1", "port": 5051, "pid": "slave(1)@10.0.0.1:5051",
            "registered_time": 1.0, "resources": {"cpus": 4.0, "mem": 1024.0}, "used_resources": {"cpus": 0.5, "mem": 64.0},
            "offered_resources": {}, "unreserved_resources": {}, "active": true, "deactivated": false, "version": "1.11.0"
        }]}))
        .unwrap()
    }

    fn task(id: &str, state: &str, healthy: Option<bool>) -> serde_json::Value {
        let mut status = json!({"state": state, "timestamp": 1.0});
        if let Some(h) = healthy {
            status["healthy"] = json!(h);
        }
        json!({"id": id, "framework_id": "fw-123456789", "slave_id": "a-1", "agent_id": "a-1", "state": state,
               "resources": {"cpus": 0.5, "mem": 64.0}, "statuses": [status]})
    }

    #[test]
    fn agents_count_only_their_tasks_that_have_not_ended() {
        let tasks: Tasks = serde_json::from_value(json!({"tasks": [
            task("t1", "TASK_RUNNING", None), task("t2", "TASK_FINISHED", None), task("t3", "TASK_LOST", None)
        ]}))
        .unwrap();
        let text = agents(&slaves(), &tasks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[1],
            "a-1                                      web1       10.0.0.1:5051          yes           0.5/4         64/1024     1"
        );
        assert_eq!(
            agents(&Slaves::default(), &Tasks::default()).lines().last(),
            Some("(no agent has registered)")
        );
    }

    #[test]
    fn tasks_name_their_agent_and_fall_back_to_a_short_framework_id() {
        let list: Tasks =
            serde_json::from_value(json!({"tasks": [task("t1", "TASK_RUNNING", Some(true))]}))
                .unwrap();
        let text = tasks(&list.tasks, &slaves(), &Frameworks::default(), false);
        assert_eq!(
            text.lines().nth(1),
            Some("t1                                   fw-12345       web1       TASK_RUNNING     yes        0.5      64")
        );
        assert_eq!(
            tasks(&[], &slaves(), &Frameworks::default(), false)
                .lines()
                .last(),
            Some("(no running task)")
        );
    }

    #[test]
    fn a_service_shows_its_instances_with_their_agent_and_ports() {
        let status: ServiceStatus = serde_json::from_value(json!({
            "name": "web", "version": "v1", "phase": "upgrading", "instances": 2, "running": 1, "healthy": 1,
            "failures_in_a_row": 0, "waiting": "waiting for offers",
            "spec": {"name": "web", "command": "true", "instances": 2, "cpus": 0.5, "mem": 64.0},
            "tasks": [{"id": "web.1", "version": "v0", "agent_id": "a-1", "hostname": "10.0.0.1", "state": "TASK_RUNNING",
                        "healthy": true, "ports": [31000, 31001], "stopping": true, "up_seconds": 5}]
        }))
        .unwrap();
        let text = service(&status, &slaves());
        assert!(text.starts_with("service   web\nversion   v1\nphase     upgrading\ninstances 2 wanted, 1 running, 1 healthy\nwaiting   waiting for offers\n"), "{text}");
        assert_eq!(
            text.lines().last(),
            Some("web.1                                        v0            TASK_RUNNING*    yes      web1 (10.0.0.1)          31000,31001")
        );
        let list = ServiceList {
            services: vec![status],
        };
        assert_eq!(
            services(&list).lines().nth(1),
            Some("web                  v1            upgrading          2        1        1  waiting for offers")
        );
    }
}
