"""Stores through the SDK: a master and a clone in two real processes, every operation,
pipelining, typed errors and watch()."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from switchyard import (
    Client,
    Count,
    NoSuchKey,
    StoreEvent,
    Timespan,
    TypeClash,
)
from switchyard.testing import Home, YardNode

from .conftest import arun


@pytest.fixture
def pair(home: Home) -> Iterator[tuple[YardNode, YardNode]]:
    with (
        YardNode("--master", "users", home=home) as master,
        YardNode("--clone", "users", "--peer", master.addr, home=home) as clone,
    ):
        yield master, clone


def test_every_operation_on_master_and_clone(pair: tuple[YardNode, YardNode]) -> None:
    master, clone = pair

    async def body() -> None:
        async with (
            Client(master.url, token=master.token) as m,
            Client(clone.url, token=clone.token) as c,
        ):
            ms, cs = m.store("users"), c.store("users")
            await cs.wait_synced()
            assert (await cs.info())["role"] == "clone"
            await ms.put("alice", Count(42))
            assert await ms.get("alice") == Count(42)
            # Written through the clone, read back from its own copy at once.
            assert await cs.increment("logins") == Count(1)
            assert await cs.increment("logins", Count(4)) == Count(5)
            assert await cs.get("logins") == Count(5)
            assert await cs.decrement("logins") == Count(4)
            assert await cs.put_unique("once", "a") is True
            assert await cs.put_unique("once", "b") is False
            assert await ms.await_idle(10)
            assert await cs.get("alice") == Count(42)
            assert await cs.exists("alice") and not await cs.exists("bob")
            with pytest.raises(NoSuchKey):
                await cs.get("bob")
            assert await cs.get("bob", None) is None
            await ms.append("greeting", "hello")
            await ms.append("greeting", ", world")
            assert await ms.get("greeting") == "hello, world"
            await ms.put("tags", frozenset())
            await ms.insert_into("tags", "red")
            await ms.insert_into("tags", "blue")
            await ms.remove_from("tags", "red")
            assert await ms.get("tags") == frozenset({"blue"})
            await ms.push("queue", 1)
            await ms.push("queue", 2)
            assert await ms.pop("queue") == 2
            with pytest.raises(TypeClash):
                await ms.increment("greeting", Count(1))
            await ms.put("temp", 1, expiry=dt.timedelta(milliseconds=300))
            assert await ms.get("temp") == 1
            await asyncio.sleep(0.5)
            assert await ms.get("temp", "expired") == "expired"
            await ms.put("later", 1, expiry=Timespan.seconds(60))
            keys = await cs.keys()
            assert {"alice", "logins", "once", "greeting"} <= keys
            await ms.erase("alice")
            assert await ms.get("alice", None) is None
            # Pipelined: a thousand puts in flight at once, then read back in one go.
            buffered = await cs.put_many({f"k{i}": i for i in range(1000)})
            assert buffered == 0
            got = await ms.get_many([f"k{i}" for i in range(1000)])
            assert got == {f"k{i}": i for i in range(1000)}
            await ms.clear()
            assert await ms.await_idle(10)
            assert await cs.keys() == frozenset()

    arun(body())


def test_watch_yields_typed_events(pair: tuple[YardNode, YardNode]) -> None:
    master, clone = pair

    async def body() -> None:
        async with (
            Client(master.url, token=master.token) as m,
            Client(clone.url, token=clone.token) as c,
        ):
            await c.store("users").wait_synced()
            async with await c.store("users").watch() as w:
                s = m.store("users")
                await s.put("w", Count(1))
                await s.put("w", Count(2))
                await s.erase("w")
                events = [await w.next(10) for _ in range(3)]
            kinds = [(e.kind, e.key, e.value, e.old) for e in events if isinstance(e, StoreEvent)]
            assert kinds == [
                ("insert", "w", Count(1), None),
                ("update", "w", Count(2), Count(1)),
                ("erase", "w", None, None),
            ]

    arun(body())


def test_store_errors_are_typed(node: YardNode) -> None:
    async def body() -> None:
        async with Client(node.url, token=node.token) as c:
            from switchyard import NoSuchMaster, NoSuchStore, RequestTimeout

            with pytest.raises((NoSuchStore, NoSuchMaster, RequestTimeout)) as e:
                await c.store("nothing").get("k")
            assert e.value.code in ("no_such_store", "no_such_master", "request_timeout")

    arun(body())


def test_a_viewer_cannot_write(home: Home) -> None:
    viewer = home.token_for("sdk-viewer", "viewer")
    with YardNode("--master", "users", home=home) as n:

        async def body() -> Any:
            async with Client(n.url, token=viewer) as c:
                from switchyard import Forbidden

                with pytest.raises(Forbidden):
                    await c.store("users").put("k", 1)

        arun(body())
