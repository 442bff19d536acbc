"""A responder and a requester, blocking API: answers, failures, and nobody listening."""

import os

from switchyard import Message, NoResponders, RemoteFailure
from switchyard.sync import connect

URL = os.environ.get("SWITCHYARD_URL", "ws://127.0.0.1:9997")

with connect(URL) as server, connect(URL) as client:

    @server.responder("/svc/square")
    def square(m: Message) -> int:
        if not isinstance(m.value, int):
            raise RemoteFailure("not_a_number", f"{m.value!r} is not an integer")
        return m.value * m.value

    print("square(12) =", client.request("/svc/square", 12, timeout=2))
    try:
        client.request("/svc/square", "twelve", timeout=2)
    except RemoteFailure as e:
        print("refused:", e.failure, "-", e.context)
    try:
        client.request("/svc/cube", 3, timeout=2)
    except NoResponders:
        print("nobody serves /svc/cube")
