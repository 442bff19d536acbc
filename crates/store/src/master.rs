//! The master's state machine, with no I/O: it applies batches of mutations in one backend
//! transaction, numbers their effects, keeps a bounded log of recent effects for clones that
//! fell behind, pages snapshots to clones that fell further, expires keys, and tracks what each
//! clone has acknowledged (for `await_idle`). The actor ([`crate::actor`]) feeds it messages and
//! timer ticks and sends what it returns.

use std::collections::{BTreeSet, HashMap, VecDeque};

use yard_data::Value;

use crate::backend::Backend;
use crate::ops::{self, Effect, Entry, Mutation, Query};
use crate::proto::{FromMaster, OpResult};
use crate::StoreError;

#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Effects kept for clones that fell behind; a clone further behind gets a snapshot.
    pub log_retain: usize,
    /// Entries per snapshot page.
    pub page_size: usize,
    /// Effects per log reply.
    pub log_chunk: usize,
    /// A clone not heard from for this long (ns) no longer counts for `await_idle`.
    pub clone_timeout: i64,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            log_retain: 100_000,
            page_size: 1024,
            log_chunk: 4096,
            clone_timeout: 10_000_000_000,
        }
    }
}

/// A batch of mutations from one writer. Remote writers number their mutations so that a retried
/// request is applied once; local and one-off writers have no number.
#[derive(Debug, Clone)]
pub struct WriteBatch {
    pub writer: Option<String>,
    pub first: u64,
    pub muts: Vec<Mutation>,
}

#[derive(Debug, Clone)]
struct CloneState {
    epoch: u64,
    acked: u64,
    last_seen: i64,
}

#[derive(Debug, Clone, Default)]
struct WriterState {
    /// The highest mutation number applied.
    last: u64,
    /// The last batch's first number and results, answered again when it is retried whole.
    first: u64,
    results: Vec<OpResult>,
}

pub struct MasterCore {
    name: String,
    endpoint: String,
    epoch: u64,
    seq: u64,
    backend: Box<dyn Backend>,
    config: MasterConfig,
    /// `log[i]` has sequence number `log_first + i`.
    log: VecDeque<Effect>,
    log_first: u64,
    schedule: BTreeSet<(i64, Value)>,
    clones: HashMap<String, CloneState>,
    writers: HashMap<String, WriterState>,
    /// Store events (Broker's shapes) waiting to be published; filled only when enabled.
    events: Vec<Value>,
    events_enabled: bool,
}

impl MasterCore {
    /// A master over `backend` in a fresh `epoch` (a new one at every start and restore: the
    /// log does not survive a restart, so clones re-synchronise by snapshot).
    pub fn new(
        name: &str,
        endpoint: &str,
        mut backend: Box<dyn Backend>,
        epoch: u64,
        config: MasterConfig,
    ) -> Result<MasterCore, StoreError> {
        let schedule = backend
            .expiries()?
            .into_iter()
            .map(|(k, x)| (x, k))
            .collect();
        Ok(MasterCore {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            epoch,
            seq: 0,
            backend,
            config,
            log: VecDeque::new(),
            log_first: 1,
            schedule,
            clones: HashMap::new(),
            writers: HashMap::new(),
            events: Vec::new(),
            events_enabled: false,
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn set_events(&mut self, enabled: bool) {
        self.events_enabled = enabled;
    }

    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    /// Applies `batches` in one transaction. Returns each batch's results and the update to
    /// broadcast. If the backend fails, nothing is applied and every result is that failure.
    pub fn write(
        &mut self,
        batches: &[WriteBatch],
        now: i64,
    ) -> (Vec<Vec<OpResult>>, Option<FromMaster>) {
        let first_seq = self.seq + 1;
        let mut effects = Vec::new();
        let mut events = Vec::new();
        let outcome = (|| -> Result<Vec<Vec<OpResult>>, StoreError> {
            self.backend.begin()?;
            let mut all = Vec::with_capacity(batches.len());
            for b in batches {
                let done = match &b.writer {
                    Some(w) => self.writers.get(w).map_or(0, |s| s.last),
                    None => 0,
                };
                if let Some(w) = &b.writer {
                    if let Some(s) = self.writers.get(w) {
                        if s.first == b.first && s.results.len() == b.muts.len() && done >= b.first
                        {
                            all.push(s.results.clone());
                            continue;
                        }
                    }
                }
                let mut results = Vec::with_capacity(b.muts.len());
                for (i, m) in b.muts.iter().enumerate() {
                    if b.writer.is_some() && b.first + (i as u64) <= done {
                        // Applied by an earlier attempt of this request.
                        results.push(Ok(Value::None));
                        continue;
                    }
                    results.push(self.mutate(m, now, &mut effects, &mut events)?);
                }
                all.push(results);
            }
            self.backend.commit()?;
            Ok(all)
        })();
        match outcome {
            Ok(all) => {
                for (b, results) in batches.iter().zip(&all) {
                    if let Some(w) = &b.writer {
                        let last = b.first + b.muts.len() as u64 - 1;
                        let s = self.writers.entry(w.clone()).or_default();
                        if last > s.last || b.muts.is_empty() {
                            s.last = s.last.max(last);
                            s.first = b.first;
                            s.results = results.clone();
                        }
                    }
                }
                self.events.extend(events);
                (all, self.publish(first_seq, effects))
            }
            Err(e) => {
                self.backend.rollback();
                self.seq = first_seq - 1;
                self.reload_schedule();
                tracing::error!(store = %self.name, "write failed, nothing applied: {e}");
                let failed = batches
                    .iter()
                    .map(|b| vec![Err(e.clone()); b.muts.len()])
                    .collect();
                (failed, None)
            }
        }
    }

    fn reload_schedule(&mut self) {
        match self.backend.expiries() {
            Ok(x) => self.schedule = x.into_iter().map(|(k, t)| (t, k)).collect(),
            Err(e) => tracing::error!(store = %self.name, "cannot reload expiries: {e}"),
        }
    }

    /// Plans and applies one mutation inside the open transaction. A type clash is the
    /// mutation's answer; only a backend failure aborts the batch.
    fn mutate(
        &mut self,
        m: &Mutation,
        now: i64,
        effects: &mut Vec<Effect>,
        events: &mut Vec<Value>,
    ) -> Result<OpResult, StoreError> {
        let stored = match m.key() {
            Some(k) => self.backend.get(k)?,
            None => None,
        };
        let old_expiry = stored.as_ref().and_then(|e| e.expiry);
        // A key past its expiry that the timer has not swept yet is already gone.
        let current = stored.filter(|e| e.expiry.is_none_or(|x| x > now));
        let outcome = match ops::plan(m, current.as_ref(), now) {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(effect) = outcome.effect {
            if self.events_enabled {
                self.event_for(&effect, current.as_ref(), events)?;
            }
            self.apply(&effect, old_expiry)?;
            effects.push(effect);
        }
        Ok(Ok(outcome.result))
    }

    /// Applies an effect to the backend and the expiry schedule; `old_expiry` is the key's
    /// stored expiry before it.
    fn apply(&mut self, effect: &Effect, old_expiry: Option<i64>) -> Result<(), StoreError> {
        if let Effect::Put { key, .. } | Effect::Erase { key } | Effect::Expire { key } = effect {
            if let Some(old) = old_expiry {
                self.schedule.remove(&(old, key.clone()));
            }
        }
        match effect {
            Effect::Put {
                key,
                expiry: Some(x),
                ..
            } => {
                self.schedule.insert((*x, key.clone()));
            }
            Effect::Clear => self.schedule.clear(),
            _ => {}
        }
        self.backend.apply(effect)?;
        self.seq += 1;
        Ok(())
    }

    fn event_for(
        &mut self,
        effect: &Effect,
        current: Option<&Entry>,
        events: &mut Vec<Value>,
    ) -> Result<(), StoreError> {
        match effect {
            Effect::Clear => {
                for key in self.backend.keys()? {
                    events.push(store_event(
                        &self.name,
                        &self.endpoint,
                        "erase",
                        &key,
                        None,
                        None,
                    ));
                }
            }
            other => events.extend(event_of(&self.name, &self.endpoint, other, current)),
        }
        Ok(())
    }

    fn publish(&mut self, first: u64, effects: Vec<Effect>) -> Option<FromMaster> {
        if effects.is_empty() {
            return None;
        }
        if self.log.is_empty() {
            self.log_first = first;
        }
        self.log.extend(effects.iter().cloned());
        while self.log.len() > self.config.log_retain {
            self.log.pop_front();
            self.log_first += 1;
        }
        Some(FromMaster::Update {
            epoch: self.epoch,
            first,
            effects,
        })
    }

    /// Expires every key due at `now`, in one transaction; returns the update to broadcast.
    pub fn expire(&mut self, now: i64) -> Option<FromMaster> {
        let due: Vec<(i64, Value)> = self
            .schedule
            .iter()
            .take_while(|(t, _)| *t <= now)
            .cloned()
            .collect();
        if due.is_empty() {
            return None;
        }
        let first = self.seq + 1;
        let mut effects = Vec::new();
        let result = (|| -> Result<(), StoreError> {
            self.backend.begin()?;
            for (t, key) in &due {
                self.schedule.remove(&(*t, key.clone()));
                // Only if the key still has that expiry (a later put may have changed it).
                if self.backend.get(key)?.is_some_and(|e| e.expiry == Some(*t)) {
                    let effect = Effect::Expire { key: key.clone() };
                    self.backend.apply(&effect)?;
                    self.seq += 1;
                    effects.push(effect);
                }
            }
            self.backend.commit()
        })();
        if let Err(e) = result {
            self.backend.rollback();
            self.seq = first - 1;
            self.reload_schedule();
            tracing::error!(store = %self.name, "expiry failed, will retry: {e}");
            return None;
        }
        if self.events_enabled {
            for e in &effects {
                self.events
                    .extend(event_of(&self.name, &self.endpoint, e, None));
            }
        }
        self.publish(first, effects)
    }

    /// Answers a read from the committed state.
    pub fn read(&mut self, q: &Query, now: i64) -> OpResult {
        match q {
            Query::Keys => Ok(Value::Set(self.backend.keys()?.into_iter().collect())),
            _ => {
                let key = q.key().expect("per-key query");
                let current = self
                    .backend
                    .get(key)?
                    .filter(|e| e.expiry.is_none_or(|x| x > now));
                ops::query_entry(q, current.as_ref())
            }
        }
    }

    /// A clone asks for everything from `from` in `epoch`: the log if it still covers the gap,
    /// a snapshot's first page otherwise.
    pub fn fetch(&mut self, clone: &str, epoch: u64, from: u64, now: i64) -> FromMaster {
        self.seen(clone, epoch, None, now);
        if epoch == self.epoch && from >= self.log_first.min(self.seq + 1) && from <= self.seq + 1 {
            let start = (from - self.log_first.min(from)) as usize;
            let effects: Vec<Effect> = self
                .log
                .iter()
                .skip(start)
                .take(self.config.log_chunk)
                .cloned()
                .collect();
            return FromMaster::Log {
                epoch: self.epoch,
                first: from,
                effects,
                seq: self.seq,
            };
        }
        self.page(clone, self.epoch, None, now)
    }

    /// The snapshot page after `after` (None: the first).
    pub fn page(&mut self, clone: &str, epoch: u64, after: Option<&Value>, now: i64) -> FromMaster {
        if epoch != self.epoch {
            return FromMaster::Restart;
        }
        self.seen(clone, epoch, None, now);
        match self.backend.page(after, self.config.page_size) {
            Ok(entries) => FromMaster::Snapshot {
                epoch: self.epoch,
                seq: self.seq,
                more: entries.len() == self.config.page_size,
                entries,
            },
            Err(e) => {
                tracing::error!(store = %self.name, "cannot read a snapshot page: {e}");
                FromMaster::Restart
            }
        }
    }

    pub fn ack(&mut self, clone: &str, epoch: u64, seq: u64, now: i64) {
        self.seen(clone, epoch, Some(seq), now);
    }

    fn seen(&mut self, clone: &str, epoch: u64, acked: Option<u64>, now: i64) {
        let s = self.clones.entry(clone.to_string()).or_insert(CloneState {
            epoch,
            acked: 0,
            last_seen: now,
        });
        s.last_seen = now;
        if let Some(a) = acked {
            if s.epoch != epoch || a > s.acked {
                s.epoch = epoch;
                s.acked = a;
            }
        }
    }

    pub fn heartbeat(&self) -> FromMaster {
        FromMaster::Heartbeat {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Forgets clones not heard from within the timeout.
    pub fn prune(&mut self, now: i64) {
        let timeout = self.config.clone_timeout;
        self.clones.retain(|_, s| now - s.last_seen <= timeout);
    }

    /// Whether every clone heard from recently has acknowledged everything.
    pub fn is_idle(&self) -> bool {
        self.clones
            .values()
            .all(|s| s.epoch == self.epoch && s.acked >= self.seq)
    }

    /// The clones heard from recently, with what they acknowledged.
    pub fn clones(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .clones
            .iter()
            .map(|(id, s)| (id.clone(), if s.epoch == self.epoch { s.acked } else { 0 }))
            .collect();
        v.sort();
        v
    }

    pub fn count(&mut self) -> Result<u64, StoreError> {
        self.backend.count()
    }

    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    /// Replaces the contents (restore) and starts a new epoch: clones re-synchronise.
    pub fn replace(&mut self, entries: Vec<(Value, Entry)>, epoch: u64) -> Result<(), StoreError> {
        self.backend.replace(entries)?;
        self.epoch = epoch;
        self.seq = 0;
        self.log.clear();
        self.log_first = 1;
        self.writers.clear();
        self.reload_schedule();
        Ok(())
    }
}

/// Broker's store event for an effect, given the key's entry before it.
pub fn event_of(
    store: &str,
    endpoint: &str,
    effect: &Effect,
    before: Option<&Entry>,
) -> Option<Value> {
    Some(match effect {
        Effect::Put { key, value, expiry } => match before {
            None => store_event(
                store,
                endpoint,
                "insert",
                key,
                Some((None, value)),
                Some(*expiry),
            ),
            Some(old) => store_event(
                store,
                endpoint,
                "update",
                key,
                Some((Some(&old.value), value)),
                Some(*expiry),
            ),
        },
        Effect::Erase { key } => store_event(store, endpoint, "erase", key, None, None),
        Effect::Expire { key } => store_event(store, endpoint, "expire", key, None, None),
        Effect::Clear => return None,
    })
}

/// `["insert", store, key, value, expiry, publisher_endpoint, publisher_object]`,
/// `["update", store, key, old, new, expiry, …]`, `["erase", store, key, …]`,
/// `["expire", store, key, …]`.
pub fn store_event(
    store: &str,
    endpoint: &str,
    kind: &str,
    key: &Value,
    values: Option<(Option<&Value>, &Value)>,
    expiry: Option<Option<i64>>,
) -> Value {
    let mut v = vec![
        Value::String(kind.to_string()),
        Value::String(store.to_string()),
        key.clone(),
    ];
    if let Some((old, new)) = values {
        if let Some(old) = old {
            v.push(old.clone());
        }
        v.push(new.clone());
    }
    if let Some(x) = expiry {
        v.push(x.map_or(Value::None, Value::Timestamp));
    }
    v.push(Value::String(endpoint.to_string()));
    v.push(Value::String(store.to_string()));
    Value::Vector(v)
}

impl std::fmt::Debug for MasterCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterCore").finish_non_exhaustive()
    }
}
