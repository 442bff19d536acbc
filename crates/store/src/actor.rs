//! The async shells around the state machines. Each store has one owner:
//!
//! - a master runs on a thread of its own (SQLite commits block; nothing else waits for them),
//!   subscribed to `<$>/store/NAME/m`;
//! - a clone runs as a task, subscribed to `<$>/store/NAME/c`.
//!
//! Callers talk to either through a bounded command queue ([`StoreHandle`]). Each loop turn
//! takes everything that is ready (commands, fabric messages, request outcomes, the 100 ms tick)
//! and handles it as one batch: a master applies all the writes of a turn in one transaction.
//! `select!` is biased: shutdown first, then commands, then the fabric, then timers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use yard_data::{topic, Value};
use yard_fabric::{Client, Endpoint, Message, OverflowPolicy, RequestError};

use crate::backend::{BackendSpec, SnapshotSource};
use crate::master::{MasterConfig, MasterCore, WriteBatch};
use crate::ops::{Entry, Mutation, Query};
use crate::proto::{self, FromMaster, OpResult, ToMaster};
use crate::replica::{Action, ReplicaConfig, ReplicaCore, WriteOutcome};
use crate::{now_ns, StoreError};

/// Commands waiting for a store's owner; a full queue makes callers wait.
pub const COMMAND_QUEUE: usize = 8192;
/// Fabric messages waiting for a store's owner. Beyond it new requests are dropped (their
/// senders time out and retry) and counted as the client's drops in `/metrics`.
pub const INBOX: usize = 65_536;
const TICK: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a request to a master waits for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read on a clone waits for a first synchronisation, or for this clone's writes
/// under way to show.
const MAX_GET_DELAY: Duration = Duration::from_secs(5);
/// Reads and writes a clone holds behind a waiting read; beyond it the clone takes no more
/// commands until the read is answered (callers wait on the command queue).
pub const MAX_BACKLOG: usize = 65_536;

/// A read or write waiting in a clone's backlog.
enum Queued {
    Write(Mutation, Option<oneshot::Sender<WriteOutcome>>),
    Read(Query, oneshot::Sender<OpResult>, Instant),
}

/// One operation of a batch ([`Command::Ops`]).
#[derive(Debug)]
pub enum StoreOp {
    Write(Mutation),
    Read(Query),
}

/// A batch's answers, in its order; reads answer `Done` with their result.
pub type Outcomes = Vec<WriteOutcome>;

/// What a store's owner is asked to do.
pub enum Command {
    /// Operations of one pipelining client, carried out in order, answered together (one
    /// hand-off each way instead of one per operation).
    Ops {
        ops: Vec<StoreOp>,
        reply: oneshot::Sender<Outcomes>,
    },
    Write {
        m: Mutation,
        reply: Option<oneshot::Sender<WriteOutcome>>,
    },
    Read {
        q: Query,
        reply: oneshot::Sender<OpResult>,
    },
    AwaitIdle {
        timeout: Duration,
        reply: oneshot::Sender<bool>,
    },
    Info {
        reply: oneshot::Sender<StoreInfo>,
    },
    /// A consistent copy, read page by page off the owner's thread.
    Snapshot {
        reply: oneshot::Sender<Result<Box<dyn SnapshotSource>, StoreError>>,
    },
    /// Replace the contents (masters only).
    Restore {
        entries: Vec<(Value, Entry)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// What an endpoint holds of a store: the master, or a clone of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Clone,
}

impl Role {
    /// `master` or `clone`, as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Clone => "clone",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "master" => Ok(Role::Master),
            "clone" => Ok(Role::Clone),
            other => Err(format!("role {other:?}: expected master or clone")),
        }
    }
}

/// What `yard store list` and `GET /v1/stores` show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreInfo {
    pub name: String,
    pub role: Role,
    /// The master's backend (`memory`, `sqlite:PATH`); clones keep theirs in memory.
    pub backend: String,
    pub entries: u64,
    pub epoch: u64,
    pub seq: u64,
    /// Master: the clones heard from recently and the sequence number each acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clones: Vec<(String, u64)>,
    /// Clone: whether the master is reachable now, whether a copy was received, and how many
    /// writes wait for the master.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffered: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_writes: Option<u64>,
}

/// A handle to a store's owner.
#[derive(Clone)]
pub struct StoreHandle {
    pub name: String,
    pub role: Role,
    tx: mpsc::Sender<Command>,
    cancel: CancellationToken,
}

impl StoreHandle {
    pub async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Shutdown)?;
        rx.await.map_err(|_| StoreError::Shutdown)
    }

    /// Sends a command without waiting for its answer (the answer arrives on its channel).
    pub async fn send(&self, cmd: Command) -> Result<(), StoreError> {
        self.tx.send(cmd).await.map_err(|_| StoreError::Shutdown)
    }

    /// Stops the owner (detach); its subscriptions go with it.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

async fn publish_events(client: &Client, events: Vec<Value>) {
    for e in events {
        let _ = client
            .publish_system(topic::STORE_EVENTS.to_string(), e)
            .await;
    }
}

// ---- master -----------------------------------------------------------------------------------

/// Starts the master of `name` on `endpoint`: refuses when another master answers for the name
/// (best effort: two masters starting at the same instant may both succeed), opens the backend,
/// and serves until `cancel`.
pub async fn spawn_master(
    endpoint: Endpoint,
    name: String,
    spec: BackendSpec,
    config: MasterConfig,
    events: bool,
    cancel: CancellationToken,
) -> Result<StoreHandle, StoreError> {
    let topic = proto::master_topic(&name);
    match endpoint
        .request_system(
            topic.clone(),
            ToMaster::Who.encode(),
            Duration::from_secs(2),
        )
        .await
    {
        Err(RequestError::NoResponder(_)) => {}
        Ok(answer) => {
            let who = match proto::decode_from_master(&answer.value) {
                Ok(FromMaster::Master { endpoint }) => endpoint,
                _ => answer.origin.to_string(),
            };
            return Err(StoreError::MasterExists(name, who));
        }
        Err(RequestError::Timeout { .. }) => {
            return Err(StoreError::MasterExists(
                name,
                "an endpoint that does not answer".into(),
            ))
        }
        Err(RequestError::Failed { code, .. }) => {
            return Err(StoreError::MasterExists(
                name,
                format!("an endpoint that answers with a failure ({code})"),
            ))
        }
        Err(RequestError::Shutdown) => return Err(StoreError::Shutdown),
        Err(RequestError::Topic(e)) => return Err(StoreError::InvalidData(e.to_string())),
    }
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (ready_tx, ready_rx) = oneshot::channel();
    let handle = StoreHandle {
        name: name.clone(),
        role: Role::Master,
        tx,
        cancel: cancel.clone(),
    };
    let thread_name = format!("store-{name}");
    std::thread::Builder::new()
        .name(thread_name.chars().take(15).collect())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(StoreError::Backend(format!(
                        "cannot start a runtime: {e}"
                    ))));
                    return;
                }
            };
            rt.block_on(async move {
                let opened = spec.open(&name).and_then(|backend| {
                    MasterCore::new(&name, endpoint.id(), backend, new_epoch(), config)
                });
                let core = match opened {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let client = match endpoint
                    .attach(
                        format!("store master {name}"),
                        vec![topic],
                        INBOX,
                        OverflowPolicy::DropNewest,
                    )
                    .await
                {
                    Ok(c) => c,
                    Err(_) => {
                        let _ = ready_tx.send(Err(StoreError::Shutdown));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let backend = spec.to_string();
                MasterActor {
                    core,
                    client,
                    name,
                    backend,
                    rx,
                    cancel,
                    idle_waiters: Vec::new(),
                    events,
                }
                .run()
                .await;
            });
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the store thread: {e}")))?;
    ready_rx.await.map_err(|_| StoreError::Shutdown)??;
    Ok(handle)
}

/// A fresh epoch: random, never 0 (0 means "nothing" to a clone).
fn new_epoch() -> u64 {
    let id = yard_fabric::id::random_uuid();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h.max(1)
}

struct MasterActor {
    core: MasterCore,
    client: Client,
    name: String,
    backend: String,
    rx: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    idle_waiters: Vec<(Instant, oneshot::Sender<bool>)>,
    /// Whether store events are published (when a local client subscribes to them).
    events: bool,
}

/// Where a write's answer goes.
enum ReplyTo {
    Local(Option<oneshot::Sender<WriteOutcome>>),
    Remote(String),
    /// Slots `first..` of a gathered batch of operations.
    Gathered(usize, usize),
}

/// The answers of one [`Command::Ops`], filled during a turn and sent at its end.
struct Gather {
    results: Vec<Option<WriteOutcome>>,
    reply: oneshot::Sender<Outcomes>,
}

/// The writes of a turn not applied yet, with where their answers go.
#[derive(Default)]
struct TurnWrites {
    batches: Vec<WriteBatch>,
    replies: Vec<ReplyTo>,
}

impl MasterActor {
    /// Queues `run`, the consecutive writes of gathered batch `g` that end before slot `end`.
    fn queue_run(&self, writes: &mut TurnWrites, run: &mut Vec<Mutation>, g: usize, end: usize) {
        if run.is_empty() {
            return;
        }
        let first = end - run.len();
        writes.batches.push(WriteBatch {
            writer: None,
            first: 0,
            muts: std::mem::take(run),
        });
        writes.replies.push(ReplyTo::Gathered(g, first));
    }

    /// Applies the turn's writes so far in one transaction and routes their answers; the
    /// update for the clones joins `updates`.
    fn apply(
        &mut self,
        writes: &mut TurnWrites,
        gathers: &mut [Gather],
        answers: &mut Vec<(String, Value)>,
        updates: &mut Vec<FromMaster>,
        now: i64,
    ) {
        if writes.batches.is_empty() {
            return;
        }
        let (results, update) = self.core.write(&writes.batches, now);
        writes.batches.clear();
        let (epoch, seq) = (self.core.epoch(), self.core.seq());
        for (to, results) in writes.replies.drain(..).zip(results) {
            match to {
                ReplyTo::Local(reply) => {
                    if let Some(reply) = reply {
                        let r = results.into_iter().next().unwrap_or(Ok(Value::None));
                        let _ = reply.send(WriteOutcome::Done(r));
                    }
                }
                ReplyTo::Gathered(g, first) => {
                    for (i, r) in results.into_iter().enumerate() {
                        gathers[g].results[first + i] = Some(WriteOutcome::Done(r));
                    }
                }
                ReplyTo::Remote(to) => {
                    answers.push((
                        to,
                        FromMaster::Written {
                            epoch,
                            seq,
                            results,
                        }
                        .encode(),
                    ));
                }
            }
        }
        updates.extend(update);
    }

    async fn run(mut self) {
        tracing::debug!(store = %self.name, "store owner started");
        let clones_topic = proto::clones_topic(&self.name);
        let mut cmds = Vec::with_capacity(1024);
        let mut msgs: Vec<Arc<Message>> = Vec::with_capacity(1024);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heartbeat = Instant::now() - HEARTBEAT;
        let mut last_conflict: Option<Instant> = None;
        loop {
            let mut ticked = false;
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                n = self.rx.recv_many(&mut cmds, 1024) => if n == 0 { break },
                r = self.client.recv_batch(&mut msgs, 1024) => if r.is_err() { break },
                _ = tick.tick() => ticked = true,
            }
            // Read after the wait: a subscriber that arrived meanwhile has been told its
            // subscription is in force, so this turn's changes are its first events.
            self.core
                .set_events(self.events && self.client.endpoint().store_events_wanted());
            // Whatever else is ready joins this turn's batch.
            while cmds.len() < 1024 {
                match self.rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            let now = now_ns();
            let mut writes = TurnWrites::default();
            let mut gathers: Vec<Gather> = Vec::new();
            let mut answers: Vec<(String, Value)> = Vec::new();
            let mut updates = Vec::new();
            for cmd in cmds.drain(..) {
                match cmd {
                    Command::Ops { ops, reply } => {
                        let g = gathers.len();
                        gathers.push(Gather {
                            results: Vec::with_capacity(ops.len()),
                            reply,
                        });
                        let mut run: Vec<Mutation> = Vec::new();
                        for op in ops {
                            let slot = gathers[g].results.len();
                            gathers[g].results.push(None);
                            match op {
                                StoreOp::Write(m) => run.push(m),
                                StoreOp::Read(q) => {
                                    self.queue_run(&mut writes, &mut run, g, slot);
                                    // A read sees the writes before it: apply them first.
                                    self.apply(
                                        &mut writes,
                                        &mut gathers,
                                        &mut answers,
                                        &mut updates,
                                        now,
                                    );
                                    gathers[g].results[slot] =
                                        Some(WriteOutcome::Done(self.core.read(&q, now)));
                                }
                            }
                        }
                        let end = gathers[g].results.len();
                        self.queue_run(&mut writes, &mut run, g, end);
                    }
                    Command::Write { m, reply } => {
                        writes.batches.push(WriteBatch {
                            writer: None,
                            first: 0,
                            muts: vec![m],
                        });
                        writes.replies.push(ReplyTo::Local(reply));
                    }
                    Command::Read { q, reply } => {
                        self.apply(&mut writes, &mut gathers, &mut answers, &mut updates, now);
                        let _ = reply.send(self.core.read(&q, now));
                    }
                    Command::AwaitIdle { timeout, reply } => {
                        self.idle_waiters.push((Instant::now() + timeout, reply));
                    }
                    Command::Info { reply } => {
                        let _ = reply.send(StoreInfo {
                            name: self.name.clone(),
                            role: Role::Master,
                            backend: self.backend.clone(),
                            entries: self.core.count().unwrap_or(0),
                            epoch: self.core.epoch(),
                            seq: self.core.seq(),
                            clones: self.core.clones(),
                            connected: None,
                            synced: None,
                            buffered: None,
                            dropped_writes: None,
                        });
                    }
                    Command::Snapshot { reply } => {
                        self.apply(&mut writes, &mut gathers, &mut answers, &mut updates, now);
                        let _ = reply.send(self.core.backend().snapshot());
                    }
                    Command::Restore { entries, reply } => {
                        self.apply(&mut writes, &mut gathers, &mut answers, &mut updates, now);
                        let r = self.core.replace(entries, new_epoch());
                        if r.is_ok() {
                            tracing::info!(store = %self.name, "restored; clones re-synchronise");
                            last_heartbeat = Instant::now() - HEARTBEAT;
                        }
                        let _ = reply.send(r);
                    }
                }
            }
            for msg in msgs.drain(..) {
                if msg.topic == clones_topic {
                    if last_conflict.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10))
                    {
                        last_conflict = Some(Instant::now());
                        tracing::error!(
                            store = %self.name,
                            other = %msg.origin,
                            "another master of this store runs on endpoint {}: clones will follow whichever they reach; stop one of them",
                            msg.origin
                        );
                    }
                    continue;
                }
                let Some(reply_to) = msg.reply_to.as_deref() else {
                    // Plain publications: acknowledgements.
                    match proto::decode_to_master(&msg.value) {
                        Ok(ToMaster::Ack { clone, epoch, seq }) => {
                            self.core.ack(&clone, epoch, seq, now)
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(store = %self.name, from = %msg.origin, "{e}"),
                    }
                    continue;
                };
                let request = match proto::decode_to_master(&msg.value) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(store = %self.name, from = %msg.origin, "{e}");
                        let err = StoreError::InvalidData(e.to_string());
                        answers.push((reply_to.to_string(), FromMaster::Answer(Err(err)).encode()));
                        continue;
                    }
                };
                let answer = match request {
                    ToMaster::Write {
                        writer,
                        first,
                        muts,
                    } => {
                        let writer = (!writer.is_empty()).then_some(writer);
                        writes.batches.push(WriteBatch {
                            writer,
                            first,
                            muts,
                        });
                        writes.replies.push(ReplyTo::Remote(reply_to.to_string()));
                        continue;
                    }
                    ToMaster::Read { query } => {
                        self.apply(&mut writes, &mut gathers, &mut answers, &mut updates, now);
                        FromMaster::Answer(self.core.read(&query, now))
                    }
                    ToMaster::Fetch { clone, epoch, from } => {
                        self.core.fetch(&clone, epoch, from, now)
                    }
                    ToMaster::Page {
                        clone,
                        epoch,
                        after,
                    } => self.core.page(&clone, epoch, Some(&after), now),
                    ToMaster::Who => FromMaster::Master {
                        endpoint: self.client.endpoint().id().to_string(),
                    },
                    ToMaster::Ack { clone, epoch, seq } => {
                        self.core.ack(&clone, epoch, seq, now);
                        continue;
                    }
                };
                answers.push((reply_to.to_string(), answer.encode()));
            }
            self.apply(&mut writes, &mut gathers, &mut answers, &mut updates, now);
            for g in gathers {
                let results = g
                    .results
                    .into_iter()
                    .map(|r| r.unwrap_or(WriteOutcome::Done(Err(StoreError::Shutdown))))
                    .collect();
                let _ = g.reply.send(results);
            }
            if ticked {
                updates.extend(self.core.expire(now));
                self.core.prune(now);
            }
            for u in updates {
                let _ = self
                    .client
                    .publish_system(clones_topic.clone(), u.encode())
                    .await;
            }
            for (to, value) in answers {
                let _ = self.client.reply_to(&to, value).await;
            }
            publish_events(&self.client, self.core.take_events()).await;
            if last_heartbeat.elapsed() >= HEARTBEAT {
                last_heartbeat = Instant::now();
                let hb = self.core.heartbeat().encode();
                let _ = self.client.publish_system(clones_topic.clone(), hb).await;
            }
            let idle = self.core.is_idle();
            let now_i = Instant::now();
            let waiters = std::mem::take(&mut self.idle_waiters);
            for (deadline, tx) in waiters {
                if idle || now_i >= deadline {
                    let _ = tx.send(idle);
                } else {
                    self.idle_waiters.push((deadline, tx));
                }
            }
        }
        tracing::debug!(store = %self.name, "master stopped");
    }
}

// ---- clone ------------------------------------------------------------------------------------

/// Starts a clone of `name` on `endpoint` (identified to the master as `ENDPOINT/NAME`). It
/// finds the master whenever the master appears, and serves until `cancel`.
pub async fn spawn_clone(
    endpoint: Endpoint,
    name: String,
    config: ReplicaConfig,
    events: bool,
    cancel: CancellationToken,
) -> Result<StoreHandle, StoreError> {
    let client = endpoint
        .attach(
            format!("store clone {name}"),
            vec![proto::clones_topic(&name)],
            INBOX,
            OverflowPolicy::DropOldest,
        )
        .await
        .map_err(|_| StoreError::Shutdown)?;
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let core = ReplicaCore::new(&format!("{}/{name}", endpoint.id()), &name, config);
    let (done_tx, done_rx) = mpsc::channel(16);
    let actor = CloneActor {
        core,
        client,
        endpoint,
        topic: proto::master_topic(&name),
        name: name.clone(),
        rx,
        done_tx,
        done_rx,
        cancel: cancel.clone(),
        tokens: HashMap::new(),
        next_token: 1,
        idle_waiters: Vec::new(),
        backlog: VecDeque::new(),
        events,
    };
    tokio::spawn(actor.run());
    Ok(StoreHandle {
        name,
        role: Role::Clone,
        tx,
        cancel,
    })
}

enum Done {
    Sync(Option<FromMaster>),
    Write(Option<FromMaster>),
}

struct CloneActor {
    core: ReplicaCore,
    client: Client,
    endpoint: Endpoint,
    topic: String,
    name: String,
    rx: mpsc::Receiver<Command>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    cancel: CancellationToken,
    tokens: HashMap<u64, oneshot::Sender<WriteOutcome>>,
    next_token: u64,
    idle_waiters: Vec<(Instant, oneshot::Sender<bool>)>,
    /// Reads and writes in their callers' order, waiting behind a read that cannot be answered
    /// yet (see [`CloneActor::drain`]).
    backlog: VecDeque<Queued>,
    /// Whether store events are published (when a local client subscribes to them).
    events: bool,
}

impl CloneActor {
    async fn run(mut self) {
        tracing::debug!(store = %self.name, "store owner started");
        let mut cmds = Vec::with_capacity(1024);
        let mut msgs: Vec<Arc<Message>> = Vec::with_capacity(1024);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A full backlog stops taking commands: callers wait (the command queue is bounded).
            let room = self.backlog.len() < MAX_BACKLOG;
            // The wait only notes what woke it; everything is handled after the events flag is
            // read, so a subscriber confirmed during the wait gets this turn's events.
            let mut done = None;
            let mut ticked = false;
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                n = self.rx.recv_many(&mut cmds, 1024), if room => if n == 0 { break },
                Some(d) = self.done_rx.recv() => done = Some(d),
                r = self.client.recv_batch(&mut msgs, 1024) => if r.is_err() { break },
                _ = tick.tick() => ticked = true,
            }
            self.core
                .set_events(self.events && self.endpoint.store_events_wanted());
            match done {
                Some(Done::Sync(r)) => self.core.on_sync(r, now_ns()),
                Some(Done::Write(r)) => self.core.on_written(r, now_ns()),
                None => {}
            }
            if ticked {
                self.core.tick(now_ns());
            }
            let now = now_ns();
            for cmd in cmds.drain(..) {
                match cmd {
                    Command::Ops { ops, reply } => self.ops(ops, reply, now),
                    Command::Write { m, reply } => self.backlog.push_back(Queued::Write(m, reply)),
                    Command::Read { q, reply } => self.backlog.push_back(Queued::Read(
                        q,
                        reply,
                        Instant::now() + MAX_GET_DELAY,
                    )),
                    Command::AwaitIdle { timeout, reply } => {
                        self.idle_waiters.push((Instant::now() + timeout, reply));
                    }
                    Command::Info { reply } => {
                        let (epoch, seq) = self.core.position();
                        let _ = reply.send(StoreInfo {
                            name: self.name.clone(),
                            role: Role::Clone,
                            backend: "memory".into(),
                            entries: self.core.map().len() as u64,
                            epoch,
                            seq,
                            clones: Vec::new(),
                            connected: Some(self.core.connected(now)),
                            synced: Some(self.core.is_synced()),
                            buffered: Some(self.core.buffered() as u64),
                            dropped_writes: Some(self.core.dropped_writes),
                        });
                    }
                    Command::Snapshot { reply } => {
                        let r = if self.core.is_synced() {
                            Ok(Box::new(CopySnapshot {
                                entries: self.core.map().clone().into_iter(),
                            }) as Box<dyn SnapshotSource>)
                        } else {
                            Err(StoreError::StaleData("this clone has no copy yet".into()))
                        };
                        let _ = reply.send(r);
                    }
                    Command::Restore { reply, .. } => {
                        let _ = reply.send(Err(StoreError::InvalidData(format!(
                            "{:?} is a clone here: restore into its master",
                            self.name
                        ))));
                    }
                }
            }
            for msg in msgs.drain(..) {
                match proto::decode_from_master(&msg.value) {
                    Ok(m) => self.core.on_published(m, now),
                    Err(e) => tracing::warn!(store = %self.name, from = %msg.origin, "{e}"),
                }
            }
            // Answering a read can release writes behind it, whose requests go out at once.
            loop {
                self.drain(now);
                if !self.core.has_actions() {
                    break;
                }
                self.carry_out().await;
            }
            publish_events(&self.client, self.core.take_events()).await;
            self.answer_waiters(now);
        }
        for (_, tx) in self.tokens.drain() {
            let _ = tx.send(WriteOutcome::Done(Err(StoreError::Shutdown)));
        }
        tracing::debug!(store = %self.name, "clone stopped");
    }

    fn write(&mut self, m: Mutation, reply: Option<oneshot::Sender<WriteOutcome>>, now: i64) {
        let token = reply.map(|r| {
            let t = self.next_token;
            self.next_token += 1;
            self.tokens.insert(t, r);
            t
        });
        if let Err(e) = self.core.write(m, token, now) {
            if let Some(r) = token.and_then(|t| self.tokens.remove(&t)) {
                let _ = r.send(WriteOutcome::Done(Err(e)));
            }
        }
    }

    /// Whether a read can be answered now: the clone has a copy, and none of its own writes
    /// is under way (read your writes).
    fn can_read(&self) -> bool {
        self.core.is_synced() && self.tokens.is_empty()
    }

    /// Carries out the backlog in order: writes go to the replica (and on to the master), reads
    /// are answered once they can be, or after `MAX_GET_DELAY` with what the clone has. A read
    /// that waits holds back everything behind it, so that a pipelining client's read sees the
    /// writes it sent before, and none that it sent after.
    fn drain(&mut self, now: i64) {
        let now_i = Instant::now();
        while let Some(front) = self.backlog.front() {
            match front {
                Queued::Read(_, _, deadline) if !self.can_read() && now_i < *deadline => break,
                _ => {}
            }
            match self.backlog.pop_front().expect("front") {
                Queued::Write(m, reply) => self.write(m, reply, now),
                Queued::Read(q, reply, _) => {
                    let _ = reply.send(self.core.read(&q, now));
                }
            }
        }
    }

    /// A pipelined batch joins the backlog. When nothing waits, its reads that come before
    /// its first write are answered at once; a task gathers the rest and answers the batch when
    /// all is known.
    fn ops(&mut self, ops: Vec<StoreOp>, reply: oneshot::Sender<Outcomes>, now: i64) {
        enum Part {
            Ready(WriteOutcome),
            Write(oneshot::Receiver<WriteOutcome>),
            Read(oneshot::Receiver<OpResult>),
        }
        let mut parts = Vec::with_capacity(ops.len());
        for op in ops {
            parts.push(match op {
                StoreOp::Read(q) if self.backlog.is_empty() && self.can_read() => {
                    Part::Ready(WriteOutcome::Done(self.core.read(&q, now)))
                }
                StoreOp::Read(q) => {
                    let (tx, rx) = oneshot::channel();
                    self.backlog
                        .push_back(Queued::Read(q, tx, Instant::now() + MAX_GET_DELAY));
                    Part::Read(rx)
                }
                StoreOp::Write(m) => {
                    let (tx, rx) = oneshot::channel();
                    self.backlog.push_back(Queued::Write(m, Some(tx)));
                    Part::Write(rx)
                }
            });
        }
        if parts.iter().all(|p| matches!(p, Part::Ready(_))) {
            let results = parts
                .into_iter()
                .map(|p| match p {
                    Part::Ready(o) => o,
                    _ => unreachable!("all ready"),
                })
                .collect();
            let _ = reply.send(results);
            return;
        }
        tokio::spawn(async move {
            let mut results = Vec::with_capacity(parts.len());
            for p in parts {
                results.push(match p {
                    Part::Ready(o) => o,
                    Part::Write(rx) => rx
                        .await
                        .unwrap_or(WriteOutcome::Done(Err(StoreError::Shutdown))),
                    Part::Read(rx) => {
                        WriteOutcome::Done(rx.await.unwrap_or(Err(StoreError::Shutdown)))
                    }
                });
            }
            let _ = reply.send(results);
        });
    }

    async fn carry_out(&mut self) {
        for action in self.core.take_actions() {
            match action {
                Action::Sync(m) => self.request(m, Done::Sync),
                Action::Write(m) => self.request(m, Done::Write),
                Action::Publish(m) => {
                    let _ = self
                        .client
                        .publish_system(self.topic.clone(), m.encode())
                        .await;
                }
                Action::Resolve { token, outcome } => {
                    if let Some(tx) = self.tokens.remove(&token) {
                        let _ = tx.send(outcome);
                    }
                }
            }
        }
    }

    /// Sends a request to the master; its outcome comes back through `done_rx`.
    fn request(&self, m: ToMaster, wrap: fn(Option<FromMaster>) -> Done) {
        let endpoint = self.endpoint.clone();
        let topic = self.topic.clone();
        let done = self.done_tx.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            let answer = match endpoint
                .request_system(topic, m.encode(), REQUEST_TIMEOUT)
                .await
            {
                Ok(msg) => match proto::decode_from_master(&msg.value) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        tracing::warn!(store = %name, "{e}");
                        None
                    }
                },
                Err(e) => {
                    tracing::debug!(store = %name, "master unreachable: {e}");
                    None
                }
            };
            let _ = done.send(wrap(answer)).await;
        });
    }

    fn answer_waiters(&mut self, now: i64) {
        let now_i = Instant::now();
        let idle = self.core.is_idle(now);
        for (deadline, tx) in std::mem::take(&mut self.idle_waiters) {
            if idle || now_i >= deadline {
                let _ = tx.send(idle);
            } else {
                self.idle_waiters.push((deadline, tx));
            }
        }
    }
}

struct CopySnapshot {
    entries: std::collections::btree_map::IntoIter<Value, Entry>,
}

impl SnapshotSource for CopySnapshot {
    fn next_page(&mut self, limit: usize) -> Result<Vec<(Value, Entry)>, StoreError> {
        Ok(self.entries.by_ref().take(limit).collect())
    }
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").finish_non_exhaustive()
    }
}
