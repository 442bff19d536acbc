"""zeekpy (from PyPI, unmodified) against a real `yard node`."""

import dataclasses
import datetime
import ipaddress
import json
import threading

from conftest import wait_for
from zeekpy import Zeek, count, enum, port


def consume_until(zeek, done, timeout=10.0):
    """Runs zeek.consume() on a thread until `done` is set, then stops it."""
    t = threading.Thread(target=zeek.consume, daemon=True)
    t.start()
    assert done.wait(timeout), "timed out waiting for events"
    zeek.stop()
    t.join(timeout)


def test_zeekpy_receives_events_published_with_yard_pub(node):
    got = []
    done = threading.Event()
    zeek = Zeek(node.uri, topics=["/zeek/test/"])

    @zeek.on("ping")
    def ping(n: count, s: str):
        got.append((n, s))
        if len(got) == 2:
            done.set()

    with zeek:
        assert zeek.endpoint.endswith("-websocket-1")
        node.yard("pub", "/zeek/test/a", 'ping(42, "hello")', 'ping(43, "world")')
        consume_until(zeek, done)
    assert got == [(42, "hello"), (43, "world")]
    assert all(type(n) is count for n, _ in got)


def test_yard_sub_prints_events_that_zeekpy_publishes(node):
    sub = node.sub("/zeek/pong", "-n", "2")
    with Zeek(node.uri) as zeek:
        zeek.publish("/zeek/pong", "pong", [count(7), "x"])
        zeek.publish("/zeek/pong/2", "pong", [-1, 2.5, enum("Conn::LOG")])
    out, _ = sub.communicate(timeout=10)
    assert sub.returncode == 0
    assert out.splitlines() == ['/zeek/pong pong(7, "x")', "/zeek/pong/2 pong(-1, 2.5, Conn::LOG)"]


@dataclasses.dataclass
class Rec:
    c: count
    a: ipaddress.IPv4Address | ipaddress.IPv6Address
    opt: str | None = None


def test_every_value_type_round_trips_between_zeekpy_clients(node):
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
    args = [
        None,
        True,
        count(18446744073709551615),
        -9223372036854775808,
        -7.5,
        'Hello <Broker> "quoted" \u000b\n ünïcode',
        ipaddress.ip_address("192.168.1.1"),
        ipaddress.ip_address("2001:db8::1"),
        ipaddress.ip_network("10.0.0.0/8"),
        port(8080, "tcp"),
        when,
        datetime.timedelta(milliseconds=1500),
        enum("Conn::LOG"),
        {"bar", "foo"},
        {"first": count(1), "second": count(2)},
        [1, -2, 3],
        Rec(count(5), ipaddress.ip_address("10.1.2.3")),
    ]
    received = {}
    done = threading.Event()
    receiver = Zeek(node.uri, topics=["/rt/"])

    @receiver.on("all_types")
    def all_types(
        n,
        b: bool,
        c: count,
        i: int,
        r: float,
        s: str,
        a4: ipaddress.IPv4Address | ipaddress.IPv6Address,
        a6: ipaddress.IPv4Address | ipaddress.IPv6Address,
        net: ipaddress.IPv4Network | ipaddress.IPv6Network,
        p: port,
        ts: datetime.datetime,
        span: datetime.timedelta,
        e: enum,
        st: set[str],
        tbl: dict[str, count],
        vec: list[int],
        rec: Rec,
    ):
        received["args"] = [n, b, c, i, r, s, a4, a6, net, p, ts, span, e, st, tbl, vec, rec]
        done.set()

    with receiver:
        with Zeek(node.uri) as sender:
            sender.publish("/rt/all", "all_types", args)
        consume_until(receiver, done)

    got = received["args"]
    assert got[0] == {"@data-type": "none", "data": {}}
    assert got[1:] == args[1:]
    assert type(got[2]) is count and type(got[12]) is enum


def test_yard_sub_json_shows_broker_types_for_zeekpy_values(node):
    sub = node.sub("/types", "--json", "-n", "1")
    with Zeek(node.uri) as zeek:
        zeek.publish("/types", "t", [count(1), 1, 1.0, port(53, "udp"), datetime.timedelta(seconds=2)])
    out, _ = sub.communicate(timeout=10)
    msg = json.loads(out)
    assert list(msg) == ["type", "topic", "@data-type", "data"]
    args = msg["data"][2]["data"][1]["data"]
    assert [a["@data-type"] for a in args] == ["count", "integer", "real", "port", "timespan"]
    assert [a["data"] for a in args] == [1, 1, 1.0, "53/udp", "2s"]


def test_a_zeekpy_subscriber_keeps_receiving_while_others_misbehave(node):
    from websockets.sync.client import connect

    got = []
    done = threading.Event()
    zeek = Zeek(node.uri, topics=["/steady"])

    @zeek.on("tick")
    def tick(n: count):
        got.append(n)
        if len(got) == 3:
            done.set()

    with zeek:
        with connect(node.uri) as bad:
            bad.send('["/x"]')
            assert json.loads(bad.recv(timeout=5))["type"] == "ack"
            bad.send("{garbage")
            err = json.loads(bad.recv(timeout=5))
            assert err["type"] == "error" and err["context"].startswith("input #1: malformed JSON")
            for i in range(3):
                bad.send(json.dumps({
                    "topic": "/steady",
                    "@data-type": "vector",
                    "data": [{"@data-type": "count", "data": 1}, {"@data-type": "count", "data": 1},
                             {"@data-type": "vector", "data": [{"@data-type": "string", "data": "tick"},
                              {"@data-type": "vector", "data": [{"@data-type": "count", "data": i}]}]}],
                }))
        consume_until(zeek, done)
    assert got == [0, 1, 2]
    wait_for("clients to detach", lambda: json.loads(node.yard("status", "--json").stdout)["websocket"]["open"] == 0)
