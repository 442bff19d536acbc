"""The blocking API: the asyncio core, run on one background event-loop thread.

Every call here hands its coroutine to that loop and waits for it in short slices, so Ctrl-C
interrupts a blocked call (and cancels it) as it does any Python code. Nothing is
implemented twice: each method is the asyncio method of the same name.

    from switchyard.sync import connect
    with connect("ws://127.0.0.1:9997") as y:
        with y.subscribe("/demo/") as sub:
            y.publish("/demo/x", 1)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from . import center as _center
from . import client as _client
from . import stores as _stores
from .client import Gap, Message, OnFull, State
from .stores import Expiry, StoreEvent, WriteResult

T = TypeVar("T")

_SLICE = 0.1


class _Loop:
    """The one background loop of this process's blocking clients."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or not cls._loop.is_running():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="switchyard-loop", daemon=True).start()
                ready.wait()
                cls._loop = loop
            return cls._loop


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Runs ``coro`` on the background loop and returns its result (Ctrl-C cancels it)."""
    fut = asyncio.run_coroutine_threadsafe(coro, _Loop.get())
    waited = 0.0
    try:
        # Waits in slices so that the main thread can take Ctrl-C; the coroutine's own
        # TimeoutError (Python 3.11 made concurrent.futures' the same class) is its result.
        while not concurrent.futures.wait([fut], timeout=_SLICE).done:
            waited += _SLICE
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"no result within {timeout} s")
        return fut.result()
    except BaseException:
        fut.cancel()
        raise


async def _next(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


def _iterate(agen: AsyncIterator[T]) -> Iterator[T]:
    while True:
        try:
            yield run(_next(agen))
        except StopAsyncIteration:
            return


class Subscription:
    """A blocking :class:`switchyard.Subscription`: ``for m in sub`` or ``sub.next(timeout)``."""

    def __init__(self, inner: _client.Subscription) -> None:
        self._a = inner
        self.prefixes = inner.prefixes
        self.stats = inner.stats

    def next(self, timeout: float | None = None) -> Message | Gap:
        return run(self._a.next(timeout))

    def __iter__(self) -> Iterator[Message | Gap]:
        return _iterate(self._a)

    @property
    def pending(self) -> int:
        return self._a.pending

    def close(self) -> None:
        run(self._a.close())

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Responder:
    def __init__(self, inner: _client.Responder) -> None:
        self._a = inner

    @property
    def served(self) -> int:
        return self._a.served

    @property
    def failed(self) -> int:
        return self._a.failed

    def close(self) -> None:
        run(self._a.close())

    def __enter__(self) -> Responder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Store:
    """A blocking :class:`switchyard.Store`."""

    def __init__(self, inner: _stores.Store) -> None:
        self._a = inner
        self.name = inner.name

    def get(self, key: Any, default: Any = _stores._MISSING) -> Any:
        return run(self._a.get(key, default))

    def exists(self, key: Any) -> bool:
        return run(self._a.exists(key))

    def keys(self) -> frozenset[Any]:
        return run(self._a.keys())

    def get_index_from_value(self, key: Any, index: Any) -> Any:
        return run(self._a.get_index_from_value(key, index))

    def get_many(self, keys: Iterable[Any], default: Any = None) -> dict[Any, Any]:
        return run(self._a.get_many(keys, default))

    def put(self, key: Any, value: Any, expiry: Expiry = None) -> WriteResult:
        return run(self._a.put(key, value, expiry))

    def put_many(self, items: Mapping[Any, Any], expiry: Expiry = None) -> int:
        return run(self._a.put_many(items, expiry))

    def put_unique(self, key: Any, value: Any, expiry: Expiry = None) -> bool:
        return run(self._a.put_unique(key, value, expiry))

    def erase(self, key: Any) -> WriteResult:
        return run(self._a.erase(key))

    def clear(self) -> WriteResult:
        return run(self._a.clear())

    def increment(self, key: Any, amount: Any = None, expiry: Expiry = None) -> Any:
        return run(self._a.increment(key, amount, expiry))

    def decrement(self, key: Any, amount: Any = None, expiry: Expiry = None) -> Any:
        return run(self._a.decrement(key, amount, expiry))

    def append(self, key: Any, text: str, expiry: Expiry = None) -> WriteResult:
        return run(self._a.append(key, text, expiry))

    def insert_into(
        self, key: Any, index: Any, value: Any = _stores._MISSING, expiry: Expiry = None
    ) -> WriteResult:
        return run(self._a.insert_into(key, index, value, expiry))

    def remove_from(self, key: Any, index: Any, expiry: Expiry = None) -> WriteResult:
        return run(self._a.remove_from(key, index, expiry))

    def push(self, key: Any, value: Any, expiry: Expiry = None) -> WriteResult:
        return run(self._a.push(key, value, expiry))

    def pop(self, key: Any, expiry: Expiry = None) -> Any:
        return run(self._a.pop(key, expiry))

    def await_idle(self, timeout: float = 15.0) -> bool:
        return run(self._a.await_idle(timeout))

    def watch(self, maxsize: int = 8192) -> StoreWatch:
        return StoreWatch(run(self._a.watch(maxsize)))


class StoreWatch:
    """A blocking :class:`switchyard.StoreWatch`."""

    def __init__(self, inner: _stores.StoreWatch) -> None:
        self._a = inner

    def next(self, timeout: float | None = None) -> StoreEvent | Gap:
        return run(self._a.next(timeout))

    def __iter__(self) -> Iterator[StoreEvent | Gap]:
        return _iterate(self._a)

    def close(self) -> None:
        run(self._a.close())

    def __enter__(self) -> StoreWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Client:
    """A blocking :class:`switchyard.Client` (same arguments)."""

    def __init__(self, url: str = "ws://127.0.0.1:9997", **kw: Any) -> None:
        async def make() -> _client.Client:
            return _client.Client(url, **kw)

        self._a = run(make())

    @property
    def state(self) -> State:
        return self._a.state

    @property
    def stats(self) -> _client.ClientStats:
        return self._a.stats

    def open(self) -> Client:
        run(self._a.open())
        return self

    def close(self) -> None:
        run(self._a.close())

    def __enter__(self) -> Client:
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()

    def publish(self, topic: str, value: Any) -> None:
        run(self._a.publish(topic, value))

    def publish_many(self, messages: Iterable[tuple[str, Any]]) -> int:
        return run(self._a.publish_many(list(messages)))

    def publish_event(self, topic: str, name: str, *args: Any) -> None:
        run(self._a.publish_event(topic, name, *args))

    def subscribe(
        self, *prefixes: str, maxsize: int = 8192, on_full: OnFull = "raise"
    ) -> Subscription:
        return Subscription(run(self._a.subscribe(*prefixes, maxsize=maxsize, on_full=on_full)))

    def request(self, topic: str, value: Any, timeout: float | None = None) -> Any:
        return run(self._a.request(topic, value, timeout))

    def reply(self, request: Message, value: Any) -> None:
        run(self._a.reply(request, value))

    def reply_error(self, request: Message, code: str, context: str = "") -> None:
        run(self._a.reply_error(request, code, context))

    def serve(
        self,
        prefix: str,
        handler: Callable[[Message], Any],
        *,
        concurrency: int = 8,
        backlog: int = 1024,
    ) -> Responder:
        """Serves requests with a plain function, run in worker threads (``concurrency``)."""

        async def call(m: Message) -> Any:
            return await asyncio.to_thread(handler, m)

        return Responder(run(self._a.serve(prefix, call, concurrency=concurrency, backlog=backlog)))

    def responder(
        self, prefix: str, *, concurrency: int = 8
    ) -> Callable[[Callable[[Message], Any]], Callable[[Message], Any]]:
        """``@y.responder("/svc/echo")`` on a function serves requests with it at once."""

        def register(fn: Callable[[Message], Any]) -> Callable[[Message], Any]:
            self.serve(prefix, fn, concurrency=concurrency)
            return fn

        return register

    def log(self, stream: str, *values: Any) -> None:
        run(self._a.log(stream, *values))

    def store(self, name: str) -> Store:
        return Store(self._a.store(name))


def connect(url: str = "ws://127.0.0.1:9997", **kw: Any) -> Client:
    """A connected blocking client (use it in a ``with`` block)."""
    return Client(url, **kw).open()


class Command:
    def __init__(self, inner: _center.Command) -> None:
        self._a = inner
        self.id = inner.id

    def state(self) -> _center.CommandState:
        return run(self._a.state())

    def __iter__(self) -> Iterator[_center.CommandState]:
        return _iterate(self._a.__aiter__())

    def wait(self, timeout: float | None = None) -> _center.CommandState:
        return run(self._a.wait(timeout))


class ResourceManager:
    def __init__(self, inner: _center.ResourceManager) -> None:
        self._a = inner
        self.cluster = inner.cluster

    def agents(self) -> Any:
        return run(self._a.agents())

    def frameworks(self) -> Any:
        return run(self._a.frameworks())

    def tasks(self) -> list[dict[str, Any]]:
        return run(self._a.tasks())

    def task_log(self, task: str, stream: str = "stdout") -> str:
        return run(self._a.task_log(task, stream))

    def services(self) -> list[dict[str, Any]]:
        return run(self._a.services())

    def service(self, name: str) -> dict[str, Any]:
        return run(self._a.service(name))

    def deploy(self, spec: dict[str, Any]) -> dict[str, Any]:
        return run(self._a.deploy(spec))

    def scale(self, name: str, instances: int) -> dict[str, Any]:
        return run(self._a.scale(name, instances))

    def remove(self, name: str) -> None:
        run(self._a.remove(name))


class Center:
    """A blocking :class:`switchyard.Center` (same arguments)."""

    def __init__(self, url: str = "http://127.0.0.1:9900", **kw: Any) -> None:
        self._a = _center.Center(url, **kw)

    def __enter__(self) -> Center:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def whoami(self) -> dict[str, Any]:
        return run(self._a.whoami())

    def topology(self) -> dict[str, Any]:
        return run(self._a.topology())

    def clusters(self) -> list[dict[str, Any]]:
        return run(self._a.clusters())

    def nodes(self, cluster: str | None = None) -> list[dict[str, Any]]:
        return run(self._a.nodes(cluster))

    def stats(self, cluster: str | None = None) -> dict[str, Any]:
        return run(self._a.stats(cluster))

    def events(self) -> list[dict[str, Any]]:
        return run(self._a.events())

    def logs(self, cluster: str, agent: str, node: str, stream: str = "stdout") -> str:
        return run(self._a.logs(cluster, agent, node, stream))

    def restart(
        self, cluster: str | None = None, *, batch: int = 1, nodes: Sequence[str] = ()
    ) -> Command:
        return Command(run(self._a.restart(cluster, batch=batch, nodes=nodes)))

    def deploy(
        self, path: str, cluster: str | None = None, *, target: str | None = None
    ) -> Command:
        return Command(run(self._a.deploy(path, cluster, target=target)))

    def rollback(self, cluster: str | None = None, *, target: str | None = None) -> Command:
        return Command(run(self._a.rollback(cluster, target=target)))

    def exec(self, argv: Sequence[str], cluster: str | None = None) -> Command:
        return Command(run(self._a.exec(argv, cluster)))

    def commands(self) -> list[_center.CommandState]:
        return run(self._a.commands())

    def series(self, prefix: str = "", q: str | None = None, limit: int = 1000) -> list[str]:
        return run(self._a.series(prefix, q, limit))

    def metrics(
        self, series: str, since: str = "1h", resolution: str = "auto"
    ) -> _center.MetricRows:
        return run(self._a.metrics(series, since, resolution))

    def rm(self, cluster: str) -> ResourceManager:
        return ResourceManager(self._a.rm(cluster))
