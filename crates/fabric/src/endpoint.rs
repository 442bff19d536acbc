//! The endpoint: handles to one router task (the private `router` module) that owns the subscription
//! table, every subscriber's outbox, every peer link and the mesh routes. Clients, gateways and
//! peer connections talk to it through two bounded channels:
//!
//! - **data** (capacity [`EndpointConfig::data_queue`] items): publications of local clients, one
//!   per item, and batches of at most [`PEER_BATCH`] publications read from one peer. A sender
//!   waits when it is full, so a fast publisher (local, or a peer through TCP) is slowed rather
//!   than anything being dropped on the way in.
//! - **control** (capacity [`EndpointConfig::control_queue`]): attach, (un)subscribe, detach,
//!   snapshots, requests, and peer events (link up/down, adverts). Callers wait for room, except
//!   a dropped [`Client`], which cannot wait: when its detach does not fit it raises a flag and
//!   the router sweeps closed outboxes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use yard_data::json::{self, JsonOptions};
use yard_data::topic::{self, TopicError};
use yard_data::Value;

use crate::outbox::{CloseReason, Outbox, OverflowPolicy};
use crate::peer::{self, Link};
use crate::routing::Advert;
use crate::transport::{PeerStream, SharedDialer};
use crate::wire;

pub type ClientId = u64;

/// The most publications one item of the data queue carries from a peer.
pub const PEER_BATCH: usize = 128;
/// The most topic prefixes one client holds: a subscription beyond them is refused
/// ([`EndpointError::TooManySubscriptions`]).
pub const MAX_CLIENT_PREFIXES: usize = 100_000;

/// Settings of one endpoint: its queues and its peering. Its `Debug` never shows the mesh key.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Items waiting for the router on the data queue.
    pub data_queue: usize,
    /// Control requests waiting for the router.
    pub control_queue: usize,
    /// The most data items the router takes per wake-up.
    pub batch: usize,
    /// Outbound queue of each peer, in publications.
    pub peer_queue: usize,
    /// What happens when a peer's outbound queue is full.
    pub peer_overflow_policy: OverflowPolicy,
    /// Hops a publication may take from its origin.
    pub ttl: u8,
    /// Time a new peer connection has to finish its handshake.
    pub handshake_timeout: Duration,
    /// Interval of keepalive pings on idle peer links.
    pub peer_ping: Duration,
    /// A peer that sends nothing for this long is lost.
    pub peer_timeout: Duration,
    /// First and longest wait between re-dials of a peer this endpoint dialed.
    pub redial_min: Duration,
    pub redial_max: Duration,
    /// The mesh key: peers prove they hold it on the handshake (it is never sent). `None` peers
    /// with nobody.
    pub mesh_key: Option<String>,
    /// The peering address sent to peers (informational).
    pub listen: String,
    /// The largest peering frame accepted, in bytes.
    pub max_frame: usize,
    /// Wraps the connections this endpoint dials (TLS); `None` dials plain TCP.
    pub dialer: SharedDialer,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("data_queue", &self.data_queue)
            .field("control_queue", &self.control_queue)
            .field("batch", &self.batch)
            .field("peer_queue", &self.peer_queue)
            .field("peer_overflow_policy", &self.peer_overflow_policy)
            .field("ttl", &self.ttl)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("peer_ping", &self.peer_ping)
            .field("peer_timeout", &self.peer_timeout)
            .field("redial_min", &self.redial_min)
            .field("redial_max", &self.redial_max)
            .field("mesh_key", &self.mesh_key.as_ref().map(|_| "[redacted]"))
            .field("listen", &self.listen)
            .field("max_frame", &self.max_frame)
            .field("dialer", &self.dialer.as_ref().map(|_| "wrapped"))
            .finish()
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            data_queue: 8192,
            control_queue: 1024,
            batch: 1024,
            peer_queue: 8192,
            peer_overflow_policy: OverflowPolicy::DropOldest,
            ttl: 16,
            handshake_timeout: Duration::from_secs(5),
            peer_ping: Duration::from_secs(2),
            peer_timeout: Duration::from_secs(10),
            redial_min: Duration::from_millis(100),
            redial_max: Duration::from_secs(5),
            mesh_key: None,
            listen: String::new(),
            max_frame: wire::DEFAULT_MAX_FRAME,
            dialer: None,
        }
    }
}

/// Why the first attempt of a peering failed (the endpoint keeps re-dialing, with backoff, or
/// at the longest interval when the failure is `permanent`, such as another mesh key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct DialFailed {
    /// The error code a status report carries (`peer_unavailable`, `peer_refused`, …).
    pub code: &'static str,
    pub why: String,
    /// Retrying soon cannot help (wrong protocol, another mesh).
    pub permanent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("the endpoint has shut down")]
    Shutdown,
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("already peering with {0}")]
    AlreadyPeering(String),
    #[error("cannot unpeer from unknown peer {0}")]
    UnknownPeer(String),
    #[error("{0:?} is not an address such as 127.0.0.1:9997")]
    BadAddress(String),
    #[error("not a reply address: answer with the reply-to of a request you received")]
    NotARequest,
    #[error("{0:?} is not the reply address of a request this client received (or it was answered already, or expired): the answer is dropped")]
    NotGiven(String),
    #[error(transparent)]
    Json(#[from] yard_data::json::JsonError),
    /// The client's principal may not do this (its policy's reason).
    #[error("{0}")]
    NotAllowed(String),
    #[error(
        "a client holds at most {max} topic prefixes; this would make {would}: nothing was changed"
    )]
    TooManySubscriptions { would: usize, max: usize },
    #[error("{0:?} is not a failure code: 1 to 64 lowercase letters, digits and _.-")]
    BadFailureCode(String),
}

impl EndpointError {
    /// The Broker error-code name to report this as.
    pub fn code(&self) -> &'static str {
        match self {
            EndpointError::Shutdown => "shutting_down",
            EndpointError::Topic(e) => e.code(),
            EndpointError::AlreadyPeering(_) => "repeated_peering_handshake_request",
            EndpointError::UnknownPeer(_) => "peer_invalid",
            EndpointError::BadAddress(_) => "invalid_peering_request",
            EndpointError::NotARequest | EndpointError::NotGiven(_) => "invalid_message",
            EndpointError::Json(e) => e.code(),
            EndpointError::NotAllowed(_) => "forbidden",
            EndpointError::TooManySubscriptions { .. } => "too_many_subscriptions",
            EndpointError::BadFailureCode(_) => "invalid_message",
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no subscriber anywhere in the mesh for topic {0:?}: nobody can answer")]
    NoResponder(String),
    #[error("no reply to the request on {topic:?} within {timeout:?}")]
    Timeout { topic: String, timeout: Duration },
    #[error("the endpoint has shut down")]
    Shutdown,
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The responder answered with a failure: its code and context.
    #[error("the responder on {topic:?} failed: {code}: {context}")]
    Failed {
        topic: String,
        code: String,
        context: String,
    },
}

impl RequestError {
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::NoResponder(_) => "no_path_to_peer",
            RequestError::Timeout { .. } => "request_timeout",
            RequestError::Shutdown => "shutting_down",
            RequestError::Topic(e) => e.code(),
            RequestError::Failed { .. } => "request_failed",
        }
    }
}

/// A publication on its way through the endpoint.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub value: Value,
    /// The local client that published it; 0 when it came from a peer or the endpoint itself.
    pub sender: ClientId,
    /// The endpoint it was published at.
    pub origin: Arc<str>,
    /// The origin's sequence number (0 until the origin's router assigns it).
    pub seq: u64,
    /// Hops it may still take from here.
    pub ttl: u8,
    /// Where an answer goes, when this is a request.
    pub reply_to: Option<String>,
    /// The JSON v1 data-message text, encoded once for all WebSocket subscribers.
    json: OnceLock<(JsonOptions, Bytes)>,
}

impl Message {
    pub fn new(topic: String, value: Value, sender: ClientId) -> Message {
        Message {
            topic,
            value,
            sender,
            origin: Arc::from(""),
            seq: 0,
            ttl: 0,
            reply_to: None,
            json: OnceLock::new(),
        }
    }

    /// A publication received from a peer.
    pub(crate) fn remote(
        origin: Arc<str>,
        seq: u64,
        ttl: u8,
        topic: String,
        reply_to: String,
        value: Value,
    ) -> Message {
        Message {
            origin,
            seq,
            ttl,
            reply_to: (!reply_to.is_empty()).then_some(reply_to),
            ..Message::new(topic, value, 0)
        }
    }

    /// The message as JSON v1 text (with `reply-to` when it is a request); encoded on first use
    /// and shared after.
    pub fn json(&self, opts: JsonOptions) -> Bytes {
        let encode = || {
            Bytes::from(match &self.reply_to {
                None => json::encode_data_message(&self.topic, &self.value, opts),
                Some(to) => json::encode_request_message(&self.topic, to, &self.value, opts),
            })
        };
        let (cached_opts, bytes) = self.json.get_or_init(|| (opts, encode()));
        if *cached_opts == opts {
            bytes.clone()
        } else {
            encode()
        }
    }

    /// Appends the data frame that forwards this message one hop further (TTL decremented).
    pub(crate) fn encode_frame(&self, out: &mut Vec<u8>) {
        wire::encode_data(
            out,
            &self.origin,
            self.seq,
            self.ttl.saturating_sub(1),
            &self.topic,
            self.reply_to.as_deref().unwrap_or(""),
            &self.value,
        );
    }
}

/// Counters of the whole endpoint.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub overflow_disconnects: AtomicU64,
    pub clients: AtomicU64,
    pub subscriptions: AtomicU64,
    pub peers: AtomicU64,
    pub forwarded: AtomicU64,
    pub peer_dropped: AtomicU64,
    pub from_peers: AtomicU64,
    pub duplicates: AtomicU64,
    pub ttl_expired: AtomicU64,
    pub requests: AtomicU64,
    pub request_timeouts: AtomicU64,
    pub refused_peers: AtomicU64,
    pub forged_replies: AtomicU64,
    pub withheld: AtomicU64,
}

/// A copy of the endpoint's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Publications routed (local and from peers).
    pub published: u64,
    /// Copies queued to local subscribers.
    pub delivered: u64,
    /// Copies dropped by local subscribers' overflow policies.
    pub dropped: u64,
    /// Subscribers closed because their queue overflowed.
    pub overflow_disconnects: u64,
    /// Subscribers attached now.
    pub clients: u64,
    /// Distinct subscription prefixes now.
    pub subscriptions: u64,
    /// Peer links up now.
    pub peers: u64,
    /// Copies queued to peers.
    pub forwarded: u64,
    /// Copies dropped by peers' overflow policies.
    pub peer_dropped: u64,
    /// Publications received from peers.
    pub from_peers: u64,
    /// Publications from peers discarded as already seen (only while routes converge).
    pub duplicates: u64,
    /// Publications that wanted to travel further but had no hops left.
    pub ttl_expired: u64,
    /// Requests sent and requests that timed out.
    pub requests: u64,
    pub request_timeouts: u64,
    /// Peering handshakes refused because the peer could not prove the mesh key.
    pub refused_peers: u64,
    /// Answers a client sent to a reply address it was never given (dropped).
    pub forged_replies: u64,
    /// Reserved (`<$>`) messages kept from clients whose policy does not grant them.
    pub withheld: u64,
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

/// One peer: a live link, or an address this endpoint keeps dialing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's endpoint id (empty while it was never reached).
    pub id: String,
    /// The remote address of the connection, or the address being dialed.
    pub address: String,
    /// `outbound` when this endpoint dialed, `inbound` otherwise.
    pub direction: &'static str,
    /// `connected`, or `connecting` for a dialed address without a link.
    pub state: &'static str,
    /// The address the peer listens on for peers, as it said.
    pub listen: String,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub policy: OverflowPolicy,
    pub drops: u64,
    pub sent: u64,
    pub received: u64,
    /// Seconds since the link came up.
    pub connected_secs: u64,
    /// The last dial error, for addresses not connected.
    pub last_error: Option<String>,
}

/// The router's view of everything attached.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub clients: Vec<ClientInfo>,
    pub peers: Vec<PeerInfo>,
    /// Endpoints reachable through the mesh (peers included), by id.
    pub reachable: Vec<String>,
    /// The reachable endpoints whose advert (their subscriptions) has arrived: a peer is
    /// reachable as soon as its link is up, and known a moment later.
    pub known: Vec<String>,
}

pub(crate) type SharedOutbox = Arc<Outbox<Arc<Message>>>;

/// A peer connection that finished its handshake, as the router registers it.
pub(crate) struct PeerUp {
    pub conn: u64,
    pub id: String,
    /// The address the peer listens on (from its hello).
    pub listen: String,
    pub remote: SocketAddr,
    /// The address this endpoint dialed, for an outbound connection.
    pub dialed: Option<String>,
    pub link: Arc<Link>,
}

/// How a peer link ended.
#[derive(Debug, Clone)]
pub(crate) enum Down {
    /// The connection failed or timed out.
    Lost(String),
    /// The peer said goodbye.
    Bye { code: String, reason: String },
    /// This endpoint closed it (unpeer, replaced, shutdown).
    Local,
}

/// Why a link was not registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A link with this peer exists and wins the tie-break.
    Redundant,
}

pub(crate) enum Control {
    Attach {
        id: ClientId,
        name: String,
        prefixes: Vec<String>,
        outbox: SharedOutbox,
        guard: Option<Arc<crate::guard::ClientGuard>>,
        reply: oneshot::Sender<()>,
    },
    Subscribe {
        id: ClientId,
        prefixes: Vec<String>,
        reply: oneshot::Sender<Result<(), EndpointError>>,
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
    Request {
        msg: Message,
        answer: oneshot::Sender<Arc<Message>>,
        reply: oneshot::Sender<Result<u64, RequestError>>,
    },
    CancelRequest {
        id: u64,
    },
    PeerUp {
        up: PeerUp,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    PeerDown {
        conn: u64,
        why: Down,
    },
    PeerAdvert {
        conn: u64,
        advert: Advert,
    },
    AddDialer {
        addr: String,
        cancel: CancellationToken,
        reply: oneshot::Sender<bool>,
    },
    DialerGone {
        addr: String,
    },
    DialFailed {
        addr: String,
        error: String,
        code: &'static str,
        report: bool,
    },
    Unpeer {
        addr: String,
        reply: oneshot::Sender<bool>,
    },
    /// An error to publish on `<$>/local/data/errors` (from connections before they are links).
    Error {
        code: &'static str,
        id: Option<String>,
        addr: Option<SocketAddr>,
        message: String,
    },
}

/// What the data queue carries.
pub(crate) enum Inbound {
    Local(Message),
    Remote { conn: u64, msgs: Vec<Message> },
}

pub(crate) struct Shared {
    pub id: Arc<str>,
    pub config: EndpointConfig,
    pub started: Instant,
    pub counters: Counters,
    pub next_client: AtomicU64,
    pub next_conn: AtomicU64,
    /// Set by a dropped client whose detach did not fit the control queue.
    pub sweep_needed: AtomicBool,
    pub shutdown: CancellationToken,
    /// Peer connection and dialer tasks; the router waits for them briefly at shutdown.
    pub tasks: TaskTracker,
    /// Ids of the peers linked now (dialers wait on it after losing a tie-break).
    pub linked: watch::Sender<BTreeSet<String>>,
    /// Whether a local client subscribes to store events (stores skip building them if not).
    pub store_events_wanted: AtomicBool,
}

/// A handle to a running endpoint; cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) shared: Arc<Shared>,
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) data: mpsc::Sender<Inbound>,
}

impl Endpoint {
    /// Starts the router. It runs until `shutdown` is cancelled, then says goodbye to every peer
    /// and closes every outbox with [`CloseReason::Shutdown`]; the returned handle resolves after
    /// that.
    pub fn spawn(
        id: String,
        config: EndpointConfig,
        shutdown: CancellationToken,
    ) -> (Endpoint, JoinHandle<()>) {
        let (control_tx, control_rx) = mpsc::channel(config.control_queue.max(1));
        let (data_tx, data_rx) = mpsc::channel(config.data_queue.max(1));
        let shared = Arc::new(Shared {
            id: Arc::from(id.as_str()),
            config,
            started: Instant::now(),
            counters: Counters::default(),
            next_client: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            sweep_needed: AtomicBool::new(false),
            store_events_wanted: AtomicBool::new(false),
            shutdown: shutdown.clone(),
            tasks: TaskTracker::new(),
            linked: watch::Sender::new(BTreeSet::new()),
        });
        let task = crate::router::spawn(shared.clone(), control_rx, data_rx, shutdown);
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

    pub fn config(&self) -> &EndpointConfig {
        &self.shared.config
    }

    /// Whether a client of this endpoint subscribes to `<$>/local/data/store-events` now.
    pub fn store_events_wanted(&self) -> bool {
        self.shared.store_events_wanted.load(Ordering::Acquire)
    }

    pub fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            published: get(&c.published),
            delivered: get(&c.delivered),
            dropped: get(&c.dropped),
            overflow_disconnects: get(&c.overflow_disconnects),
            clients: get(&c.clients),
            subscriptions: get(&c.subscriptions),
            peers: get(&c.peers),
            forwarded: get(&c.forwarded),
            peer_dropped: get(&c.peer_dropped),
            from_peers: get(&c.from_peers),
            duplicates: get(&c.duplicates),
            refused_peers: get(&c.refused_peers),
            forged_replies: get(&c.forged_replies),
            withheld: get(&c.withheld),
            ttl_expired: get(&c.ttl_expired),
            requests: get(&c.requests),
            request_timeouts: get(&c.request_timeouts),
        }
    }

    pub(crate) async fn call<T>(
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
        self.attach_with(name, prefixes, queue_capacity, policy, None)
            .await
    }

    /// [`Endpoint::attach`] for a client acting for an outside principal: it receives reserved
    /// messages only under the `reserved` prefixes, and answers only requests delivered to it
    /// (see [`crate::guard`]).
    pub async fn attach_guarded(
        &self,
        name: impl Into<String>,
        prefixes: Vec<String>,
        queue_capacity: usize,
        policy: OverflowPolicy,
        reserved: Vec<String>,
    ) -> Result<Client, EndpointError> {
        let guard = Arc::new(crate::guard::ClientGuard::new(reserved));
        self.attach_with(name, prefixes, queue_capacity, policy, Some(guard))
            .await
    }

    async fn attach_with(
        &self,
        name: impl Into<String>,
        prefixes: Vec<String>,
        queue_capacity: usize,
        policy: OverflowPolicy,
        guard: Option<Arc<crate::guard::ClientGuard>>,
    ) -> Result<Client, EndpointError> {
        for p in &prefixes {
            topic::check_subscribe(p)?;
        }
        if prefixes.len() > MAX_CLIENT_PREFIXES {
            return Err(EndpointError::TooManySubscriptions {
                would: prefixes.len(),
                max: MAX_CLIENT_PREFIXES,
            });
        }
        let id = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(queue_capacity.max(1), policy));
        let client = Client {
            id,
            endpoint: self.clone(),
            outbox: outbox.clone(),
            guard: guard.clone(),
        };
        let name = name.into();
        self.call(|reply| Control::Attach {
            id,
            name,
            prefixes,
            outbox,
            guard,
            reply,
        })
        .await?;
        Ok(client)
    }

    /// What is attached and peered now.
    pub async fn snapshot(&self) -> Result<Snapshot, EndpointError> {
        self.call(|reply| Control::Snapshot { reply }).await
    }

    /// Publishes `value` on `topic` as a request and waits for the first answer. Fails at once
    /// when no subscriber anywhere in the mesh could answer, and after `timeout` when none did.
    pub async fn request(
        &self,
        topic: String,
        value: Value,
        timeout: Duration,
    ) -> Result<Arc<Message>, RequestError> {
        topic::check_publish(&topic)?;
        self.request_unchecked(topic, value, timeout).await
    }

    /// [`Endpoint::request`] on a reserved topic, for the system's own services (stores).
    pub async fn request_system(
        &self,
        topic: String,
        value: Value,
        timeout: Duration,
    ) -> Result<Arc<Message>, RequestError> {
        topic::check_system_publish(&topic)?;
        self.request_unchecked(topic, value, timeout).await
    }

    async fn request_unchecked(
        &self,
        topic: String,
        value: Value,
        timeout: Duration,
    ) -> Result<Arc<Message>, RequestError> {
        let (answer_tx, answer_rx) = oneshot::channel();
        let msg = Message::new(topic.clone(), value, 0);
        let id = self
            .call(|reply| Control::Request {
                msg,
                answer: answer_tx,
                reply,
            })
            .await
            .map_err(|_| RequestError::Shutdown)??;
        match tokio::time::timeout(timeout, answer_rx).await {
            Ok(Ok(answer)) if answer.topic.ends_with(crate::routing::FAILURE_SUFFIX) => {
                let (code, context) = match &answer.value {
                    Value::Vector(v) => match v.as_slice() {
                        [Value::String(c), Value::String(x)] => (c.clone(), x.clone()),
                        _ => (
                            "invalid_message".into(),
                            "a failure without its code".into(),
                        ),
                    },
                    _ => (
                        "invalid_message".into(),
                        "a failure without its code".into(),
                    ),
                };
                Err(RequestError::Failed {
                    topic,
                    code,
                    context,
                })
            }
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(RequestError::Shutdown),
            Err(_) => {
                // Best effort: the router also sweeps abandoned requests.
                let _ = self.control.try_send(Control::CancelRequest { id });
                self.shared
                    .counters
                    .request_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                Err(RequestError::Timeout { topic, timeout })
            }
        }
    }

    /// Peers with the endpoint at `addr` and keeps the link: re-dialed with capped exponential
    /// backoff whenever it drops, until [`Endpoint::unpeer`]. Waits for the first attempt and
    /// returns its outcome: the peer's id, or the error (the endpoint keeps trying).
    pub async fn peer(&self, addr: &str) -> Result<Result<String, DialFailed>, EndpointError> {
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(EndpointError::BadAddress(addr.to_string()));
        }
        let cancel = self.shared.shutdown.child_token();
        let added = self
            .call(|reply| Control::AddDialer {
                addr: addr.to_string(),
                cancel: cancel.clone(),
                reply,
            })
            .await?;
        if !added {
            return Err(EndpointError::AlreadyPeering(addr.to_string()));
        }
        let (first_tx, first_rx) = oneshot::channel();
        self.shared
            .tasks
            .spawn(peer::dial(self.clone(), addr.to_string(), cancel, first_tx));
        first_rx.await.map_err(|_| EndpointError::Shutdown)
    }

    /// Stops dialing `addr` and closes the link to it (matched by the dialed address, the
    /// connection's remote address or the address the peer listens on), saying goodbye.
    pub async fn unpeer(&self, addr: &str) -> Result<(), EndpointError> {
        let found = self
            .call(|reply| Control::Unpeer {
                addr: addr.to_string(),
                reply,
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(EndpointError::UnknownPeer(addr.to_string()))
        }
    }

    /// Accepts peering connections on a listener of their own until shutdown (a node's shared
    /// listener hands peering connections to [`Endpoint::accept_peer`] instead).
    pub fn serve_peers(&self, listener: tokio::net::TcpListener) {
        let ep = self.clone();
        let shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = listener.accept() => r,
                };
                match accepted {
                    Ok((stream, remote)) => ep.accept_peer(stream, remote),
                    Err(e) => {
                        // Out of descriptors and the like: wait rather than spin.
                        tracing::warn!("peering accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }

    /// Takes over an accepted TCP connection that speaks the peering protocol.
    pub fn accept_peer(&self, stream: TcpStream, remote: SocketAddr) {
        self.accept_peer_stream(PeerStream::Tcp(stream), remote)
    }

    /// [`Endpoint::accept_peer`] for a stream the listener already wrapped (TLS).
    pub fn accept_peer_stream(&self, stream: PeerStream, remote: SocketAddr) {
        let ep = self.clone();
        self.shared.tasks.spawn(async move {
            peer::accepted(ep, stream, remote).await;
        });
    }
}

/// A client's handle: publish, (un)subscribe, answer requests, and read what arrives. Dropping
/// it detaches.
pub struct Client {
    id: ClientId,
    endpoint: Endpoint,
    outbox: SharedOutbox,
    guard: Option<Arc<crate::guard::ClientGuard>>,
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
        self.send(Message::new(topic, value, self.id)).await
    }

    /// Publishes on a reserved topic (`<$>/…`): for the system's own services (stores), not for
    /// user data. Topics under `<$>/local/` reach this endpoint's subscribers only.
    pub async fn publish_system(&self, topic: String, value: Value) -> Result<(), EndpointError> {
        topic::check_system_publish(&topic)?;
        self.send(Message::new(topic, value, self.id)).await
    }

    async fn send(&self, msg: Message) -> Result<(), EndpointError> {
        self.endpoint
            .data
            .send(Inbound::Local(msg))
            .await
            .map_err(|_| EndpointError::Shutdown)
    }

    /// Answers a request this client received (a message with a reply address); the answer
    /// travels to the requester alone.
    pub async fn reply(&self, request: &Message, value: Value) -> Result<(), EndpointError> {
        let to = request
            .reply_to
            .as_deref()
            .ok_or(EndpointError::NotARequest)?;
        self.reply_to(to, value).await
    }

    /// Answers to a reply address (a request's `reply_to`).
    pub async fn reply_to(&self, reply_to: &str, value: Value) -> Result<(), EndpointError> {
        self.answerable(reply_to)?;
        self.send(Message::new(reply_to.to_string(), value, self.id))
            .await
    }

    /// Whether this client may answer `reply_to`: a request's reply address and, for a guarded
    /// client, one it was given and has not answered (taken now; a forgery is counted).
    fn answerable(&self, reply_to: &str) -> Result<(), EndpointError> {
        if !reply_to.starts_with(crate::routing::REPLY_ROOT)
            || reply_to.ends_with(crate::routing::FAILURE_SUFFIX)
        {
            return Err(EndpointError::NotARequest);
        }
        if let Some(g) = &self.guard {
            if !g.take_reply(reply_to) {
                self.endpoint
                    .shared
                    .counters
                    .forged_replies
                    .fetch_add(1, Ordering::Relaxed);
                return Err(EndpointError::NotGiven(reply_to.to_string()));
            }
        }
        Ok(())
    }

    /// Answers a request with a failure: the requester gets [`RequestError::Failed`] with
    /// `code` (1 to 64 of `a-z0-9_.-`) and `context`. The same rules as [`Client::reply_to`].
    pub async fn fail_to(
        &self,
        reply_to: &str,
        code: &str,
        context: &str,
    ) -> Result<(), EndpointError> {
        let code_ok = (1..=64).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if !code_ok {
            return Err(EndpointError::BadFailureCode(code.to_string()));
        }
        self.answerable(reply_to)?;
        let value = Value::Vector(vec![
            Value::String(code.to_string()),
            Value::String(context.to_string()),
        ]);
        let topic = format!("{reply_to}{}", crate::routing::FAILURE_SUFFIX);
        self.send(Message::new(topic, value, self.id)).await
    }

    /// Adds prefixes; they are live when this returns. Refused, changing nothing, beyond
    /// [`MAX_CLIENT_PREFIXES`].
    pub async fn subscribe(&self, prefixes: Vec<String>) -> Result<(), EndpointError> {
        for p in &prefixes {
            topic::check_subscribe(p)?;
        }
        let id = self.id;
        self.endpoint
            .call(|reply| Control::Subscribe {
                id,
                prefixes,
                reply,
            })
            .await?
    }

    pub async fn unsubscribe(&self, prefixes: Vec<String>) -> Result<(), EndpointError> {
        let id = self.id;
        self.endpoint
            .call(|reply| Control::Unsubscribe {
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

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_key_never_shows_in_debug_output() {
        let c = EndpointConfig {
            mesh_key: Some("0123456789abcdef-secret".into()),
            ..EndpointConfig::default()
        };
        let text = format!("{c:?}");
        assert!(
            !text.contains("secret") && text.contains("[redacted]"),
            "{text}"
        );
    }

    fn endpoint() -> (Endpoint, CancellationToken, JoinHandle<()>) {
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
        let (ep, token, task) = endpoint();
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
    async fn a_client_holds_a_bounded_number_of_prefixes_and_a_refused_change_changes_nothing() {
        let (ep, _token, _task) = endpoint();
        let many: Vec<String> = (0..MAX_CLIENT_PREFIXES)
            .map(|i| format!("/p/{i}"))
            .collect();
        let mut one_more = many.clone();
        one_more.push("/q".into());
        let e = ep
            .attach("x", one_more, 16, OverflowPolicy::Disconnect)
            .await
            .unwrap_err();
        assert!(
            matches!(e, EndpointError::TooManySubscriptions { would, .. } if would == MAX_CLIENT_PREFIXES + 1)
        );
        let a = attach(&ep, "a", &["/p/0"], 16).await;
        // The ones held count once; what would pass the bound is refused whole.
        a.subscribe(many.clone()).await.unwrap();
        let e = a
            .subscribe(vec!["/p/1".into(), "/q".into()])
            .await
            .unwrap_err();
        assert_eq!(e.code(), "too_many_subscriptions");
        assert!(e.to_string().contains("nothing was changed"), "{e}");
        let b = attach(&ep, "b", &[], 16).await;
        b.publish("/q".into(), Value::Count(1)).await.unwrap();
        b.publish("/p/7".into(), Value::Count(2)).await.unwrap();
        assert_eq!(next(&a).await.value, Value::Count(2), "/q was not added");
        a.unsubscribe(vec!["/p/0".into()]).await.unwrap();
        a.subscribe(vec!["/q".into()]).await.unwrap();
    }

    #[tokio::test]
    async fn reserved_topics_are_refused() {
        let (ep, _token, _task) = endpoint();
        let a = attach(&ep, "a", &[], 16).await;
        let err = a
            .publish("<$>/local/data/statuses".into(), Value::None)
            .await
            .unwrap_err();
        assert!(matches!(err, EndpointError::Topic(TopicError::Reserved(_))));
    }

    #[tokio::test]
    async fn unsubscribe_stops_delivery_and_detach_clears_state() {
        let (ep, _token, _task) = endpoint();
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
        let (ep, _token, _task) = endpoint();
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
        let (ep, token, task) = endpoint();
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
