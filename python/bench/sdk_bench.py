"""The SDK beside zeekpy (publishing events to the same yard node) and nats.py (requests to
nats-server), same shapes on both sides, one run. Prints one `key=value` line per figure.

Usage: python sdk_bench.py --yard WS_URL --token T --nats nats://HOST:PORT [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

import switchyard
from switchyard import Count, Message


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


async def delivered(
    url: str, token: str, topic: str, n: int, publish: object
) -> tuple[float, float]:
    """Publishes n events with `publish` (a blocking callable run in a thread) while an SDK
    subscriber counts them; the publish rate and the delivered rate, per second."""
    async with switchyard.Client(url, token=token) as c:
        sub = await c.subscribe(topic, maxsize=n + 10)
        t0 = time.perf_counter()
        th = threading.Thread(target=publish)  # type: ignore[arg-type]
        th.start()
        got = 0
        while got < n:
            m = await sub.next(30)
            got += isinstance(m, Message)
        t_all = time.perf_counter() - t0
        th.join()
        return n / publish.elapsed, n / t_all  # type: ignore[attr-defined]


class SdkPublisher:
    def __init__(self, url: str, token: str, topic: str, n: int) -> None:
        self.url, self.token, self.topic, self.n, self.elapsed = url, token, topic, n, 0.0

    def __call__(self) -> None:
        async def go() -> None:
            async with switchyard.Client(self.url, token=self.token) as p:
                ev = switchyard.Event("tick", (Count(1), "x"))
                t0 = time.perf_counter()
                await p.publish_many((self.topic, ev) for _ in range(self.n))
                self.elapsed = time.perf_counter() - t0

        asyncio.run(go())


class ZeekpyPublisher(SdkPublisher):
    def __call__(self) -> None:
        from zeekpy import Zeek, count  # type: ignore[import-not-found, import-untyped]

        uri = f"{self.url}/v1/messages/json"  # anonymous: zeekpy sends a token only as Basic
        with Zeek(uri) as z:
            t0 = time.perf_counter()
            for _ in range(self.n):
                z.publish(self.topic, "tick", [count(1), "x"])
            self.elapsed = time.perf_counter() - t0


async def sdk_rtt(url: str, token: str, n: int) -> list[float]:
    async with (
        switchyard.Client(url, token=token) as server,
        switchyard.Client(url, token=token) as asker,
    ):

        async def echo(m: Message) -> object:
            return m.value

        await server.serve("/bench/echo", echo)
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            await asker.request("/bench/echo", i, timeout=5)
            out.append(time.perf_counter() - t0)
        return out


async def nats_rtt(server: str, n: int) -> list[float]:
    import nats  # type: ignore[import-not-found, import-untyped]

    nc = await nats.connect(server)
    nc2 = await nats.connect(server)

    async def echo(msg: object) -> None:
        await msg.respond(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe("bench.echo", cb=echo)
    await nc.flush()
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await nc2.request("bench.echo", str(i).encode(), timeout=5)
        out.append(time.perf_counter() - t0)
    await nc.close()
    await nc2.close()
    return out


async def store_puts(url: str, token: str, n: int) -> float:
    async with switchyard.Client(url, token=token) as c:
        s = c.store("bench")
        t0 = time.perf_counter()
        await s.put_many({f"k{i}": Count(i) for i in range(n)})
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--yard", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--nats", required=True)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--requests", type=int, default=5_000)
    a = ap.parse_args()
    n = a.events
    for name, cls in (("sdk", SdkPublisher), ("zeekpy", ZeekpyPublisher)):
        pub = cls(a.yard, a.token, f"/bench/{name}", n)
        p, d = asyncio.run(delivered(a.yard, a.token, f"/bench/{name}", n, pub))
        print(
            f"figure=publish client={name} events={n} published_per_s={p:.0f}"
            f" delivered_per_s={d:.0f}"
        )
    for name, rtts in (
        ("sdk-yard", asyncio.run(sdk_rtt(a.yard, a.token, a.requests))),
        ("nats.py-nats-server", asyncio.run(nats_rtt(a.nats, a.requests))),
    ):
        us = [x * 1e6 for x in rtts]
        print(
            f"figure=request client={name} requests={len(us)} p50_us={statistics.median(us):.0f}"
            f" p99_us={pct(us, 0.99):.0f}"
        )
    rate = asyncio.run(store_puts(a.yard, a.token, 100_000))
    print(f"figure=store_puts client=sdk puts=100000 in_flight=all per_s={rate:.0f}")


if __name__ == "__main__":
    main()
