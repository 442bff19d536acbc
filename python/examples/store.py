"""A replicated store, blocking API: writes, pipelined writes, reads and change events.

Needs an endpoint holding the store: ``yard node --master users``.
"""

import os

from switchyard import Count, StoreEvent
from switchyard.sync import connect

URL = os.environ.get("SWITCHYARD_URL", "ws://127.0.0.1:9997")

with connect(URL) as y:
    users = y.store("users")
    with users.watch() as changes:
        users.put("alice", Count(42))
        print("logins:", users.increment("logins"))
        users.put_many({f"user-{i}": i for i in range(100)})  # pipelined
        print("alice:", users.get("alice"), "keys:", len(users.keys()))
        ev = changes.next(timeout=5)
        assert isinstance(ev, StoreEvent)
        print("first change:", ev.kind, ev.key, ev.value)
