"""The value codec: exact round trips in Python, and through a real endpoint and back."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard import (
    Count,
    EnumValue,
    Event,
    InvalidValue,
    Port,
    Table,
    Tagged,
    Timespan,
    Timestamp,
    decode,
    encode,
)
from switchyard.sync import connect
from switchyard.testing import YardNode
from switchyard.values import format_timestamp, parse_timespan, parse_timestamp

I64 = st.integers(-(2**63), 2**63 - 1)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(0, 2**64 - 1).map(Count),
    I64,
    st.floats(allow_nan=False),
    st.text(),
    I64.map(Timespan),
    st.integers(-(2**62), 2**62).map(Timestamp),
    st.ip_addresses(v=4),
    st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None),
    st.builds(
        lambda a, n: ipaddress.ip_network(f"{a}/{n}", strict=False),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    ),
    st.builds(Port, st.integers(0, 65535), st.sampled_from(["tcp", "udp", "icmp", "?"])),
    st.text(min_size=1).map(EnumValue),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(tuple),
        st.frozensets(inner, max_size=4),
        st.dictionaries(inner, inner, max_size=4).map(Table),
    ),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with the type kept (True is not 1 is not Count(1)), NaN equal to itself."""
    return json.dumps(encode(a), sort_keys=True) == json.dumps(encode(b), sort_keys=True) or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    )


def canonical(v: Any) -> str:
    """A form that does not depend on set or table order."""

    def norm(j: Any) -> Any:
        if j["@data-type"] in ("set", "table"):
            items = [
                norm(x) if "key" not in x else [norm(x["key"]), norm(x["value"])] for x in j["data"]
            ]
            return [j["@data-type"], sorted(json.dumps(i, sort_keys=True) for i in items)]
        if j["@data-type"] == "vector":
            return ["vector", [norm(x) for x in j["data"]]]
        return [j["@data-type"], j["data"]]

    return json.dumps(norm(encode(v)), sort_keys=True)


@given(values)
def test_decode_of_encode_is_the_value_with_its_type(v: Any) -> None:
    back = decode(json.loads(json.dumps(encode(v))))
    assert canonical(back) == canonical(v)
    assert back == v or canonical(back) == canonical(v)


@given(st.one_of(values, st.builds(Event, st.text(), st.lists(values, max_size=3).map(tuple))))
def test_the_fast_json_writer_writes_what_encode_gives(v: Any) -> None:
    from switchyard.values import fields_json

    assert json.loads("{" + fields_json(v) + "}") == json.loads(json.dumps(encode(v)))


@given(values)
def test_decoded_values_are_hashable_so_they_can_be_keys(v: Any) -> None:
    back = decode(encode(v))
    hash(back)
    assert Table({back: 1})[back] == 1


def test_count_and_integer_stay_distinct_and_checked() -> None:
    assert encode(Count(5)) == {"@data-type": "count", "data": 5}
    assert encode(5) == {"@data-type": "integer", "data": 5}
    assert isinstance(decode({"@data-type": "count", "data": 5}), Count)
    assert type(decode({"@data-type": "integer", "data": 5})) is int
    with pytest.raises(InvalidValue):
        Count(-1)
    with pytest.raises(InvalidValue):
        Count(2**64)
    with pytest.raises(InvalidValue, match="64-bit"):
        encode(2**63)


def test_values_python_would_merge_are_kept_apart() -> None:
    wire = {
        "@data-type": "set",
        "data": [
            {"@data-type": "boolean", "data": True},
            {"@data-type": "integer", "data": 1},
            {"@data-type": "count", "data": 1},
            {"@data-type": "real", "data": 1.0},
        ],
    }
    s = decode(wire)
    assert len(s) == 4
    assert Tagged("count", Count(1)) in s
    assert canonical(decode(encode(s))) == canonical(s)
    # Tagged spells a type out when publishing too.
    assert encode(Tagged("count", 1)) == {"@data-type": "count", "data": 1}


def test_time_is_integer_nanoseconds_exactly() -> None:
    ts = Timestamp(1_767_323_045_123_456_789)
    assert encode(ts)["data"] == "2026-01-02T03:04:05.123456789"
    assert parse_timestamp("2026-01-02T03:04:05.123456789") == ts.ns
    assert parse_timestamp("2026-01-02T05:04:05.123456789+02:00") == ts.ns
    assert parse_timestamp("2026-01-02T03:04:05Z") == 1_767_323_045_000_000_000
    assert format_timestamp(-1) == "1969-12-31T23:59:59.999999999"
    assert parse_timespan("1500ms") == 1_500_000_000
    assert parse_timespan("-2.5s") == -2_500_000_000
    assert parse_timespan("1500000000.0ns") == 1_500_000_000
    assert parse_timespan("3d") == 3 * 86_400 * 10**9
    assert encode(Timespan(1_500_000_000))["data"] == "1500ms"
    assert encode(dt.timedelta(microseconds=7))["data"] == "7us"
    aware = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    assert Timestamp.of(aware).ns == 1_767_323_045_123_456_000
    assert Timestamp.of(aware).to_datetime() == aware


def test_naive_datetimes_and_python_enums_are_refused_with_a_hint() -> None:
    import enum

    with pytest.raises(InvalidValue, match="naive datetime"):
        encode(dt.datetime(2026, 1, 1))

    class Color(enum.Enum):
        RED = 1

    with pytest.raises(InvalidValue, match="EnumValue"):
        encode([Color.RED])
    with pytest.raises(InvalidValue, match=r"at \$\[1\]: object is not a fabric value"):
        encode([1, object()])


def test_reals_nan_and_infinity_as_the_server_writes_them() -> None:
    assert encode(math.inf)["data"] == "Infinity"
    assert math.isnan(decode({"@data-type": "real", "data": "NaN"}))
    assert decode({"@data-type": "real", "data": 3}) == 3.0
    assert encode(-0.0)["data"] == -0.0


def test_garbage_from_the_wire_is_refused_with_its_place() -> None:
    with pytest.raises(InvalidValue, match=r"\$\[1\].*unknown @data-type 'nope'"):
        decode(
            {
                "@data-type": "vector",
                "data": [{"@data-type": "count", "data": 1}, {"@data-type": "nope", "data": 1}],
            }
        )
    with pytest.raises(InvalidValue, match="count data must be int"):
        decode({"@data-type": "count", "data": "1"})
    with pytest.raises(InvalidValue, match="timespan"):
        decode({"@data-type": "timespan", "data": "5 parsecs"})


def test_tables_are_read_only_and_events_have_their_shape() -> None:
    t = Table({"a": 1})
    with pytest.raises(TypeError, match="read-only"):
        t["b"] = 2  # type: ignore[index]
    e = Event("ping", (Count(1), "x"))
    wire = encode(e)
    assert wire["data"][2]["data"][0] == {"@data-type": "string", "data": "ping"}
    from switchyard.values import as_event

    assert as_event(decode(wire)) == e


@pytest.fixture(scope="module")
def pair(shared_node: YardNode) -> Any:
    with (
        connect(shared_node.url, token=shared_node.token) as a,
        connect(shared_node.url, token=shared_node.token) as b,
        b.subscribe("/rt/") as sub,
    ):
        yield a, sub


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values)
def test_every_value_round_trips_through_the_server_exactly(pair: Any, v: Any) -> None:
    publisher, sub = pair
    publisher.publish("/rt/v", v)
    m = sub.next(timeout=10)
    assert canonical(m.value) == canonical(v), (v, m.value)
