//! `yard bench alloc`: allocation cycles of the resource manager's allocator, in process.
//!
//! The setting of Mesos's `HierarchicalAllocator_BENCHMARK_Test.DeclineOffers` (10,000 agents,
//! 1,000 frameworks): every agent is free and every framework wants offers. Round 0 offers every
//! agent; then each framework declines what it got with a long filter, the resources come back,
//! and the next round must skip the frameworks that filtered each agent, so rounds get harder.
//! Reported per round: the time of one `allocate()` and the offers it made.

use std::collections::HashMap;
use std::time::Instant;

use clap::Args;
use yard_rm::master::allocator::{
    allocate, default_min_allocatable, AgentSlot, FrameworkSlot, Snapshot,
};
use yard_rm::mesos::resources::Resources;

#[derive(Args, Debug)]
pub struct AllocArgs {
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    #[arg(long, default_value_t = 1_000)]
    frameworks: usize,
    /// Roles the frameworks are spread over (weights 1, 2, 3, ...).
    #[arg(long, default_value_t = 4)]
    roles: usize,
    /// Allocation rounds (each after every framework declined its offers).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
}

pub(crate) fn main(a: AllocArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.agents > 0 && a.frameworks > 0 && a.roles > 0,
        "give at least one agent, framework and role"
    );
    // The agents of Mesos's benchmark.
    let total = Resources::parse("cpus:24;mem:4096;disk:4096;ports:[31000-32000]")?;
    let agents: Vec<AgentSlot> = (0..a.agents)
        .map(|i| AgentSlot {
            id: format!("agent-{i}"),
            available: total.clone(),
            active: true,
            total: total.clone(),
        })
        .collect();
    let mut frameworks: Vec<FrameworkSlot> = (0..a.frameworks)
        .map(|i| FrameworkSlot {
            id: format!("framework-{i}"),
            role: format!("role-{}", i % a.roles),
            allocated: Resources::new(),
            active: true,
            suppressed: false,
            filters: HashMap::new(),
        })
        .collect();
    let weights: HashMap<String, f64> = (0..a.roles)
        .map(|r| (format!("role-{r}"), (r + 1) as f64))
        .collect();
    let mins = default_min_allocatable();
    println!(
        "allocator: {} agents x {} frameworks in {} roles, {} rounds",
        a.agents, a.frameworks, a.roles, a.rounds
    );
    let mut times = Vec::new();
    for round in 0..a.rounds {
        let now_ms = 1_000 + round as u64;
        let t = Instant::now();
        let out = allocate(&Snapshot {
            agents: &agents,
            frameworks: &frameworks,
            weights: &weights,
            min_allocatable: &mins,
            now_ms,
            rotation: round,
        });
        let took = t.elapsed();
        times.push(took.as_secs_f64() * 1e3);
        println!(
            "round {round}: allocate() {:.1} ms, {} offers, {} frameworks waiting",
            took.as_secs_f64() * 1e3,
            out.grants.len(),
            out.waiting.len()
        );
        // Every framework declines what it was offered for a long time.
        for g in out.grants {
            frameworks[g.framework]
                .filters
                .insert(agents[g.agent].id.clone(), now_ms + 3_600_000);
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "allocate(): min {:.1} ms, median {:.1} ms, max {:.1} ms (Mesos 1.6+, same setting: 1.06 s per cycle)",
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    Ok(())
}
