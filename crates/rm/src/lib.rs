//! The resource manager: inside a cluster, the manager is the master. It inventories its agents'
//! resources, offers them to frameworks by dominant resource fairness, and its agents run the
//! tasks launched on those offers.
//!
//! Pure parts (no I/O): [`resources`] (Mesos resource syntax and arithmetic) and [`allocator`]
//! (snapshot in, offers out).

pub mod agent;
pub mod allocator;
pub mod container;
pub mod executor;
pub mod health;
pub mod master;
pub mod proto;
pub mod recordio;
pub mod resources;
mod runner;
pub mod server;
pub mod service_actor;
pub mod services;
pub mod spawn;
pub mod views;

/// Unix milliseconds now (the shells' clock; the cores take time as an input).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
