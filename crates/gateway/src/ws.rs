//! The WebSocket JSON API at `/v1/messages/json`, compatible with Zeek Broker's JSON v1.
//!
//! A connection goes through:
//! 1. **Handshake.** The first data frame (text or binary) must be a JSON array of topic
//!    prefixes, within `handshake_timeout`. The client is attached with those subscriptions and
//!    only then gets `{"type":"ack","endpoint":"<endpoint-id>-websocket-<n>","version":…}`.
//!    A bad handshake gets an error frame and a 1008 close.
//! 2. **Messages.** A reader task decodes each client frame (text or binary) and publishes it;
//!    a bad message gets an error frame naming the input number and the problem, and the
//!    connection stays open. A writer task drains the client's outbox in batches, writes every
//!    message of a batch and flushes once.
//! 3. **End.** On overflow (policy `disconnect`) the client gets a `backpressure_overflow` error
//!    frame, then a 1008 close; at shutdown a 1001 close; after three ping intervals without any
//!    frame from the client a `connection_timeout` error and a 1011 close.
//!
//! Inbound backpressure: the reader waits when the endpoint's data queue is full, so TCP slows a
//! fast publisher down instead of anything being dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, FromRequestParts, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use yard_data::json::{self, ClientMessage};
use yard_fabric::{Client, CloseReason, EndpointError};

use crate::stores;
use crate::Gateway;
use yard_auth::{Caller, Principal};

/// The one path of the WebSocket API.
pub const PATH: &str = "/v1/messages/json";
/// How long a request waits for its answer when the client gives no timeout.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most messages written between two flushes.
const WRITE_BATCH: usize = 512;

type Shared = Arc<Gateway>;

fn error_frame(code: &str, context: &str) -> Message {
    Message::Text(Utf8Bytes::from(json::encode_error(code, context)))
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

/// Checks `X-Application-Name` as Zeek does: `[-/_.=:*@a-zA-Z0-9]+`.
fn application_name(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(v) = headers.get("x-application-name") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| "X-Application-Name is not ASCII".to_string())?;
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-/_.=:*@".contains(c));
    if ok {
        Ok(Some(s.to_string()))
    } else {
        Err(format!(
            "X-Application-Name {s:?} may contain only letters, digits and -/_.=:*@"
        ))
    }
}

/// A guard that counts one open connection.
struct Slot(Shared);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn take_slot(gw: &Shared) -> Option<Slot> {
    let max = gw.config.max_clients;
    let taken = gw
        .counters
        .open
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
    match taken {
        Ok(_) => Some(Slot(gw.clone())),
        Err(_) => {
            gw.counters
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn configure(ws: WebSocketUpgrade, gw: &Gateway) -> WebSocketUpgrade {
    // A browser that offers its credential as a subprotocol also offers `yard.v1`, and gets
    // that one back (a client that offers none gets none, as Broker's clients expect).
    ws.max_message_size(gw.config.max_message_size)
        .max_frame_size(gw.config.max_message_size)
        .protocols([yard_auth::http::WEBSOCKET_PROTOCOL])
}

/// The JSON settings of one connection: the endpoint's, unless the upgrade URL asks for
/// another timestamp precision (`?timestamp_precision=ns`). Anything else in the query is
/// refused, so that a misspelt option is not silently ignored.
fn connection_json(
    query: Option<&str>,
    base: yard_data::json::JsonOptions,
) -> Result<yard_data::json::JsonOptions, String> {
    let mut opts = base;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "timestamp_precision" => {
                opts.timestamp_precision = value.parse().map_err(|e| format!("{e}"))?;
            }
            _ => {
                return Err(format!(
                    "unknown query parameter {key:?} (the only one is timestamp_precision=ms|us|ns)"
                ))
            }
        }
    }
    Ok(opts)
}

/// `GET /v1/messages/json`.
pub async fn upgrade(
    State(gw): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let opts = match connection_json(query.as_deref(), gw.config.json) {
        Ok(o) => o,
        Err(why) => {
            return (StatusCode::BAD_REQUEST, format!("{PATH}: {why}\n")).into_response();
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                format!("{PATH} is a WebSocket endpoint: connect with a WebSocket client (ws://HOST:PORT{PATH})\n"),
            )
                .into_response()
        }
    };
    let Some(slot) = take_slot(&gw) else {
        let msg = format!(
            "too many WebSocket clients (max_clients = {}); try again later\n",
            gw.config.max_clients
        );
        return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    };
    let app = application_name(&headers);
    // The guard has checked Host, Origin and the credential of the upgrade request; the
    // caller's policy decides each subscription, publication and store operation.
    let remote = caller.remote;
    let principal = Arc::new(caller.principal);
    configure(ws, &gw)
        .on_upgrade(move |socket| {
            let tasks = gw.connections.clone();
            tasks.track_future(connection(socket, gw, slot, app, principal, remote, opts))
        })
        .into_response()
}

/// Every other path: 404, or Broker's `invalid_uri` for a WebSocket upgrade.
pub async fn fallback(State(gw): State<Shared>, req: axum::extract::Request) -> Response {
    let path = req.uri().path().to_string();
    let (mut parts, _body) = req.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &gw).await {
        Ok(ws) => ws
            .on_upgrade(|mut socket| async move {
                let _ = socket
                    .send(error_frame(
                        "invalid_uri",
                        &format!("Invalid URI - use {PATH}"),
                    ))
                    .await;
                let _ = socket
                    .send(close_frame(close_code::POLICY, "invalid URI"))
                    .await;
            })
            .into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            format!("no such path {path:?}; try {PATH} (WebSocket), /v1/status/json or /metrics\n"),
        )
            .into_response(),
    }
}

/// How a handshake failed.
enum HandshakeFailure {
    /// The client went away; there is no one to tell.
    Gone,
    /// The client is told with an error frame, then a 1008 close with `reason`.
    Refused {
        code: &'static str,
        reason: &'static str,
        context: String,
    },
}

/// Reads the handshake: the first data frame, within the timeout.
async fn handshake(
    socket: &mut WebSocket,
    timeout: Duration,
) -> Result<Vec<String>, HandshakeFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => {
                return Err(HandshakeFailure::Refused {
                    code: "connection_timeout",
                    reason: "handshake timeout",
                    context: format!(
                    "no handshake within {timeout:?}: send a JSON array of topic prefixes first"
                ),
                })
            }
            Ok(None) | Ok(Some(Err(_))) => return Err(HandshakeFailure::Gone),
            Ok(Some(Ok(m))) => m,
        };
        let bytes = match &frame {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => &b[..],
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return Err(HandshakeFailure::Gone),
        };
        return json::decode_handshake(bytes).map_err(|e| HandshakeFailure::Refused {
            code: e.code(),
            reason: "bad handshake",
            context: e.to_string(),
        });
    }
}

async fn connection(
    mut socket: WebSocket,
    gw: Shared,
    _slot: Slot,
    app: Result<Option<String>, String>,
    principal: Arc<Principal>,
    remote: std::net::SocketAddr,
    opts: yard_data::json::JsonOptions,
) {
    gw.counters.connections.fetch_add(1, Ordering::Relaxed);
    if let Err(why) = app {
        gw.counters
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        let _ = socket
            .send(error_frame("invalid_application_name", &why))
            .await;
        let _ = socket
            .send(close_frame(close_code::POLICY, "invalid application name"))
            .await;
        return;
    }
    let prefixes = match handshake(&mut socket, gw.config.handshake_timeout).await {
        Ok(p) => p,
        Err(failure) => {
            gw.counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            if let HandshakeFailure::Refused {
                code,
                reason,
                context,
            } = failure
            {
                let _ = socket.send(error_frame(code, &context)).await;
                let _ = socket.send(close_frame(close_code::POLICY, reason)).await;
            }
            return;
        }
    };
    if let Some(denied) = prefixes
        .iter()
        .find_map(|p| principal.may_subscribe(p).err())
    {
        gw.counters
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        audit_denied(&gw, &principal, remote, &denied.to_string());
        let _ = socket
            .send(error_frame("forbidden", &denied.to_string()))
            .await;
        let _ = socket
            .send(close_frame(close_code::POLICY, "subscription not allowed"))
            .await;
        return;
    }
    // A WebSocket client acts for someone outside: it receives control traffic (`<$>/ops/`,
    // `<$>/store/`, `<$>/reply/`) and local events only as its policy grants, and it may
    // answer only requests delivered to it (see yard_fabric::guard).
    let client = gw
        .endpoint
        .attach_guarded(
            "websocket",
            prefixes,
            gw.config.client_queue,
            gw.config.overflow_policy,
            principal.policy.reserved_grants(),
        )
        .await;
    let client = match client {
        Ok(c) => Arc::new(c),
        Err(e) => {
            let close = match e {
                EndpointError::Shutdown => close_code::AWAY,
                _ => close_code::POLICY,
            };
            let code = e.code();
            let _ = socket.send(error_frame(code, &e.to_string())).await;
            let _ = socket.send(close_frame(close, code)).await;
            return;
        }
    };
    let client_id = format!("{}-websocket-{}", gw.endpoint.id(), client.id());
    if socket
        .send(Message::Text(Utf8Bytes::from(json::encode_ack(
            &client_id,
            &gw.config.version,
        ))))
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(client = %client_id, "websocket client attached");

    let (sink, stream) = socket.split();
    // Errors, request answers and store results; bounded, so a client that pipelines faster
    // than it reads is slowed down rather than buffered without limit.
    let (errors_tx, errors_rx) = mpsc::channel::<Message>(1024);
    let done = CancellationToken::new();
    let last_heard = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let writer = tokio::spawn(write_loop(
        sink,
        client.clone(),
        gw.clone(),
        errors_rx,
        done.clone(),
        last_heard.clone(),
        started,
        opts,
    ));
    read_loop(
        stream,
        &client,
        &gw,
        errors_tx,
        &done,
        &last_heard,
        started,
        &principal,
        remote,
        opts,
    )
    .await;
    // The reader is done: the writer finishes what it has (errors included) and closes.
    let _ = writer.await;
    tracing::debug!(client = %client_id, "websocket client detached");
}

/// Audits a subscription the policy refused.
fn audit_denied(gw: &Gateway, principal: &Principal, remote: std::net::SocketAddr, why: &str) {
    gw.guard.record(
        &principal.to_string(),
        remote,
        format!("subscribe {PATH}"),
        "denied",
        None,
        why.to_string(),
    );
}

/// Answers a live subscription change: its confirmation, or an error frame (with the change's
/// `id` when it had one). A change without an `id` that fails is reported as any other bad
/// input (`Err`, the caller's error frame).
async fn confirm(
    errors: &mpsc::Sender<Message>,
    kind: &str,
    id: Option<serde_json::Value>,
    topics: &[String],
    change: Result<(), EndpointError>,
    input: u64,
) -> Result<(), EndpointError> {
    let frame = match (change, &id) {
        (Ok(()), _) => json::encode_subscription_change(kind, id.as_ref(), topics),
        (Err(EndpointError::Shutdown), _) => return Err(EndpointError::Shutdown),
        (Err(e), Some(id)) => {
            json::encode_request_error(id, e.code(), &format!("input #{input}: {e}"))
        }
        (Err(e), None) => return Err(e),
    };
    // A closed channel: the writer is gone, and the reader ends at its next frame.
    let _ = errors.send(Message::Text(Utf8Bytes::from(frame))).await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    client: &Client,
    gw: &Shared,
    errors: mpsc::Sender<Message>,
    done: &CancellationToken,
    last_heard: &AtomicU64,
    started: Instant,
    principal: &Principal,
    remote: std::net::SocketAddr,
    opts: yard_data::json::JsonOptions,
) {
    let mut input = 0u64;
    // Store operations under way, answered in order by one pump task (started on first use).
    let mut store_ops: Option<mpsc::Sender<stores::Answer>> = None;
    let mut to_pump = |answer: stores::Answer| {
        let tx = store_ops
            .get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel(4096);
                gw.connections.spawn(store_pump(rx, errors.clone(), opts));
                tx
            })
            .clone();
        async move { tx.send(answer).await.is_ok() }
    };
    // Store operations collected from frames that arrived together, not handed over yet.
    let mut run: Option<stores::Run> = None;
    loop {
        // Frames already received are taken without waiting; before waiting for more, the
        // collected run goes to its store.
        let frame = match futures_util::FutureExt::now_or_never(stream.next()) {
            Some(f) => f,
            None => {
                if let Some(r) = run.take() {
                    if !to_pump(r.hand_over().await).await {
                        return;
                    }
                }
                tokio::select! {
                    _ = done.cancelled() => return,
                    f = stream.next() => f,
                }
            }
        };
        last_heard.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        // The end of the connection (or anything but a message) first hands the collected
        // operations over: a client that writes and closes at once loses nothing.
        if !matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_)))) {
            if let Some(r) = run.take() {
                if !to_pump(r.hand_over().await).await {
                    return;
                }
            }
        }
        let frame = match frame {
            None => return,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                let too_long = e
                    .into_inner()
                    .downcast::<tokio_tungstenite::tungstenite::Error>()
                    .ok()
                    .and_then(|e| match *e {
                        tokio_tungstenite::tungstenite::Error::Capacity(c) => Some(c.to_string()),
                        _ => None,
                    });
                if let Some(why) = too_long {
                    gw.counters
                        .rejected_messages
                        .fetch_add(1, Ordering::Relaxed);
                    let context = format!(
                        "input #{}: {why}; the limit is max_message_size = {} bytes",
                        input + 1,
                        gw.config.max_message_size
                    );
                    let _ = errors
                        .send(error_frame("deserialization_failed", &context))
                        .await;
                    let _ = errors
                        .send(close_frame(close_code::SIZE, "message too big"))
                        .await;
                }
                return;
            }
        };
        let bytes = match &frame {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => &b[..],
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return,
        };
        input += 1;
        let outcome = match json::decode_client_message(bytes) {
            Err(e) => Err(EndpointError::from(e)),
            Ok(ClientMessage::Data(msg)) => match principal.may_publish(&msg.topic) {
                Ok(()) => client.publish(msg.topic, msg.value).await,
                Err(denied) => Err(EndpointError::NotAllowed(denied.to_string())),
            },
            Ok(ClientMessage::Reply { reply_to, value }) => client.reply_to(&reply_to, value).await,
            Ok(ClientMessage::ReplyError {
                reply_to,
                code,
                context,
            }) => client.fail_to(&reply_to, &code, &context).await,
            Ok(ClientMessage::Subscribe { id, topics }) => {
                let change = match topics.iter().find_map(|p| principal.may_subscribe(p).err()) {
                    Some(denied) => {
                        audit_denied(gw, principal, remote, &denied.to_string());
                        Err(EndpointError::NotAllowed(denied.to_string()))
                    }
                    None => client.subscribe(topics.clone()).await,
                };
                confirm(&errors, "subscribed", id, &topics, change, input).await
            }
            Ok(ClientMessage::Unsubscribe { id, topics }) => {
                let change = client.unsubscribe(topics.clone()).await;
                confirm(&errors, "unsubscribed", id, &topics, change, input).await
            }
            Ok(m @ (ClientMessage::Store(_) | ClientMessage::StoreFields(_))) => {
                let (id, parsed) = match m {
                    ClientMessage::Store(mut obj) => stores::parse_envelope(&mut obj),
                    ClientMessage::StoreFields(f) => stores::parse_fields(f),
                    _ => unreachable!("matched above"),
                };
                // The caller's policy decides each operation (reads and writes apart).
                let parsed = parsed.map(|(name, op)| {
                    let denied = principal.may_store(&name, op.changes()).err();
                    (name, op, denied)
                });
                let single: Option<(serde_json::Value, stores::Pending)> = match parsed {
                    Err(why) => {
                        let e = yard_store::StoreError::InvalidData(why.to_string());
                        Some((id, Box::pin(async move { stores::Outcome::Failed(e) })))
                    }
                    Ok((_, _, Some(denied))) => {
                        let e = yard_store::StoreError::NotAllowed(denied.to_string());
                        Some((id, Box::pin(async move { stores::Outcome::Failed(e) })))
                    }
                    Ok((name, op, None)) => {
                        // Joins the run on the same store, or ends it and starts another.
                        let left = match run.as_mut() {
                            Some(r) if r.name() == name => {
                                r.push(id, op).err().map(|b| (name, b.0, b.1))
                            }
                            _ => Some((name, id, op)),
                        };
                        match left {
                            None => None,
                            Some((name, id, op)) => {
                                if let Some(r) = run.take() {
                                    if !to_pump(r.hand_over().await).await {
                                        return;
                                    }
                                }
                                match stores::Run::start(&gw.stores, name, id, op) {
                                    Ok(r) => {
                                        run = Some(r);
                                        None
                                    }
                                    Err(back) => {
                                        let (name, id, op) = *back;
                                        Some((id, stores::start(&gw.stores, name, op)))
                                    }
                                }
                            }
                        }
                    }
                };
                let full = run.as_ref().is_some_and(|r| r.len() >= stores::MAX_RUN);
                if single.is_some() || full {
                    if let Some(r) = run.take() {
                        if !to_pump(r.hand_over().await).await {
                            return;
                        }
                    }
                }
                if let Some((id, pending)) = single {
                    if !to_pump(stores::Answer::One(id, pending)).await {
                        return;
                    }
                }
                Ok(())
            }
            Ok(ClientMessage::Request {
                id,
                topic,
                timeout,
                value,
            }) => {
                let timeout = timeout.map_or(DEFAULT_REQUEST_TIMEOUT, Duration::from_nanos);
                gw.connections.spawn(request(
                    gw.clone(),
                    errors.clone(),
                    id,
                    topic,
                    value,
                    timeout,
                    opts,
                ));
                Ok(())
            }
        };
        let rejected = match outcome {
            Ok(()) => None,
            Err(EndpointError::Shutdown) => return,
            Err(e) => Some((e.code(), e.to_string())),
        };
        match rejected {
            None => {
                gw.counters
                    .received_messages
                    .fetch_add(1, Ordering::Relaxed);
            }
            Some((code, why)) => {
                gw.counters
                    .rejected_messages
                    .fetch_add(1, Ordering::Relaxed);
                if errors
                    .send(error_frame(code, &format!("input #{input}: {why}")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Answers a client's store operations in the order it sent them.
async fn store_pump(
    mut ops: mpsc::Receiver<stores::Answer>,
    to_client: mpsc::Sender<Message>,
    opts: yard_data::json::JsonOptions,
) {
    // Once the client is gone, the operations it sent are still carried out (those not
    // attached here run when the pump reaches them); only their answers go nowhere.
    let mut gone = false;
    let mut send = async |id: &serde_json::Value, outcome: &stores::Outcome| {
        if !gone {
            let text = stores::encode_outcome(id, outcome, opts);
            gone = to_client
                .send(Message::Text(Utf8Bytes::from(text)))
                .await
                .is_err();
        }
    };
    while let Some(answer) = ops.recv().await {
        match answer {
            stores::Answer::One(id, pending) => {
                let outcome = pending.await;
                send(&id, &outcome).await;
            }
            stores::Answer::Many(ids, rx) => {
                for (id, outcome) in stores::finish_many(ids, rx).await {
                    send(&id, &outcome).await;
                }
            }
        }
    }
}

/// Carries out a client's request and queues the answer (or the error) to the client.
async fn request(
    gw: Shared,
    to_client: mpsc::Sender<Message>,
    id: serde_json::Value,
    topic: String,
    value: yard_data::Value,
    timeout: Duration,
    opts: yard_data::json::JsonOptions,
) {
    let text = match gw.endpoint.request(topic.clone(), value, timeout).await {
        Ok(answer) => json::encode_reply(&id, &topic, &answer.value, opts),
        Err(yard_fabric::RequestError::Failed { code, context, .. }) => {
            json::encode_request_failure(&id, &code, &context)
        }
        Err(e) => json::encode_request_error(&id, e.code(), &e.to_string()),
    };
    let _ = to_client.send(Message::Text(Utf8Bytes::from(text))).await;
}

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    client: Arc<Client>,
    gw: Shared,
    mut errors: mpsc::Receiver<Message>,
    done: CancellationToken,
    last_heard: Arc<AtomicU64>,
    started: Instant,
    opts: yard_data::json::JsonOptions,
) {
    let interval = gw.config.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let closing: Option<Message> = loop {
        tokio::select! {
            biased;
            _ = gw.shutdown.cancelled() => break Some(close_frame(close_code::AWAY, "endpoint shutting down")),
            e = errors.recv() => match e {
                // A close frame from the reader ends the connection after its error frame.
                Some(m @ Message::Close(_)) => break Some(m),
                Some(m) => {
                    // Answers come in bursts (pipelined store operations): one flush for all
                    // that are ready.
                    let mut next = Some(m);
                    let mut closing = None;
                    let mut failed = false;
                    let mut fed = 0;
                    while let Some(m) = next.take() {
                        if let Message::Close(_) = m {
                            closing = Some(m);
                            break;
                        }
                        if sink.feed(m).await.is_err() {
                            failed = true;
                            break;
                        }
                        fed += 1;
                        if fed < WRITE_BATCH {
                            next = errors.try_recv().ok();
                        }
                    }
                    if failed {
                        break None;
                    }
                    if closing.is_some() {
                        break closing;
                    }
                }
                // The reader has finished: the client went away.
                None => break None,
            },
            r = client.recv_batch(&mut batch, WRITE_BATCH) => match r {
                Ok(()) => {
                    let mut failed = false;
                    for m in batch.drain(..) {
                        let text = Utf8Bytes::try_from(m.json(opts)).expect("JSON text is UTF-8");
                        if sink.feed(Message::Text(text)).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break None;
                    }
                }
                Err(CloseReason::Overflow { capacity }) => {
                    let context = format!(
                        "outbound queue of {capacity} messages overflowed: this client reads too slowly; \
                         disconnecting (overflow policy disconnect; see client_queue and overflow_policy)"
                    );
                    let _ = sink.feed(error_frame("backpressure_overflow", &context)).await;
                    break Some(close_frame(close_code::POLICY, "backpressure overflow"));
                }
                Err(CloseReason::Shutdown) => break Some(close_frame(close_code::AWAY, "endpoint shutting down")),
                Err(CloseReason::Detached | CloseReason::Unpeered) => break None,
            },
            _ = ping.tick() => {
                let silent = started.elapsed().as_millis() as u64 - last_heard.load(Ordering::Relaxed);
                if silent > 3 * interval.as_millis() as u64 {
                    let context = format!("no frame from the client for {silent} ms (pings every {interval:?}); closing");
                    let _ = sink.feed(error_frame("connection_timeout", &context)).await;
                    break Some(close_frame(close_code::ERROR, "keepalive timeout"));
                }
                if sink.feed(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
        }
        if sink.flush().await.is_err() {
            break None;
        }
    };
    match closing {
        Some(close) => {
            let _ = sink.send(close).await;
        }
        // The client closed (or vanished): complete the closing handshake if it is still there.
        None => {
            let _ = sink.close().await;
        }
    }
    done.cancel();
}
