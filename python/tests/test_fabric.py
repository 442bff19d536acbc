"""Pub/sub, live subscriptions, requests and responders, reconnection and backpressure,
against a real `yard node`, through the asyncio API (the blocking one in test_sync.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from switchyard import (
    Client,
    Count,
    Gap,
    InvalidTopic,
    Message,
    NoResponders,
    RemoteFailure,
    RequestTimeout,
    SlowConsumer,
    Unauthenticated,
)
from switchyard.testing import YardNode

from .conftest import arun


def client(node: YardNode, **kw: Any) -> Client:
    return Client(node.url, token=node.token, **kw)


async def next_message(sub: Any, timeout: float = 10) -> Message:
    m = await sub.next(timeout)
    assert isinstance(m, Message), m
    return m


def test_publish_and_subscribe_with_live_changes(node: YardNode) -> None:
    async def body() -> None:
        async with client(node) as pub, client(node) as c:
            a = await c.subscribe("/a/")
            await pub.publish("/a/1", Count(1))
            await pub.publish("/b/1", Count(2))
            assert (await next_message(a)).value == Count(1)
            # A second subscription on the live connection: in force once subscribe returns.
            b = await c.subscribe("/b/")
            await pub.publish("/b/2", "x")
            m = await next_message(b)
            assert (m.topic, m.value) == ("/b/2", "x")
            await b.close()
            await pub.publish("/b/3", "gone")
            await pub.publish("/a/2", "here")
            assert (await next_message(a)).value == "here"
            assert b.pending == 0
            # Batched publishing keeps the order.
            n = await pub.publish_many((f"/a/{i}", i) for i in range(100))
            assert n == 100
            got = [(await next_message(a)).value for _ in range(100)]
            assert got == list(range(100))
            with pytest.raises(TimeoutError):
                await a.next(timeout=0.2)

    arun(body())


def test_zeek_events_and_reserved_topics(node: YardNode) -> None:
    async def body() -> None:
        async with client(node) as pub, client(node) as c:
            sub = await c.subscribe("/zeek/")
            await pub.publish_event("/zeek/e", "ping", Count(7), "from python")
            m = await next_message(sub)
            assert m.event is not None
            assert (m.event.name, m.event.args) == ("ping", (Count(7), "from python"))
            with pytest.raises(InvalidTopic):
                await pub.publish("<$>/local/x", 1)

    arun(body())


def test_requests_with_responders_failures_and_nobody(node: YardNode) -> None:
    async def body() -> None:
        async with client(node) as server, client(node) as asker:

            async def echo(m: Message) -> Any:
                if m.value == "bad":
                    raise RemoteFailure("bad_input", "bad is not welcome")
                if m.value == "boom":
                    raise ZeroDivisionError("division by zero")
                return ("echo", m.value)

            async with await server.serve("/svc/echo", echo) as r:
                assert await asker.request("/svc/echo", Count(3), timeout=5) == ("echo", Count(3))
                many = await asyncio.gather(
                    *(asker.request("/svc/echo", i, timeout=5) for i in range(50))
                )
                assert many == [("echo", i) for i in range(50)]
                with pytest.raises(RemoteFailure) as e:
                    await asker.request("/svc/echo", "bad", timeout=5)
                assert (e.value.failure, e.value.context) == ("bad_input", "bad is not welcome")
                with pytest.raises(RemoteFailure) as e:
                    await asker.request("/svc/echo", "boom", timeout=5)
                assert e.value.failure == "handler_error"
                assert "ZeroDivisionError" in e.value.context
                assert r.served == 51 and r.failed == 2
            started = time.monotonic()
            with pytest.raises(NoResponders):
                await asker.request("/svc/echo", 1, timeout=5)
            assert time.monotonic() - started < 2, "no_path_to_peer comes at once"

            # A subscriber that never answers: the server's timeout.
            silent = await server.subscribe("/svc/silent")
            with pytest.raises(RequestTimeout):
                await asker.request("/svc/silent", 1, timeout=0.5)
            assert isinstance(await silent.next(5), Message)

    arun(body())


def test_a_restart_under_a_subscriber_reconnects_resubscribes_and_reports_the_gap(
    node: YardNode,
) -> None:
    async def body() -> None:
        states: list[str] = []
        async with client(node) as c:
            c.on_state(states.append)
            sub = await c.subscribe("/r/")

            async def double(m: Message) -> Any:
                return m.value * 2

            await c.serve("/svc/double", double)
            await asyncio.to_thread(node.stop)
            await asyncio.to_thread(node.start)
            gap = await sub.next(20)
            assert isinstance(gap, Gap), gap
            assert gap.until >= gap.since
            assert c.state == "connected" and states[:2] == ["reconnecting", "connected"]
            assert c.stats.reconnects == 1
            async with client(node) as pub:
                await pub.publish("/r/after", 1)
                assert (await next_message(sub)).value == 1
                # The responder was restored as well.
                assert await pub.request("/svc/double", 21, timeout=5) == 42

    arun(body())


def test_calls_in_flight_fail_and_a_lost_client_gives_up_when_told(node: YardNode) -> None:
    async def body() -> None:
        async with client(node, reconnect=False) as c:
            sub = await c.subscribe("/x")
            await asyncio.to_thread(node.stop)
            from switchyard import ConnectionLost

            with pytest.raises(ConnectionLost):
                await sub.next(10)
            assert c.state == "closed"
            with pytest.raises(ConnectionLost):
                await c.publish("/x", 1)

    arun(body())


def test_a_slow_consumer_is_told_what_it_lost(node: YardNode) -> None:
    async def body() -> None:
        async with client(node) as pub, client(node) as c:
            sub = await c.subscribe("/slow/", maxsize=10)
            await pub.publish_many(("/slow/x", i) for i in range(30))
            await pub.publish("/slow/end", "end")
            # Wait until everything reached the client's reader.
            deadline = time.monotonic() + 10
            while sub.stats.received + sub.stats.dropped < 31:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            with pytest.raises(SlowConsumer) as e:
                await sub.next(1)
            assert e.value.dropped == 21
            assert [(await next_message(sub)).value for _ in range(10)] == list(range(10))
            # drop_oldest keeps the newest and counts, without raising.
            newest = await c.subscribe("/slow2/", maxsize=5, on_full="drop_oldest")
            await pub.publish_many(("/slow2/x", i) for i in range(20))
            while newest.stats.received + newest.stats.dropped < 20:
                await asyncio.sleep(0.01)
            assert [(await next_message(newest)).value for _ in range(5)] == list(range(15, 20))
            assert newest.stats.dropped == 15

    arun(body())


def test_a_wrong_credential_is_refused_as_what_it_is(node: YardNode) -> None:
    async def body() -> None:
        with pytest.raises(Unauthenticated):
            await Client(node.url, token="nope").open()

    arun(body())


def test_remote_logs_reach_the_log_directory(home: Any, tmp_path: Any) -> None:
    logs = tmp_path / "logs"
    with YardNode("--log-dir", str(logs), home=home) as n:

        async def body() -> None:
            async with client(n) as c:
                await c.log("app", "deployed", Count(3))
            deadline = time.monotonic() + 10
            while (
                not (logs / "app.log").exists() or "deployed" not in (logs / "app.log").read_text()
            ):
                assert time.monotonic() < deadline, "the record did not arrive"
                await asyncio.sleep(0.05)

        arun(body())
