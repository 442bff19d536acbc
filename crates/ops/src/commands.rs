//! The center's commands, as a pure core: it numbers each command, asks each cluster's manager
//! to carry it out, gathers the rows of progress and each cluster's result, ends the command
//! when every cluster has ended, and fails a cluster whose manager went quiet. No I/O, no
//! clock: time comes in with each call, in Unix milliseconds. The center's shell performs the
//! actions and wakes the followers of a command after every call that changed it.
//!
//! A manager enforces a command's timeout itself; the center waits [`MANAGER_GRACE_MS`] longer
//! for its result (a manager that died meanwhile never sends one). At most `keep` commands are
//! remembered; the oldest finished ones go first, and running ones are never forgotten.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::proto::{CommandKind, CommandSpec, ProgressRow};

/// How long past a command's timeout the center waits for a manager's result.
pub const MANAGER_GRACE_MS: u64 = 35_000;

/// Where a command, or one cluster's share of it, stands (on the wire: `running`, `ok`,
/// `failed`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Running,
    Ok,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterOutcome {
    pub state: CommandState,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandRecord {
    pub id: String,
    pub op: String,
    /// Who started it (the credential's name; empty when not known).
    #[serde(default)]
    pub by: String,
    pub spec: CommandKind,
    pub state: CommandState,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub timeout_s: u64,
    pub clusters: BTreeMap<String, ClusterOutcome>,
    pub rows: Vec<ProgressRow>,
    /// Bumped on every change (for followers).
    pub version: u64,
}

/// A cluster's manager, as the topology knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerRef {
    pub id: String,
    pub up: bool,
}

/// What the shell does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Ask `manager` to carry out `spec` on `cluster`; if it does not take it, tell
    /// [`Commands::fail`].
    Ask {
        cluster: String,
        manager: String,
        spec: CommandSpec,
    },
    /// Publish a row of progress on the command's topic.
    Publish(ProgressRow),
}

/// Every command the center remembers.
#[derive(Debug)]
pub struct Commands {
    records: BTreeMap<String, CommandRecord>,
    next: u64,
    keep: usize,
}

impl Commands {
    pub fn new(keep: usize) -> Commands {
        Commands {
            records: BTreeMap::new(),
            next: 0,
            keep: keep.max(1),
        }
    }

    pub fn get(&self, id: &str) -> Option<&CommandRecord> {
        self.records.get(id)
    }

    /// In id order.
    pub fn list(&self) -> impl Iterator<Item = &CommandRecord> {
        self.records.values()
    }

    pub fn running(&self) -> usize {
        self.records
            .values()
            .filter(|r| r.state == CommandState::Running)
            .count()
    }

    /// Starts `kind` on `clusters`; `manager` says who runs each (if anyone). Returns the
    /// command's id and the requests to send.
    pub fn start(
        &mut self,
        kind: CommandKind,
        clusters: Vec<String>,
        manager: impl Fn(&str) -> Option<ManagerRef>,
        timeout_s: u64,
        by: String,
        now_ms: u64,
    ) -> (String, Vec<Action>) {
        let id = format!(
            "{}-{}",
            kind.name(),
            self.next + (now_ms % 1_000_000) * 1000
        );
        self.next += 1;
        let spec = CommandSpec {
            id: id.clone(),
            kind: kind.clone(),
            timeout_s,
        };
        let mut rec = CommandRecord {
            id: id.clone(),
            op: kind.name().into(),
            by,
            spec: kind,
            state: CommandState::Running,
            started_ms: now_ms,
            finished_ms: None,
            timeout_s,
            clusters: BTreeMap::new(),
            rows: Vec::new(),
            version: 1,
        };
        let mut out = Vec::new();
        for cluster in clusters {
            let outcome = match manager(&cluster) {
                None => failed(format!("no cluster {cluster}")),
                Some(m) if !m.up => failed("its manager is lost".into()),
                Some(m) => {
                    out.push(Action::Ask {
                        cluster: cluster.clone(),
                        manager: m.id,
                        spec: spec.clone(),
                    });
                    ClusterOutcome {
                        state: CommandState::Running,
                        error: None,
                    }
                }
            };
            rec.clusters.insert(cluster, outcome);
        }
        close_if_done(&mut rec, now_ms);
        self.records.insert(id.clone(), rec);
        self.forget_old();
        (id, out)
    }

    /// A row of progress from a cluster's manager; late rows (after that cluster's result) are
    /// dropped.
    pub fn progress(&mut self, row: ProgressRow) -> Vec<Action> {
        let Some(rec) = self.records.get_mut(&row.id) else {
            return vec![];
        };
        if !running_on(rec, &row.cluster) {
            return vec![];
        }
        match rec
            .rows
            .iter_mut()
            .find(|r| r.cluster == row.cluster && r.agent == row.agent && r.node == row.node)
        {
            Some(r) => *r = row.clone(),
            None => rec.rows.push(row.clone()),
        }
        rec.version += 1;
        vec![Action::Publish(row)]
    }

    /// A cluster's result, with all its rows; whether it changed anything.
    pub fn finish(
        &mut self,
        id: &str,
        cluster: &str,
        ok: bool,
        rows: Vec<ProgressRow>,
        error: Option<String>,
        now_ms: u64,
    ) -> bool {
        let Some(rec) = self.records.get_mut(id) else {
            return false;
        };
        if !running_on(rec, cluster) {
            return false;
        }
        rec.rows.retain(|r| r.cluster != cluster);
        rec.rows.extend(rows);
        let state = if ok {
            CommandState::Ok
        } else {
            CommandState::Failed
        };
        rec.clusters
            .insert(cluster.to_string(), ClusterOutcome { state, error });
        close_if_done(rec, now_ms);
        true
    }

    /// A cluster's share failed before it could report (its manager refused or was not reached).
    pub fn fail(&mut self, id: &str, cluster: &str, error: String, now_ms: u64) -> bool {
        self.finish(id, cluster, false, Vec::new(), Some(error), now_ms)
    }

    /// The clock: fails the clusters whose manager sent no result in time; whether anything
    /// changed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let late: Vec<(String, String)> = self
            .records
            .values()
            .filter(|r| r.state == CommandState::Running && now_ms >= give_up_ms(r))
            .flat_map(|r| {
                r.clusters
                    .iter()
                    .filter(|(_, c)| c.state == CommandState::Running)
                    .map(|(name, _)| (r.id.clone(), name.clone()))
            })
            .collect();
        for (id, cluster) in &late {
            self.fail(
                id,
                cluster,
                "no result from the manager in time".into(),
                now_ms,
            );
        }
        !late.is_empty()
    }

    fn forget_old(&mut self) {
        while self.records.len() > self.keep {
            let oldest = self
                .records
                .values()
                .filter(|r| r.state != CommandState::Running)
                .min_by(|a, b| a.started_ms.cmp(&b.started_ms).then(a.id.cmp(&b.id)))
                .map(|r| r.id.clone());
            match oldest {
                Some(id) => self.records.remove(&id),
                None => break,
            };
        }
    }
}

fn failed(error: String) -> ClusterOutcome {
    ClusterOutcome {
        state: CommandState::Failed,
        error: Some(error),
    }
}

fn running_on(rec: &CommandRecord, cluster: &str) -> bool {
    rec.clusters
        .get(cluster)
        .is_some_and(|c| c.state == CommandState::Running)
}

/// When the center stops waiting for a command's results.
fn give_up_ms(r: &CommandRecord) -> u64 {
    let timeout = r.timeout_s.saturating_mul(1000);
    r.started_ms
        .saturating_add(timeout)
        .saturating_add(MANAGER_GRACE_MS)
}

fn close_if_done(rec: &mut CommandRecord, now_ms: u64) {
    rec.version += 1;
    if rec
        .clusters
        .values()
        .all(|c| c.state != CommandState::Running)
    {
        rec.state = if rec.clusters.values().all(|c| c.state == CommandState::Ok) {
            CommandState::Ok
        } else {
            CommandState::Failed
        };
        rec.finished_ms = Some(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::RowState;

    const T0: u64 = 1_700_000_000_000;

    fn managers(c: &str) -> Option<ManagerRef> {
        match c {
            "c1" => Some(ManagerRef {
                id: "m1".into(),
                up: true,
            }),
            "c2" => Some(ManagerRef {
                id: "m2".into(),
                up: true,
            }),
            "lost" => Some(ManagerRef {
                id: "m3".into(),
                up: false,
            }),
            _ => None,
        }
    }

    fn exec() -> CommandKind {
        CommandKind::Exec {
            argv: vec!["true".into()],
        }
    }

    fn row(id: &str, cluster: &str, agent: &str, state: RowState) -> ProgressRow {
        ProgressRow {
            id: id.into(),
            cluster: cluster.into(),
            agent: agent.into(),
            node: String::new(),
            state,
            detail: String::new(),
            exit_code: None,
            output: String::new(),
        }
    }

    fn start(c: &mut Commands, clusters: &[&str], timeout_s: u64) -> (String, Vec<Action>) {
        let clusters = clusters.iter().map(|s| s.to_string()).collect();
        c.start(exec(), clusters, managers, timeout_s, "alice".into(), T0)
    }

    #[test]
    fn a_command_asks_each_manager_and_ends_when_every_cluster_has() {
        let mut c = Commands::new(10);
        let (id, out) = start(&mut c, &["c1", "c2"], 60);
        let spec = CommandSpec {
            id: id.clone(),
            kind: exec(),
            timeout_s: 60,
        };
        assert_eq!(
            out,
            vec![
                Action::Ask {
                    cluster: "c1".into(),
                    manager: "m1".into(),
                    spec: spec.clone()
                },
                Action::Ask {
                    cluster: "c2".into(),
                    manager: "m2".into(),
                    spec
                },
            ]
        );
        assert_eq!(c.running(), 1);
        let r = row(&id, "c1", "a1", RowState::Running);
        assert_eq!(c.progress(r.clone()), vec![Action::Publish(r)]);
        let done = row(&id, "c1", "a1", RowState::Ok);
        assert!(c.finish(&id, "c1", true, vec![done.clone()], None, T0 + 5));
        assert_eq!(c.get(&id).unwrap().state, CommandState::Running);
        // A row that comes after its cluster's result is dropped.
        assert_eq!(c.progress(row(&id, "c1", "a1", RowState::Failed)), vec![]);
        assert!(c.finish(&id, "c2", false, vec![], Some("boom".into()), T0 + 9));
        let rec = c.get(&id).unwrap();
        assert_eq!(
            (rec.state, rec.finished_ms),
            (CommandState::Failed, Some(T0 + 9))
        );
        assert_eq!(rec.rows, vec![done]);
        assert_eq!(rec.clusters["c2"].error.as_deref(), Some("boom"));
        // A second result for a cluster changes nothing.
        assert!(!c.finish(&id, "c2", true, vec![], None, T0 + 10));
        assert_eq!(c.running(), 0);
    }

    #[test]
    fn unknown_clusters_and_lost_managers_fail_at_once() {
        let mut c = Commands::new(10);
        let (id, out) = start(&mut c, &["nope", "lost"], 60);
        assert_eq!(out, vec![]);
        let rec = c.get(&id).unwrap();
        assert_eq!(rec.state, CommandState::Failed);
        assert_eq!(rec.clusters["nope"], failed("no cluster nope".into()));
        assert_eq!(rec.clusters["lost"], failed("its manager is lost".into()));
    }

    #[test]
    fn a_manager_that_goes_quiet_fails_its_cluster_after_the_grace() {
        let mut c = Commands::new(10);
        let (id, _) = start(&mut c, &["c1"], 10);
        assert!(!c.tick(T0 + 10_000 + MANAGER_GRACE_MS - 1));
        assert!(c.tick(T0 + 10_000 + MANAGER_GRACE_MS));
        let rec = c.get(&id).unwrap();
        assert_eq!(rec.state, CommandState::Failed);
        assert_eq!(
            rec.clusters["c1"].error.as_deref(),
            Some("no result from the manager in time")
        );
        assert!(!c.tick(T0 + 100_000), "once");
    }

    #[test]
    fn old_finished_commands_are_forgotten_first_and_running_ones_never() {
        let mut c = Commands::new(2);
        let (a, _) = start(&mut c, &["c1"], 60);
        let (b, _) = start(&mut c, &["nope"], 60);
        let (d, _) = start(&mut c, &["nope"], 60);
        // `a` runs: `b`, the oldest finished one, went.
        assert!(c.get(&a).is_some() && c.get(&b).is_none() && c.get(&d).is_some());
        let ids: Vec<&str> = c.list().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(a, d);
    }
}
