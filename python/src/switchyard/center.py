"""The operations center's HTTP API and, through it, each cluster's resource manager."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._http import Http
from .client import default_token
from .errors import CommandFailed, RequestTimeout


@dataclass(frozen=True, slots=True)
class Step:
    """One row of a command: a node (restarts) or an agent, where it stands, what it said."""

    id: str
    cluster: str
    agent: str
    node: str
    state: str
    detail: str
    exit_code: int | None
    output: str

    @classmethod
    def of(cls, j: dict[str, Any]) -> Step:
        return cls(
            str(j.get("id", "")),
            str(j.get("cluster", "")),
            str(j.get("agent", "")),
            str(j.get("node", "")),
            str(j.get("state", "")),
            str(j.get("detail", "")),
            j.get("exit_code"),
            str(j.get("output", "")),
        )


@dataclass(frozen=True, slots=True)
class CommandState:
    """A command as it stands: ``state`` is ``running``, ``ok`` or ``failed``."""

    id: str
    op: str
    state: str
    version: int
    steps: tuple[Step, ...]
    raw: dict[str, Any]

    @classmethod
    def of(cls, j: dict[str, Any]) -> CommandState:
        return cls(
            str(j["id"]),
            str(j.get("op", "")),
            str(j.get("state", "")),
            int(j.get("version", 0)),
            tuple(Step.of(r) for r in j.get("rows", [])),
            j,
        )

    @property
    def done(self) -> bool:
        return self.state != "running"


class Command:
    """A command started on the center. ``async for state in cmd`` follows its progress (one
    :class:`CommandState` per change, the last one final); :meth:`wait` returns the final
    state, or raises :class:`CommandFailed` when a step failed or was skipped."""

    def __init__(self, center: Center, id: str) -> None:
        self._center = center
        self.id = id

    async def state(self) -> CommandState:
        return CommandState.of(await self._center._http.get(f"/v1/commands/{self.id}"))

    async def __aiter__(self) -> AsyncIterator[CommandState]:
        version = -1
        while True:
            j = await self._center._http.get(
                f"/v1/commands/{self.id}", after=max(version, 0), wait_ms=10_000
            )
            s = CommandState.of(j)
            if s.version != version:
                version = s.version
                yield s
            if s.done:
                return

    async def wait(self, timeout: float | None = None) -> CommandState:
        import asyncio

        try:
            async with asyncio.timeout(timeout):
                last: CommandState | None = None
                async for s in self:
                    last = s
        except TimeoutError:
            raise RequestTimeout(f"command {self.id} still running after {timeout} s") from None
        assert last is not None
        if last.state != "ok":
            bad = [
                f"{s.agent}/{s.node}: {s.state} {s.detail}".strip()
                for s in last.steps
                if s.state != "ok"
            ]
            raise CommandFailed(f"command {self.id} {last.state}: " + "; ".join(bad), last)
        return last


@dataclass(frozen=True, slots=True)
class Point:
    """A sample (``value``) or a rollup (``min``, ``max``, ``avg``, ``count``) at ``ts``."""

    ts: _dt.datetime
    value: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    count: int | None = None


class MetricRows(tuple[Point, ...]):
    """A series' history, oldest first."""

    series: str
    resolution: str

    def __new__(cls, points: Sequence[Point], series: str, resolution: str) -> MetricRows:
        self = super().__new__(cls, points)
        self.series = series
        self.resolution = resolution
        return self

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` indexed by time (needs ``pip install switchyard-sdk[pandas]``)."""
        import pandas as pd  # type: ignore[import-untyped, unused-ignore]

        rows = [{k: getattr(p, k) for k in ("value", "min", "max", "avg", "count")} for p in self]
        frame = pd.DataFrame(rows, index=pd.DatetimeIndex([p.ts for p in self], name="ts"))
        return frame.dropna(axis=1, how="all")


def _point(j: dict[str, Any]) -> Point:
    ts = _dt.datetime.fromtimestamp(int(j.get("ts", 0)) / 1000, tz=_dt.UTC)
    return Point(
        ts,
        value=j.get("value"),
        min=j.get("min"),
        max=j.get("max"),
        avg=j.get("avg"),
        count=j.get("count"),
    )


class Center:
    """The operations center at ``url`` (``yard up``'s is ``https://127.0.0.1:9900``, checked
    against ``ca``, e.g. ``yard-data/ca/ca.crt``). ``token`` defaults to ``$YARD_TOKEN``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:9900",
        *,
        token: str | None = None,
        ca: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._http = Http(url, token if token is not None else default_token(), ca, timeout)

    async def __aenter__(self) -> Center:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    # --- reads ----------------------------------------------------------------------------

    async def whoami(self) -> dict[str, Any]:
        r: dict[str, Any] = await self._http.get("/v1/whoami")
        return r

    async def topology(self) -> dict[str, Any]:
        """Clusters → manager → agents → nodes (and tasks), with their states."""
        r: dict[str, Any] = await self._http.get("/v1/topology")
        return r

    async def clusters(self) -> list[dict[str, Any]]:
        r = await self._http.get("/v1/clusters")
        return list(r.get("clusters", r) if isinstance(r, dict) else r)

    async def nodes(self, cluster: str | None = None) -> list[dict[str, Any]]:
        r = await self._http.get("/v1/nodes", cluster=cluster)
        return list(r["nodes"])

    async def stats(self, cluster: str | None = None) -> dict[str, Any]:
        r: dict[str, Any] = await self._http.get("/v1/stats", cluster=cluster)
        return r

    async def events(self) -> list[dict[str, Any]]:
        r = await self._http.get("/v1/events")
        return list(r.get("events", []))

    async def logs(
        self, cluster: str, agent: str, node: str, stream: str = "stdout", max_bytes: int = 65536
    ) -> str:
        """The end of a node's log."""
        r = await self._http.request(
            "GET",
            f"/v1/logs/{cluster}/{agent}/{node}",
            query={"stream": stream, "max_bytes": max_bytes},
        )
        return r.text()

    # --- commands -------------------------------------------------------------------------

    async def _start(self, body: dict[str, Any], cluster: str | None) -> Command:
        if cluster is None:
            body["all"] = True
        else:
            body["cluster"] = cluster
        r = await self._http.request("POST", "/v1/commands", json_body=body)
        return Command(self, str(r.json()["id"]))

    async def restart(
        self,
        cluster: str | None = None,
        *,
        batch: int = 1,
        nodes: Sequence[str] = (),
    ) -> Command:
        """A rolling restart of a cluster's nodes (every cluster's with ``cluster=None``),
        ``batch`` at a time, each batch healthy before the next; only ``nodes``
        (``AGENT/NODE``) when given."""
        body: dict[str, Any] = {"op": "restart", "batch": batch}
        if nodes:
            body["nodes"] = list(nodes)
        return await self._start(body, cluster)

    async def deploy(
        self, path: str | os.PathLike[str], cluster: str | None = None, *, target: str | None = None
    ) -> Command:
        """Uploads a file (its SHA-256 checked by the center) and installs it on every agent."""
        with open(path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        up = await self._http.request(
            "POST",
            "/v1/artifacts",
            query={"sha256": digest},
            body=data,
            content_type="application/octet-stream",
        )
        u = up.json()
        body: dict[str, Any] = {
            "op": "deploy",
            "sha256": u["sha256"],
            "name": os.path.basename(os.fspath(path)),
            "size": u["size"],
            "path": target,
        }
        return await self._start(body, cluster)

    async def rollback(self, cluster: str | None = None, *, target: str | None = None) -> Command:
        return await self._start({"op": "rollback", "path": target}, cluster)

    async def exec(self, argv: Sequence[str], cluster: str | None = None) -> Command:
        """Runs a program on every agent; each step's ``exit_code`` and ``output``."""
        return await self._start({"op": "exec", "argv": list(argv)}, cluster)

    async def commands(self) -> list[CommandState]:
        r = await self._http.get("/v1/commands")
        return [CommandState.of(c) for c in r["commands"]]

    def command(self, id: str) -> Command:
        return Command(self, id)

    # --- metrics --------------------------------------------------------------------------

    async def series(self, prefix: str = "", q: str | None = None, limit: int = 1000) -> list[str]:
        r = await self._http.get("/v1/metrics/series", prefix=prefix, q=q, limit=limit)
        return [str(s) for s in r["series"]]

    async def metrics(self, series: str, since: str = "1h", resolution: str = "auto") -> MetricRows:
        """A series' history: raw samples, or 1-minute/1-hour rollups (``resolution``)."""
        r = await self._http.get(
            "/v1/metrics/query", series=series, since=since, resolution=resolution
        )
        return MetricRows(
            [_point(p) for p in r.get("points", [])], str(r["series"]), str(r["resolution"])
        )

    # --- the resource manager of a cluster ------------------------------------------------

    def rm(self, cluster: str) -> ResourceManager:
        """The Mesos master of ``cluster``'s manager, reached through the center."""
        return ResourceManager(self, cluster)


class ResourceManager:
    """Services, tasks, agents and frameworks of one cluster (through the center)."""

    def __init__(self, center: Center, cluster: str) -> None:
        self._http = center._http
        self._base = f"/v1/clusters/{cluster}/rm"
        self.cluster = cluster

    async def _get(self, what: str) -> Any:
        return await self._http.get(f"{self._base}/{what}")

    async def agents(self) -> Any:
        return await self._get("agents")

    async def frameworks(self) -> Any:
        return await self._get("frameworks")

    async def tasks(self) -> list[dict[str, Any]]:
        r = await self._get("tasks")
        return list(r.get("tasks", []))

    async def task_log(self, task: str, stream: str = "stdout") -> str:
        r = await self._http.request(
            "GET", f"{self._base}/tasks/{task}/log", query={"stream": stream}
        )
        return r.text()

    async def services(self) -> list[dict[str, Any]]:
        r = await self._get("services")
        return list(r.get("services", r) if isinstance(r, dict) else r)

    async def service(self, name: str) -> dict[str, Any]:
        r: dict[str, Any] = await self._get(f"services/{name}")
        return r

    async def deploy(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Deploys a service from its spec (as ``yard service deploy`` reads it), or upgrades it."""
        r = await self._http.request("POST", f"{self._base}/services", json_body=spec)
        j: dict[str, Any] = r.json() or {}
        return j

    async def scale(self, name: str, instances: int) -> dict[str, Any]:
        r = await self._http.request(
            "POST", f"{self._base}/services/{name}/scale", json_body={"instances": instances}
        )
        j: dict[str, Any] = r.json() or {}
        return j

    async def remove(self, name: str) -> None:
        await self._http.request("DELETE", f"{self._base}/services/{name}")
