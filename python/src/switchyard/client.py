"""The asyncio client of an endpoint's WebSocket API: the one core both APIs run.

One :class:`Client` holds one WebSocket to one endpoint and multiplexes everything over it:
subscriptions, requests, responders and store operations. A reader task dispatches what the
server sends; a lost connection is redialled with backoff, and subscriptions and responders
are restored on the new one. Each subscription is told what may have been lost (a
:class:`Gap`), and calls in flight fail with :class:`ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from . import errors
from ._http import Http
from .errors import (
    BackpressureOverflow,
    ConfigurationError,
    ConnectFailed,
    ConnectionLost,
    InvalidTopic,
    RemoteFailure,
    RequestTimeout,
    SlowConsumer,
    SwitchyardError,
)
from .values import Event, _jstr, as_event, decode, encode, fields_json, format_timespan

if TYPE_CHECKING:
    from .stores import Store

log = logging.getLogger("switchyard")

PATH = "/v1/messages/json"
MAX_MESSAGE = 1 << 20
"""The server's default ``max_message_size``; larger frames are refused before sending."""

OnFull = Literal["raise", "drop_oldest", "drop_newest"]
State = Literal["connecting", "connected", "reconnecting", "closed"]


@dataclass(frozen=True, slots=True)
class Message:
    """A message received on a subscription."""

    topic: str
    value: Any
    reply_to: str | None = None
    """Set when the message is a request (answer it with :meth:`Client.reply`)."""

    @property
    def event(self) -> Event | None:
        """The Zeek event this message carries, if it is one."""
        return as_event(self.value)


@dataclass(frozen=True, slots=True)
class Gap:
    """The connection was down from ``since`` to ``until`` (``time.time()`` seconds):
    messages published meanwhile may not have reached this subscription."""

    since: float
    until: float
    reason: str


@dataclass(slots=True)
class SubscriptionStats:
    received: int = 0
    dropped: int = 0
    gaps: int = 0


def _jdumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str):
        raise InvalidTopic("a topic is a string")
    if "<$>" in topic:
        raise InvalidTopic(f"topic {topic!r}: <$> is reserved for the system")


def _data_message(topic: str, value: Any) -> str:
    _check_topic(topic)
    return f'{{"type":"data-message","topic":{_jstr(topic)},{fields_json(value)}}}'


def _timeout_text(seconds: float) -> str:
    return format_timespan(max(0, round(seconds * 1e9)))


class Subscription:
    """Messages on some topic prefixes, in order, from a bounded local queue.

    Iterate with ``async for`` or call :meth:`next`. When the queue (``maxsize``) is full,
    ``on_full`` decides: ``"raise"`` (default) drops the new message and raises
    :class:`SlowConsumer` from the next read, ``"drop_oldest"`` and ``"drop_newest"`` drop and
    count (``stats.dropped``). A reconnection puts a :class:`Gap` in the stream.
    """

    def __init__(
        self, client: Client, prefixes: tuple[str, ...], maxsize: int, on_full: OnFull
    ) -> None:
        self._client = client
        self.prefixes = prefixes
        self._queue: deque[Message | Gap] = deque()
        self._maxsize = maxsize
        self._on_full = on_full
        self._ready = asyncio.Event()
        self._unreported = 0
        self._error: BaseException | None = None
        self._closed = False
        self.stats = SubscriptionStats()

    def _matches(self, topic: str) -> bool:
        return any(topic.startswith(p) for p in self.prefixes)

    def _put(self, item: Message | Gap) -> None:
        if self._closed:
            return
        if isinstance(item, Gap):
            self.stats.gaps += 1
            self._queue.append(item)  # a gap is always kept: it is what says something is lost
        elif len(self._queue) >= self._maxsize:
            self.stats.dropped += 1
            if self._on_full == "drop_oldest":
                self._queue.popleft()
                self._queue.append(item)
            else:
                self._unreported += self._on_full == "raise"
        else:
            self._queue.append(item)
            self.stats.received += 1
        self._ready.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._ready.set()

    async def next(self, timeout: float | None = None) -> Message | Gap:
        """The next message (or gap); ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                if self._unreported:
                    n, self._unreported = self._unreported, 0
                    raise SlowConsumer(
                        f"{n} message(s) dropped: the subscription's queue of {self._maxsize} "
                        "was full (read faster, raise maxsize, or choose on_full)",
                        n,
                    )
                if self._queue:
                    return self._queue.popleft()
                if self._error is not None:
                    raise self._error
                if self._closed:
                    raise StopAsyncIteration
                self._ready.clear()
                await self._ready.wait()

    def __aiter__(self) -> AsyncIterator[Message | Gap]:
        return self

    async def __anext__(self) -> Message | Gap:
        return await self.next()

    @property
    def pending(self) -> int:
        """Messages received and not read yet."""
        return len(self._queue)

    async def close(self) -> None:
        """Unsubscribes (what is queued can still be read)."""
        if not self._closed:
            self._closed = True
            self._ready.set()
            await self._client._drop_subscription(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


Handler = Callable[[Message], Awaitable[Any]]


class Responder:
    """Serves requests on a topic prefix with a handler (see :meth:`Client.serve`)."""

    def __init__(
        self, client: Client, prefix: str, handler: Handler, concurrency: int, backlog: int
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._handler = handler
        self._slots = asyncio.Semaphore(concurrency)
        self._backlog = backlog
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.served = 0
        self.failed = 0
        self.refused = 0

    def _take(self, msg: Message) -> None:
        if self._waiting >= self._backlog:
            # Explicit backpressure: the requester hears at once, nothing waits unbounded.
            self.refused += 1
            self._client._spawn(
                self._client.reply_error(
                    msg, "overloaded", f"{self._backlog} requests already waiting"
                )
            )
            return
        self._waiting += 1
        task = asyncio.get_running_loop().create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Message) -> None:
        async with self._slots:
            self._waiting -= 1
            try:
                result = await self._handler(msg)
            except RemoteFailure as e:
                self.failed += 1
                await self._client.reply_error(msg, e.failure, e.context)
                return
            except Exception as e:
                self.failed += 1
                log.warning("responder %s: %s: %s", self.prefix, type(e).__name__, e)
                await self._client.reply_error(msg, "handler_error", f"{type(e).__name__}: {e}")
                return
            self.served += 1
            await self._client.reply(msg, result)

    async def close(self) -> None:
        """Stops serving; requests being handled still get their answers."""
        if not self._closed:
            self._closed = True
            await self._client._drop_responder(self)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> Responder:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


@dataclass(slots=True)
class ClientStats:
    connects: int = 0
    reconnects: int = 0
    published: int = 0
    server_errors: int = 0
    last_error: str | None = None
    frames_sent: int = 0


@dataclass(slots=True)
class _Conn:
    ws: ClientConnection
    endpoint: str
    closing_error: SwitchyardError | None = None
    reader: asyncio.Task[None] | None = None
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)


def _ws_url(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ConfigurationError(f"URL {url!r}: expected ws://, wss://, http:// or https://")
    if not parts.hostname:
        raise ConfigurationError(f"URL {url!r} has no host")
    path = parts.path if parts.path not in ("", "/") else PATH
    return urlunsplit((scheme, parts.netloc, path, "timestamp_precision=ns", ""))


def default_token() -> str | None:
    """``$YARD_TOKEN``, else the file ``$YARD_CREDENTIALS`` names, else none."""
    if tok := os.environ.get("YARD_TOKEN"):
        return tok.strip()
    path = os.environ.get("YARD_CREDENTIALS")
    if path:
        with open(path) as f:
            return f.read().strip()
    return None


def ssl_context(ca: str | None) -> ssl.SSLContext:
    """A TLS client context trusting ``ca`` (a PEM file), else the system's roots."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# Refusals that another attempt would only repeat (a PermissionError is also an OSError).
_PERMANENT = (errors.Unauthenticated, errors.Forbidden, ConfigurationError)


class Client:
    """A connection to one endpoint. Create with :func:`connect` (or ``async with Client(...)``).

    ``url`` is ``ws://HOST:PORT`` (or ``wss://``, ``HOST:PORT``); ``token`` the credential
    (default ``$YARD_TOKEN``); ``ca`` the root to check a ``wss://`` endpoint against;
    ``timeout`` the default for every call, in seconds; ``reconnect`` whether a lost connection
    is redialled (``max_reconnects`` times, ``None`` for ever; backoff 0.1 s to 5 s).
    """

    def __init__(
        self,
        url: str = "ws://127.0.0.1:9997",
        *,
        token: str | None = None,
        ca: str | None = None,
        name: str | None = None,
        timeout: float = 10.0,
        reconnect: bool = True,
        max_reconnects: int | None = None,
        connect_retries: int = 0,
    ) -> None:
        self.url = _ws_url(url)
        self._token = token if token is not None else default_token()
        self._ssl = ssl_context(ca) if self.url.startswith("wss:") else None
        self._ca = ca
        self._name = name
        self.timeout = timeout
        self._reconnect = reconnect
        self._max_reconnects = max_reconnects
        self._connect_retries = connect_retries
        self._conn: _Conn | None = None
        self._up = asyncio.Event()
        self._state: State = "connecting"
        self._prefixes: Counter[str] = Counter()
        self._subs: list[Subscription] = []
        self._responders: list[Responder] = []
        self._next_id = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._fatal: SwitchyardError | None = None
        self._http: Http | None = None
        self._state_callbacks: list[Callable[[State], None]] = []
        self.stats = ClientStats()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def endpoint(self) -> str | None:
        """The id the server gave this connection (its ack's ``endpoint``)."""
        return self._conn.endpoint if self._conn else None

    def on_state(self, callback: Callable[[State], None]) -> None:
        """Calls ``callback(state)`` on every change of :attr:`state`."""
        self._state_callbacks.append(callback)

    def _set_state(self, s: State) -> None:
        if s != self._state:
            self._state = s
            for cb in self._state_callbacks:
                cb(s)

    async def open(self) -> Client:
        """Connects (retrying ``connect_retries`` times) and starts the reader."""
        if self._conn is not None or self._supervisor is not None:
            return self
        delay = 0.1
        for attempt in range(self._connect_retries + 1):
            try:
                self._conn = await self._dial()
                break
            except _PERMANENT:
                raise
            except (ConnectFailed, OSError) as e:
                if attempt == self._connect_retries:
                    raise ConnectFailed(f"{self.url}: {e}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.stats.connects += 1
        self._up.set()
        self._set_state("connected")
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        return self

    async def close(self) -> None:
        """Closes the connection; subscriptions end, calls in flight fail."""
        if self._state == "closed":
            return
        self._set_state("closed")
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.ws.close()
            if conn.reader:
                with contextlib.suppress(BaseException):
                    await conn.reader
            self._fail_pending(conn, ConnectionLost("the client was closed"))
        for t in list(self._background):
            t.cancel()
        for s in self._subs:
            s._closed = True
            s._ready.set()

    async def __aenter__(self) -> Client:
        return await self.open()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _dial(self) -> _Conn:
        headers = {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._name:
            headers["X-Application-Name"] = self._name
        try:
            ws = await websockets.connect(
                self.url,
                additional_headers=headers,
                ssl=self._ssl,
                max_size=MAX_MESSAGE,
                open_timeout=self.timeout,
                ping_interval=5,
                ping_timeout=15,
                max_queue=None,
            )
        except InvalidStatus as e:
            body = e.response.body.decode(errors="replace").strip() if e.response.body else ""
            with contextlib.suppress(ValueError, AttributeError):
                body = str(json.loads(body).get("context", body))
            status = e.response.status_code
            if status == 401:
                raise errors.Unauthenticated(
                    body or "credential refused", http_status=401
                ) from None
            if status == 403:
                raise errors.Forbidden(body, http_status=403) from None
            if status == 400:
                raise ConfigurationError(body, http_status=400) from None
            raise ConnectFailed(f"HTTP {status}: {body}", http_status=status) from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as e:
            raise ConnectFailed(f"{self.url}: {e}") from None
        try:
            await ws.send(_jdumps(sorted(self._prefixes)))
            async with asyncio.timeout(self.timeout):
                first = json.loads(await ws.recv())
        except (ConnectionClosed, TimeoutError, ValueError) as e:
            await ws.close()
            raise ConnectFailed(f"{self.url}: no ack: {e}") from None
        if first.get("type") != "ack":
            await ws.close()
            raise errors.from_server(first.get("code", "?"), first.get("context", ""))
        conn = _Conn(ws, str(first.get("endpoint", "")))
        conn.reader = asyncio.get_running_loop().create_task(self._read(conn))
        return conn

    async def _supervise(self) -> None:
        """Waits for the connection to end and redials it."""
        while True:
            conn = self._conn
            assert conn is not None and conn.reader is not None
            with contextlib.suppress(Exception):
                await conn.reader
            lost_at = time.time()
            reason = conn.closing_error or ConnectionLost(
                f"connection closed ({conn.ws.close_code}: {conn.ws.close_reason or 'no reason'})"
            )
            self._fail_pending(conn, reason)
            self._up.clear()
            if not self._reconnect:
                self._give_up(reason)
                return
            self._set_state("reconnecting")
            log.info("switchyard: connection to %s lost (%s); reconnecting", self.url, reason)
            delay, attempts = 0.1, 0
            while True:
                try:
                    self._conn = await self._dial()
                    break
                except _PERMANENT as e:
                    self._give_up(e)
                    return
                except (ConnectFailed, OSError):
                    attempts += 1
                    if self._max_reconnects is not None and attempts > self._max_reconnects:
                        self._give_up(
                            ConnectFailed(f"gave up after {attempts - 1} reconnection attempts")
                        )
                        return
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 5.0)
            self.stats.reconnects += 1
            gap = Gap(lost_at, time.time(), str(reason))
            for s in self._subs:
                s._put(gap)
            self._up.set()
            self._set_state("connected")

    def _give_up(self, error: SwitchyardError) -> None:
        self._fatal = error
        self._conn = None
        self._set_state("closed")
        for s in self._subs:
            s._fail(error)
        self._up.set()  # waiters wake and see the fatal error

    def _fail_pending(self, conn: _Conn, error: SwitchyardError) -> None:
        for fut in conn.pending.values():
            if not fut.done():
                fut.set_exception(type(error)(str(error.context), code=error.code))
        conn.pending.clear()

    async def _live(self) -> _Conn:
        """The current connection, waiting (up to the timeout) while it is being redialled."""
        if self._state == "closed":
            raise self._fatal or ConnectionLost("the client is closed")
        if self._conn is None or not self._up.is_set():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._up.wait()
            except TimeoutError:
                raise ConnectionLost(f"not reconnected within {self.timeout} s") from None
            if self._conn is None:
                raise self._fatal or ConnectionLost("the client is closed")
        return self._conn

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            with contextlib.suppress(SwitchyardError):
                await coro

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- the reader -----------------------------------------------------------------------

    async def _read(self, conn: _Conn) -> None:
        try:
            async for frame in conn.ws:
                try:
                    msg = json.loads(frame)
                    self._dispatch(conn, msg)
                except Exception as e:  # a bad frame must not end the reader
                    log.error("switchyard: unreadable frame from the server: %s", e)
        except ConnectionClosed:
            pass

    def _dispatch(self, conn: _Conn, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "data-message":
            topic = msg["topic"]
            value = decode(msg)
            m = Message(topic, value, msg.get("reply-to"))
            if m.reply_to is not None:
                for r in self._responders:
                    if topic.startswith(r.prefix):
                        r._take(m)
                        break
            for s in self._subs:
                if s._matches(topic):
                    s._put(m)
            return
        rid = msg.get("id")
        fut = conn.pending.pop(rid, None) if isinstance(rid, int) else None
        if kind == "error":
            err = errors.from_server(
                str(msg.get("code")),
                str(msg.get("context", "")),
                request_id=rid,
                failure=msg.get("failure"),
            )
            if fut is not None:
                if not fut.done():
                    fut.set_exception(err)
                return
            self.stats.server_errors += 1
            self.stats.last_error = str(err)
            if isinstance(err, BackpressureOverflow | errors.KeepaliveTimeout):
                conn.closing_error = err
            log.warning("switchyard: server error: %s", err)
            return
        if fut is not None and not fut.done():
            fut.set_result(msg)

    # --- sending --------------------------------------------------------------------------

    async def _send(self, obj: dict[str, Any], conn: _Conn | None = None) -> None:
        await self._send_text(_jdumps(obj), conn)

    async def _send_text(self, text: str, conn: _Conn | None = None) -> None:
        if len(text) * 4 > MAX_MESSAGE and len(text.encode()) > MAX_MESSAGE:
            raise errors.InvalidMessage(
                f"message of {len(text.encode())} bytes exceeds the server's {MAX_MESSAGE}"
            )
        conn = conn or await self._live()
        try:
            await conn.ws.send(text)
        except ConnectionClosed:
            raise ConnectionLost("the connection closed while sending") from None
        self.stats.frames_sent += 1

    async def _call(self, obj: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Sends ``obj`` with a fresh id and waits for the frame answering it."""
        conn = await self._live()
        self._next_id += 1
        rid = obj["id"] = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        conn.pending[rid] = fut
        try:
            await self._send(obj, conn)
            async with asyncio.timeout(timeout if timeout is not None else self.timeout):
                return await fut
        except TimeoutError:
            raise RequestTimeout(
                f"no answer within {timeout if timeout is not None else self.timeout} s",
                request_id=rid,
            ) from None
        finally:
            conn.pending.pop(rid, None)

    async def publish(self, topic: str, value: Any) -> None:
        """Publishes ``value`` on ``topic`` (waits while the connection is being redialled)."""
        await self._send_text(_data_message(topic, value))
        self.stats.published += 1

    async def publish_many(self, messages: Iterable[tuple[str, Any]]) -> int:
        """Publishes ``(topic, value)`` pairs in order; returns how many."""
        frames = [_data_message(topic, value) for topic, value in messages]
        conn = await self._live()
        try:
            for f in frames:
                await self._send_text(f, conn)
                self.stats.published += 1
        except ConnectionClosed:
            raise ConnectionLost("the connection closed while sending") from None
        return len(frames)

    async def publish_event(self, topic: str, name: str, *args: Any) -> None:
        """Publishes the Zeek event ``name(*args)``."""
        await self.publish(topic, Event(name, args))

    # --- subscriptions --------------------------------------------------------------------

    async def subscribe(
        self,
        *prefixes: str,
        maxsize: int = 8192,
        on_full: OnFull = "raise",
        timeout: float | None = None,
    ) -> Subscription:
        """Subscribes to topic prefixes (raw string prefixes, as Broker matches them).

        Returns once the server has confirmed: whatever is published after that reaches it.
        """
        if not prefixes:
            raise ConfigurationError('subscribe to at least one prefix ("" for everything)')
        for p in prefixes:
            if not isinstance(p, str):
                raise ConfigurationError("a prefix is a string")
        if on_full not in ("raise", "drop_oldest", "drop_newest"):
            raise ConfigurationError(f"on_full {on_full!r}: raise, drop_oldest or drop_newest")
        sub = Subscription(self, tuple(prefixes), maxsize, on_full)
        await self._add_prefixes(sub.prefixes, timeout)
        self._subs.append(sub)
        return sub

    async def _add_prefixes(self, prefixes: Iterable[str], timeout: float | None) -> None:
        new = [p for p in dict.fromkeys(prefixes) if self._prefixes[p] == 0]
        for p in prefixes:
            self._prefixes[p] += 1
        if new:
            try:
                await self._change("subscribe", new, timeout)
            except BaseException:
                for p in prefixes:
                    self._prefixes[p] -= 1
                self._prefixes += Counter()
                raise

    async def _remove_prefixes(self, prefixes: Iterable[str]) -> None:
        gone = []
        for p in dict.fromkeys(prefixes):
            self._prefixes[p] -= 1
            if self._prefixes[p] <= 0:
                del self._prefixes[p]
                gone.append(p)
        if gone and self._state == "connected":
            with contextlib.suppress(SwitchyardError):
                await self._change("unsubscribe", gone, None)

    async def _change(self, kind: str, topics: list[str], timeout: float | None) -> None:
        reply = await self._call({"type": kind, "topics": topics}, timeout)
        if reply.get("type") != f"{kind}d":
            raise errors.InvalidMessage(f"unexpected answer to {kind}: {reply}")

    async def _drop_subscription(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            await self._remove_prefixes(sub.prefixes)

    async def messages(self, *prefixes: str, maxsize: int = 8192) -> AsyncIterator[Message | Gap]:
        """``async for m in client.messages("/t/")``: a subscription for one loop."""
        async with await self.subscribe(*prefixes, maxsize=maxsize) as sub:
            async for m in sub:
                yield m

    # --- requests -------------------------------------------------------------------------

    async def request(self, topic: str, value: Any, timeout: float | None = None) -> Any:
        """Sends a request and returns the first answer's value.

        Raises :class:`NoResponders` at once when nobody subscribes to ``topic`` anywhere in
        the mesh, :class:`RequestTimeout` when no answer came in time, :class:`RemoteFailure`
        when the responder answered with a failure.
        """
        _check_topic(topic)
        t = timeout if timeout is not None else self.timeout
        obj = {"type": "request", "topic": topic, "timeout": _timeout_text(t), **encode(value)}
        # The client's own deadline is a little later than the server's, so that the server's
        # request_timeout normally comes first; a dead socket cannot hang the call.
        reply = await self._call(obj, t + 1.0)
        return decode(reply)

    async def reply(self, request: Message, value: Any) -> None:
        """Answers a request received on a subscription."""
        if request.reply_to is None:
            raise errors.InvalidMessage("not a request: the message has no reply_to")
        await self._send({"type": "reply", "reply-to": request.reply_to, **encode(value)})

    async def reply_error(self, request: Message, code: str, context: str = "") -> None:
        """Answers a request with a failure (``code``: 1-64 of ``a-z0-9_.-``)."""
        if request.reply_to is None:
            raise errors.InvalidMessage("not a request: the message has no reply_to")
        await self._send(
            {"type": "reply-error", "reply-to": request.reply_to, "code": code, "context": context}
        )

    async def serve(
        self,
        prefix: str,
        handler: Handler,
        *,
        concurrency: int = 16,
        backlog: int = 1024,
    ) -> Responder:
        """Serves requests on ``prefix``: ``await handler(message)`` gives the answer.

        A handler that raises :class:`RemoteFailure` answers with that failure; any other
        exception answers ``handler_error``. At most ``concurrency`` run at once and
        ``backlog`` wait; beyond that a request is answered ``overloaded`` at once.
        """
        _check_topic(prefix)
        r = Responder(self, prefix, handler, concurrency, backlog)
        await self._add_prefixes([prefix], None)
        self._responders.append(r)
        return r

    async def _drop_responder(self, r: Responder) -> None:
        if r in self._responders:
            self._responders.remove(r)
            await self._remove_prefixes([r.prefix])

    # --- logs -----------------------------------------------------------------------------

    async def log(self, stream: str, *values: Any) -> None:
        """Writes a record to the remote log ``stream`` (``yard/logs/<stream>``)."""
        if not stream or not all(c.isalnum() or c in "-_." for c in stream):
            raise ConfigurationError(f"log stream {stream!r}: letters, digits, - _ . only")
        await self.publish(f"yard/logs/{stream}", values[0] if len(values) == 1 else values)

    # --- the endpoint's HTTP API ----------------------------------------------------------

    @property
    def http(self) -> Http:
        """The same endpoint's HTTP API (status, stores' administration), same credential."""
        if self._http is None:
            parts = urlsplit(self.url)
            scheme = "https" if parts.scheme == "wss" else "http"
            self._http = Http(f"{scheme}://{parts.netloc}", self._token, self._ca, self.timeout)
        return self._http

    async def status(self) -> dict[str, Any]:
        """The endpoint's status (``GET /v1/status/json``)."""
        r: dict[str, Any] = await self.http.get("/v1/status/json")
        return r

    async def stores(self) -> list[dict[str, Any]]:
        """The stores attached to this endpoint, with their role and state."""
        r = await self.http.get("/v1/stores")
        return list(r["stores"] if isinstance(r, dict) else r)

    async def attach(self, name: str, *, clone: bool = False, backend: str | None = None) -> None:
        """Attaches a master (or a clone) of ``name`` here (needs the ``stores`` grant)."""
        body: dict[str, Any] = {"name": name, "role": "clone" if clone else "master"}
        if backend:
            body["backend"] = backend
        await self.http.request("POST", "/v1/stores", json_body=body)

    async def detach(self, name: str) -> None:
        await self.http.request("DELETE", f"/v1/stores/{name}")

    # --- stores ---------------------------------------------------------------------------

    def store(self, name: str) -> Store:
        """The store ``name`` as seen through this endpoint (see :class:`switchyard.Store`)."""
        from .stores import Store

        return Store(self, name)

    async def _store_op(self, obj: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        return await self._call(obj, timeout)
