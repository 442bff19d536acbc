//! The resource manager: inside a cluster, the manager is the master. It inventories its agents'
//! resources, offers them to frameworks by dominant resource fairness, and its agents run the
//! tasks launched on those offers.
//!
//! # Layout
//!
//! - [`mesos`]: Mesos's wire vocabulary that every side shares: ids ([`mesos::mid`]),
//!   [`mesos::state::TaskState`], the scheduler API typed ([`mesos::scheduler::Call`] parsed
//!   and written, [`mesos::scheduler::Event`]), [`mesos::resources`] (the resource syntax and
//!   exact arithmetic, pure), [`mesos::recordio`] (stream framing, pure).
//! - [`master`]: the master's core (a state machine: typed calls, agent messages and the time
//!   in, [`master::Out`] out; its handlers split into [`master::calls`], [`master::accept`],
//!   [`master::agents`], [`master::clock`] and [`master::recovery`]), [`master::allocator`]
//!   (dominant resource fairness: a snapshot in, offers out, pure), [`master::views`] (the
//!   read-only JSON of `/master/state` and friends) and [`master::server`] (the shell: parses
//!   the HTTP API into calls, the scheduler streams, persistence, the clock).
//! - [`agent`]: the agent's actor and HTTP API, [`agent::executor`] (the executor API's pure
//!   parts), [`agent::container`] (cgroups), [`agent::spawn`] (processes as their users),
//!   [`agent::health`] (Mesos health checks), and the runners that watch each task.
//! - [`services`]: long-running services over the master: the controller (a pure core that
//!   emits [`services::Cmd`]) and its shell, [`services::actor`].
//! - [`proto`]: the messages between the master and its agents over the fabric.
//! - [`error`]: the typed errors of every public function ([`RmError`] for a daemon that did
//!   not start, [`Invalid`] for a call that is not valid, and one per component).

pub mod agent;
pub mod error;
pub mod master;
pub mod mesos;
pub mod proto;
pub mod services;

pub use error::{
    ContainerError, ExecutorRefusal, Invalid, KillError, ProbeError, RmError, ServiceError,
};

/// Unix milliseconds now (the shells' clock; the cores take time as an input).
pub use yard_data::time::now_ms;
