"""zeekpy (from PyPI, unmodified) against a real `yard node`."""

import dataclasses
import datetime
import ipaddress
import json
import os
import subprocess
import threading

import pytest
from conftest import YARD, Node, wait_for
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


def test_zeekpy_carries_a_credential_in_its_url_where_anonymous_may_not(tmp_path):
    """A node whose anonymous callers may do nothing: zeekpy without a credential is refused
    with a 401 at the upgrade; with `ws://NAME:TOKEN@…` (sent as Basic auth) it works, within
    its token's policy."""
    policy = tmp_path / "ingest.json"
    policy.write_text(json.dumps({"publish": {"allow": ["/zeek/ingest/"]},
                                  "subscribe": {"allow": ["/zeek/ingest/"]}}))
    out = subprocess.run([YARD, "token", "create", "ingest", "--role", "app", "--policy", str(policy)],
                         check=True, capture_output=True, text=True, timeout=30)
    token = out.stdout.strip()
    n = Node("--anonymous", "none")
    try:
        with pytest.raises(Exception) as refused:
            Zeek(n.uri, topics=["/zeek/ingest/"]).__enter__()
        assert "401" in str(refused.value), refused.value
        # Outside its policy: the handshake is refused with the reason.
        with pytest.raises(Exception):
            Zeek(f"ws://ingest:{token}@{n.addr}/v1/messages/json", topics=["/zeek/"]).__enter__()

        got = []
        done = threading.Event()
        zeek = Zeek(f"ws://ingest:{token}@{n.addr}/v1/messages/json", topics=["/zeek/ingest/"])

        @zeek.on("ping")
        def ping(x: count):
            got.append(x)
            done.set()

        with zeek:
            n.yard("pub", "/zeek/ingest/a", "ping(5)")
            consume_until(zeek, done)
        assert got == [5]
        # The audit log names who was refused and who came in.
        audit = json.loads(n.yard("audit", "-e", n.addr, "--json").stdout)
        assert any(r["principal"] == "anonymous" and r["result"] == "unauthenticated" for r in audit), audit
    finally:
        n.stop()


def test_zeekpy_speaks_wss_checking_the_node_against_the_cluster_root(tmp_path, monkeypatch):
    """zeekpy, unmodified, over `wss://` to a node serving TLS 1.3: it checks the node's
    certificate with Python's default context, so the cluster's root goes in SSL_CERT_FILE
    (docs/SECURITY.md). Without it, or with another authority's root, the handshake fails;
    plain `ws://` to the TLS-only listener is refused."""
    def yard(home, *args):
        return subprocess.run([YARD, *args], check=True, capture_output=True, text=True,
                              timeout=30, env={**os.environ, "YARD_HOME": str(home)}).stdout
    ca_home, other_home = tmp_path / "ca-home", tmp_path / "other-home"
    for h in (ca_home, other_home):
        yard(h, "ca", "init")
    certs = tmp_path / "certs"
    yard(ca_home, "cert", "issue", "node:zeek", "--host", "127.0.0.1", "--out", str(certs))
    other_root = tmp_path / "other-ca.crt"
    other_root.write_text(yard(other_home, "ca", "show", "--pem"))
    n = Node("--tls-cert", str(certs / "node-zeek.crt"), "--tls-key", str(certs / "node-zeek.key"),
             "--tls-ca", str(certs / "ca.crt"))
    try:
        wss = f"wss://{n.addr}/v1/messages/json"
        # No root that knows the node, then a stranger's root: the certificate is not trusted.
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        for root in (None, other_root):
            if root:
                monkeypatch.setenv("SSL_CERT_FILE", str(root))
            with pytest.raises(Exception) as refused:
                Zeek(wss, topics=["/zeek/tls/"]).__enter__()
            assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value), refused.value
        # Plain text to a listener that speaks only TLS.
        with pytest.raises(Exception):
            Zeek(n.uri, topics=["/zeek/tls/"]).__enter__()

        monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.crt"))
        got = []
        done = threading.Event()
        zeek = Zeek(wss, topics=["/zeek/tls/"])

        @zeek.on("ping")
        def ping(x: count, s: str):
            got.append((x, s))
            done.set()

        with zeek:
            with Zeek(wss) as sender:
                sender.publish("/zeek/tls/a", "ping", [count(9), "over TLS"])
            consume_until(zeek, done)
        assert got == [(9, "over TLS")]
    finally:
        n.stop()
