//! The allocator: hierarchical dominant resource fairness as pure logic. A [`Snapshot`] of the
//! agents' free resources and the frameworks' allocations goes in; [`Allocation`] (offers, and
//! why every framework that got none is waiting) comes out. No clocks, no I/O: the master owns
//! the state, calls [`allocate`] each cycle and turns the grants into offers.
//!
//! One cycle, as in Mesos: every agent whose free resources reach the minimum allocatable
//! resources is offered whole to one framework. Roles are visited in order of weighted dominant
//! share, and within the chosen role its frameworks in order of dominant share; the first that
//! is active, not suppressed and not filtered on the agent gets it. Shares are updated after
//! every grant, so one cycle spreads the agents fairly. Agents are visited from a rotating start
//! (`rotation`) so that no agent is always first.

use std::collections::{BTreeSet, HashMap};

use crate::mesos::resources::{Resources, MILLI};

/// The kinds that count for dominant shares.
pub const KINDS: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

#[derive(Debug, Clone)]
pub struct AgentSlot {
    pub id: String,
    /// Total minus what is used by tasks and held by offers.
    pub available: Resources,
    /// Agents that are unreachable or draining are not offered.
    pub active: bool,
    /// The agent's total, for the cluster totals that shares divide by.
    pub total: Resources,
}

#[derive(Debug, Clone)]
pub struct FrameworkSlot {
    pub id: String,
    pub role: String,
    /// Resources used by its tasks plus those held in its offers.
    pub allocated: Resources,
    /// Connected (subscribed with a live stream).
    pub active: bool,
    pub suppressed: bool,
    /// Decline filters: agent id → the time (ms) until which that agent is not offered to it.
    pub filters: HashMap<String, u64>,
}

pub struct Snapshot<'a> {
    pub agents: &'a [AgentSlot],
    pub frameworks: &'a [FrameworkSlot],
    /// Role weights; a role not listed weighs 1.
    pub weights: &'a HashMap<String, f64>,
    /// Alternatives: an agent is offered when its free resources contain any one of them.
    pub min_allocatable: &'a [Resources],
    pub now_ms: u64,
    /// Where the visit of the agents starts (the master bumps it every cycle).
    pub rotation: usize,
}

/// One offer to make: all of an agent's free resources to one framework.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub framework: usize,
    pub agent: usize,
    pub resources: Resources,
}

/// Why a framework received nothing this cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum Waiting {
    /// Not connected.
    Inactive,
    /// It sent SUPPRESS.
    Suppressed,
    /// Every agent with free resources is filtered for it.
    Filtered {
        agents: usize,
        /// When the first of those filters expires (ms).
        next_expiry_ms: u64,
    },
    /// No agent had the minimum allocatable resources free.
    NoFreeResources {
        /// The largest free resources of any active agent (by cpus, then mem).
        most_free: Resources,
    },
    /// The free agents went to frameworks with lower dominant shares.
    OutOfTurn { share: f64 },
}

impl Waiting {
    /// The reason as an operator reads it.
    pub fn describe(&self, min_allocatable: &[Resources], now_ms: u64) -> String {
        match self {
            Waiting::Inactive => "not connected: offers resume when the framework subscribes again".into(),
            Waiting::Suppressed => "suppressed: the framework sent SUPPRESS; REVIVE resumes offers".into(),
            Waiting::Filtered {
                agents,
                next_expiry_ms,
            } => format!(
                "filtered: it declined all {agents} agents with free resources (refuse_seconds); the first filter expires in {:.1} s, REVIVE clears them",
                next_expiry_ms.saturating_sub(now_ms) as f64 / 1000.0
            ),
            Waiting::NoFreeResources { most_free } => {
                let mins: Vec<String> = min_allocatable.iter().map(|r| r.to_string()).collect();
                format!(
                    "no free resources: no agent has the minimum allocatable resources ({}) free; the most free agent has {most_free}",
                    mins.join(" or ")
                )
            }
            Waiting::OutOfTurn { share } => format!(
                "out of turn: the free agents went to frameworks with lower dominant shares (its share is {share:.3})"
            ),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Allocation {
    pub grants: Vec<Grant>,
    /// Framework index → why it got nothing (only frameworks without a grant).
    pub waiting: Vec<(usize, Waiting)>,
}

/// Quantities of the share kinds, in thousandths.
type Q = [i64; 4];

fn quantities(r: &Resources) -> Q {
    KINDS.map(|k| r.scalar(k))
}

fn add_q(into: &mut Q, q: &Q) {
    for (a, b) in into.iter_mut().zip(q) {
        *a += b;
    }
}

/// The dominant share of `alloc` over `totals`, divided by `weight`.
fn share(alloc: &Q, totals: &Q, weight: f64) -> f64 {
    let mut s: f64 = 0.0;
    for i in 0..4 {
        if totals[i] > 0 {
            s = s.max(alloc[i] as f64 / totals[i] as f64);
        }
    }
    s / weight
}

/// A sort key for a non-negative share (ties then break by index, i.e. by id order).
fn key(s: f64) -> u64 {
    (s * 1e15) as u64
}

fn allocatable(free: &Resources, mins: &[Resources]) -> bool {
    !free.is_empty() && (mins.is_empty() || mins.iter().any(|m| free.contains(m)))
}

fn filtered(f: &FrameworkSlot, agent: &str, now_ms: u64) -> bool {
    f.filters.get(agent).is_some_and(|until| *until > now_ms)
}

/// One allocation cycle.
pub fn allocate(s: &Snapshot) -> Allocation {
    let mut totals: Q = [0; 4];
    for a in s.agents.iter().filter(|a| a.active) {
        add_q(&mut totals, &quantities(&a.total));
    }
    // Roles, their weights and their frameworks.
    let mut role_ix: HashMap<&str, usize> = HashMap::new();
    let mut roles: Vec<(&str, f64, Q)> = Vec::new();
    let mut fw_role = Vec::with_capacity(s.frameworks.len());
    let mut fw_alloc: Vec<Q> = Vec::with_capacity(s.frameworks.len());
    for f in s.frameworks {
        let r = *role_ix.entry(f.role.as_str()).or_insert_with(|| {
            let w = s
                .weights
                .get(&f.role)
                .copied()
                .filter(|w| *w > 0.0)
                .unwrap_or(1.0);
            roles.push((f.role.as_str(), w, [0; 4]));
            roles.len() - 1
        });
        let q = quantities(&f.allocated);
        add_q(&mut roles[r].2, &q);
        fw_role.push(r);
        fw_alloc.push(q);
    }
    // Only frameworks that can take offers take part in the ordering.
    let eligible = |f: &FrameworkSlot| f.active && !f.suppressed;
    let mut in_role: Vec<BTreeSet<(u64, usize)>> = vec![BTreeSet::new(); roles.len()];
    for (i, f) in s.frameworks.iter().enumerate() {
        if eligible(f) {
            in_role[fw_role[i]].insert((key(share(&fw_alloc[i], &totals, 1.0)), i));
        }
    }
    let mut role_order: BTreeSet<(u64, usize)> = BTreeSet::new();
    for (r, (_, w, q)) in roles.iter().enumerate() {
        if !in_role[r].is_empty() {
            role_order.insert((key(share(q, &totals, *w)), r));
        }
    }
    let mut out = Allocation::default();
    let mut granted = vec![false; s.frameworks.len()];
    let mut free_agents = Vec::new();
    let n = s.agents.len();
    for step in 0..n {
        let ai = (s.rotation + step) % n;
        let agent = &s.agents[ai];
        if !agent.active || !allocatable(&agent.available, s.min_allocatable) {
            continue;
        }
        free_agents.push(ai);
        let mut pick = None;
        'roles: for &(_, r) in &role_order {
            for &(_, fi) in &in_role[r] {
                if !filtered(&s.frameworks[fi], &agent.id, s.now_ms) {
                    pick = Some((r, fi));
                    break 'roles;
                }
            }
        }
        let Some((r, fi)) = pick else { continue };
        let q = quantities(&agent.available);
        let w = roles[r].1;
        let old_f = key(share(&fw_alloc[fi], &totals, 1.0));
        let old_r = key(share(&roles[r].2, &totals, w));
        add_q(&mut fw_alloc[fi], &q);
        add_q(&mut roles[r].2, &q);
        in_role[r].remove(&(old_f, fi));
        in_role[r].insert((key(share(&fw_alloc[fi], &totals, 1.0)), fi));
        role_order.remove(&(old_r, r));
        role_order.insert((key(share(&roles[r].2, &totals, w)), r));
        granted[fi] = true;
        out.grants.push(Grant {
            framework: fi,
            agent: ai,
            resources: agent.available.clone(),
        });
    }
    for (fi, f) in s.frameworks.iter().enumerate() {
        if granted[fi] {
            continue;
        }
        let why = if !f.active {
            Waiting::Inactive
        } else if f.suppressed {
            Waiting::Suppressed
        } else if free_agents.is_empty() {
            let most_free = s
                .agents
                .iter()
                .filter(|a| a.active)
                .map(|a| &a.available)
                .max_by_key(|r| (r.scalar("cpus"), r.scalar("mem")))
                .cloned()
                .unwrap_or_default();
            Waiting::NoFreeResources { most_free }
        } else {
            let blocked: Vec<u64> = free_agents
                .iter()
                .filter_map(|&ai| f.filters.get(&s.agents[ai].id).copied())
                .filter(|until| *until > s.now_ms)
                .collect();
            if blocked.len() == free_agents.len() {
                Waiting::Filtered {
                    agents: blocked.len(),
                    next_expiry_ms: blocked.iter().copied().min().unwrap_or(s.now_ms),
                }
            } else {
                Waiting::OutOfTurn {
                    share: share(&fw_alloc[fi], &totals, 1.0),
                }
            }
        };
        out.waiting.push((fi, why));
    }
    out
}

/// Parses minimum allocatable resources: alternatives separated by `|`
/// (`cpus:0.01|mem:32`, Mesos's default).
pub fn parse_min_allocatable(
    text: &str,
) -> Result<Vec<Resources>, crate::mesos::resources::ResourceError> {
    text.split('|')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Resources::parse)
        .collect()
}

/// Mesos's default minimum allocatable resources.
pub fn default_min_allocatable() -> Vec<Resources> {
    let mut cpus = Resources::new();
    cpus.set_scalar("cpus", MILLI / 100);
    let mut mem = Resources::new();
    mem.set_scalar("mem", 32 * MILLI);
    vec![cpus, mem]
}

impl<'a> std::fmt::Debug for Snapshot<'a> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn res(t: &str) -> Resources {
        Resources::parse(t).unwrap()
    }

    fn agent(id: &str, r: &str) -> AgentSlot {
        AgentSlot {
            id: id.into(),
            available: res(r),
            active: true,
            total: res(r),
        }
    }

    fn fw(id: &str, role: &str) -> FrameworkSlot {
        FrameworkSlot {
            id: id.into(),
            role: role.into(),
            allocated: Resources::new(),
            active: true,
            suppressed: false,
            filters: HashMap::new(),
        }
    }

    fn run(
        agents: &[AgentSlot],
        fws: &[FrameworkSlot],
        weights: &HashMap<String, f64>,
    ) -> Allocation {
        let mins = default_min_allocatable();
        allocate(&Snapshot {
            agents,
            frameworks: fws,
            weights,
            min_allocatable: &mins,
            now_ms: 1000,
            rotation: 0,
        })
    }

    #[test]
    fn spreads_agents_by_dominant_share() {
        let agents: Vec<_> = (0..4)
            .map(|i| agent(&format!("a{i}"), "cpus:4;mem:4096"))
            .collect();
        let fws = vec![fw("f0", "*"), fw("f1", "*")];
        let a = run(&agents, &fws, &HashMap::new());
        let per: Vec<usize> = (0..2)
            .map(|f| a.grants.iter().filter(|g| g.framework == f).count())
            .collect();
        assert_eq!(per, vec![2, 2]);
        assert!(a.waiting.is_empty());
    }

    #[test]
    fn weights_favour_a_role() {
        let agents: Vec<_> = (0..6)
            .map(|i| agent(&format!("a{i}"), "cpus:1;mem:1024"))
            .collect();
        let fws = vec![fw("f0", "heavy"), fw("f1", "light")];
        let weights = HashMap::from([("heavy".to_string(), 2.0)]);
        let a = run(&agents, &fws, &weights);
        let heavy = a.grants.iter().filter(|g| g.framework == 0).count();
        assert_eq!(heavy, 4, "weight 2 gets twice the agents: {:?}", a.grants);
    }

    #[test]
    fn filters_suppression_and_minimums_explain_themselves() {
        let mut agents = vec![
            agent("a0", "cpus:2;mem:2048"),
            agent("a1", "cpus:0.001;mem:1"),
        ];
        let mut filtered = fw("f0", "*");
        filtered.filters.insert("a0".into(), 6000);
        let mut suppressed = fw("f1", "*");
        suppressed.suppressed = true;
        let mut gone = fw("f2", "*");
        gone.active = false;
        let fws = vec![filtered, suppressed, gone];
        let a = run(&agents, &fws, &HashMap::new());
        assert!(a.grants.is_empty(), "{:?}", a.grants);
        assert_eq!(
            a.waiting[0],
            (
                0,
                Waiting::Filtered {
                    agents: 1,
                    next_expiry_ms: 6000
                }
            )
        );
        assert_eq!(a.waiting[1], (1, Waiting::Suppressed));
        assert_eq!(a.waiting[2], (2, Waiting::Inactive));
        let text = a.waiting[0].1.describe(&default_min_allocatable(), 1000);
        assert!(text.contains("expires in 5.0 s"), "{text}");
        // The agent that is too small is never offered, and says why.
        agents.remove(0);
        let a = run(&agents, &[fw("f3", "*")], &HashMap::new());
        assert!(a.grants.is_empty());
        let text = a.waiting[0].1.describe(&default_min_allocatable(), 1000);
        assert!(
            text.contains("cpus:0.01 or mem:32") && text.contains("has cpus:0.001;mem:1"),
            "{text}"
        );
    }

    // ---- properties ----

    fn arb_case() -> impl Strategy<
        Value = (
            Vec<AgentSlot>,
            Vec<FrameworkSlot>,
            HashMap<String, f64>,
            usize,
        ),
    > {
        let agents = prop::collection::vec((1u32..8, 0u32..4096, 0u32..5, any::<bool>()), 1..25);
        let fws = prop::collection::vec(
            (
                0usize..3,
                0u32..6,
                0u32..2048,
                any::<bool>(),
                any::<bool>(),
                prop::collection::vec((0usize..25, 0u64..3000), 0..4),
            ),
            1..12,
        );
        let weights = prop::collection::vec(1u32..4, 3);
        (agents, fws, weights, 0usize..30).prop_map(|(agents, fws, weights, rotation)| {
            let agents: Vec<AgentSlot> = agents
                .into_iter()
                .enumerate()
                .map(|(i, (cpus, mem, used_cpus, active))| {
                    let total = res(&format!("cpus:{cpus};mem:{}", mem + 1));
                    let mut available = total.clone();
                    let _ = available.subtract(&res(&format!("cpus:{}", used_cpus.min(cpus))));
                    AgentSlot {
                        id: format!("a{i}"),
                        available,
                        active,
                        total,
                    }
                })
                .collect();
            let fws = fws
                .into_iter()
                .enumerate()
                .map(
                    |(i, (role, cpus, mem, active, suppressed, filters))| FrameworkSlot {
                        id: format!("f{i}"),
                        role: format!("r{role}"),
                        allocated: res(&format!("cpus:{cpus};mem:{mem}")),
                        active: active || i == 0,
                        suppressed: suppressed && i != 0,
                        filters: filters
                            .into_iter()
                            .map(|(a, t)| (format!("a{a}"), t))
                            .collect(),
                    },
                )
                .collect();
            let weights = weights
                .into_iter()
                .enumerate()
                .map(|(i, w)| (format!("r{i}"), w as f64))
                .collect();
            (agents, fws, weights, rotation)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Each agent is offered at most once per cycle, exactly its free resources; nobody
        /// inactive, suppressed or filtered on that agent is offered it; every allocatable
        /// agent is offered when someone can take it (work conserving).
        #[test]
        fn no_resource_offered_twice_and_filters_hold((agents, fws, weights, rotation) in arb_case()) {
            let mins = default_min_allocatable();
            let now = 1000;
            let a = allocate(&Snapshot { agents: &agents, frameworks: &fws, weights: &weights, min_allocatable: &mins, now_ms: now, rotation });
            let mut seen = std::collections::HashSet::new();
            for g in &a.grants {
                prop_assert!(seen.insert(g.agent), "agent {} offered twice", g.agent);
                let ag = &agents[g.agent];
                prop_assert!(ag.active);
                prop_assert_eq!(&g.resources, &ag.available);
                let f = &fws[g.framework];
                prop_assert!(f.active && !f.suppressed);
                prop_assert!(!filtered(f, &ag.id, now), "{} filtered on {}", f.id, ag.id);
            }
            for (ai, ag) in agents.iter().enumerate() {
                let takers = fws.iter().filter(|f| f.active && !f.suppressed && !filtered(f, &ag.id, now)).count();
                if ag.active && allocatable(&ag.available, &mins) && takers > 0 {
                    prop_assert!(seen.contains(&ai), "agent {} left unoffered", ag.id);
                }
            }
            // Every framework is either granted or told why it waits.
            let granted: std::collections::HashSet<usize> = a.grants.iter().map(|g| g.framework).collect();
            prop_assert_eq!(granted.len() + a.waiting.len(), fws.len());
        }

        /// DRF: replaying the grants in order, each went to a role of least weighted dominant
        /// share among the roles with a framework that could take the agent, and within it to a
        /// framework of least dominant share among those that could.
        #[test]
        fn grants_follow_dominant_shares((agents, fws, weights, rotation) in arb_case()) {
            let mins = default_min_allocatable();
            let now = 1000;
            let a = allocate(&Snapshot { agents: &agents, frameworks: &fws, weights: &weights, min_allocatable: &mins, now_ms: now, rotation });
            let mut totals = [0f64; 4];
            for ag in agents.iter().filter(|a| a.active) {
                for (i, k) in KINDS.iter().enumerate() { totals[i] += ag.total.scalar(k) as f64; }
            }
            let dom = |alloc: &Resources, w: f64| -> f64 {
                KINDS.iter().enumerate().filter(|(i, _)| totals[*i] > 0.0)
                    .map(|(i, k)| alloc.scalar(k) as f64 / totals[i]).fold(0.0, f64::max) / w
            };
            let mut alloc: Vec<Resources> = fws.iter().map(|f| f.allocated.clone()).collect();
            for g in &a.grants {
                let ag = &agents[g.agent];
                let can = |f: &FrameworkSlot| f.active && !f.suppressed && !filtered(f, &ag.id, now);
                let role_alloc = |role: &str, alloc: &[Resources]| {
                    let mut r = Resources::new();
                    for (f, x) in fws.iter().zip(alloc) { if f.role == role { r.add(x); } }
                    r
                };
                let weight = |role: &str| weights.get(role).copied().unwrap_or(1.0);
                let chosen = &fws[g.framework];
                let chosen_role_share = dom(&role_alloc(&chosen.role, &alloc), weight(&chosen.role));
                for f in fws.iter().filter(|f| can(f)) {
                    // Roles are ordered among those with any eligible (active, unsuppressed)
                    // framework; the role must also have a framework unfiltered on the agent.
                    let s = dom(&role_alloc(&f.role, &alloc), weight(&f.role));
                    prop_assert!(chosen_role_share <= s + 1e-9, "role {} ({chosen_role_share}) chosen over {} ({s})", chosen.role, f.role);
                }
                let mine = dom(&alloc[g.framework], 1.0);
                for (fi, f) in fws.iter().enumerate().filter(|(_, f)| can(f) && f.role == chosen.role) {
                    prop_assert!(mine <= dom(&alloc[fi], 1.0) + 1e-9, "{} chosen over {}", chosen.id, f.id);
                }
                alloc[g.framework].add(&g.resources);
            }
        }
    }
}
