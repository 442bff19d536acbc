//! A manager's view of its cluster, as a pure core: the agents it knows (from their
//! heartbeats, and from its store after a restart), which of them are lost, whether the
//! center's copy is out of date, and the metric samples waiting to go to the center. No I/O,
//! no clock: time comes in with each call, in Unix milliseconds. The manager's actor
//! ([`crate::manager`]) performs what it answers (persisting an agent, reporting, forwarding).

use std::collections::{BTreeMap, VecDeque};

use crate::proto::{AgentView, ClusterReport, ManagerView, Sample};

/// Why a command or a log read cannot reach an agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("agent {0} is lost")]
    Lost(String),
    #[error("no agent {agent} in cluster {cluster}")]
    Unknown { agent: String, cluster: String },
}

/// What a heartbeat did.
#[derive(Debug, Clone, PartialEq)]
pub enum Heartbeat {
    /// Taken. `persist`: the agent is new or changed identity, and its record (nodes left out)
    /// goes to the manager's store.
    Taken { persist: Option<AgentView> },
    /// Refused: another live agent has this name (its id).
    Clash { other: String },
}

/// What a batch of samples from one agent came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleCount {
    pub kept: u64,
    /// Not from the agent they name, or for another agent's series.
    pub refused: u64,
    /// The oldest waiting samples dropped to make room.
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    view: AgentView,
    last_seen_ms: u64,
}

/// The cluster's agents and what waits for the center.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    agent_timeout_ms: u64,
    buffer: usize,
    agents: BTreeMap<String, Entry>,
    dirty: bool,
    metrics: VecDeque<Sample>,
}

impl Cluster {
    /// `known`: the agents from the store, each given `agent_timeout_ms` from `now_ms` to come
    /// back. At most `buffer` samples wait for the center.
    pub fn new(
        name: &str,
        agent_timeout_ms: u64,
        buffer: usize,
        known: Vec<AgentView>,
        now_ms: u64,
    ) -> Cluster {
        let agents = known
            .into_iter()
            .map(|view| {
                let e = Entry {
                    view,
                    last_seen_ms: now_ms,
                };
                (e.view.name.clone(), e)
            })
            .collect();
        Cluster {
            name: name.to_string(),
            agent_timeout_ms,
            buffer,
            agents,
            dirty: true,
            metrics: VecDeque::new(),
        }
    }

    /// An agent's heartbeat (`view` as it sent it).
    pub fn heartbeat(&mut self, mut view: AgentView, now_ms: u64) -> Heartbeat {
        view.state = "up".into();
        view.last_seen_ms = now_ms;
        let timeout = self.agent_timeout_ms;
        let persist = match self.agents.get_mut(&view.name) {
            // Two live agents under one name: the second is refused.
            Some(e)
                if e.view.id != view.id
                    && e.view.state == "up"
                    && now_ms.saturating_sub(e.last_seen_ms) < timeout =>
            {
                return Heartbeat::Clash {
                    other: e.view.id.clone(),
                }
            }
            Some(e) => {
                let changed = e.view.id != view.id
                    || e.view.state != view.state
                    || e.view.address != view.address
                    || e.view.roles != view.roles
                    || nodes_differ(&e.view, &view)
                    || e.view.tasks != view.tasks
                    || e.view.tasks_total != view.tasks_total;
                let identity = e.view.id != view.id || e.view.address != view.address;
                self.dirty |= changed;
                e.view = view.clone();
                e.last_seen_ms = now_ms;
                identity
            }
            None => {
                self.agents.insert(
                    view.name.clone(),
                    Entry {
                        view: view.clone(),
                        last_seen_ms: now_ms,
                    },
                );
                self.dirty = true;
                true
            }
        };
        Heartbeat::Taken {
            persist: persist.then(|| {
                let mut stored = view;
                stored.nodes.clear();
                stored
            }),
        }
    }

    /// Marks agents silent for longer than the timeout lost; their names.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let mut lost = Vec::new();
        for a in self.agents.values_mut() {
            if a.view.state == "up" && now_ms.saturating_sub(a.last_seen_ms) > self.agent_timeout_ms
            {
                a.view.state = "lost".into();
                for n in &mut a.view.nodes {
                    n.health = "unknown".into();
                }
                for t in &mut a.view.tasks {
                    t.healthy = None;
                }
                lost.push(a.view.name.clone());
            }
        }
        self.dirty |= !lost.is_empty();
        lost
    }

    /// The endpoint id of a live agent.
    pub fn agent_id(&self, name: &str) -> Result<String, AgentError> {
        match self.agents.get(name) {
            Some(a) if a.view.state == "up" => Ok(a.view.id.clone()),
            Some(_) => Err(AgentError::Lost(name.to_string())),
            None => Err(AgentError::Unknown {
                agent: name.to_string(),
                cluster: self.name.clone(),
            }),
        }
    }

    /// Every agent, by name.
    pub fn agents(&self) -> Vec<AgentView> {
        self.agents.values().map(|a| a.view.clone()).collect()
    }

    /// (up, lost).
    pub fn counts(&self) -> (usize, usize) {
        let up = self
            .agents
            .values()
            .filter(|a| a.view.state == "up")
            .count();
        (up, self.agents.len() - up)
    }

    /// The whole cluster for the center.
    pub fn report(&self, manager: ManagerView) -> ClusterReport {
        ClusterReport {
            cluster: self.name.clone(),
            manager,
            agents: self.agents(),
        }
    }

    /// Whether the center's copy is out of date; clears the mark.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The report did not reach the center: send it again.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Samples published by the endpoint `origin` on the topic of agent `agent`: kept only when
    /// `origin` is that agent and each series is under `CLUSTER/AGENT/`.
    pub fn samples(&mut self, agent: &str, origin: &str, samples: Vec<Sample>) -> SampleCount {
        let mut count = SampleCount::default();
        if self.agents.get(agent).is_none_or(|a| a.view.id != origin) {
            // One per message: its samples are not looked at.
            count.refused = 1;
            return count;
        }
        let own = format!("{}/{agent}/", self.name);
        for x in samples {
            if !x.series.starts_with(&own) {
                count.refused += 1;
                continue;
            }
            if self.metrics.len() >= self.buffer {
                self.metrics.pop_front();
                count.dropped += 1;
            }
            self.metrics.push_back(x);
            count.kept += 1;
        }
        count
    }

    /// The samples waiting for the center, oldest first.
    pub fn drain_metrics(&mut self) -> Vec<Sample> {
        self.metrics.drain(..).collect()
    }
}

fn nodes_differ(a: &AgentView, b: &AgentView) -> bool {
    a.nodes.len() != b.nodes.len()
        || a.nodes.iter().zip(&b.nodes).any(|(x, y)| {
            x.name != y.name
                || x.state != y.state
                || x.health != y.health
                || x.generation != y.generation
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NodeStatus;

    fn view(name: &str, id: &str) -> AgentView {
        AgentView {
            id: id.into(),
            name: name.into(),
            address: format!("{name}:1"),
            state: "starting".into(),
            roles: vec![],
            nodes: vec![NodeStatus {
                name: "n".into(),
                state: "running".into(),
                health: "healthy".into(),
                pid: Some(7),
                restarts: 0,
                generation: 1,
            }],
            last_seen_ms: 0,
            tasks: vec![],
            tasks_total: 0,
        }
    }

    fn sample(series: &str) -> Sample {
        Sample {
            series: series.into(),
            ts: 1,
            value: 1.0,
        }
    }

    #[test]
    fn a_new_agent_is_recorded_without_its_nodes_and_a_same_name_twin_is_refused() {
        let mut c = Cluster::new("c", 10_000, 10, vec![], 0);
        assert!(c.take_dirty(), "a fresh manager reports at once");
        let mut stored = view("a1", "E1");
        stored.state = "up".into();
        stored.last_seen_ms = 5;
        stored.nodes.clear();
        assert_eq!(
            c.heartbeat(view("a1", "E1"), 5),
            Heartbeat::Taken {
                persist: Some(stored)
            }
        );
        assert!(c.take_dirty());
        // The same agent again: nothing to persist, nothing changed for the center.
        assert_eq!(
            c.heartbeat(view("a1", "E1"), 1_000),
            Heartbeat::Taken { persist: None }
        );
        assert!(!c.take_dirty());
        // Another endpoint under the same name while the first is live: refused.
        assert_eq!(
            c.heartbeat(view("a1", "E2"), 2_000),
            Heartbeat::Clash { other: "E1".into() }
        );
        assert_eq!(c.agent_id("a1"), Ok("E1".into()));
    }

    #[test]
    fn a_silent_agent_is_lost_once_and_its_name_freed() {
        let mut c = Cluster::new("c", 10_000, 10, vec![], 0);
        c.heartbeat(view("a1", "E1"), 0);
        c.take_dirty();
        assert!(c.expire(10_000).is_empty());
        assert_eq!(c.expire(10_001), ["a1"]);
        assert!(c.expire(20_000).is_empty(), "lost once");
        assert!(c.take_dirty());
        assert_eq!(c.agent_id("a1"), Err(AgentError::Lost("a1".into())));
        let a = &c.agents()[0];
        assert_eq!(a.nodes[0].health, "unknown");
        assert_eq!(c.counts(), (0, 1));
        // A restarted agent (new endpoint) takes the name back.
        assert!(matches!(
            c.heartbeat(view("a1", "E2"), 20_001),
            Heartbeat::Taken { persist: Some(_) }
        ));
        assert_eq!(
            c.agent_id("nope"),
            Err(AgentError::Unknown {
                agent: "nope".into(),
                cluster: "c".into()
            })
        );
    }

    #[test]
    fn agents_from_the_store_get_the_timeout_to_come_back() {
        let mut known = view("a1", "E1");
        known.state = "up".into();
        let mut c = Cluster::new("c", 10_000, 10, vec![known], 50_000);
        assert!(c.expire(60_000).is_empty());
        assert_eq!(c.expire(60_001), ["a1"]);
    }

    #[test]
    fn samples_count_only_from_the_agent_itself_for_its_own_series_and_the_buffer_is_bounded() {
        let mut c = Cluster::new("c", 10_000, 2, vec![], 0);
        c.heartbeat(view("a1", "E1"), 0);
        assert_eq!(
            c.samples("a1", "E9", vec![sample("c/a1/cpu")]),
            SampleCount {
                kept: 0,
                refused: 1,
                dropped: 0
            }
        );
        assert_eq!(
            c.samples(
                "a1",
                "E1",
                vec![
                    sample("c/a1/cpu"),
                    sample("c/a2/cpu"),
                    sample("c/a1/mem"),
                    sample("c/a1/disk")
                ]
            ),
            SampleCount {
                kept: 3,
                refused: 1,
                dropped: 1
            }
        );
        let kept: Vec<String> = c.drain_metrics().into_iter().map(|s| s.series).collect();
        assert_eq!(kept, ["c/a1/mem", "c/a1/disk"]);
        assert!(c.drain_metrics().is_empty());
    }
}
