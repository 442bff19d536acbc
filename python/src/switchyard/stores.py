"""Replicated stores over the WebSocket API: every operation, pipelined, and change events."""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .client import Gap, Subscription
from .errors import Buffered, InvalidMessage, NoSuchKey
from .values import Count, Timespan, decode, encode

if TYPE_CHECKING:
    from .client import Client

EVENTS_TOPIC = "<$>/local/data/store-events"

Expiry = float | _dt.timedelta | Timespan | None
"""An expiry: seconds, a ``timedelta`` or a :class:`Timespan`; ``None`` for none."""

_MISSING: Any = object()


def _span(expiry: Expiry) -> str | None:
    if expiry is None:
        return None
    if isinstance(expiry, Timespan):
        ns = expiry.ns
    elif isinstance(expiry, _dt.timedelta):
        ns = Timespan.of(expiry).ns
    else:
        ns = round(expiry * 1e9)
    return f"{ns}ns"


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The answer to a write: ``buffered`` when a clone keeps it until its master is back."""

    buffered: bool = False


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """A change to a store: ``kind`` is ``insert``, ``update``, ``erase`` or ``expire``.

    ``value`` is the new value (insert, update), ``old`` the previous one (update), ``expiry``
    the key's expiry if it has one, ``publisher`` the endpoint that made the change.
    """

    kind: str
    store: str
    key: Any
    value: Any = None
    old: Any = None
    expiry: Timespan | None = None
    publisher: Any = None


def parse_event(value: Any) -> StoreEvent | None:
    """A store event from its Broker shape, or ``None`` if ``value`` is not one."""
    if not isinstance(value, tuple) or len(value) < 3 or not isinstance(value[0], str):
        return None
    kind, store, key, *rest = value
    if kind == "insert" and len(rest) >= 2:
        return StoreEvent(kind, store, key, value=rest[0], expiry=rest[1], publisher=rest[2:])
    if kind == "update" and len(rest) >= 3:
        return StoreEvent(
            kind, store, key, value=rest[1], old=rest[0], expiry=rest[2], publisher=rest[3:]
        )
    if kind in ("erase", "expire"):
        return StoreEvent(kind, store, key, publisher=rest)
    return None


class Store:
    """The store ``name`` through one endpoint: its master, a clone, or (on an endpoint that
    holds neither) forwarded to the master. Operations are pipelined: any number can be in
    flight (``asyncio.gather``), and each client's are carried out in the order sent."""

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.name = name

    async def _op(self, op: str, deadline: float | None = None, **fields: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {"type": "store", "store": self.name, "op": op}
        for k, v in fields.items():
            if k in ("expiry", "timeout"):
                if v is not None:
                    obj[k] = v
            elif v is not _MISSING:
                obj[k] = encode(v)
        reply = await self._client._call(obj, deadline)
        if reply.get("type") != "store-result":
            raise InvalidMessage(f"unexpected answer to {op}: {reply}")
        return reply

    async def _write(self, op: str, **fields: Any) -> WriteResult:
        reply = await self._op(op, **fields)
        return WriteResult(bool(reply.get("buffered")))

    async def _value(self, op: str, **fields: Any) -> Any:
        reply = await self._op(op, **fields)
        if reply.get("buffered"):
            raise Buffered(
                f"{op} on {self.name}: kept by the clone until its master is back; "
                "the result is not known yet"
            )
        return decode(reply["result"])

    async def info(self) -> dict[str, Any]:
        """This endpoint's view of the store: role, backend, entries, position, whether a
        clone is connected and synchronised (``GET /v1/stores/NAME``)."""
        r: dict[str, Any] = await self._client.http.get(f"/v1/stores/{self.name}")
        return r

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Waits until a clone here is connected to its master and synchronised."""
        async with asyncio.timeout(timeout):
            while True:
                i = await self.info()
                if i.get("role") != "clone" or (i.get("connected") and i.get("synced")):
                    return
                await asyncio.sleep(0.05)

    # --- reads ----------------------------------------------------------------------------

    async def get(self, key: Any, default: Any = _MISSING) -> Any:
        """The value at ``key``; ``default`` if absent (else :class:`NoSuchKey`)."""
        try:
            return await self._value("get", key=key)
        except NoSuchKey:
            if default is _MISSING:
                raise
            return default

    async def exists(self, key: Any) -> bool:
        return bool(await self._value("exists", key=key))

    async def keys(self) -> frozenset[Any]:
        result = await self._value("keys")
        return frozenset(result) if result is not None else frozenset()

    async def get_index_from_value(self, key: Any, index: Any) -> Any:
        return await self._value("get_index_from_value", key=key, index=index)

    async def get_many(self, keys: Iterable[Any], default: Any = None) -> dict[Any, Any]:
        """Several gets pipelined; absent keys map to ``default``."""
        ks = list(keys)
        values = await asyncio.gather(*(self.get(k, default) for k in ks))
        return dict(zip(ks, values, strict=True))

    # --- writes ---------------------------------------------------------------------------

    async def put(self, key: Any, value: Any, expiry: Expiry = None) -> WriteResult:
        return await self._write("put", key=key, value=value, expiry=_span(expiry))

    async def put_many(self, items: Mapping[Any, Any], expiry: Expiry = None) -> int:
        """Several puts pipelined; returns how many were buffered by a clone."""
        results = await asyncio.gather(*(self.put(k, v, expiry) for k, v in items.items()))
        return sum(r.buffered for r in results)

    async def put_unique(self, key: Any, value: Any, expiry: Expiry = None) -> bool:
        """Sets ``key`` if absent; whether it did."""
        return bool(await self._value("put_unique", key=key, value=value, expiry=_span(expiry)))

    async def erase(self, key: Any) -> WriteResult:
        return await self._write("erase", key=key)

    async def clear(self) -> WriteResult:
        return await self._write("clear")

    async def increment(self, key: Any, amount: Any = None, expiry: Expiry = None) -> Any:
        """Adds ``amount`` (default ``Count(1)``); a missing key starts at zero. The new value."""
        amount = Count(1) if amount is None else amount
        return await self._value("increment", key=key, amount=amount, expiry=_span(expiry))

    async def decrement(self, key: Any, amount: Any = None, expiry: Expiry = None) -> Any:
        amount = Count(1) if amount is None else amount
        return await self._value("decrement", key=key, amount=amount, expiry=_span(expiry))

    async def append(self, key: Any, text: str, expiry: Expiry = None) -> WriteResult:
        return await self._write("append", key=key, value=text, expiry=_span(expiry))

    async def insert_into(
        self, key: Any, index: Any, value: Any = _MISSING, expiry: Expiry = None
    ) -> WriteResult:
        """Into a set (no ``value``), a table (``index`` the key) or a vector."""
        return await self._write(
            "insert_into", key=key, index=index, value=value, expiry=_span(expiry)
        )

    async def remove_from(self, key: Any, index: Any, expiry: Expiry = None) -> WriteResult:
        return await self._write("remove_from", key=key, index=index, expiry=_span(expiry))

    async def push(self, key: Any, value: Any, expiry: Expiry = None) -> WriteResult:
        return await self._write("push", key=key, value=value, expiry=_span(expiry))

    async def pop(self, key: Any, expiry: Expiry = None) -> Any:
        return await self._value("pop", key=key, expiry=_span(expiry))

    async def await_idle(self, timeout: float = 15.0) -> bool:
        """Waits until the master and every clone applied everything in flight; whether so."""
        reply = await self._op("await_idle", timeout + 2.0, timeout=_span(timeout))
        return bool(reply.get("idle"))

    # --- events ---------------------------------------------------------------------------

    async def watch(self, maxsize: int = 8192) -> StoreWatch:
        """Changes to this store, as the endpoint holding it sees them, from now on:
        ``async with await store.watch() as w: async for ev in w``.

        The endpoint must hold the store (master or clone) and the credential must allow
        local events. After a reconnection a :class:`Gap` says events may have been missed:
        re-read what matters then.
        """
        sub = await self._client.subscribe(EVENTS_TOPIC, maxsize=maxsize)
        return StoreWatch(sub, self.name)


class StoreWatch:
    """The events of one store (:meth:`Store.watch`), in order, with gaps."""

    def __init__(self, sub: Subscription, store: str) -> None:
        self._sub = sub
        self.store = store

    async def next(self, timeout: float | None = None) -> StoreEvent | Gap:
        """The next event of this store; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                m = await self._sub.next()
                if isinstance(m, Gap):
                    return m
                ev = parse_event(m.value)
                if ev is not None and ev.store == self.store:
                    return ev

    def __aiter__(self) -> StoreWatch:
        return self

    async def __anext__(self) -> StoreEvent | Gap:
        return await self.next()

    async def close(self) -> None:
        await self._sub.close()

    async def __aenter__(self) -> StoreWatch:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
