"""Publish and subscribe, asyncio: typed values in, the same values out."""

import asyncio
import ipaddress
import os

import switchyard
from switchyard import Count, Message, Port, Timestamp

URL = os.environ.get("SWITCHYARD_URL", "ws://127.0.0.1:9997")


async def main() -> None:
    async with switchyard.Client(URL) as sub_side, switchyard.Client(URL) as pub_side:
        sub = await sub_side.subscribe("/demo/")  # in force once this returns
        await pub_side.publish("/demo/a", Count(42))
        await pub_side.publish("/demo/b", (ipaddress.ip_address("10.0.0.1"), Port(80, "tcp")))
        await pub_side.publish("/demo/c", Timestamp.now())
        for _ in range(3):
            m = await sub.next(timeout=5)
            assert isinstance(m, Message)
            print(m.topic, repr(m.value))


asyncio.run(main())
