//! How a manager carries out one command on its cluster, as a pure core: events in (the
//! command starts, an agent answered, the clock passed a point), actions out (publish a row's
//! progress, dispatch a step to an agent, report the end). No I/O, no clock: time comes in with
//! each event, in Unix milliseconds. The manager's shell (`manager.rs`) performs the actions.
//!
//! The rules:
//! - A restart has a row per node, taken `batch` at a time: a batch starts when the one before
//!   it has answered, and the first failure skips every row not started yet.
//! - Other commands (deploy, rollback, exec) have a row per agent, all started at once; a
//!   failure on one agent does not stop the others.
//! - A command that cannot begin (its artifact did not reach the manager) skips every row.
//! - Past the deadline (`timeout_s` after the start) no row starts: the rest are skipped. Each
//!   step is given what is left of the time; a row still running [`ANSWER_GRACE_MS`] after the
//!   deadline fails. An answer that arrives later is ignored.
//! - The end is reported once, with every row; it is `ok` only if every row is.

use std::time::Duration;

use crate::proto::{
    AgentView, CommandKind, CommandSpec, Msg, ProgressRow, RowState, Task, TaskOutcome,
};

/// How long past the deadline an agent's answer is still taken (its step had until the
/// deadline; the answer needs a moment to travel).
pub const ANSWER_GRACE_MS: u64 = 1000;

/// What the shell does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish this row as it now stands.
    Progress(ProgressRow),
    /// Send `task` to `agent`; answer with [`Rollout::answered`] for `row`. The agent has
    /// `timeout` to answer (what is left of the command's time).
    Dispatch {
        row: usize,
        agent: String,
        task: Task,
        timeout: Duration,
    },
    /// The command is over on this cluster: report it (a [`Msg::CommandDone`]).
    Done(Msg),
}

/// One command on one cluster.
#[derive(Debug)]
pub struct Rollout {
    spec: CommandSpec,
    cluster: String,
    rows: Vec<ProgressRow>,
    /// Rows started together.
    batch: usize,
    /// The first row not started yet.
    next: usize,
    /// Rows started and not answered.
    running: usize,
    /// A restart stopped at a failure.
    stopped: bool,
    error: Option<String>,
    deadline_ms: u64,
    done: bool,
}

impl Rollout {
    /// Plans `spec` over `agents` (the cluster's, as the manager knows them at `now_ms`).
    pub fn new(spec: CommandSpec, cluster: &str, agents: &[AgentView], now_ms: u64) -> Rollout {
        let row = |agent: &str, node: &str| ProgressRow {
            id: spec.id.clone(),
            cluster: cluster.to_string(),
            agent: agent.to_string(),
            node: node.to_string(),
            state: RowState::Pending,
            detail: String::new(),
            exit_code: None,
            output: String::new(),
        };
        let rows: Vec<ProgressRow> = match &spec.kind {
            CommandKind::Restart { nodes, .. } => agents
                .iter()
                .flat_map(|a| {
                    a.nodes
                        .iter()
                        .filter(|n| {
                            nodes.is_empty()
                                || nodes.iter().any(|x| *x == format!("{}/{}", a.name, n.name))
                        })
                        .map(|n| row(&a.name, &n.name))
                })
                .collect(),
            _ => agents.iter().map(|a| row(&a.name, "")).collect(),
        };
        let batch = match &spec.kind {
            CommandKind::Restart { batch, .. } => (*batch).max(1),
            _ => rows.len().max(1),
        };
        let timeout_ms = spec.timeout_s.max(1).saturating_mul(1000);
        Rollout {
            deadline_ms: now_ms.saturating_add(timeout_ms),
            spec,
            cluster: cluster.to_string(),
            rows,
            batch,
            next: 0,
            running: 0,
            stopped: false,
            error: None,
            done: false,
        }
    }

    /// When the command's time is up for its last answers (the shell calls [`Rollout::tick`]
    /// then).
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms.saturating_add(ANSWER_GRACE_MS)
    }

    /// How many rows it has (the most answers the shell will be given).
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The first actions: every row, pending.
    pub fn start(&self) -> Vec<Action> {
        self.rows.iter().cloned().map(Action::Progress).collect()
    }

    /// The steps begin (after the shell's preparation: a deployment's artifact fetched);
    /// `error` says why they cannot.
    pub fn begin(&mut self, error: Option<String>, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.done || self.next > 0 {
            return out;
        }
        if error.is_some() {
            self.error = error;
            self.skip_rest("an earlier step failed", &mut out);
        }
        self.advance(now_ms, &mut out);
        out
    }

    /// `agent`'s answer for `row` (or why there is none).
    pub fn answered(
        &mut self,
        row: usize,
        answer: Result<TaskOutcome, String>,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let restart = matches!(self.spec.kind, CommandKind::Restart { .. });
        let Some(r) = self.rows.get_mut(row) else {
            return out;
        };
        if self.done || r.state != RowState::Running {
            return out; // late, or not asked
        }
        match answer {
            Ok(o) => {
                r.state = if o.ok { RowState::Ok } else { RowState::Failed };
                r.detail = o.detail;
                r.exit_code = o.exit_code;
                r.output = o.output;
            }
            Err(e) => {
                r.state = RowState::Failed;
                r.detail = e;
            }
        }
        self.running -= 1;
        let failed = r.state == RowState::Failed;
        out.push(Action::Progress(r.clone()));
        if failed && restart {
            self.stopped = true;
        }
        self.advance(now_ms, &mut out);
        out
    }

    /// The clock: at or past the deadline, the command ends.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.done || now_ms < self.deadline_ms() {
            return out;
        }
        for r in &mut self.rows {
            if r.state == RowState::Running {
                r.state = RowState::Failed;
                r.detail = "no answer before the command's deadline".into();
                out.push(Action::Progress(r.clone()));
            }
        }
        self.running = 0;
        self.skip_rest("the command's deadline passed", &mut out);
        self.finish(&mut out);
        out
    }

    /// Starts the next batch once the running one has answered, or ends the command.
    fn advance(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if self.running > 0 || self.done {
            return;
        }
        if self.stopped {
            self.skip_rest("an earlier step failed", out);
        }
        if now_ms >= self.deadline_ms {
            self.skip_rest("the command's deadline passed", out);
        }
        if self.next >= self.rows.len() {
            self.finish(out);
            return;
        }
        let end = (self.next + self.batch).min(self.rows.len());
        let left = self.deadline_ms.saturating_sub(now_ms);
        let timeout = Duration::from_millis(left);
        for i in self.next..end {
            let task = self.task(&self.rows[i].node, timeout);
            let r = &mut self.rows[i];
            r.state = RowState::Running;
            out.push(Action::Progress(r.clone()));
            out.push(Action::Dispatch {
                row: i,
                agent: r.agent.clone(),
                task,
                timeout,
            });
        }
        self.running = end - self.next;
        self.next = end;
    }

    fn skip_rest(&mut self, why: &str, out: &mut Vec<Action>) {
        for r in &mut self.rows[self.next..] {
            r.state = RowState::Skipped;
            r.detail = why.into();
            out.push(Action::Progress(r.clone()));
        }
        self.next = self.rows.len();
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        self.done = true;
        let ok = self.error.is_none() && self.rows.iter().all(|r| r.state == RowState::Ok);
        out.push(Action::Done(Msg::CommandDone {
            id: self.spec.id.clone(),
            cluster: self.cluster.clone(),
            ok,
            rows: self.rows.clone(),
            error: self.error.clone(),
        }));
    }

    fn task(&self, node: &str, left: Duration) -> Task {
        let timeout_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        match &self.spec.kind {
            CommandKind::Restart { .. } => Task::RestartNode {
                node: node.to_string(),
                timeout_ms,
            },
            CommandKind::Deploy {
                sha256,
                name,
                size,
                path,
            } => Task::Install {
                sha256: sha256.clone(),
                name: name.clone(),
                size: *size,
                path: path.clone(),
            },
            CommandKind::Rollback { path } => Task::Rollback { path: path.clone() },
            CommandKind::Exec { argv } => Task::Exec {
                argv: argv.clone(),
                timeout_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NodeStatus;

    const T0: u64 = 1_000_000;

    fn agent(name: &str, nodes: &[&str]) -> AgentView {
        AgentView {
            name: name.into(),
            nodes: nodes
                .iter()
                .map(|n| NodeStatus {
                    name: n.to_string(),
                    state: "running".into(),
                    health: "healthy".into(),
                    pid: Some(1),
                    restarts: 0,
                    generation: 1,
                })
                .collect(),
            id: format!("id-{name}"),
            address: String::new(),
            state: "up".into(),
            roles: vec![],
            last_seen_ms: 0,
            tasks: vec![],
            tasks_total: 0,
        }
    }

    fn spec(kind: CommandKind) -> CommandSpec {
        CommandSpec {
            id: "c1".into(),
            kind,
            timeout_s: 60,
        }
    }

    fn row(agent: &str, node: &str, state: RowState, detail: &str) -> ProgressRow {
        ProgressRow {
            id: "c1".into(),
            cluster: "k".into(),
            agent: agent.into(),
            node: node.into(),
            state,
            detail: detail.into(),
            exit_code: None,
            output: String::new(),
        }
    }

    fn progress(agent: &str, node: &str, state: RowState, detail: &str) -> Action {
        Action::Progress(row(agent, node, state, detail))
    }

    fn restart(row: usize, agent: &str, node: &str, left_ms: u64) -> Action {
        Action::Dispatch {
            row,
            agent: agent.into(),
            task: Task::RestartNode {
                node: node.into(),
                timeout_ms: left_ms,
            },
            timeout: Duration::from_millis(left_ms),
        }
    }

    fn ok() -> Result<TaskOutcome, String> {
        Ok(TaskOutcome {
            ok: true,
            detail: "healthy".into(),
            exit_code: None,
            output: String::new(),
        })
    }

    fn done(ok: bool, rows: Vec<ProgressRow>, error: Option<&str>) -> Action {
        Action::Done(Msg::CommandDone {
            id: "c1".into(),
            cluster: "k".into(),
            ok,
            rows,
            error: error.map(str::to_string),
        })
    }

    use RowState::{Failed, Pending, Running, Skipped};
    const OK: RowState = RowState::Ok;

    #[test]
    fn a_restart_goes_one_batch_at_a_time_and_stops_at_the_first_failure() {
        let agents = [agent("a1", &["n1", "n2"]), agent("a2", &["n3"])];
        let mut r = Rollout::new(
            spec(CommandKind::Restart {
                batch: 1,
                nodes: vec![],
            }),
            "k",
            &agents,
            T0,
        );
        assert_eq!(
            [r.start(), r.begin(None, T0)].concat(),
            vec![
                progress("a1", "n1", Pending, ""),
                progress("a1", "n2", Pending, ""),
                progress("a2", "n3", Pending, ""),
                progress("a1", "n1", Running, ""),
                restart(0, "a1", "n1", 60_000),
            ]
        );
        // An answer for a row that is not running changes nothing.
        assert_eq!(r.answered(1, ok(), T0 + 10), vec![]);
        assert_eq!(
            r.answered(0, ok(), T0 + 1_000),
            vec![
                progress("a1", "n1", OK, "healthy"),
                progress("a1", "n2", Running, ""),
                restart(1, "a1", "n2", 59_000),
            ]
        );
        assert_eq!(
            r.answered(1, Err("agent a1 is lost".into()), T0 + 2_000),
            vec![
                progress("a1", "n2", Failed, "agent a1 is lost"),
                progress("a2", "n3", Skipped, "an earlier step failed"),
                done(
                    false,
                    vec![
                        row("a1", "n1", OK, "healthy"),
                        row("a1", "n2", Failed, "agent a1 is lost"),
                        row("a2", "n3", Skipped, "an earlier step failed"),
                    ],
                    None
                ),
            ]
        );
        assert!(r.is_done());
        // Nothing after the end: not a late answer, not the clock.
        assert_eq!(r.answered(1, ok(), T0 + 3_000), vec![]);
        assert_eq!(r.tick(T0 + 120_000), vec![]);
    }

    #[test]
    fn a_restart_of_named_nodes_plans_only_those() {
        let agents = [agent("a1", &["n1", "n2"]), agent("a2", &["n1"])];
        let only = CommandKind::Restart {
            batch: 1,
            nodes: vec!["a2/n1".into()],
        };
        let mut r = Rollout::new(spec(only), "k", &agents, T0);
        assert_eq!(
            [r.start(), r.begin(None, T0)].concat(),
            vec![
                progress("a2", "n1", Pending, ""),
                progress("a2", "n1", Running, ""),
                restart(0, "a2", "n1", 60_000),
            ]
        );
        assert_eq!(
            r.answered(0, ok(), T0 + 500),
            vec![
                progress("a2", "n1", OK, "healthy"),
                done(true, vec![row("a2", "n1", OK, "healthy")], None),
            ]
        );
    }

    #[test]
    fn a_batch_waits_for_all_of_its_rows() {
        let agents = [agent("a1", &["n1", "n2", "n3"])];
        let mut r = Rollout::new(
            spec(CommandKind::Restart {
                batch: 2,
                nodes: vec![],
            }),
            "k",
            &agents,
            T0,
        );
        assert_eq!(r.start().len(), 3);
        assert_eq!(
            r.begin(None, T0),
            [
                progress("a1", "n1", Running, ""),
                restart(0, "a1", "n1", 60_000),
                progress("a1", "n2", Running, ""),
                restart(1, "a1", "n2", 60_000),
            ]
        );
        assert_eq!(
            r.answered(1, ok(), T0 + 5),
            vec![progress("a1", "n2", OK, "healthy")]
        );
        assert_eq!(
            r.answered(0, ok(), T0 + 10),
            vec![
                progress("a1", "n1", OK, "healthy"),
                progress("a1", "n3", Running, ""),
                restart(2, "a1", "n3", 59_990),
            ]
        );
        let end = r.answered(2, ok(), T0 + 20);
        assert_eq!(end[0], progress("a1", "n3", OK, "healthy"));
        assert!(
            matches!(&end[1], Action::Done(Msg::CommandDone { ok: true, rows, .. }) if rows.len() == 3)
        );
    }

    #[test]
    fn an_exec_runs_everywhere_at_once_and_reports_every_agent() {
        let agents = [agent("a1", &["n1"]), agent("a2", &[])];
        let argv = vec!["id".to_string()];
        let mut r = Rollout::new(
            spec(CommandKind::Exec { argv: argv.clone() }),
            "k",
            &agents,
            T0,
        );
        let exec = |row: usize, agent: &str| Action::Dispatch {
            row,
            agent: agent.into(),
            task: Task::Exec {
                argv: argv.clone(),
                timeout_ms: 60_000,
            },
            timeout: Duration::from_secs(60),
        };
        assert_eq!(
            [r.start(), r.begin(None, T0)].concat(),
            vec![
                progress("a1", "", Pending, ""),
                progress("a2", "", Pending, ""),
                progress("a1", "", Running, ""),
                exec(0, "a1"),
                progress("a2", "", Running, ""),
                exec(1, "a2"),
            ]
        );
        let failed = TaskOutcome {
            ok: false,
            detail: "exit status 1".into(),
            exit_code: Some(1),
            output: "no".into(),
        };
        let mut a1 = row("a1", "", Failed, "exit status 1");
        a1.exit_code = Some(1);
        a1.output = "no".into();
        // A failure does not stop the others.
        assert_eq!(
            r.answered(0, Result::Ok(failed), T0 + 5),
            vec![Action::Progress(a1.clone())]
        );
        assert_eq!(
            r.answered(1, ok(), T0 + 6),
            vec![
                progress("a2", "", OK, "healthy"),
                done(false, vec![a1, row("a2", "", OK, "healthy")], None),
            ]
        );
    }

    #[test]
    fn the_deadline_fails_what_runs_and_skips_what_waits() {
        let agents = [agent("a1", &["n1", "n2"])];
        let mut s = spec(CommandKind::Restart {
            batch: 1,
            nodes: vec![],
        });
        s.timeout_s = 5;
        let mut r = Rollout::new(s, "k", &agents, T0);
        r.begin(None, T0);
        // The step's answer may still come a moment after the deadline.
        assert_eq!(r.deadline_ms(), T0 + 6_000);
        assert_eq!(r.tick(T0 + 5_500), vec![]);
        let late = "no answer before the command's deadline";
        let skipped = "the command's deadline passed";
        assert_eq!(
            r.tick(T0 + 6_000),
            vec![
                progress("a1", "n1", Failed, late),
                progress("a1", "n2", Skipped, skipped),
                done(
                    false,
                    vec![
                        row("a1", "n1", Failed, late),
                        row("a1", "n2", Skipped, skipped)
                    ],
                    None
                ),
            ]
        );
        // The answer that comes after the deadline is ignored.
        assert_eq!(r.answered(0, ok(), T0 + 6_100), vec![]);
    }

    #[test]
    fn no_batch_starts_past_the_deadline() {
        let agents = [agent("a1", &["n1", "n2"])];
        let mut s = spec(CommandKind::Restart {
            batch: 1,
            nodes: vec![],
        });
        s.timeout_s = 5;
        let mut r = Rollout::new(s, "k", &agents, T0);
        r.begin(None, T0);
        let skipped = "the command's deadline passed";
        assert_eq!(
            r.answered(0, ok(), T0 + 5_200),
            vec![
                progress("a1", "n1", OK, "healthy"),
                progress("a1", "n2", Skipped, skipped),
                done(
                    false,
                    vec![
                        row("a1", "n1", OK, "healthy"),
                        row("a1", "n2", Skipped, skipped)
                    ],
                    None
                ),
            ]
        );
    }

    #[test]
    fn a_command_that_cannot_begin_skips_every_row_and_says_why() {
        let agents = [agent("a1", &[])];
        let kind = CommandKind::Deploy {
            sha256: "ab".into(),
            name: "app".into(),
            size: 1,
            path: None,
        };
        let why = "cannot fetch the artifact from the center: gone";
        let mut r = Rollout::new(spec(kind), "k", &agents, T0);
        let skipped = row("a1", "", Skipped, "an earlier step failed");
        assert_eq!(
            [r.start(), r.begin(Some(why.into()), T0)].concat(),
            vec![
                progress("a1", "", Pending, ""),
                Action::Progress(skipped.clone()),
                done(false, vec![skipped], Some(why)),
            ]
        );
    }

    #[test]
    fn a_cluster_without_agents_is_done_at_once() {
        let mut r = Rollout::new(spec(CommandKind::Rollback { path: None }), "k", &[], T0);
        assert_eq!(r.start(), vec![]);
        assert_eq!(r.begin(None, T0), vec![done(true, vec![], None)]);
        assert_eq!(r.begin(None, T0), vec![], "it begins once");
    }
}
