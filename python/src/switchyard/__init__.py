"""Switchyard's Python SDK: the fabric (pub/sub, requests, responders, logs), the replicated
stores, the operations center and the resource manager.

Asyncio::

    import switchyard
    async with switchyard.Client("ws://127.0.0.1:9997") as y:
        async with await y.subscribe("/demo/") as sub:
            ...

Blocking: the same names in :mod:`switchyard.sync`.
"""

from .center import Center, Command, CommandState, MetricRows, Point, ResourceManager, Step
from .client import Client, ClientStats, Gap, Message, Responder, Subscription, SubscriptionStats
from .errors import *  # noqa: F403
from .errors import SwitchyardError
from .stores import Store, StoreEvent, WriteResult
from .values import (
    TYPES,
    Count,
    EnumValue,
    Event,
    Port,
    Table,
    Tagged,
    Timespan,
    Timestamp,
    Value,
    decode,
    encode,
)

__version__ = "0.1.0"


async def connect(url: str = "ws://127.0.0.1:9997", **kw: object) -> Client:
    """A connected :class:`Client` (close it, or use ``async with Client(...)``)."""
    return await Client(url, **kw).open()  # type: ignore[arg-type]


__all__ = [
    "TYPES",
    "Center",
    "Client",
    "ClientStats",
    "Command",
    "CommandState",
    "Count",
    "EnumValue",
    "Event",
    "Gap",
    "Message",
    "MetricRows",
    "Point",
    "Port",
    "ResourceManager",
    "Responder",
    "Step",
    "Store",
    "StoreEvent",
    "Subscription",
    "SubscriptionStats",
    "SwitchyardError",
    "Table",
    "Tagged",
    "Timespan",
    "Timestamp",
    "Value",
    "WriteResult",
    "connect",
    "decode",
    "encode",
]
