//! The endpoint runtime: one router task owns the subscription table and every subscriber's
//! outbox; clients talk to it through two bounded channels.
//!
//! - **data** (capacity [`EndpointConfig::data_queue`]): publications. A publisher waits when it
//!   is full, so a fast publisher is slowed (and, through TCP, its remote client) rather than
//!   anything being dropped on the way in.
//! - **control** (capacity [`EndpointConfig::control_queue`]): attach, subscribe, unsubscribe,
//!   detach, snapshot. Callers wait for room, except a dropped [`Client`], which cannot wait: when
//!   its detach does not fit it raises a flag and the router sweeps closed outboxes.
//!
//! The router drains the data channel in batches and pushes each message into the outbox of every
//! matching subscriber (never back to its sender). Pushing never waits; a full outbox applies its
//! [`OverflowPolicy`]. Select priority: shutdown, then control, then data, so a subscription is
//! live before any later publication is routed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_data::json::{self, JsonOptions};
use yard_data::topic::{self, TopicError};
use yard_data::Value;

use crate::outbox::{CloseReason, Outbox, OverflowPolicy, Pushed};
use crate::subs::SubscriptionTable;

pub type ClientId = u64;

/// Sizes of the endpoint's own queues.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Publications waiting for the router.
    pub data_queue: usize,
    /// Control requests waiting for the router.
    pub control_queue: usize,
    /// The most messages the router takes per wake-up.
    pub batch: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            data_queue: 8192,
            control_queue: 1024,
            batch: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("the endpoint has shut down")]
    Shutdown,
    #[error(transparent)]
    Topic(#[from] TopicError),
}

/// A publication on its way through the endpoint.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub value: Value,
    pub sender: ClientId,
    /// The JSON v1 data-message text, encoded once for all WebSocket subscribers.
    json: OnceLock<(JsonOptions, Bytes)>,
}

impl Message {
    pub fn new(topic: String, value: Value, sender: ClientId) -> Message {
        Message {
            topic,
            value,
            sender,
            json: OnceLock::new(),
        }
    }

    /// The message as JSON v1 text; encoded on first use and shared after.
    pub fn json(&self, opts: JsonOptions) -> Bytes {
        let (cached_opts, bytes) = self.json.get_or_init(|| {
            (
                opts,
                Bytes::from(json::encode_data_message(&self.topic, &self.value, opts)),
            )
        });
        if *cached_opts == opts {
            bytes.clone()
        } else {
            Bytes::from(json::encode_data_message(&self.topic, &self.value, opts))
        }
    }
}

/// Counters of the whole endpoint.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    overflow_disconnects: AtomicU64,
    clients: AtomicU64,
    subscriptions: AtomicU64,
}

/// A copy of the endpoint's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Publications accepted by the router.
    pub published: u64,
    /// Copies queued to subscribers.
    pub delivered: u64,
    /// Copies dropped by overflow policies.
    pub dropped: u64,
    /// Subscribers closed because their queue overflowed.
    pub overflow_disconnects: u64,
    /// Subscribers attached now.
    pub clients: u64,
    /// Distinct subscription prefixes now.
    pub subscriptions: u64,
}

/// One attached client, as seen by the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub id: ClientId,
    pub name: String,
    pub subscriptions: Vec<String>,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub policy: OverflowPolicy,
    pub drops: u64,
}

/// The router's view of everything attached.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub clients: Vec<ClientInfo>,
}

type SharedOutbox = Arc<Outbox<Arc<Message>>>;

enum Control {
    Attach {
        id: ClientId,
        name: String,
        prefixes: Vec<String>,
        outbox: SharedOutbox,
        reply: oneshot::Sender<()>,
    },
    Subscribe {
        id: ClientId,
        prefixes: Vec<String>,
        reply: oneshot::Sender<()>,
    },
    Unsubscribe {
        id: ClientId,
        prefixes: Vec<String>,
        reply: oneshot::Sender<()>,
    },
    Detach {
        id: ClientId,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
}

struct Shared {
    id: String,
    started: Instant,
    counters: Counters,
    next_client: AtomicU64,
    /// Set by a dropped client whose detach did not fit the control queue.
    sweep_needed: AtomicBool,
}

/// A handle to a running endpoint; cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
    control: mpsc::Sender<Control>,
    data: mpsc::Sender<Arc<Message>>,
}

impl Endpoint {
    /// Starts the router. It runs until `shutdown` is cancelled, then closes every outbox with
    /// [`CloseReason::Shutdown`]; the returned handle resolves after that.
    pub fn spawn(
        id: String,
        config: EndpointConfig,
        shutdown: CancellationToken,
    ) -> (Endpoint, JoinHandle<()>) {
        let (control_tx, control_rx) = mpsc::channel(config.control_queue.max(1));
        let (data_tx, data_rx) = mpsc::channel(config.data_queue.max(1));
        let shared = Arc::new(Shared {
            id,
            started: Instant::now(),
            counters: Counters::default(),
            next_client: AtomicU64::new(1),
            sweep_needed: AtomicBool::new(false),
        });
        let router = Router {
            shared: shared.clone(),
            table: SubscriptionTable::new(),
            clients: HashMap::new(),
            recipients: Vec::new(),
        };
        let task = tokio::spawn(router.run(control_rx, data_rx, config.batch.max(1), shutdown));
        (
            Endpoint {
                shared,
                control: control_tx,
                data: data_tx,
            },
            task,
        )
    }

    /// This endpoint's identifier.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.shared.started.elapsed()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            overflow_disconnects: c.overflow_disconnects.load(Ordering::Relaxed),
            clients: c.clients.load(Ordering::Relaxed),
            subscriptions: c.subscriptions.load(Ordering::Relaxed),
        }
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Control,
    ) -> Result<T, EndpointError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(make(tx))
            .await
            .map_err(|_| EndpointError::Shutdown)?;
        rx.await.map_err(|_| EndpointError::Shutdown)
    }

    /// Attaches a client with the given subscriptions; they are live when this returns.
    pub async fn attach(
        &self,
        name: impl Into<String>,
        prefixes: Vec<String>,
        queue_capacity: usize,
        policy: OverflowPolicy,
    ) -> Result<Client, EndpointError> {
        for p in &prefixes {
            topic::check_subscribe(p)?;
        }
        let id = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(queue_capacity.max(1), policy));
        let client = Client {
            id,
            endpoint: self.clone(),
            outbox: outbox.clone(),
        };
        let name = name.into();
        self.request(|reply| Control::Attach {
            id,
            name,
            prefixes,
            outbox,
            reply,
        })
        .await?;
        Ok(client)
    }

    /// What is attached now.
    pub async fn snapshot(&self) -> Result<Snapshot, EndpointError> {
        self.request(|reply| Control::Snapshot { reply }).await
    }
}

/// A client's handle: publish, (un)subscribe, and read what arrives. Dropping it detaches.
pub struct Client {
    id: ClientId,
    endpoint: Endpoint,
    outbox: SharedOutbox,
}

impl Client {
    pub fn id(&self) -> ClientId {
        self.id
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Publishes on a user topic; reserved (`<$>`) topics are refused. Waits while the router's
    /// data queue is full.
    pub async fn publish(&self, topic: String, value: Value) -> Result<(), EndpointError> {
        topic::check_publish(&topic)?;
        let msg = Arc::new(Message::new(topic, value, self.id));
        self.endpoint
            .data
            .send(msg)
            .await
            .map_err(|_| EndpointError::Shutdown)
    }

    pub async fn subscribe(&self, prefixes: Vec<String>) -> Result<(), EndpointError> {
        for p in &prefixes {
            topic::check_subscribe(p)?;
        }
        let id = self.id;
        self.endpoint
            .request(|reply| Control::Subscribe {
                id,
                prefixes,
                reply,
            })
            .await
    }

    pub async fn unsubscribe(&self, prefixes: Vec<String>) -> Result<(), EndpointError> {
        let id = self.id;
        self.endpoint
            .request(|reply| Control::Unsubscribe {
                id,
                prefixes,
                reply,
            })
            .await
    }

    /// Waits for messages and moves up to `max` of them into `out`; the error says why this
    /// client was closed (overflow, shutdown).
    pub async fn recv_batch(
        &self,
        out: &mut Vec<Arc<Message>>,
        max: usize,
    ) -> Result<(), CloseReason> {
        self.outbox.recv_batch(out, max).await
    }

    pub fn outbox(&self) -> &Outbox<Arc<Message>> {
        &self.outbox
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.outbox.close(CloseReason::Detached);
        if self
            .endpoint
            .control
            .try_send(Control::Detach { id: self.id })
            .is_err()
        {
            self.endpoint
                .shared
                .sweep_needed
                .store(true, Ordering::Release);
        }
    }
}

struct Attached {
    name: String,
    outbox: SharedOutbox,
}

/// The single owner of the subscription table and the outboxes.
struct Router {
    shared: Arc<Shared>,
    table: SubscriptionTable<ClientId>,
    clients: HashMap<ClientId, Attached>,
    /// Reused buffer of one message's recipients.
    recipients: Vec<ClientId>,
}

impl Router {
    async fn run(
        mut self,
        mut control: mpsc::Receiver<Control>,
        mut data: mpsc::Receiver<Arc<Message>>,
        batch: usize,
        shutdown: CancellationToken,
    ) {
        let mut buf = Vec::with_capacity(batch);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(c) = control.recv() => self.control(c),
                n = data.recv_many(&mut buf, batch) => {
                    if n == 0 {
                        break;
                    }
                    for msg in buf.drain(..) {
                        self.route(msg);
                    }
                }
            }
            if self.shared.sweep_needed.swap(false, Ordering::AcqRel) {
                let closed: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.outbox.is_closed())
                    .map(|(id, _)| *id)
                    .collect();
                closed.into_iter().for_each(|id| self.detach(id));
            }
        }
        for (_, c) in self.clients.drain() {
            c.outbox.close(CloseReason::Shutdown);
        }
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        let c = &self.shared.counters;
        c.clients
            .store(self.clients.len() as u64, Ordering::Relaxed);
        c.subscriptions
            .store(self.table.len() as u64, Ordering::Relaxed);
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Attach {
                id,
                name,
                prefixes,
                outbox,
                reply,
            } => {
                self.table.subscribe(id, &prefixes);
                self.clients.insert(id, Attached { name, outbox });
                let _ = reply.send(());
            }
            Control::Subscribe {
                id,
                prefixes,
                reply,
            } => {
                if self.clients.contains_key(&id) {
                    self.table.subscribe(id, &prefixes);
                }
                let _ = reply.send(());
            }
            Control::Unsubscribe {
                id,
                prefixes,
                reply,
            } => {
                self.table.unsubscribe(id, &prefixes);
                let _ = reply.send(());
            }
            Control::Detach { id } => self.detach(id),
            Control::Snapshot { reply } => {
                let mut clients: Vec<ClientInfo> = self
                    .clients
                    .iter()
                    .map(|(id, c)| ClientInfo {
                        id: *id,
                        name: c.name.clone(),
                        subscriptions: self.table.prefixes_of(*id).map(str::to_string).collect(),
                        queue_depth: c.outbox.depth(),
                        queue_capacity: c.outbox.capacity(),
                        policy: c.outbox.policy(),
                        drops: c.outbox.drops(),
                    })
                    .collect();
                clients.sort_by_key(|c| c.id);
                let _ = reply.send(Snapshot { clients });
            }
        }
        self.publish_gauges();
    }

    fn detach(&mut self, id: ClientId) {
        self.table.remove(id);
        self.clients.remove(&id);
        self.publish_gauges();
    }

    fn route(&mut self, msg: Arc<Message>) {
        self.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        self.recipients.clear();
        self.table
            .matches(&msg.topic, Some(msg.sender), &mut self.recipients);
        let mut delivered = 0;
        let mut dropped = 0;
        for i in 0..self.recipients.len() {
            let id = self.recipients[i];
            let Some(client) = self.clients.get(&id) else {
                continue;
            };
            let outcome = client.outbox.push(msg.clone());
            match outcome {
                Pushed::Queued => delivered += 1,
                Pushed::DroppedOldest => {
                    delivered += 1;
                    dropped += 1;
                }
                Pushed::DroppedNewest => dropped += 1,
                Pushed::Disconnected => {
                    tracing::warn!(client = %client.name, id, capacity = client.outbox.capacity(),
                        "outbound queue overflowed; disconnecting the client (policy disconnect)");
                    self.shared
                        .counters
                        .overflow_disconnects
                        .fetch_add(1, Ordering::Relaxed);
                    // Everything the client had queued is lost with it.
                    dropped += client.outbox.drops();
                }
                Pushed::Closed => {}
            }
            if matches!(outcome, Pushed::Disconnected | Pushed::Closed) {
                self.detach(id);
            }
        }
        let counters = &self.shared.counters;
        counters.delivered.fetch_add(delivered, Ordering::Relaxed);
        counters.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn endpoint() -> (Endpoint, CancellationToken, JoinHandle<()>) {
        let token = CancellationToken::new();
        let (ep, task) = Endpoint::spawn("test".into(), EndpointConfig::default(), token.clone());
        (ep, token, task)
    }

    async fn next(c: &Client) -> Arc<Message> {
        let mut out = Vec::new();
        c.recv_batch(&mut out, 1).await.expect("open");
        out.pop().unwrap()
    }

    async fn attach(ep: &Endpoint, name: &str, prefixes: &[&str], capacity: usize) -> Client {
        let prefixes = prefixes.iter().map(|p| p.to_string()).collect();
        ep.attach(name, prefixes, capacity, OverflowPolicy::Disconnect)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn routes_by_prefix_and_never_echoes() {
        let (ep, token, task) = endpoint().await;
        let a = attach(&ep, "a", &["/t"], 16).await;
        let b = attach(&ep, "b", &["/t/x"], 16).await;
        a.publish("/t/x/1".into(), Value::Count(1)).await.unwrap();
        b.publish("/t/y".into(), Value::Count(2)).await.unwrap();
        assert_eq!(next(&b).await.value, Value::Count(1));
        let m = next(&a).await;
        assert_eq!((m.topic.as_str(), &m.value), ("/t/y", &Value::Count(2)));
        assert_eq!(a.outbox().depth(), 0, "a never gets its own /t/x/1");
        token.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn reserved_topics_are_refused() {
        let (ep, _token, _task) = endpoint().await;
        let a = attach(&ep, "a", &[], 16).await;
        let err = a
            .publish("<$>/local/data/statuses".into(), Value::None)
            .await
            .unwrap_err();
        assert!(matches!(err, EndpointError::Topic(TopicError::Reserved(_))));
    }

    #[tokio::test]
    async fn unsubscribe_stops_delivery_and_detach_clears_state() {
        let (ep, _token, _task) = endpoint().await;
        let sub = attach(&ep, "s", &["/a"], 16).await;
        let publ = attach(&ep, "p", &[], 16).await;
        sub.unsubscribe(vec!["/a".into()]).await.unwrap();
        sub.subscribe(vec!["/b".into()]).await.unwrap();
        publ.publish("/a".into(), Value::Count(1)).await.unwrap();
        publ.publish("/b".into(), Value::Count(2)).await.unwrap();
        assert_eq!(
            next(&sub).await.value,
            Value::Count(2),
            "/a was not delivered first"
        );
        drop(sub);
        let snap = ep.snapshot().await.unwrap();
        assert_eq!(
            snap.clients
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["p"]
        );
        assert_eq!(ep.stats().subscriptions, 0);
    }

    #[tokio::test]
    async fn a_full_subscriber_is_disconnected_and_others_keep_receiving() {
        let (ep, _token, _task) = endpoint().await;
        let slow = attach(&ep, "slow", &["/"], 4).await;
        let fast = attach(&ep, "fast", &["/"], 1000).await;
        let publ = attach(&ep, "p", &[], 16).await;
        for i in 0..100 {
            publ.publish("/x".into(), Value::Count(i)).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 100 {
            fast.recv_batch(&mut got, 1000).await.unwrap();
        }
        let values: Vec<u64> = got.iter().map(|m| m.value.as_count().unwrap()).collect();
        assert_eq!(values, (0..100).collect::<Vec<_>>());
        let mut none = Vec::new();
        assert_eq!(
            slow.recv_batch(&mut none, 10).await,
            Err(CloseReason::Overflow { capacity: 4 })
        );
        let stats = ep.stats();
        assert_eq!(stats.overflow_disconnects, 1);
        assert_eq!(stats.dropped, 5, "4 queued plus the one that did not fit");
    }

    #[tokio::test]
    async fn shutdown_closes_every_client() {
        let (ep, token, task) = endpoint().await;
        let c = attach(&ep, "c", &["/"], 4).await;
        token.cancel();
        task.await.unwrap();
        let mut out = Vec::new();
        assert_eq!(c.recv_batch(&mut out, 1).await, Err(CloseReason::Shutdown));
        assert!(matches!(
            c.publish("/x".into(), Value::None).await,
            Err(EndpointError::Shutdown)
        ));
    }
}
