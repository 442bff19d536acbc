//! A clone's state machine, with no I/O. It keeps a full copy of the master's map and applies
//! the master's effects in sequence order: runs that arrive early wait (bounded) for the gap to
//! be filled, gaps are fetched from the master's log, and when the log no longer covers the gap
//! the clone rebuilds from a paged snapshot (kept aside until complete, so reads keep seeing a
//! consistent copy). Writes go to the master numbered, in batches, one batch in flight; when
//! the master is out of reach they are buffered for `buffer_interval` and replayed.
//!
//! The actor ([`crate::actor`]) feeds it messages, request outcomes and ticks, and carries out
//! the [`Action`]s it returns.

use std::collections::{BTreeMap, VecDeque};

use yard_data::Value;

use crate::backend::apply_to_map;
use crate::ops::{self, Effect, Entry, Mutation, Query};
use crate::proto::{FromMaster, OpResult, ToMaster};
use crate::StoreError;

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Reads fail with `stale_data` once the master has been silent this long (ns); None: never.
    pub stale_interval: Option<i64>,
    /// Writes buffered while the master is out of reach are dropped after this long (ns).
    pub buffer_interval: i64,
    /// How long to wait before retrying a failed request to the master (ns).
    pub resync_interval: i64,
    /// The master counts as reachable while it was heard from within this long (ns).
    pub master_timeout: i64,
    /// How long a writer waits for its write to show in this clone's copy (ns).
    pub visible_timeout: i64,
    /// Most mutations per write request.
    pub max_write_batch: usize,
    /// Most buffered writes; beyond it new writes are refused.
    pub max_buffered: usize,
    /// Most out-of-order update runs kept while a gap is fetched.
    pub max_early_runs: usize,
    /// How long a gap may stay open before it is fetched (ns): updates may be in transit.
    pub gap_grace: i64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            stale_interval: Some(300_000_000_000),
            buffer_interval: 120_000_000_000,
            resync_interval: 1_000_000_000,
            master_timeout: 3_000_000_000,
            visible_timeout: 2_000_000_000,
            max_write_batch: 1024,
            max_buffered: 100_000,
            max_early_runs: 1024,
            gap_grace: 200_000_000,
        }
    }
}

/// How a write through a clone ended, for the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The master applied it (with this answer) and this clone's copy shows it.
    Done(OpResult),
    /// The master is out of reach: the write is buffered and will be replayed.
    Buffered,
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a synchronisation request (`Fetch` or `Page`); answer with [`ReplicaCore::on_sync`].
    Sync(ToMaster),
    /// Send a write request; answer with [`ReplicaCore::on_written`].
    Write(ToMaster),
    /// Publish to the master, no answer expected (`Ack`).
    Publish(ToMaster),
    /// Tell a waiting writer how its write ended.
    Resolve { token: u64, outcome: WriteOutcome },
}

struct Buffered {
    wseq: u64,
    m: Mutation,
    at: i64,
    token: Option<u64>,
}

/// A snapshot being assembled.
struct Staging {
    epoch: u64,
    map: BTreeMap<Value, Entry>,
    /// Sequence number applied to `map` so far (the first page's).
    applied: u64,
    /// The master's sequence number when the last page was read: `map` is consistent once the
    /// log has been applied up to it.
    upto: u64,
    last_key: Option<Value>,
    pages_done: bool,
}

struct Waiter {
    token: u64,
    epoch: u64,
    seq: u64,
    result: OpResult,
    deadline: i64,
}

pub struct ReplicaCore {
    id: String,
    store: String,
    config: ReplicaConfig,
    epoch: u64,
    seq: u64,
    synced: bool,
    map: BTreeMap<Value, Entry>,
    master_seq: u64,
    /// The master's epoch as last heard.
    master_epoch: u64,
    staging: Option<Staging>,
    early: BTreeMap<u64, Vec<Effect>>,
    sync_in_flight: bool,
    /// Whether the request in flight asks for a continuation page.
    paging: bool,
    /// A resynchronisation from scratch is needed (new epoch, restart).
    want_sync: bool,
    behind_since: Option<i64>,
    next_sync_at: i64,
    last_contact: Option<i64>,
    failed_since_contact: bool,
    acked: (u64, u64),
    last_ack_at: i64,
    next_wseq: u64,
    buffer: VecDeque<Buffered>,
    in_flight: usize,
    next_write_at: i64,
    waiting: Vec<Waiter>,
    actions: Vec<Action>,
    events: Vec<Value>,
    events_enabled: bool,
    /// Buffered writes dropped after `buffer_interval`.
    pub dropped_writes: u64,
}

impl ReplicaCore {
    /// A clone of `store`, identified to the master as `id` (unique in the mesh).
    pub fn new(id: &str, store: &str, config: ReplicaConfig) -> ReplicaCore {
        ReplicaCore {
            id: id.to_string(),
            store: store.to_string(),
            config,
            epoch: 0,
            seq: 0,
            synced: false,
            map: BTreeMap::new(),
            master_seq: 0,
            master_epoch: 0,
            staging: None,
            early: BTreeMap::new(),
            sync_in_flight: false,
            paging: false,
            want_sync: false,
            behind_since: None,
            next_sync_at: 0,
            last_contact: None,
            failed_since_contact: false,
            acked: (0, 0),
            last_ack_at: i64::MIN / 2,
            next_wseq: 1,
            buffer: VecDeque::new(),
            in_flight: 0,
            next_write_at: 0,
            waiting: Vec::new(),
            actions: Vec::new(),
            events: Vec::new(),
            events_enabled: false,
            dropped_writes: 0,
        }
    }

    pub fn set_events(&mut self, enabled: bool) {
        self.events_enabled = enabled;
    }

    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn map(&self) -> &BTreeMap<Value, Entry> {
        &self.map
    }

    pub fn position(&self) -> (u64, u64) {
        (self.epoch, self.seq)
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether the master has been heard from recently and nothing failed since.
    pub fn connected(&self, now: i64) -> bool {
        !self.failed_since_contact
            && self
                .last_contact
                .is_some_and(|t| now - t <= self.config.master_timeout)
    }

    fn contact(&mut self, now: i64) {
        self.last_contact = Some(now);
        self.failed_since_contact = false;
    }

    /// Everything applied, nothing buffered or in flight, the master reachable.
    pub fn is_idle(&self, now: i64) -> bool {
        self.synced
            && !self.want_sync
            && self.epoch == self.master_epoch
            && self.staging.is_none()
            && self.seq >= self.master_seq
            && self.buffer.is_empty()
            && self.waiting.is_empty()
            && self.connected(now)
    }

    // ---- reads ------------------------------------------------------------------------------

    pub fn read(&self, q: &Query, now: i64) -> OpResult {
        if !self.synced {
            return Err(StoreError::StaleData(format!(
                "clone of {:?} has not synchronised with its master yet",
                self.store
            )));
        }
        if let Some(stale) = self.config.stale_interval {
            let silent = self.last_contact.map_or(i64::MAX, |t| now - t);
            if silent > stale {
                return Err(StoreError::StaleData(format!(
                    "clone of {:?} has not heard from its master for {}s (stale_interval {}s)",
                    self.store,
                    silent / 1_000_000_000,
                    stale / 1_000_000_000
                )));
            }
        }
        match q {
            Query::Keys => Ok(Value::Set(self.map.keys().cloned().collect())),
            _ => {
                let key = q.key().expect("per-key query");
                ops::query_entry(q, self.map.get(key))
            }
        }
    }

    // ---- writes -----------------------------------------------------------------------------

    /// Queues a write. `token` identifies the caller to resolve later (None: fire and forget).
    pub fn write(&mut self, m: Mutation, token: Option<u64>, now: i64) -> Result<(), StoreError> {
        if self.buffer.len() >= self.config.max_buffered {
            return Err(StoreError::StaleData(format!(
                "clone of {:?} already buffers {} writes for an unreachable master",
                self.store,
                self.buffer.len()
            )));
        }
        let connected = self.connected(now);
        let wseq = self.next_wseq;
        self.next_wseq += 1;
        self.buffer.push_back(Buffered {
            wseq,
            m,
            at: now,
            token: if connected { token } else { None },
        });
        if !connected {
            if let Some(t) = token {
                self.actions.push(Action::Resolve {
                    token: t,
                    outcome: WriteOutcome::Buffered,
                });
            }
        }
        self.pump_writes(now);
        Ok(())
    }

    fn pump_writes(&mut self, now: i64) {
        if self.in_flight > 0 || self.buffer.is_empty() {
            return;
        }
        if !self.connected(now) && now < self.next_write_at {
            return;
        }
        // Writes buffered longer than the interval are dropped, oldest first.
        while let Some(b) = self.buffer.front() {
            if now - b.at <= self.config.buffer_interval {
                break;
            }
            let b = self.buffer.pop_front().expect("front");
            self.dropped_writes += 1;
            tracing::warn!(store = %self.store, op = b.m.name(), "dropping a write buffered longer than mutation_buffer_interval");
            if let Some(t) = b.token {
                self.actions.push(Action::Resolve {
                    token: t,
                    outcome: WriteOutcome::Done(Err(StoreError::StaleData(
                        "the master stayed out of reach longer than mutation_buffer_interval"
                            .into(),
                    ))),
                });
            }
        }
        let n = self.buffer.len().min(self.config.max_write_batch);
        if n == 0 {
            return;
        }
        let first = self.buffer[0].wseq;
        let muts = self.buffer.iter().take(n).map(|b| b.m.clone()).collect();
        self.in_flight = n;
        self.actions.push(Action::Write(ToMaster::Write {
            writer: self.id.clone(),
            first,
            muts,
        }));
    }

    /// The outcome of the write request in flight (`None`: it failed or timed out).
    pub fn on_written(&mut self, reply: Option<FromMaster>, now: i64) {
        let n = std::mem::take(&mut self.in_flight);
        match reply {
            Some(FromMaster::Written {
                epoch,
                seq,
                results,
            }) if results.len() == n => {
                self.contact(now);
                for result in results {
                    let b = self
                        .buffer
                        .pop_front()
                        .expect("in-flight writes are buffered");
                    let Some(token) = b.token else { continue };
                    if result.is_err() || (epoch == self.epoch && self.seq >= seq) {
                        self.actions.push(Action::Resolve {
                            token,
                            outcome: WriteOutcome::Done(result),
                        });
                    } else {
                        self.waiting.push(Waiter {
                            token,
                            epoch,
                            seq,
                            result,
                            deadline: now + self.config.visible_timeout,
                        });
                    }
                }
                if epoch == self.epoch && seq > self.master_seq {
                    self.master_seq = seq;
                }
                self.release_waiters(now);
            }
            other => {
                if let Some(o) = other {
                    tracing::warn!(store = %self.store, "unexpected answer to a write: {o:?}");
                }
                self.failed_since_contact = true;
                self.next_write_at = now + self.config.resync_interval;
                // Callers stop waiting; their writes stay buffered for a replay.
                for b in self.buffer.iter_mut().take(n) {
                    if let Some(t) = b.token.take() {
                        self.actions.push(Action::Resolve {
                            token: t,
                            outcome: WriteOutcome::Buffered,
                        });
                    }
                }
            }
        }
        self.pump_writes(now);
    }

    fn release_waiters(&mut self, now: i64) {
        let (epoch, seq) = (self.epoch, self.seq);
        let mut i = 0;
        while i < self.waiting.len() {
            let w = &self.waiting[i];
            if (w.epoch == epoch && seq >= w.seq) || now >= w.deadline {
                let w = self.waiting.swap_remove(i);
                self.actions.push(Action::Resolve {
                    token: w.token,
                    outcome: WriteOutcome::Done(w.result),
                });
            } else {
                i += 1;
            }
        }
    }

    // ---- replication ------------------------------------------------------------------------

    /// An `Update` or `Heartbeat` published by the master.
    pub fn on_published(&mut self, msg: FromMaster, now: i64) {
        match msg {
            FromMaster::Heartbeat { epoch, seq } => {
                self.contact(now);
                self.master_epoch = epoch;
                if epoch == self.epoch {
                    self.master_seq = self.master_seq.max(seq);
                } else if self.staging.as_ref().is_none_or(|s| s.epoch != epoch) {
                    // A master we have not synchronised with (new, restarted or restored).
                    self.want_sync = true;
                    self.next_sync_at = now;
                }
            }
            FromMaster::Update {
                epoch,
                first,
                effects,
            } => {
                self.contact(now);
                if epoch == self.epoch && self.synced {
                    let last = first + effects.len() as u64 - 1;
                    self.master_seq = self.master_seq.max(last);
                    self.apply_run(first, effects);
                } else if self.staging.as_ref().is_none_or(|s| s.epoch != epoch) {
                    self.want_sync = true;
                    self.next_sync_at = now;
                }
            }
            _ => {}
        }
        self.tick(now);
    }

    /// Applies effects numbered from `first`, keeping runs that arrive early.
    fn apply_run(&mut self, first: u64, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let last = first + effects.len() as u64 - 1;
        if last <= self.seq {
            return;
        }
        if first > self.seq + 1 {
            if self.early.len() < self.config.max_early_runs {
                self.early.insert(first, effects);
            }
            return;
        }
        let skip = (self.seq + 1 - first) as usize;
        for e in effects.into_iter().skip(skip) {
            if self.events_enabled {
                self.event(&e);
            }
            apply_to_map(&mut self.map, &e);
        }
        self.seq = last;
        // Early runs that now connect.
        while let Some((&f, _)) = self.early.first_key_value() {
            if f > self.seq + 1 {
                break;
            }
            let (f, run) = self.early.pop_first().expect("first");
            self.apply_run(f, run);
        }
    }

    fn event(&mut self, e: &Effect) {
        match e {
            Effect::Clear => {
                for key in self.map.keys() {
                    self.events.push(crate::master::store_event(
                        &self.store,
                        &self.id,
                        "erase",
                        key,
                        None,
                        None,
                    ));
                }
            }
            other => {
                let before = match other {
                    Effect::Put { key, .. } => self.map.get(key),
                    _ => None,
                };
                if let Some(v) = crate::master::event_of(&self.store, &self.id, other, before) {
                    self.events.push(v);
                }
            }
        }
    }

    /// The answer to the synchronisation request in flight (`None`: it failed or timed out).
    pub fn on_sync(&mut self, reply: Option<FromMaster>, now: i64) {
        self.sync_in_flight = false;
        let paging = std::mem::take(&mut self.paging);
        if reply.is_some() {
            self.next_sync_at = now;
        }
        match reply {
            None => {
                self.failed_since_contact = true;
                self.next_sync_at = now + self.config.resync_interval;
            }
            Some(FromMaster::Log {
                epoch,
                first,
                effects,
                seq,
            }) => {
                self.contact(now);
                let n = effects.len() as u64;
                if let Some(st) = self
                    .staging
                    .as_mut()
                    .filter(|s| s.epoch == epoch && s.pages_done)
                {
                    if first <= st.applied + 1 && first + n > st.applied {
                        let skip = (st.applied + 1 - first) as usize;
                        for e in effects.iter().skip(skip) {
                            apply_to_map(&mut st.map, e);
                        }
                        st.applied = first + n - 1;
                    }
                    if st.applied >= st.upto {
                        self.install(seq);
                    }
                } else if epoch == self.epoch && self.synced {
                    self.master_seq = self.master_seq.max(seq);
                    self.apply_run(first, effects);
                }
                if epoch == self.epoch && self.synced {
                    self.master_seq = self.master_seq.max(seq);
                }
            }
            Some(FromMaster::Snapshot {
                epoch,
                seq,
                entries,
                more,
            }) => {
                self.contact(now);
                let st = match self.staging.as_mut() {
                    Some(st) if paging && st.epoch == epoch && !st.pages_done => st,
                    _ => {
                        self.staging = Some(Staging {
                            epoch,
                            map: BTreeMap::new(),
                            applied: seq,
                            upto: seq,
                            last_key: None,
                            pages_done: false,
                        });
                        self.staging.as_mut().expect("just set")
                    }
                };
                st.upto = st.upto.max(seq);
                if let Some((k, _)) = entries.last() {
                    st.last_key = Some(k.clone());
                }
                st.map.extend(entries);
                if more && st.last_key.is_some() {
                    let after = st.last_key.clone().expect("checked");
                    self.send_sync(ToMaster::Page {
                        clone: self.id.clone(),
                        epoch,
                        after,
                    });
                    return;
                }
                st.pages_done = true;
                if st.applied >= st.upto {
                    self.install(seq);
                } else {
                    // Replay the log from the first page on: effects are absolute, so
                    // replaying what later pages already show is harmless.
                    let from = st.applied + 1;
                    self.send_sync(ToMaster::Fetch {
                        clone: self.id.clone(),
                        epoch,
                        from,
                    });
                    return;
                }
            }
            Some(FromMaster::Restart) => {
                self.contact(now);
                self.staging = None;
                self.want_sync = true;
            }
            Some(other) => {
                tracing::warn!(store = %self.store, "unexpected answer to a sync request: {other:?}");
                self.next_sync_at = now + self.config.resync_interval;
            }
        }
        self.tick(now);
    }

    /// Makes the assembled snapshot this clone's copy.
    fn install(&mut self, master_seq: u64) {
        let st = self.staging.take().expect("staging");
        if self.events_enabled {
            // What changed between the old copy and the new, as events.
            let old = std::mem::take(&mut self.map);
            for (k, e) in &st.map {
                if old.get(k) != Some(e) {
                    if let Some(v) = crate::master::event_of(
                        &self.store,
                        &self.id,
                        &Effect::Put {
                            key: k.clone(),
                            value: e.value.clone(),
                            expiry: e.expiry,
                        },
                        old.get(k),
                    ) {
                        self.events.push(v);
                    }
                }
            }
            for k in old.keys().filter(|k| !st.map.contains_key(*k)) {
                self.events.push(crate::master::store_event(
                    &self.store,
                    &self.id,
                    "erase",
                    k,
                    None,
                    None,
                ));
            }
        }
        self.map = st.map;
        self.epoch = st.epoch;
        self.seq = st.applied;
        self.master_seq = master_seq.max(st.applied);
        self.early.clear();
        self.synced = true;
    }

    fn send_sync(&mut self, m: ToMaster) {
        self.sync_in_flight = true;
        self.paging = matches!(m, ToMaster::Page { .. });
        self.actions.push(Action::Sync(m));
    }

    /// Timers: synchronisation retries, gap fetches, write retries, acknowledgements, waiter
    /// deadlines.
    pub fn tick(&mut self, now: i64) {
        let gap = self.synced
            && self.staging.is_none()
            && (self.seq < self.master_seq || !self.early.is_empty());
        if !gap {
            self.behind_since = None;
        } else if self.behind_since.is_none() {
            self.behind_since = Some(now);
        }
        // A gap gets a grace period to close by itself (updates in transit); a missing or
        // outdated copy is fetched at once (then at the retry interval).
        let due = self.want_sync
            || !self.synced
            || self.staging.is_some()
            || self
                .behind_since
                .is_some_and(|t| now - t >= self.config.gap_grace);
        if !self.sync_in_flight && due && now >= self.next_sync_at {
            let m = match self.staging.as_ref() {
                Some(st) if st.pages_done => ToMaster::Fetch {
                    clone: self.id.clone(),
                    epoch: st.epoch,
                    from: st.applied + 1,
                },
                Some(st) if !self.want_sync && st.last_key.is_some() => ToMaster::Page {
                    clone: self.id.clone(),
                    epoch: st.epoch,
                    after: st.last_key.clone().expect("checked"),
                },
                _ if self.synced && !self.want_sync => ToMaster::Fetch {
                    clone: self.id.clone(),
                    epoch: self.epoch,
                    from: self.seq + 1,
                },
                _ => ToMaster::Fetch {
                    clone: self.id.clone(),
                    epoch: 0,
                    from: 1,
                },
            };
            self.want_sync = false;
            self.behind_since = None;
            self.send_sync(m);
        }
        self.pump_writes(now);
        self.release_waiters(now);
        if self.synced
            && self.connected(now)
            && ((self.epoch, self.seq) != self.acked || now - self.last_ack_at >= 1_000_000_000)
        {
            self.acked = (self.epoch, self.seq);
            self.last_ack_at = now;
            self.actions.push(Action::Publish(ToMaster::Ack {
                clone: self.id.clone(),
                epoch: self.epoch,
                seq: self.seq,
            }));
        }
    }
}

impl std::fmt::Debug for ReplicaCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaCore").finish_non_exhaustive()
    }
}
