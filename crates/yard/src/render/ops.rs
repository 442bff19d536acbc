//! The operations center's answers as text: the topology tree, a command's result table, the
//! command list, progress bars.

use std::fmt::Write;

use yard_ops::center::{CommandList, CommandRecord, SeriesPoints, Stats, TopologyView};
use yard_ops::commands::CommandState;
use yard_ops::proto::RowState;
use yard_ops::tsdb::Resolution;

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn command_state(s: CommandState) -> &'static str {
    match s {
        CommandState::Running => "running",
        CommandState::Ok => "ok",
        CommandState::Failed => "failed",
    }
}

pub(crate) fn row_state(s: RowState) -> &'static str {
    match s {
        RowState::Pending => "pending",
        RowState::Running => "running",
        RowState::Ok => "ok",
        RowState::Failed => "failed",
        RowState::Skipped => "skipped",
    }
}

/// `yard topology`: center → clusters → agents → nodes and tasks, as a tree.
pub(crate) fn topology(t: &TopologyView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "center {} at {}", t.center.id, t.center.address);
    if t.clusters.is_empty() {
        let _ = writeln!(out, "└── (no cluster registered yet)");
    }
    let branch = |last: bool| if last { "└──" } else { "├──" };
    let indent = |last: bool| if last { "    " } else { "│   " };
    for (ci, c) in t.clusters.iter().enumerate() {
        let last_c = ci + 1 == t.clusters.len();
        let pad = indent(last_c);
        let _ = writeln!(
            out,
            "{} cluster {}  manager {} at {} [{}]",
            branch(last_c),
            c.name,
            short(&c.manager.id),
            c.manager.address,
            c.manager_state
        );
        for (ai, ag) in c.agents.iter().enumerate() {
            let last_a = ai + 1 == c.agents.len();
            let pad2 = indent(last_a);
            let _ = writeln!(
                out,
                "{pad}{} agent {} at {} [{}]",
                branch(last_a),
                ag.name,
                ag.address,
                ag.state
            );
            // Nodes, then resource-manager tasks, then how many tasks were not listed.
            let more = ag.tasks_total.saturating_sub(ag.tasks.len());
            let lines = ag.nodes.len() + ag.tasks.len() + usize::from(more > 0);
            let b3 = |i: usize| branch(i + 1 == lines);
            for (ni, n) in ag.nodes.iter().enumerate() {
                let pid = n.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
                let _ = writeln!(
                    out,
                    "{pad}{pad2}{} node {}  {} {}  pid {pid}  restarts {}",
                    b3(ni),
                    n.name,
                    n.state,
                    n.health,
                    n.restarts
                );
            }
            for (ti, task) in ag.tasks.iter().enumerate() {
                let health = match task.healthy {
                    Some(true) => " healthy",
                    Some(false) => " unhealthy",
                    None => "",
                };
                let _ = writeln!(
                    out,
                    "{pad}{pad2}{} task {}  {} {}{health}",
                    b3(ag.nodes.len() + ti),
                    task.id,
                    task.framework,
                    task.state.trim_start_matches("TASK_").to_lowercase(),
                );
            }
            if more > 0 {
                let _ = writeln!(out, "{pad}{pad2}└── … {more} more task(s) (yard tasks)");
            }
        }
    }
    out
}

/// A bar of 20 for `done` of `total`.
pub(crate) fn progress_bar(done: usize, total: usize) -> String {
    let width = 20;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    )
}

/// A command's rows (with each output's lines) and its end.
pub(crate) fn command_table(rec: &CommandRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<14} {:<12} {:<8} {:<5} DETAIL",
        "CLUSTER", "AGENT", "NODE", "RESULT", "EXIT"
    );
    for r in &rec.rows {
        let node = if r.node.is_empty() { "-" } else { &r.node };
        let exit = r
            .exit_code
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        let _ = writeln!(
            out,
            "{:<12} {:<14} {:<12} {:<8} {:<5} {}",
            r.cluster,
            r.agent,
            node,
            row_state(r.state),
            exit,
            r.detail
        );
        for line in r.output.lines().filter(|l| !l.is_empty()) {
            let _ = writeln!(out, "    | {line}");
        }
    }
    let took = rec.finished_ms.unwrap_or(0) - rec.started_ms;
    let _ = writeln!(out, "{} {} in {took} ms", rec.op, command_state(rec.state));
    out
}

/// `yard commands`: one line per command.
pub(crate) fn command_list(list: &CommandList) -> String {
    let mut out = format!("{:<28} {:<9} {:<8} CLUSTERS\n", "ID", "OP", "STATE");
    for c in &list.commands {
        let clusters: Vec<&str> = c.clusters.keys().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "{:<28} {:<9} {:<8} {}",
            c.id,
            c.op,
            command_state(c.state),
            clusters.join(",")
        );
    }
    out
}

/// `yard stats`: one row per cluster, then the total (`with_total`).
pub(crate) fn stats(st: &Stats, with_total: bool) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:>9} {:>10} {:>6} {:>8} {:>8} {:>9} {:>8} {:>10}\n",
        "CLUSTER",
        "MANAGER",
        "AGENTS_UP",
        "AGENTS_LOST",
        "NODES",
        "RUNNING",
        "HEALTHY",
        "RESTARTS",
        "CPU%",
        "MEM_USED"
    );
    let total = with_total.then_some(&st.total);
    for r in st.clusters.iter().chain(total) {
        let cpu = r
            .cpu_avg_pct
            .map_or_else(|| "-".to_string(), |c| format!("{c:.1}"));
        let _ = writeln!(
            out,
            "{:<12} {:<8} {:>9} {:>10} {:>6} {:>8} {:>8} {:>9} {:>8} {:>10}",
            r.cluster,
            r.manager,
            r.agents_up,
            r.agents_lost,
            r.nodes,
            r.nodes_running,
            r.nodes_healthy,
            r.restarts,
            cpu,
            format!("{:.0}M", r.mem_used_bytes / 1048576.0)
        );
    }
    out
}

fn resolution(r: Resolution) -> &'static str {
    match r {
        Resolution::Raw => "raw",
        Resolution::Minute => "minute",
        Resolution::Hour => "hour",
    }
}

/// `yard metrics SERIES`: a header, then one line per point (raw values, or a rollup's
/// min, avg, max and count), times in UTC.
pub(crate) fn points(p: &SeriesPoints, since: &str) -> String {
    let mut out = format!(
        "{} over {since} ({} points, {})\n",
        p.series,
        p.points.len(),
        resolution(p.resolution)
    );
    for x in &p.points {
        let ts = yard_data::time::format_timestamp(
            yard_data::time::ms_to_ns(x.ts),
            yard_data::time::TimestampPrecision::Millis,
        );
        match x.value {
            Some(v) => {
                let _ = writeln!(out, "{ts}  {v:.3}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "{ts}  min {:.3}  avg {:.3}  max {:.3}  ({} samples)",
                    x.min.unwrap_or(0.0),
                    x.avg.unwrap_or(0.0),
                    x.max.unwrap_or(0.0),
                    x.count.unwrap_or(0)
                );
            }
        }
    }
    out
}

/// Why a command failed, per cluster (empty when none said).
pub(crate) fn failures(rec: &CommandRecord) -> Vec<String> {
    rec.clusters
        .iter()
        .filter_map(|(c, o)| o.error.as_ref().map(|e| format!("{c}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yard_ops::center::{CenterInfo, CommandSummary};
    use yard_ops::commands::ClusterOutcome;
    use yard_ops::proto::{AgentView, CommandKind, ManagerView, NodeStatus, ProgressRow, TaskView};
    use yard_ops::topology::ClusterRecord;

    fn view() -> TopologyView {
        let agent = |name: &str, nodes: Vec<NodeStatus>, tasks: Vec<TaskView>, total| AgentView {
            id: format!("id-{name}"),
            name: name.into(),
            address: format!("{name}:1"),
            state: "up".into(),
            roles: vec![],
            nodes,
            last_seen_ms: 0,
            tasks,
            tasks_total: total,
        };
        let node = NodeStatus {
            name: "web".into(),
            state: "running".into(),
            health: "healthy".into(),
            pid: Some(42),
            restarts: 1,
            generation: 1,
        };
        let task = TaskView {
            id: "hello.1".into(),
            framework: "services".into(),
            state: "TASK_RUNNING".into(),
            healthy: Some(true),
        };
        TopologyView {
            center: CenterInfo {
                id: "C".into(),
                address: "127.0.0.1:9900".into(),
            },
            clusters: vec![ClusterRecord {
                name: "local".into(),
                manager: ManagerView {
                    id: "0123456789abcdef".into(),
                    address: "127.0.0.1:9901".into(),
                    started_ms: 0,
                    mesos: None,
                },
                manager_state: "up".into(),
                agents: vec![
                    agent("a1", vec![node], vec![task], 3),
                    agent("a2", vec![], vec![], 0),
                ],
                registered_ms: 0,
                last_report_ms: 0,
                registrations: 1,
                reports: 1,
            }],
        }
    }

    #[test]
    fn the_topology_is_a_tree() {
        assert_eq!(
            topology(&view()),
            "center C at 127.0.0.1:9900\n\
             └── cluster local  manager 01234567 at 127.0.0.1:9901 [up]\n    \
             ├── agent a1 at a1:1 [up]\n    \
             │   ├── node web  running healthy  pid 42  restarts 1\n    \
             │   ├── task hello.1  services running healthy\n    \
             │   └── … 2 more task(s) (yard tasks)\n    \
             └── agent a2 at a2:1 [up]\n"
        );
        let empty = TopologyView {
            clusters: vec![],
            ..view()
        };
        assert_eq!(
            topology(&empty),
            "center C at 127.0.0.1:9900\n└── (no cluster registered yet)\n"
        );
    }

    fn record() -> CommandRecord {
        CommandRecord {
            id: "cmd-1".into(),
            op: "exec".into(),
            by: "alice".into(),
            spec: CommandKind::Exec {
                argv: vec!["id".into()],
            },
            state: CommandState::Failed,
            started_ms: 1000,
            finished_ms: Some(1250),
            timeout_s: 300,
            clusters: [(
                "local".to_string(),
                ClusterOutcome {
                    state: CommandState::Failed,
                    error: Some("a2 failed".into()),
                },
            )]
            .into(),
            rows: vec![ProgressRow {
                id: "cmd-1".into(),
                cluster: "local".into(),
                agent: "a2".into(),
                node: String::new(),
                state: RowState::Failed,
                detail: "exit 1".into(),
                exit_code: Some(1),
                output: "no\n\nsuch\n".into(),
            }],
            version: 3,
        }
    }

    #[test]
    fn a_command_s_table_has_its_rows_outputs_and_end() {
        assert_eq!(
            command_table(&record()),
            "CLUSTER      AGENT          NODE         RESULT   EXIT  DETAIL\n\
             local        a2             -            failed   1     exit 1\n    \
             | no\n    \
             | such\n\
             exec failed in 250 ms\n"
        );
        assert_eq!(failures(&record()), ["local: a2 failed"]);
    }

    #[test]
    fn stats_rows_and_their_total() {
        use yard_ops::center::StatsRow;
        let row = StatsRow {
            cluster: "local".into(),
            manager: "up".into(),
            agents_up: 2,
            agents_lost: 1,
            nodes: 4,
            nodes_running: 4,
            nodes_healthy: 3,
            restarts: 5,
            cpu_avg_pct: Some(12.34),
            mem_used_bytes: 3.0 * 1048576.0,
        };
        let total = StatsRow {
            cluster: "*".into(),
            manager: String::new(),
            cpu_avg_pct: None,
            ..row.clone()
        };
        let st = Stats {
            clusters: vec![row],
            total,
        };
        let text = stats(&st, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("CLUSTER      MANAGER  AGENTS_UP"));
        assert_eq!(
            lines[1],
            "local        up               2          1      4        4        3         5     12.3         3M"
        );
        assert_eq!(
            lines[2],
            "*                             2          1      4        4        3         5        -         3M"
        );
        assert_eq!(stats(&st, false).lines().count(), 2);
    }

    #[test]
    fn points_raw_and_rolled_up() {
        use yard_ops::tsdb::Point;
        let raw = Point {
            ts: 0,
            value: Some(1.5),
            min: None,
            max: None,
            avg: None,
            count: None,
        };
        let rollup = Point {
            ts: 60_000,
            value: None,
            min: Some(1.0),
            max: Some(3.0),
            avg: Some(2.0),
            count: Some(4),
        };
        let p = SeriesPoints {
            series: "local/a1/cpu".into(),
            from: 0,
            to: 60_000,
            resolution: Resolution::Minute,
            points: vec![raw, rollup],
        };
        let text = points(&p, "1h");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "local/a1/cpu over 1h (2 points, minute)");
        assert!(lines[1].ends_with("  1.500"), "{}", lines[1]);
        assert!(
            lines[2].ends_with("  min 1.000  avg 2.000  max 3.000  (4 samples)"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn the_command_list_and_the_bar() {
        let r = record();
        let list = CommandList {
            commands: vec![CommandSummary {
                id: r.id,
                op: r.op,
                by: r.by,
                state: r.state,
                started_ms: r.started_ms,
                finished_ms: r.finished_ms,
                clusters: r.clusters,
            }],
        };
        assert_eq!(
            command_list(&list),
            format!(
                "{:<28} {:<9} {:<8} CLUSTERS\n{:<28} {:<9} {:<8} local\n",
                "ID", "OP", "STATE", "cmd-1", "exec", "failed"
            )
        );
        assert_eq!(progress_bar(1, 4), "[#####...............] 1/4");
        assert_eq!(progress_bar(0, 0), "[####################] 0/0");
    }
}
