"""The blocking API: the same core on a background loop, in plain code and a plain script."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from switchyard import Count, Gap, Message, NoResponders, RemoteFailure, StoreEvent
from switchyard.sync import connect
from switchyard.testing import Home, YardNode


def test_pubsub_requests_and_responders_without_asyncio(node: YardNode) -> None:
    with (
        connect(node.url, token=node.token) as server,
        connect(node.url, token=node.token) as asker,
    ):

        @server.responder("/svc/upper")
        def upper(m: Message) -> Any:
            if not isinstance(m.value, str):
                raise RemoteFailure("not_a_string", f"got {type(m.value).__name__}")
            return m.value.upper()

        assert asker.request("/svc/upper", "abc", timeout=5) == "ABC"
        with pytest.raises(RemoteFailure) as e:
            asker.request("/svc/upper", 1, timeout=5)
        assert e.value.failure == "not_a_string"
        with pytest.raises(NoResponders):
            asker.request("/svc/none", 1, timeout=5)
        with server.subscribe("/s/") as sub:
            asker.publish("/s/1", Count(1))
            asker.publish_many([("/s/2", 2), ("/s/3", 3)])
            got = [sub.next(10) for _ in range(3)]
            assert [m.value for m in got if isinstance(m, Message)] == [Count(1), 2, 3]
            with pytest.raises(TimeoutError):
                sub.next(timeout=0.2)


def test_stores_and_watch_without_asyncio(home: Home) -> None:
    with YardNode("--master", "s", home=home) as n, connect(n.url, token=n.token) as y:
        s = y.store("s")
        with s.watch() as w:
            s.put("a", 1)
            assert s.get("a") == 1
            assert s.increment("n") == Count(1)
            ev = w.next(10)
            assert isinstance(ev, StoreEvent) and (ev.kind, ev.key, ev.value) == ("insert", "a", 1)
        assert s.put_many({i: i for i in range(200)}) == 0
        assert len(s.keys()) == 202


def test_a_blocked_call_is_interrupted_by_ctrl_c(node: YardNode) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from switchyard.sync import connect
        with connect({node.url!r}, token={node.token!r}) as y:
            sub = y.subscribe("/never")
            try:
                print("waiting", flush=True)
                sub.next()
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                sys.exit(0)
        """
    )
    p = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "waiting"
        p.send_signal(2)
        assert p.wait(10) == 0
        assert p.stdout.read().strip() == "interrupted"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_a_sync_subscriber_sees_the_gap_of_a_restart(node: YardNode) -> None:
    with connect(node.url, token=node.token) as y, y.subscribe("/g/") as sub:
        t = threading.Thread(target=lambda: (node.stop(), node.start()))
        t.start()
        t.join()
        first = sub.next(20)
        assert isinstance(first, Gap)
        with connect(node.url, token=node.token) as pub:
            deadline = time.monotonic() + 10
            pub.publish("/g/x", "after")
            m = sub.next(max(0.1, deadline - time.monotonic()))
            assert isinstance(m, Message) and m.value == "after"
