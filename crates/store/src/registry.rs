//! The stores of one endpoint: which it masters, which it clones, and how to reach the others.
//! The gateway (HTTP, WebSocket) and the node's start-up go through [`Stores`]; a store that is
//! not attached here is reached through its master over the fabric.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use yard_data::Value;
use yard_fabric::{Endpoint, RequestError};

use crate::actor::{self, Command, Role, StoreHandle, StoreInfo, REQUEST_TIMEOUT};
use crate::backend::{BackendSpec, SnapshotSource};
use crate::master::MasterConfig;
use crate::ops::{Entry, Mutation, Query};
use crate::proto::{self, FromMaster, OpResult, ToMaster};
use crate::replica::{ReplicaConfig, WriteOutcome};
use crate::{backup, check_name, now_ns, StoreError};

/// A clone's settings (Broker's names).
#[derive(Debug, Clone)]
pub struct CloneOptions {
    /// Reads fail with `stale_data` once the master has been out of reach this long; None:
    /// never. Default 300 s.
    pub stale_interval: Option<Duration>,
    /// Writes made while the master is out of reach are kept this long and replayed. Default
    /// 120 s.
    pub mutation_buffer_interval: Duration,
    /// How often to retry reaching the master. Default 1 s.
    pub resync_interval: Duration,
}

impl Default for CloneOptions {
    fn default() -> Self {
        CloneOptions {
            stale_interval: Some(Duration::from_secs(300)),
            mutation_buffer_interval: Duration::from_secs(120),
            resync_interval: Duration::from_secs(1),
        }
    }
}

impl CloneOptions {
    fn replica_config(&self) -> ReplicaConfig {
        ReplicaConfig {
            stale_interval: self.stale_interval.map(|d| d.as_nanos() as i64),
            buffer_interval: self.mutation_buffer_interval.as_nanos() as i64,
            resync_interval: self.resync_interval.as_nanos() as i64,
            ..ReplicaConfig::default()
        }
    }
}

/// One endpoint's stores.
pub struct Stores {
    endpoint: Endpoint,
    shutdown: CancellationToken,
    /// Held while a store is being attached (which awaits), so one name is attached once.
    attaching: Mutex<()>,
    /// Read on every operation, written on attach and detach.
    attached: RwLock<HashMap<String, StoreHandle>>,
    /// Whether changes are published on `<$>/local/data/store-events`.
    pub events: bool,
}

/// How many entries a backup, dump or restore moves per step.
const PAGE: usize = 4096;

impl Stores {
    pub fn new(endpoint: Endpoint, shutdown: CancellationToken) -> Arc<Stores> {
        Arc::new(Stores {
            endpoint,
            shutdown,
            attaching: Mutex::new(()),
            attached: RwLock::new(HashMap::new()),
            events: true,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Makes this endpoint the master of `name`. Fails with `master_exists` when another master
    /// answers for the name.
    pub async fn attach_master(&self, name: &str, spec: BackendSpec) -> Result<(), StoreError> {
        check_name(name)?;
        let _attaching = self.attaching.lock().await;
        if let Some(h) = self.map().get(name) {
            return Err(already(name, h.role));
        }
        let handle = actor::spawn_master(
            self.endpoint.clone(),
            name.to_string(),
            spec,
            MasterConfig::default(),
            self.events,
            self.shutdown.child_token(),
        )
        .await?;
        self.map_mut().insert(name.to_string(), handle);
        Ok(())
    }

    /// Makes this endpoint hold a clone of `name`; the master may appear later.
    pub async fn attach_clone(&self, name: &str, options: CloneOptions) -> Result<(), StoreError> {
        check_name(name)?;
        let _attaching = self.attaching.lock().await;
        if let Some(h) = self.map().get(name) {
            return Err(already(name, h.role));
        }
        let handle = actor::spawn_clone(
            self.endpoint.clone(),
            name.to_string(),
            options.replica_config(),
            self.events,
            self.shutdown.child_token(),
        )
        .await?;
        self.map_mut().insert(name.to_string(), handle);
        Ok(())
    }

    /// Stops this endpoint's master or clone of `name` (a master's SQLite file stays).
    pub fn detach(&self, name: &str) -> Result<(), StoreError> {
        let removed = self.map_mut().remove(name);
        match removed {
            Some(h) => {
                h.stop();
                Ok(())
            }
            None => Err(StoreError::NoSuchStore(name.to_string())),
        }
    }

    fn map(&self) -> RwLockReadGuard<'_, HashMap<String, StoreHandle>> {
        self.attached.read().unwrap_or_else(|p| p.into_inner())
    }

    fn map_mut(&self) -> RwLockWriteGuard<'_, HashMap<String, StoreHandle>> {
        self.attached.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The handle of the master or clone of `name` attached here.
    pub fn local_handle(&self, name: &str) -> Option<StoreHandle> {
        self.map().get(name).cloned()
    }

    fn attached_handle(&self, name: &str) -> Result<StoreHandle, StoreError> {
        check_name(name)?;
        self.local_handle(name).ok_or_else(|| {
            StoreError::NoSuchStore(format!(
                "{name} (attach it here as a master or a clone to do this)"
            ))
        })
    }

    /// The stores attached here.
    pub async fn list(&self) -> Vec<StoreInfo> {
        let handles: Vec<StoreHandle> = self.map().values().cloned().collect();
        let mut out = Vec::new();
        for h in handles {
            if let Ok(info) = h.call(|reply| Command::Info { reply }).await {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub async fn info(&self, name: &str) -> Result<StoreInfo, StoreError> {
        let h = self.attached_handle(name)?;
        h.call(|reply| Command::Info { reply }).await
    }

    /// Applies a mutation: here when this endpoint holds the store, else at its master over the
    /// fabric.
    pub async fn write(&self, name: &str, m: Mutation) -> Result<WriteOutcome, StoreError> {
        check_name(name)?;
        match self.local_handle(name) {
            Some(h) => {
                h.call(|reply| Command::Write {
                    m,
                    reply: Some(reply),
                })
                .await
            }
            None => {
                let req = ToMaster::Write {
                    writer: String::new(),
                    first: 0,
                    muts: vec![m],
                };
                match self.ask_master(name, req).await? {
                    FromMaster::Written { mut results, .. } if results.len() == 1 => {
                        Ok(WriteOutcome::Done(results.pop().expect("one")))
                    }
                    FromMaster::Answer(Err(e)) => Err(e),
                    other => Err(unexpected(other)),
                }
            }
        }
    }

    /// Answers a query: from the local master or clone, else from the master over the fabric.
    pub async fn read(&self, name: &str, q: Query) -> OpResult {
        check_name(name)?;
        match self.local_handle(name) {
            Some(h) => h.call(|reply| Command::Read { q, reply }).await?,
            None => match self.ask_master(name, ToMaster::Read { query: q }).await? {
                FromMaster::Answer(r) => r,
                other => Err(unexpected(other)),
            },
        }
    }

    async fn ask_master(&self, name: &str, req: ToMaster) -> Result<FromMaster, StoreError> {
        let topic = proto::master_topic(name);
        match self
            .endpoint
            .request_system(topic, req.encode(), REQUEST_TIMEOUT)
            .await
        {
            Ok(msg) => proto::decode_from_master(&msg.value)
                .map_err(|e| StoreError::InvalidData(e.to_string())),
            Err(RequestError::NoResponder(_)) => Err(StoreError::NoSuchMaster(name.to_string())),
            Err(RequestError::Timeout { timeout, .. }) => Err(StoreError::Timeout(format!(
                "the master of {name:?} did not answer within {timeout:?}"
            ))),
            Err(RequestError::Shutdown) => Err(StoreError::Shutdown),
            Err(RequestError::Topic(e)) => Err(StoreError::InvalidData(e.to_string())),
            Err(RequestError::Failed { code, context, .. }) => Err(StoreError::Backend(format!(
                "the master of {name:?} failed: {code}: {context}"
            ))),
        }
    }

    /// Waits until everything in flight is applied everywhere (true), or `timeout` (false).
    pub async fn await_idle(&self, name: &str, timeout: Duration) -> Result<bool, StoreError> {
        let h = self.attached_handle(name)?;
        h.call(|reply| Command::AwaitIdle { timeout, reply }).await
    }

    async fn snapshot(&self, name: &str) -> Result<Box<dyn SnapshotSource>, StoreError> {
        let h = self.attached_handle(name)?;
        h.call(|reply| Command::Snapshot { reply }).await?
    }

    /// Every entry, from a consistent snapshot (taken without stopping writes).
    pub async fn entries(&self, name: &str) -> Result<Vec<(Value, Entry)>, StoreError> {
        let mut source = self.snapshot(name).await?;
        tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            loop {
                let page = source.next_page(PAGE)?;
                if page.is_empty() {
                    return Ok(all);
                }
                all.extend(page);
            }
        })
        .await
        .map_err(|e| StoreError::Backend(format!("snapshot reader failed: {e}")))?
    }

    /// A backup file of `name`'s contents at one instant, taken while writes continue.
    pub async fn backup(&self, name: &str) -> Result<(Vec<u8>, u64), StoreError> {
        let entries = self.entries(name).await?;
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let mut w = backup::Writer::new(&name, now_ns(), entries.len() as u64);
            for (k, e) in &entries {
                w.push(k, e);
            }
            (w.finish(), entries.len() as u64)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("backup writer failed: {e}")))
    }

    /// Replaces the contents of the master of `name` (attached here) with a backup file's;
    /// refuses a file that is not a complete, intact backup. Clones re-synchronise.
    pub async fn restore(&self, name: &str, bytes: Vec<u8>) -> Result<u64, StoreError> {
        let h = self.attached_handle(name)?;
        if h.role != Role::Master {
            return Err(StoreError::InvalidData(format!(
                "{name:?} is a clone here: restore into its master"
            )));
        }
        let parsed = tokio::task::spawn_blocking(move || backup::read(&bytes))
            .await
            .map_err(|e| StoreError::Backend(format!("backup reader failed: {e}")))?
            .map_err(|e| StoreError::InvalidData(e.to_string()))?;
        let n = parsed.entries.len() as u64;
        let entries = parsed.entries;
        h.call(|reply| Command::Restore { entries, reply })
            .await??;
        Ok(n)
    }
}

fn already(name: &str, role: Role) -> StoreError {
    StoreError::InvalidData(format!(
        "store {name:?} is already attached here as a {role}"
    ))
}

fn unexpected(m: FromMaster) -> StoreError {
    StoreError::InvalidData(format!("unexpected answer from the master: {m:?}"))
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}
