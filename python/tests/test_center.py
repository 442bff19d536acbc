"""The operations center and the resource manager through the SDK, against a real center,
manager and agents: every verb, with progress, and a service deployed, scaled and removed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard import Center, CommandFailed, Forbidden, NotFound
from switchyard import sync as ysync
from switchyard.testing import Cluster, Home

from .conftest import arun


async def until(what: str, cond: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = await cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(home: Home) -> Iterator[Cluster]:
    with Cluster("sdk", 2, mesos=os.geteuid() == 0, home=home) as c:
        yield c


def running(nodes: list[dict[str, Any]]) -> int:
    return sum(1 for n in nodes if n["state"] == "running" and n["agent_state"] == "up")


def test_reads_and_every_command_with_progress(cluster: Cluster, tmp_path: Path) -> None:
    async def body() -> None:
        center = Center(cluster.center, token=cluster.home.token)
        await until("two tickers", lambda: _running(center))
        topo = await center.topology()
        assert "sdk" in str(topo)
        assert (await center.whoami())["may"]["command"] is True
        assert await center.stats("sdk")
        # A rolling restart, followed step by step to its per-node result.
        cmd = await center.restart("sdk", batch=1)
        seen = [s async for s in cmd]
        assert seen[-1].state == "ok", seen[-1]
        assert sorted(s.node for s in seen[-1].steps) == ["ticker", "ticker"]
        assert len(seen) >= 2, "progress before the end"
        # Deploy two versions, roll back, exec: each ends in per-agent results.
        art = tmp_path / "app.txt"
        art.write_text("v1\n")
        assert (await (await center.deploy(art, "sdk")).wait(60)).state == "ok"
        art.write_text("v2\n")
        assert (await (await center.deploy(art, "sdk")).wait(60)).state == "ok"
        assert (await (await center.rollback("sdk")).wait(60)).state == "ok"
        done = await (await center.exec(["/bin/echo", "hello"], "sdk")).wait(60)
        assert [s.exit_code for s in done.steps] == [0, 0]
        assert all("hello" in s.output for s in done.steps)
        with pytest.raises(CommandFailed) as e:
            await (await center.exec(["/bin/false"], "sdk")).wait(60)
        assert all(s.exit_code == 1 for s in e.value.command.steps)
        assert any(c.id == done.raw["id"] for c in await center.commands())
        # Logs and metrics history.
        log = await center.logs("sdk", "agent-1", "ticker")
        assert "tick" in log
        names = await until("cpu series", lambda: center.series("sdk/agent-1/"))
        rows = await until("samples", lambda: center.metrics(names[0], since="10m"))
        assert rows.series == names[0] and rows[0].ts.tzinfo is not None
        with pytest.raises(NotFound):
            await center.restart("nope")

    arun(body(), timeout=240)


async def _running(center: Center) -> bool:
    try:
        return running(await center.nodes("sdk")) == 2
    except Exception:
        return False


def test_a_viewer_reads_but_cannot_restart_and_the_sync_api_says_so(cluster: Cluster) -> None:
    viewer = cluster.home.token_for("sdk-center-viewer", "viewer")
    with ysync.Center(cluster.center, token=viewer) as c:
        assert c.topology()
        with pytest.raises(Forbidden):
            c.restart("sdk")


@pytest.mark.skipif(os.geteuid() != 0, reason="the resource manager's agents need root (cgroups)")
def test_a_service_deployed_scaled_and_removed(cluster: Cluster) -> None:
    async def body() -> None:
        rm = Center(cluster.center, token=cluster.home.token).rm("sdk")
        spec = {"name": "sleeper", "instances": 1, "command": "exec sleep 600",
                "cpus": 0.1, "mem": 32}  # fmt: skip
        await rm.deploy(spec)

        async def healthy(n: int) -> bool:
            s = await rm.service("sleeper")
            return bool(s["instances"] == n and s["healthy"] == n and len(s["tasks"]) == n)

        await until("one instance", lambda: healthy(1), 60)
        await rm.scale("sleeper", 2)
        await until("two instances", lambda: healthy(2), 60)
        tasks = await rm.tasks()
        assert sum("sleeper" in str(t) for t in tasks) >= 2
        await rm.remove("sleeper")

        async def gone() -> bool:
            try:
                await rm.service("sleeper")
                return False
            except NotFound:
                return True

        await until("the service gone", gone, 60)

    arun(body(), timeout=200)
