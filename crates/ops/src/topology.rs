//! The center's model of the system (no I/O): clusters, their managers, agents and nodes.
//!
//! A manager's report is the whole of its cluster, so applying one *replaces* the cluster's
//! record: a manager that registers again (after its own restart or the center's) is reconciled,
//! never duplicated. Applying returns the changes, which the center logs as events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::proto::{AgentView, ClusterReport, ManagerView};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterRecord {
    pub name: String,
    pub manager: ManagerView,
    /// `up`, or `lost` once its reports stopped for longer than the center's bound.
    pub manager_state: String,
    pub agents: Vec<AgentView>,
    /// Unix ms of the first registration.
    pub registered_ms: u64,
    /// Unix ms of the newest report.
    pub last_report_ms: u64,
    /// How many times a manager (re)started and registered this cluster.
    pub registrations: u64,
    /// Reports received by this center process (0 for a record loaded at start until its
    /// manager reports again).
    #[serde(default)]
    pub reports: u64,
}

/// One change to the system, as the center's event log shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Change {
    ClusterRegistered {
        cluster: String,
        manager: String,
    },
    ManagerRestarted {
        cluster: String,
        manager: String,
    },
    ManagerLost {
        cluster: String,
        manager: String,
    },
    ManagerBack {
        cluster: String,
        manager: String,
    },
    AgentJoined {
        cluster: String,
        agent: String,
    },
    AgentLost {
        cluster: String,
        agent: String,
    },
    AgentBack {
        cluster: String,
        agent: String,
    },
    AgentLeft {
        cluster: String,
        agent: String,
    },
    NodeChanged {
        cluster: String,
        agent: String,
        node: String,
        state: String,
        health: String,
    },
}

#[derive(Debug, Default, Clone)]
pub struct Topology {
    pub clusters: BTreeMap<String, ClusterRecord>,
}

impl Topology {
    /// Applies a manager's report received at `now`.
    pub fn apply(&mut self, report: ClusterReport, now: u64) -> Vec<Change> {
        let cluster = report.cluster.clone();
        let mut changes = Vec::new();
        let manager = report.manager.id.clone();
        let old = self.clusters.remove(&cluster);
        let reports = old.as_ref().map_or(0, |o| o.reports) + 1;
        let (registered_ms, mut registrations, old_agents) = match &old {
            None => {
                changes.push(Change::ClusterRegistered {
                    cluster: cluster.clone(),
                    manager: manager.clone(),
                });
                (now, 1, Vec::new())
            }
            Some(o) => {
                let restarted = o.manager.id != report.manager.id
                    || o.manager.started_ms != report.manager.started_ms;
                if restarted {
                    changes.push(Change::ManagerRestarted {
                        cluster: cluster.clone(),
                        manager: manager.clone(),
                    });
                } else if o.manager_state == "lost" {
                    changes.push(Change::ManagerBack {
                        cluster: cluster.clone(),
                        manager: manager.clone(),
                    });
                }
                (
                    o.registered_ms,
                    o.registrations + u64::from(restarted),
                    o.agents.clone(),
                )
            }
        };
        registrations = registrations.max(1);
        for a in &report.agents {
            match old_agents.iter().find(|o| o.name == a.name) {
                None => changes.push(Change::AgentJoined {
                    cluster: cluster.clone(),
                    agent: a.name.clone(),
                }),
                Some(o) => {
                    if o.state != a.state {
                        changes.push(if a.state == "lost" {
                            Change::AgentLost {
                                cluster: cluster.clone(),
                                agent: a.name.clone(),
                            }
                        } else {
                            Change::AgentBack {
                                cluster: cluster.clone(),
                                agent: a.name.clone(),
                            }
                        });
                    }
                    for n in &a.nodes {
                        let before = o.nodes.iter().find(|x| x.name == n.name);
                        if before.is_none_or(|b| b.state != n.state || b.health != n.health) {
                            changes.push(Change::NodeChanged {
                                cluster: cluster.clone(),
                                agent: a.name.clone(),
                                node: n.name.clone(),
                                state: n.state.clone(),
                                health: n.health.clone(),
                            });
                        }
                    }
                }
            }
        }
        for o in &old_agents {
            if !report.agents.iter().any(|a| a.name == o.name) {
                changes.push(Change::AgentLeft {
                    cluster: cluster.clone(),
                    agent: o.name.clone(),
                });
            }
        }
        let mut agents = report.agents;
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        self.clusters.insert(
            cluster.clone(),
            ClusterRecord {
                name: cluster,
                manager: report.manager,
                manager_state: "up".into(),
                agents,
                registered_ms,
                last_report_ms: now,
                registrations,
                reports,
            },
        );
        changes
    }

    /// Marks managers whose last report is older than `bound_ms` as lost.
    pub fn expire(&mut self, now: u64, bound_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for c in self.clusters.values_mut() {
            if c.manager_state == "up" && now.saturating_sub(c.last_report_ms) > bound_ms {
                c.manager_state = "lost".into();
                changes.push(Change::ManagerLost {
                    cluster: c.name.clone(),
                    manager: c.manager.id.clone(),
                });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NodeStatus;

    fn agent(name: &str, state: &str, health: &str) -> AgentView {
        AgentView {
            id: format!("id-{name}"),
            name: name.into(),
            address: "127.0.0.1:1".into(),
            state: state.into(),
            roles: vec![],
            nodes: vec![NodeStatus {
                name: "web".into(),
                state: "running".into(),
                health: health.into(),
                pid: Some(1),
                restarts: 0,
                generation: 1,
            }],
            last_seen_ms: 0,
            tasks: vec![],
            tasks_total: 0,
        }
    }

    fn report(mgr: &str, started: u64, agents: Vec<AgentView>) -> ClusterReport {
        ClusterReport {
            cluster: "c1".into(),
            manager: ManagerView {
                id: mgr.into(),
                address: "127.0.0.1:2".into(),
                started_ms: started,
                mesos: None,
            },
            agents,
        }
    }

    #[test]
    fn reports_replace_the_cluster_and_yield_exact_changes() {
        let mut t = Topology::default();
        let ch = t.apply(report("m", 1, vec![agent("a", "up", "healthy")]), 10);
        assert_eq!(
            ch,
            vec![
                Change::ClusterRegistered {
                    cluster: "c1".into(),
                    manager: "m".into()
                },
                Change::AgentJoined {
                    cluster: "c1".into(),
                    agent: "a".into()
                }
            ]
        );
        // The same report again (a periodic one): nothing changed.
        assert!(t
            .apply(report("m", 1, vec![agent("a", "up", "healthy")]), 20)
            .is_empty());
        let ch = t.apply(
            report(
                "m",
                1,
                vec![agent("a", "lost", "healthy"), agent("b", "up", "unknown")],
            ),
            30,
        );
        assert_eq!(
            ch,
            vec![
                Change::AgentLost {
                    cluster: "c1".into(),
                    agent: "a".into()
                },
                Change::AgentJoined {
                    cluster: "c1".into(),
                    agent: "b".into()
                }
            ]
        );
        // The manager restarts and re-registers: one cluster, still; counted once.
        let ch = t.apply(report("m2", 2, vec![agent("b", "up", "healthy")]), 40);
        assert_eq!(t.clusters.len(), 1);
        let c = &t.clusters["c1"];
        assert_eq!(
            (c.registrations, c.registered_ms, c.agents.len()),
            (2, 10, 1)
        );
        assert!(matches!(ch[0], Change::ManagerRestarted { .. }), "{ch:?}");
        assert!(ch
            .iter()
            .any(|c| matches!(c, Change::AgentLeft { agent, .. } if agent == "a")));
        assert!(ch.iter().any(
            |c| matches!(c, Change::NodeChanged { agent, health, .. } if agent == "b" && health == "healthy")
        ));
    }

    #[test]
    fn silent_managers_are_marked_lost_then_back() {
        let mut t = Topology::default();
        t.apply(report("m", 1, vec![]), 0);
        assert!(t.expire(1000, 1500).is_empty());
        assert_eq!(t.expire(2000, 1500).len(), 1);
        assert!(t.expire(3000, 1500).is_empty(), "reported once");
        let ch = t.apply(report("m", 1, vec![]), 3100);
        assert!(matches!(ch[0], Change::ManagerBack { .. }));
        assert_eq!(t.clusters["c1"].manager_state, "up");
    }
}
