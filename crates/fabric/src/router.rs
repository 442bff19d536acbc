//! The router actor: the single owner of the subscription table, the subscribers' outboxes, the
//! peer links, the mesh routes and the pending requests.
//!
//! Select priority: shutdown, then control, then data, so a subscription is live before any later
//! publication is routed. The router never waits on an outbox: every push applies the outbox's
//! overflow policy at once, so a slow subscriber or peer never slows anyone else.
//!
//! Each publication is delivered to the local subscribers whose prefixes match (never back to its
//! publisher) and forwarded to the neighbours [`Routes::next_hops`] names (never back to the peer
//! it came from) while its TTL lasts. Publications from peers carry their origin's sequence
//! number; one not above the last seen from that origin is a duplicate of a path that existed
//! only while routes were converging, and is discarded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yard_data::topic;
use yard_data::Value;

use crate::endpoint::{
    ClientId, ClientInfo, Control, Down, EndpointError, Inbound, Message, PeerInfo, PeerUp,
    Refusal, RequestError, Shared, SharedOutbox, Snapshot, MAX_CLIENT_PREFIXES,
};
use crate::guard::{ClientGuard, ReplyIds};
use crate::outbox::{CloseReason, Pushed};
use crate::peer::Link;
use crate::routing::{Advert, NodeIdx, Routes, REPLY_ROOT};
use crate::status::{self, StatusCode};
use crate::subs::SubscriptionTable;
use crate::wire::Frame;

/// How often at most an overflowing peer is reported on the errors topic.
const OVERFLOW_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How long changes to this endpoint's advert are gathered before it is flooded: a burst of
/// subscriptions or link changes costs one advert per neighbour, not one per change.
const ADVERT_DELAY: Duration = Duration::from_millis(10);
/// How long a reply waits for a route to its requester, and how many may wait.
const PARK_TIME: Duration = Duration::from_secs(5);
const PARK_MAX: usize = 1024;
/// How long shutdown waits for peer connections to say goodbye.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

pub(crate) fn spawn(
    shared: Arc<Shared>,
    control: mpsc::Receiver<Control>,
    data: mpsc::Receiver<Inbound>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // Versions and sequence numbers start at the clock, so a restarted endpoint with the same
    // id is newer than everything it sent before.
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let routes = Routes::new(&shared.id, start);
    let reply_prefix = crate::routing::reply_prefix(&shared.id);
    let batch = shared.config.batch.max(1);
    let router = Router {
        me: routes.me(),
        routes,
        reply_prefix,
        shared,
        table: SubscriptionTable::new(),
        clients: HashMap::new(),
        recipients: Vec::new(),
        links: HashMap::new(),
        conns: HashMap::new(),
        dialers: HashMap::new(),
        last_seq: HashMap::new(),
        next_seq: start,
        hops: Vec::new(),
        pending: HashMap::new(),
        reply_ids: ReplyIds::default(),
        pending_swept_at: 0,
        advert_due: None,
        parked: std::collections::VecDeque::new(),
    };
    tokio::spawn(router.run(control, data, batch, shutdown))
}

struct Attached {
    name: String,
    outbox: SharedOutbox,
    /// Set for clients acting for an outside principal (see [`crate::guard`]).
    guard: Option<Arc<ClientGuard>>,
}

struct LinkState {
    conn: u64,
    id: Arc<str>,
    listen: String,
    remote: SocketAddr,
    dialed: Option<String>,
    link: Arc<Link>,
    since: Instant,
    last_report: Option<Instant>,
    unreported_drops: u64,
}

impl LinkState {
    fn matches_addr(&self, addr: &str) -> bool {
        self.dialed.as_deref() == Some(addr)
            || self.remote.to_string() == addr
            || (!self.listen.is_empty() && self.listen == addr)
    }
}

struct Dialer {
    cancel: CancellationToken,
    last_error: Option<String>,
}

struct Router {
    shared: Arc<Shared>,
    me: NodeIdx,
    reply_prefix: String,
    table: SubscriptionTable<ClientId>,
    clients: HashMap<ClientId, Attached>,
    /// Reused buffer of one message's local recipients.
    recipients: Vec<ClientId>,
    routes: Routes,
    links: HashMap<NodeIdx, LinkState>,
    conns: HashMap<u64, NodeIdx>,
    dialers: HashMap<String, Dialer>,
    last_seq: HashMap<NodeIdx, u64>,
    next_seq: u64,
    /// Reused buffer of one message's next hops.
    hops: Vec<NodeIdx>,
    pending: HashMap<u64, oneshot::Sender<Arc<Message>>>,
    reply_ids: ReplyIds,
    pending_swept_at: usize,
    /// When this endpoint's changed advert goes out (changes within the delay are coalesced).
    advert_due: Option<tokio::time::Instant>,
    /// Replies waiting for a route to their requester.
    parked: std::collections::VecDeque<(Instant, Arc<Message>, NodeIdx)>,
}

impl Router {
    async fn run(
        mut self,
        mut control: mpsc::Receiver<Control>,
        mut data: mpsc::Receiver<Inbound>,
        batch: usize,
        shutdown: CancellationToken,
    ) {
        let mut buf = Vec::with_capacity(batch);
        loop {
            let due = self.advert_due;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(c) = control.recv() => self.control(c),
                _ = async { tokio::time::sleep_until(due.expect("guarded")).await }, if due.is_some() => {
                    self.advert_due = None;
                    self.flood(&self.routes.own_advert(), None);
                }
                n = data.recv_many(&mut buf, batch) => {
                    if n == 0 {
                        break;
                    }
                    for item in buf.drain(..) {
                        self.inbound(item);
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
        for d in self.dialers.values() {
            d.cancel.cancel();
        }
        for (_, l) in self.links.drain() {
            l.link.close(CloseReason::Shutdown);
        }
        for (_, c) in self.clients.drain() {
            c.outbox.close(CloseReason::Shutdown);
        }
        self.publish_gauges();
        drop(control);
        drop(data);
        self.shared.tasks.close();
        if tokio::time::timeout(GOODBYE_GRACE, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::debug!("peer connections did not finish within {GOODBYE_GRACE:?}");
        }
    }

    /// Records whether a local client wants store events, before a subscription is confirmed,
    /// so that no event is skipped once a subscriber has its answer.
    fn note_interest(&self) {
        let mut who = Vec::new();
        self.table
            .matches(yard_data::topic::STORE_EVENTS, None, &mut who);
        self.shared
            .store_events_wanted
            .store(!who.is_empty(), Ordering::Release);
    }

    fn publish_gauges(&self) {
        self.note_interest();
        let c = &self.shared.counters;
        c.clients
            .store(self.clients.len() as u64, Ordering::Relaxed);
        c.subscriptions
            .store(self.table.len() as u64, Ordering::Relaxed);
        c.peers.store(self.links.len() as u64, Ordering::Relaxed);
    }

    // ---- data ----------------------------------------------------------------------------

    fn inbound(&mut self, item: Inbound) {
        match item {
            Inbound::Local(mut msg) => {
                self.stamp(&mut msg);
                self.route(Arc::new(msg), self.me, None);
            }
            Inbound::Remote { conn, msgs } => {
                let from = self.conns.get(&conn).copied();
                self.shared
                    .counters
                    .from_peers
                    .fetch_add(msgs.len() as u64, Ordering::Relaxed);
                let mut last: Option<(Arc<str>, NodeIdx)> = None;
                for msg in msgs {
                    let origin = match &last {
                        Some((name, idx)) if Arc::ptr_eq(name, &msg.origin) => *idx,
                        _ => {
                            let idx = self.routes.intern(&msg.origin);
                            last = Some((msg.origin.clone(), idx));
                            idx
                        }
                    };
                    if origin == self.me {
                        self.shared
                            .counters
                            .duplicates
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    // Replies may wait for a route (see `park`) and so overtake nothing; they
                    // stay out of the per-origin order, and a duplicate reply finds no pending
                    // request.
                    if !msg.topic.starts_with(REPLY_ROOT) {
                        let seen = self.last_seq.entry(origin).or_insert(0);
                        if msg.seq <= *seen {
                            self.shared
                                .counters
                                .duplicates
                                .fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        *seen = msg.seq;
                    }
                    self.route(Arc::new(msg), origin, from);
                }
            }
        }
    }

    /// Makes a local publication this endpoint's: origin, next sequence number, full TTL.
    fn stamp(&mut self, msg: &mut Message) {
        self.next_seq += 1;
        msg.seq = self.next_seq;
        msg.origin = self.shared.id.clone();
        msg.ttl = self.shared.config.ttl;
    }

    fn route(&mut self, msg: Arc<Message>, origin: NodeIdx, from: Option<NodeIdx>) {
        self.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        if msg.topic.starts_with(REPLY_ROOT) {
            if let Some(id) = msg.topic.strip_prefix(self.reply_prefix.as_str()) {
                // A failure answers the same request.
                let id = id
                    .strip_suffix(crate::routing::FAILURE_SUFFIX)
                    .unwrap_or(id);
                if let Some(tx) = id.parse().ok().and_then(|id| self.pending.remove(&id)) {
                    let _ = tx.send(msg);
                }
                return;
            }
            if self.forward(&msg, origin, from) == 0 && msg.ttl > 0 {
                self.park(msg, origin);
            }
            return;
        }
        if msg.topic.starts_with(topic::LOCAL) {
            // Local system events never leave the endpoint, nor enter it from a peer.
            if origin == self.me {
                self.deliver_local(&msg);
            }
            return;
        }
        self.deliver_local(&msg);
        self.forward(&msg, origin, from);
    }

    /// Keeps a reply that has no route yet: right after a link comes up, the responder's
    /// endpoint may know the request's path before it knows the way back. Parked replies are
    /// retried whenever the routes change and dropped after [`PARK_TIME`]; at most
    /// [`PARK_MAX`] wait (the oldest goes first).
    fn park(&mut self, msg: Arc<Message>, origin: NodeIdx) {
        if self.parked.len() >= PARK_MAX {
            self.parked.pop_front();
        }
        self.parked.push_back((Instant::now(), msg, origin));
    }

    fn retry_parked(&mut self) {
        let parked = std::mem::take(&mut self.parked);
        for (since, msg, origin) in parked {
            if since.elapsed() < PARK_TIME && self.forward(&msg, origin, None) == 0 {
                self.parked.push_back((since, msg, origin));
            }
        }
    }

    /// Queues `msg` to every matching local subscriber; returns how many matched.
    fn deliver_local(&mut self, msg: &Arc<Message>) -> usize {
        self.recipients.clear();
        let except = (msg.sender != 0).then_some(msg.sender);
        self.table.matches(&msg.topic, except, &mut self.recipients);
        let mut matched = self.recipients.len();
        let mut delivered = 0;
        let mut dropped = 0;
        for i in 0..self.recipients.len() {
            let id = self.recipients[i];
            let Some(client) = self.clients.get(&id) else {
                continue;
            };
            if let Some(g) = &client.guard {
                if !g.receives(&msg.topic) {
                    matched -= 1;
                    self.shared
                        .counters
                        .withheld
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some(r) = &msg.reply_to {
                    g.note_reply(r);
                }
            }
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
        matched
    }

    /// Queues `msg` to the neighbours on its origin's tree that lead to subscribers; returns how
    /// many there were.
    fn forward(&mut self, msg: &Arc<Message>, origin: NodeIdx, from: Option<NodeIdx>) -> usize {
        self.hops.clear();
        self.routes
            .next_hops(origin, &msg.topic, from, &mut self.hops);
        if self.hops.is_empty() {
            return 0;
        }
        if msg.ttl == 0 {
            self.shared
                .counters
                .ttl_expired
                .fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        let mut overflowed = Vec::new();
        let mut reports = Vec::new();
        let mut forwarded = 0;
        let mut dropped = 0;
        for i in 0..self.hops.len() {
            let hop = self.hops[i];
            let Some(l) = self.links.get_mut(&hop) else {
                continue;
            };
            let lost = match l.link.data.push(msg.clone()) {
                Pushed::Queued => {
                    forwarded += 1;
                    0
                }
                Pushed::DroppedOldest => {
                    forwarded += 1;
                    1
                }
                Pushed::DroppedNewest => 1,
                Pushed::Disconnected => {
                    overflowed.push(l.conn);
                    l.link.data.drops()
                }
                Pushed::Closed => 0,
            };
            if lost > 0 {
                dropped += lost;
                l.unreported_drops += lost;
                let due = l
                    .last_report
                    .is_none_or(|t| t.elapsed() >= OVERFLOW_REPORT_INTERVAL);
                if due {
                    l.last_report = Some(Instant::now());
                    reports.push((l.id.clone(), l.remote, l.unreported_drops));
                    l.unreported_drops = 0;
                }
            }
        }
        let c = &self.shared.counters;
        c.forwarded.fetch_add(forwarded, Ordering::Relaxed);
        c.peer_dropped.fetch_add(dropped, Ordering::Relaxed);
        let (capacity, policy) = (
            self.shared.config.peer_queue,
            self.shared.config.peer_overflow_policy,
        );
        for (id, addr, n) in reports {
            let message = format!(
                "outbound queue to peer {id} is full ({capacity} messages, policy {policy}): {n} messages dropped"
            );
            tracing::warn!("{message}");
            self.emit_error("backpressure_overflow", Some(&id), Some(addr), &message);
        }
        for conn in overflowed {
            self.link_down(
                conn,
                Down::Lost("its outbound queue overflowed (backpressure_overflow)".into()),
            );
        }
        forwarded as usize
    }

    /// Publishes a system event to local subscribers only.
    fn emit(&mut self, topic: &str, value: Value) {
        let mut msg = Message::new(topic.to_string(), value, 0);
        msg.origin = self.shared.id.clone();
        self.deliver_local(&Arc::new(msg));
    }

    fn info(&self, id: Option<&str>, addr: Option<SocketAddr>) -> Value {
        status::endpoint_info(id, addr)
    }

    fn emit_status(&mut self, code: StatusCode, node: NodeIdx, detail: Option<&str>) {
        let name = self.routes.name(node).clone();
        let addr = self.links.get(&node).map(|l| l.remote);
        let message = match detail {
            Some(d) => format!("{} ({d})", code.message()),
            None => code.message().to_string(),
        };
        tracing::info!(peer = %name, "{}: {message}", code.name());
        let v = status::status(code, self.info(Some(&name), addr), &message);
        self.emit(topic::STATUSES, v);
    }

    fn emit_error(
        &mut self,
        code: &str,
        id: Option<&str>,
        addr: Option<SocketAddr>,
        message: &str,
    ) {
        let v = status::error(code, self.info(id, addr), message);
        self.emit(topic::ERRORS, v);
    }

    // ---- control -------------------------------------------------------------------------

    fn control(&mut self, c: Control) {
        match c {
            Control::Attach {
                id,
                name,
                prefixes,
                outbox,
                guard,
                reply,
            } => {
                self.table.subscribe(id, &prefixes);
                self.clients.insert(
                    id,
                    Attached {
                        name,
                        outbox,
                        guard,
                    },
                );
                self.advertise_local();
                self.note_interest();
                let _ = reply.send(());
            }
            Control::Subscribe {
                id,
                prefixes,
                reply,
            } => {
                let would = self.table.count_with(id, &prefixes);
                if would > MAX_CLIENT_PREFIXES {
                    let _ = reply.send(Err(EndpointError::TooManySubscriptions {
                        would,
                        max: MAX_CLIENT_PREFIXES,
                    }));
                    return;
                }
                if self.clients.contains_key(&id) {
                    self.table.subscribe(id, &prefixes);
                    self.advertise_local();
                    self.note_interest();
                }
                let _ = reply.send(Ok(()));
            }
            Control::Unsubscribe {
                id,
                prefixes,
                reply,
            } => {
                self.table.unsubscribe(id, &prefixes);
                self.advertise_local();
                let _ = reply.send(());
            }
            Control::Detach { id } => self.detach(id),
            Control::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Control::Request { msg, answer, reply } => self.request(msg, answer, reply),
            Control::CancelRequest { id } => {
                self.pending.remove(&id);
            }
            Control::PeerUp { up, reply } => self.peer_up(up, reply),
            Control::PeerDown { conn, why } => self.link_down(conn, why),
            Control::PeerAdvert { conn, advert } => self.advert(conn, advert),
            Control::AddDialer {
                addr,
                cancel,
                reply,
            } => {
                let added = !self.dialers.contains_key(&addr);
                if added {
                    self.dialers.insert(
                        addr,
                        Dialer {
                            cancel,
                            last_error: None,
                        },
                    );
                }
                let _ = reply.send(added);
            }
            Control::DialerGone { addr } => {
                // Only the dialer that ended: a newer one for the same address has a live token.
                if self
                    .dialers
                    .get(&addr)
                    .is_some_and(|d| d.cancel.is_cancelled())
                {
                    self.dialers.remove(&addr);
                }
            }
            Control::DialFailed {
                addr,
                error,
                code,
                report,
            } => {
                if let Some(d) = self.dialers.get_mut(&addr) {
                    d.last_error = Some(error.clone());
                }
                if report {
                    let sock = addr.parse().ok();
                    self.emit_error(code, None, sock, &format!("{addr}: {error}"));
                }
            }
            Control::Unpeer { addr, reply } => {
                let mut found = false;
                if let Some(d) = self.dialers.remove(&addr) {
                    d.cancel.cancel();
                    found = true;
                }
                let conns: Vec<u64> = self
                    .links
                    .values()
                    .filter(|l| l.matches_addr(&addr))
                    .map(|l| l.conn)
                    .collect();
                for conn in conns {
                    found = true;
                    if let Some(idx) = self.conns.get(&conn) {
                        if let Some(l) = self.links.get(idx) {
                            l.link.close(CloseReason::Unpeered);
                        }
                    }
                    self.link_down(conn, Down::Local);
                }
                let _ = reply.send(found);
            }
            Control::Error {
                code,
                id,
                addr,
                message,
            } => self.emit_error(code, id.as_deref(), addr, &message),
        }
        self.publish_gauges();
    }

    fn detach(&mut self, id: ClientId) {
        self.table.remove(id);
        if self.clients.remove(&id).is_some() {
            self.advertise_local();
        }
        self.publish_gauges();
    }

    fn snapshot(&self) -> Snapshot {
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
        let mut peers: Vec<PeerInfo> = self
            .links
            .values()
            .map(|l| PeerInfo {
                id: l.id.to_string(),
                address: l.remote.to_string(),
                direction: if l.dialed.is_some() {
                    "outbound"
                } else {
                    "inbound"
                },
                state: "connected",
                listen: l.listen.clone(),
                queue_depth: l.link.data.depth(),
                queue_capacity: l.link.data.capacity(),
                policy: l.link.data.policy(),
                drops: l.link.data.drops(),
                sent: l.link.sent.load(Ordering::Relaxed),
                received: l.link.received.load(Ordering::Relaxed),
                connected_secs: l.since.elapsed().as_secs(),
                last_error: None,
            })
            .collect();
        for (addr, d) in &self.dialers {
            if self
                .links
                .values()
                .any(|l| l.dialed.as_deref() == Some(addr))
            {
                continue;
            }
            peers.push(PeerInfo {
                id: String::new(),
                address: addr.clone(),
                direction: "outbound",
                state: "connecting",
                listen: addr.clone(),
                queue_depth: 0,
                queue_capacity: self.shared.config.peer_queue,
                policy: self.shared.config.peer_overflow_policy,
                drops: 0,
                sent: 0,
                received: 0,
                connected_secs: 0,
                last_error: d.last_error.clone(),
            });
        }
        peers.sort_by(|a, b| (a.state, &a.address).cmp(&(b.state, &b.address)));
        let mut reachable: Vec<String> = self
            .routes
            .reachable()
            .map(|n| self.routes.name(n).to_string())
            .collect();
        reachable.sort();
        let mut known: Vec<String> = self
            .routes
            .reachable()
            .filter(|&n| self.routes.advertised(n))
            .map(|n| self.routes.name(n).to_string())
            .collect();
        known.sort();
        Snapshot {
            clients,
            peers,
            reachable,
            known,
        }
    }

    fn request(
        &mut self,
        mut msg: Message,
        answer: oneshot::Sender<Arc<Message>>,
        reply: oneshot::Sender<Result<u64, RequestError>>,
    ) {
        self.shared
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let id = self.reply_ids.next_id();
        self.stamp(&mut msg);
        msg.reply_to = Some(format!("{}{id}", self.reply_prefix));
        let msg = Arc::new(msg);
        self.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        let reached = self.deliver_local(&msg) + self.forward(&msg, self.me, None);
        if reached == 0 {
            let _ = reply.send(Err(RequestError::NoResponder(msg.topic.clone())));
            return;
        }
        self.pending.insert(id, answer);
        if self.pending.len() > 1024 && self.pending.len() > 2 * self.pending_swept_at {
            self.pending.retain(|_, tx| !tx.is_closed());
            self.pending_swept_at = self.pending.len();
        }
        let _ = reply.send(Ok(id));
    }

    // ---- mesh ----------------------------------------------------------------------------

    /// Re-advertises this endpoint when its set of subscriptions changed.
    fn advertise_local(&mut self) {
        let prefixes: Vec<String> = self.table.prefixes().map(str::to_string).collect();
        if self
            .routes
            .set_local_prefixes(prefixes.iter().map(String::as_str))
        {
            self.schedule_advert();
            self.recompute();
        }
    }

    fn schedule_advert(&mut self) {
        if self.advert_due.is_none() {
            self.advert_due = Some(tokio::time::Instant::now() + ADVERT_DELAY);
        }
    }

    /// An advert, encoded once for every link it goes to.
    fn advert_frame(a: &Advert) -> Bytes {
        Bytes::from(
            Frame::Advert {
                origin: a.origin.clone(),
                version: a.version,
                prefixes: a.prefixes.clone(),
                peers: a.peers.clone(),
            }
            .encode(),
        )
    }

    /// Sends an advert to every neighbour but `except`.
    fn flood(&mut self, advert: &Advert, except: Option<NodeIdx>) {
        let frame = Self::advert_frame(advert);
        let mut overflowed = Vec::new();
        for (idx, l) in &self.links {
            if Some(*idx) == except {
                continue;
            }
            if l.link.ctrl.push(frame.clone()) == Pushed::Disconnected {
                overflowed.push(l.conn);
            }
        }
        for conn in overflowed {
            self.link_down(conn, Down::Lost("its control queue overflowed".into()));
        }
    }

    fn recompute(&mut self) {
        let change = self.routes.recompute();
        if !self.parked.is_empty() {
            self.retry_parked();
        }
        for n in change.discovered {
            self.emit_status(StatusCode::EndpointDiscovered, n, None);
        }
        for n in change.unreachable {
            self.last_seq.remove(&n);
            self.emit_status(StatusCode::EndpointUnreachable, n, None);
        }
    }

    fn advert(&mut self, conn: u64, advert: Advert) {
        let Some(&from) = self.conns.get(&conn) else {
            return;
        };
        if self.routes.receive(&advert) {
            self.flood(&advert, Some(from));
            self.recompute();
        }
    }

    fn update_linked(&self) {
        let ids = self.links.values().map(|l| l.id.to_string()).collect();
        self.shared.linked.send_replace(ids);
    }

    fn peer_up(&mut self, up: PeerUp, reply: oneshot::Sender<Result<(), Refusal>>) {
        let idx = self.routes.intern(&up.id);
        let me = self.shared.id.to_string();
        if let Some(existing) = self.links.get(&idx) {
            // Both ends decide alike: keep the connection dialed by the smaller id; of two
            // dialed by the same end, the newer (the older one is dead on the dialer's side).
            let dialer = |outbound: bool| {
                if outbound {
                    me.as_str()
                } else {
                    up.id.as_str()
                }
            };
            let old = dialer(existing.dialed.is_some());
            let new = dialer(up.dialed.is_some());
            if new > old {
                let _ = reply.send(Err(Refusal::Redundant));
                return;
            }
            tracing::debug!(peer = %up.id, "replacing the link to a peer with a newer connection");
            let old = self.links.remove(&idx).expect("existing link");
            self.conns.remove(&old.conn);
            old.link.close(CloseReason::Detached);
            self.install(idx, up);
            let _ = reply.send(Ok(()));
            self.send_all_adverts(idx);
            return;
        }
        self.install(idx, up);
        let _ = reply.send(Ok(()));
        self.routes.set_link(idx, true);
        self.send_all_adverts(idx);
        self.schedule_advert();
        self.recompute();
        self.emit_status(StatusCode::PeerAdded, idx, None);
        self.update_linked();
    }

    fn install(&mut self, idx: NodeIdx, up: PeerUp) {
        self.conns.insert(up.conn, idx);
        self.links.insert(
            idx,
            LinkState {
                conn: up.conn,
                id: Arc::from(up.id.as_str()),
                listen: up.listen,
                remote: up.remote,
                dialed: up.dialed,
                link: up.link,
                since: Instant::now(),
                last_report: None,
                unreported_drops: 0,
            },
        );
    }

    fn send_all_adverts(&mut self, idx: NodeIdx) {
        let adverts = self.routes.all_adverts();
        if let Some(l) = self.links.get(&idx) {
            for a in &adverts {
                l.link.ctrl.push(Self::advert_frame(a));
            }
        }
    }

    fn link_down(&mut self, conn: u64, why: Down) {
        let Some(idx) = self.conns.remove(&conn) else {
            return;
        };
        let Some(l) = self.links.remove(&idx) else {
            return;
        };
        l.link.close(CloseReason::Detached);
        let (code, detail) = match &why {
            Down::Local => (StatusCode::PeerRemoved, None),
            Down::Lost(reason) => (StatusCode::PeerLost, Some(reason.clone())),
            Down::Bye { code, reason } => (
                StatusCode::PeerLost,
                Some(format!("the peer closed the link: {code}: {reason}")),
            ),
        };
        // The status names the address of the link that ended.
        self.links.insert(idx, l);
        self.emit_status(code, idx, detail.as_deref());
        self.links.remove(&idx);
        self.routes.set_link(idx, false);
        self.schedule_advert();
        self.recompute();
        self.update_linked();
        self.publish_gauges();
    }
}
