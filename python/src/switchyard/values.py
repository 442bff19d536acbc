"""The 15 value types of the fabric and their exact Python forms.

| fabric    | Python                                                   |
|-----------|----------------------------------------------------------|
| none      | ``None``                                                 |
| boolean   | ``bool``                                                 |
| count     | :class:`Count` (an ``int`` from 0 to 2**64-1)            |
| integer   | ``int`` (-2**63 to 2**63-1)                              |
| real      | ``float``                                                |
| timespan  | :class:`Timespan` (integer nanoseconds); ``timedelta`` accepted |
| timestamp | :class:`Timestamp` (integer ns since the epoch, UTC); aware ``datetime`` accepted |
| string    | ``str``                                                  |
| address   | ``ipaddress.IPv4Address`` / ``IPv6Address``              |
| subnet    | ``ipaddress.IPv4Network`` / ``IPv6Network``              |
| port      | :class:`Port`                                            |
| enum      | :class:`EnumValue`                                       |
| vector    | ``tuple`` (``list`` accepted)                            |
| set       | ``frozenset`` (``set`` accepted)                         |
| table     | :class:`Table`, a read-only hashable ``dict`` (``dict`` accepted) |

Decoded containers are immutable and hashable, so any value can be a set element or a table key.
Python equates ``True``, ``1``, ``Count(1)`` and ``1.0``; a decoded set or table whose elements
Python would merge keeps them all, as :class:`Tagged` values, rather than losing one.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias, Union

from .errors import InvalidValue

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Subnet: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_U64 = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


class Count(int):
    """A fabric ``count``: an unsigned 64-bit integer, distinct from ``integer`` on the wire.

    Arithmetic on a ``Count`` gives a plain ``int`` (an ``integer`` if published as is).
    """

    def __new__(cls, value: int = 0) -> Count:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue(f"a count is an int, not {type(value).__name__}")
        if not 0 <= value <= _U64:
            raise InvalidValue(f"count {value} out of range 0..2**64-1")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"Count({int(self)})"


def _check_ns(ns: object, what: str) -> None:
    if isinstance(ns, bool) or not isinstance(ns, int):
        raise InvalidValue(f"a {what} is integer nanoseconds, not {type(ns).__name__}")
    if not _I64_MIN <= ns <= _I64_MAX:
        raise InvalidValue(f"{what} {ns} ns out of the signed 64-bit range")


@dataclass(frozen=True, order=True, slots=True)
class Timespan:
    """A duration in integer nanoseconds (signed 64-bit)."""

    ns: int

    def __post_init__(self) -> None:
        _check_ns(self.ns, "timespan")

    @classmethod
    def of(cls, delta: _dt.timedelta) -> Timespan:
        """The exact timespan of a ``timedelta`` (microsecond resolution)."""
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return cls(us * 1000)

    @classmethod
    def seconds(cls, s: float) -> Timespan:
        """``s`` seconds, rounded to the nanosecond."""
        return cls(round(s * 1e9))

    def to_timedelta(self) -> _dt.timedelta:
        """As a ``timedelta`` (truncated to microseconds)."""
        return _dt.timedelta(microseconds=self.ns // 1000)

    def total_seconds(self) -> float:
        return self.ns / 1e9

    def __str__(self) -> str:
        return format_timespan(self.ns)


@dataclass(frozen=True, order=True, slots=True)
class Timestamp:
    """A point in time: integer nanoseconds since 1970-01-01T00:00:00 UTC."""

    ns: int

    def __post_init__(self) -> None:
        _check_ns(self.ns, "timestamp")

    @classmethod
    def now(cls) -> Timestamp:
        import time

        return cls(time.time_ns())

    @classmethod
    def of(cls, when: _dt.datetime) -> Timestamp:
        """The exact timestamp of an aware ``datetime``; a naive one is refused."""
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidValue(
                "naive datetime refused: a timestamp needs a time zone "
                "(datetime.now(timezone.utc), or .replace(tzinfo=timezone.utc))"
            )
        delta = when - _EPOCH
        return cls(Timespan.of(delta).ns)

    def to_datetime(self) -> _dt.datetime:
        """As an aware UTC ``datetime`` (truncated to microseconds)."""
        return _EPOCH + _dt.timedelta(microseconds=self.ns // 1000)

    def __str__(self) -> str:
        return format_timestamp(self.ns)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)

PROTOCOLS = ("tcp", "udp", "icmp", "?")


@dataclass(frozen=True, order=True, slots=True)
class Port:
    """A transport port: a number and a protocol (``tcp``, ``udp``, ``icmp`` or ``?``)."""

    number: int
    proto: str = "tcp"

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, int):
            raise InvalidValue("a port number is an int")
        if not 0 <= self.number <= 65535:
            raise InvalidValue(f"port {self.number} out of range 0..65535")
        if self.proto not in PROTOCOLS:
            raise InvalidValue(f"unknown protocol {self.proto!r} (expected tcp, udp, icmp or ?)")

    def __str__(self) -> str:
        return f"{self.number}/{self.proto}"


@dataclass(frozen=True, order=True, slots=True)
class EnumValue:
    """A Zeek enum value such as ``Conn::LOG``."""

    name: str


@dataclass(frozen=True, slots=True)
class Tagged:
    """A value with its fabric type spelt out: ``Tagged("count", 1)`` is ``Count(1)``.

    Decoding gives one only where Python would otherwise merge distinct values (``True`` and
    ``1`` in one set). Equality and hashing include the type, so they never merge.
    """

    type: str
    value: Any


class Table(dict[Any, Any]):
    """A table: a read-only, hashable ``dict``."""

    __slots__ = ("_hash",)

    def __init__(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = ()) -> None:
        super().__init__(items)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]
        if self._hash is None:
            self._hash = hash(frozenset(self.items()))
        return self._hash

    def _readonly(self, *_: object, **__: object) -> NoReturn:
        raise TypeError("a Table is read-only; build a dict and pass that instead")

    __setitem__ = _readonly
    __delitem__ = _readonly
    clear = _readonly
    pop = _readonly
    popitem = _readonly
    setdefault = _readonly
    update = _readonly
    __ior__ = _readonly

    def __repr__(self) -> str:
        return f"Table({dict.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class Event:
    """A Zeek event: a name and its arguments (Broker's ``[1, 1, [name, args]]``)."""

    name: str
    args: tuple[Any, ...] = ()
    metadata: tuple[Any, ...] | None = None


Value: TypeAlias = Union[
    bool,
    int,
    float,
    str,
    Count,
    Timespan,
    Timestamp,
    Address,
    Subnet,
    Port,
    EnumValue,
    Tagged,
    Event,
    _dt.datetime,
    _dt.timedelta,
    "tuple[Any, ...]",
    "list[Any]",
    "frozenset[Any]",
    "set[Any]",
    "dict[Any, Any]",
    None,
]
"""What can be published: any of the forms above, nested."""

Json: TypeAlias = dict[str, Any]

# ------------------------------------------------------------------------------------------
# Time text

_UNITS: tuple[tuple[str, int], ...] = (
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("min", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
)
_UNIT = dict(_UNITS)
_TIMESPAN = re.compile(r"([+-]?)(\d+)(?:\.(\d+))?(ns|us|ms|s|min|h|d)")
_TIMESTAMP = re.compile(
    r"(-?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?"
)


def format_timespan(ns: int) -> str:
    """The largest of ``s``, ``ms``, ``us``, ``ns`` that divides exactly, as the server writes."""
    if ns == 0:
        return "0s"
    for unit in ("s", "ms", "us"):
        per = _UNIT[unit]
        if ns % per == 0:
            return f"{ns // per}{unit}"
    return f"{ns}ns"


def parse_timespan(text: str) -> int:
    """Integer nanoseconds of ``[+-]digits[.digits]unit``, exactly."""
    m = _TIMESPAN.fullmatch(text)
    if m is None:
        raise InvalidValue(f"timespan {text!r}: expected digits and a unit (ns us ms s min h d)")
    sign, whole, frac, unit = m.groups()
    per = _UNIT[unit]
    ns = int(whole) * per
    if frac:
        ns += int(frac) * per // 10 ** len(frac)
    return -ns if sign == "-" else ns


def format_timestamp(ns: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.nnnnnnnnn`` in UTC (nine digits)."""
    secs, frac = divmod(ns, 1_000_000_000)
    when = _EPOCH + _dt.timedelta(seconds=secs)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}"


def parse_timestamp(text: str) -> int:
    """Integer nanoseconds of an ISO 8601 time (0-9 fraction digits, an optional offset)."""
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise InvalidValue(f"timestamp {text!r}: expected YYYY-MM-DDTHH:MM:SS[.fraction][Z|±hh:mm]")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    try:
        base = _dt.datetime(
            int(year), int(month), int(day), int(hh), int(mm), int(ss), tzinfo=_dt.UTC
        )
    except ValueError as e:
        raise InvalidValue(f"timestamp {text!r}: {e}") from None
    delta = base - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000
    if frac:
        ns += int(frac.ljust(9, "0"))
    if zone and zone != "Z":
        z = zone.replace(":", "")
        offset = (int(z[1:3]) * 60 + int(z[3:5])) * 60_000_000_000
        ns -= offset if z[0] == "+" else -offset
    return ns


# ------------------------------------------------------------------------------------------
# Encoding: Python → JSON v1 value objects


def encode(value: Any) -> Json:
    """The JSON v1 value object (``{"@data-type": ..., "data": ...}``) of ``value``."""
    return _encode(value, "$")


def _fail(path: str, why: str) -> NoReturn:
    raise InvalidValue(f"at {path}: {why}")


def _encode(v: Any, path: str) -> Json:
    if v is None:
        return {"@data-type": "none", "data": {}}
    if isinstance(v, bool):
        return {"@data-type": "boolean", "data": v}
    if isinstance(v, Count):
        return {"@data-type": "count", "data": int(v)}
    if isinstance(v, int):
        if not _I64_MIN <= v <= _I64_MAX:
            _fail(path, f"integer {v} out of the 64-bit range (use Count for 2**63 and above)")
        return {"@data-type": "integer", "data": int(v)}
    if isinstance(v, float):
        if math.isnan(v):
            data: Any = "NaN"
        elif math.isinf(v):
            data = "Infinity" if v > 0 else "-Infinity"
        else:
            data = v
        return {"@data-type": "real", "data": data}
    if isinstance(v, str):
        return {"@data-type": "string", "data": v}
    if isinstance(v, Timespan):
        return {"@data-type": "timespan", "data": format_timespan(v.ns)}
    if isinstance(v, _dt.timedelta):
        return {"@data-type": "timespan", "data": format_timespan(Timespan.of(v).ns)}
    if isinstance(v, Timestamp):
        return {"@data-type": "timestamp", "data": format_timestamp(v.ns)}
    if isinstance(v, _dt.datetime):
        try:
            return {"@data-type": "timestamp", "data": format_timestamp(Timestamp.of(v).ns)}
        except InvalidValue as e:
            _fail(path, str(e))
    if isinstance(v, ipaddress.IPv6Address) and v.ipv4_mapped is not None:
        return {"@data-type": "address", "data": str(v.ipv4_mapped)}
    if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return {"@data-type": "address", "data": str(v)}
    if isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return {"@data-type": "subnet", "data": str(v)}
    if isinstance(v, Port):
        return {"@data-type": "port", "data": str(v)}
    if isinstance(v, EnumValue):
        return {"@data-type": "enum-value", "data": v.name}
    if isinstance(v, Tagged):
        return _encode_tagged(v, path)
    if isinstance(v, Event):
        body: list[Any] = [v.name, list(v.args)]
        if v.metadata is not None:
            body.append(list(v.metadata))
        return _encode((Count(1), Count(1), tuple(body)), path)
    if isinstance(v, dict):
        return {
            "@data-type": "table",
            "data": [
                {"key": _encode(k, f"{path}.key({k!r})"), "value": _encode(x, f"{path}[{k!r}]")}
                for k, x in v.items()
            ],
        }
    if isinstance(v, set | frozenset):
        return {"@data-type": "set", "data": [_encode(x, f"{path}{{}}") for x in v]}
    if isinstance(v, tuple | list):
        return {
            "@data-type": "vector",
            "data": [_encode(x, f"{path}[{i}]") for i, x in enumerate(v)],
        }
    import enum

    if isinstance(v, enum.Enum):
        _fail(path, f"{v!r} is a Python enum: publish EnumValue({v.name!r}) for a Zeek enum")
    if hasattr(v, "__dataclass_fields__"):
        import dataclasses

        fields = [getattr(v, f.name) for f in dataclasses.fields(v)]
        return _encode(tuple(fields), path)
    _fail(path, f"{type(v).__name__} is not a fabric value")


def _encode_tagged(t: Tagged, path: str) -> Json:
    enc = _encode(t.value, path)
    if enc["@data-type"] == t.type:
        return enc
    # Tagged("count", 1): the same data read as the named type.
    return _encode(_decode({"@data-type": t.type, "data": enc["data"]}, path), path)


# ------------------------------------------------------------------------------------------
# Encoding straight to JSON text: the publishing path. The same output as
# ``json.dumps(encode(v))``, written without building the dictionaries; values it has no fast
# form for go through :func:`encode`.

_jstr = json.encoder.encode_basestring
_EVENT_HEAD = '{"@data-type":"count","data":1},{"@data-type":"count","data":1},'


def fields_json(v: Any) -> str:
    """``"@data-type":…,"data":…`` of ``v`` as JSON text (no braces)."""
    out: list[str] = []
    _fields(v, out)
    return "".join(out)


def _fields(v: Any, out: list[str]) -> None:
    t = type(v)
    if t is str:
        out.append('"@data-type":"string","data":')
        out.append(_jstr(v))
    elif t is Count:
        out.append(f'"@data-type":"count","data":{int(v)}')
    elif t is int:
        if not _I64_MIN <= v <= _I64_MAX:
            _fail("$", f"integer {v} out of the 64-bit range (use Count for 2**63 and above)")
        out.append(f'"@data-type":"integer","data":{v}')
    elif t is bool:
        out.append(
            '"@data-type":"boolean","data":true' if v else '"@data-type":"boolean","data":false'
        )
    elif t is float and math.isfinite(v):
        out.append(f'"@data-type":"real","data":{v!r}')
    elif v is None:
        out.append('"@data-type":"none","data":{}')
    elif t is tuple or t is list:
        out.append('"@data-type":"vector","data":[')
        _items(v, out)
        out.append("]")
    elif t is Event:
        out.append('"@data-type":"vector","data":[' + _EVENT_HEAD)
        out.append('{"@data-type":"vector","data":[{"@data-type":"string","data":')
        out.append(_jstr(v.name))
        out.append('},{"@data-type":"vector","data":[')
        _items(v.args, out)
        out.append("]}")
        if v.metadata is not None:
            out.append(',{"@data-type":"vector","data":[')
            _items(v.metadata, out)
            out.append("]}")
        out.append("]}]")
    elif t is Timestamp:
        out.append(f'"@data-type":"timestamp","data":"{format_timestamp(v.ns)}"')
    elif t is Timespan:
        out.append(f'"@data-type":"timespan","data":"{format_timespan(v.ns)}"')
    else:
        j = json.dumps(encode(v), separators=(",", ":"), allow_nan=False, ensure_ascii=False)
        out.append(j[1:-1])


def _items(items: Any, out: list[str]) -> None:
    first = True
    for x in items:
        out.append("{" if first else ",{")
        first = False
        _fields(x, out)
        out.append("}")


# ------------------------------------------------------------------------------------------
# Decoding: JSON v1 value objects → Python


def decode(obj: Any) -> Any:
    """The Python value of a JSON v1 value object."""
    return _decode(obj, "$")


def _decode(obj: Any, path: str) -> Any:
    if not isinstance(obj, dict):
        _fail(path, "expected a value object")
    kind = obj.get("@data-type")
    data = obj.get("data")
    try:
        return _DECODERS[kind](data, path)
    except KeyError:
        if kind not in _DECODERS:
            _fail(path, f"unknown @data-type {kind!r}")
        raise
    except (TypeError, ValueError) as e:
        if isinstance(e, InvalidValue):
            raise
        _fail(path, f"bad {kind}: {e}")


def _want(t: type | tuple[type, ...], data: Any, path: str, kind: str) -> None:
    if not isinstance(data, t) or (isinstance(data, bool) and t is not bool):
        _fail(path, f"{kind} data must be {getattr(t, '__name__', t)}, not {type(data).__name__}")


def _d_none(data: Any, path: str) -> None:
    return None


def _d_bool(data: Any, path: str) -> bool:
    _want(bool, data, path, "boolean")
    return bool(data)


def _d_count(data: Any, path: str) -> Count:
    _want(int, data, path, "count")
    return Count(data)


def _d_integer(data: Any, path: str) -> int:
    _want(int, data, path, "integer")
    if not _I64_MIN <= data <= _I64_MAX:
        _fail(path, f"integer {data} out of range")
    return int(data)


def _d_real(data: Any, path: str) -> float:
    if isinstance(data, str):
        special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if data in special:
            return special[data]
        _fail(path, f"real {data!r}")
    if isinstance(data, bool) or not isinstance(data, int | float):
        _fail(path, "real data must be a number")
    return float(data)


def _d_string(data: Any, path: str) -> str:
    _want(str, data, path, "string")
    return str(data)


def _d_enum(data: Any, path: str) -> EnumValue:
    _want(str, data, path, "enum-value")
    return EnumValue(data)


def _d_timespan(data: Any, path: str) -> Timespan:
    _want(str, data, path, "timespan")
    return Timespan(parse_timespan(data))


def _d_timestamp(data: Any, path: str) -> Timestamp:
    _want(str, data, path, "timestamp")
    return Timestamp(parse_timestamp(data))


def _d_address(data: Any, path: str) -> Address:
    _want(str, data, path, "address")
    return ipaddress.ip_address(data)


def _d_subnet(data: Any, path: str) -> Subnet:
    _want(str, data, path, "subnet")
    return ipaddress.ip_network(data, strict=False)


def _d_port(data: Any, path: str) -> Port:
    _want(str, data, path, "port")
    number, _, proto = data.partition("/")
    if not number.isdigit():
        _fail(path, f"port {data!r}: expected NUMBER/PROTO")
    return Port(int(number), proto or "?")


def _d_vector(data: Any, path: str) -> tuple[Any, ...]:
    _want(list, data, path, "vector")
    return tuple(_decode(x, f"{path}[{i}]") for i, x in enumerate(data))


def _d_set(data: Any, path: str) -> frozenset[Any]:
    _want(list, data, path, "set")
    items = [_decode(x, f"{path}[{i}]") for i, x in enumerate(data)]
    out = frozenset(items)
    if len(out) < len(items):
        out = frozenset(_tag(x, o) for x, o in zip(items, data, strict=True))
    return out


def _d_table(data: Any, path: str) -> Table:
    _want(list, data, path, "table")
    pairs = []
    for i, e in enumerate(data):
        if not isinstance(e, dict) or "key" not in e or "value" not in e:
            _fail(f"{path}[{i}]", "a table entry is {key, value}")
        pairs.append((_decode(e["key"], f"{path}[{i}].key"), _decode(e["value"], f"{path}[{i}]")))
    out = Table(pairs)
    if len(out) < len(pairs):
        out = Table((_tag(k, e["key"]), v) for (k, v), e in zip(pairs, data, strict=True))
    return out


def _tag(value: Any, obj: Json) -> Tagged:
    return Tagged(str(obj["@data-type"]), value)


_DECODERS: dict[Any, Any] = {
    "none": _d_none,
    "boolean": _d_bool,
    "count": _d_count,
    "integer": _d_integer,
    "real": _d_real,
    "string": _d_string,
    "enum-value": _d_enum,
    "timespan": _d_timespan,
    "timestamp": _d_timestamp,
    "address": _d_address,
    "subnet": _d_subnet,
    "port": _d_port,
    "vector": _d_vector,
    "set": _d_set,
    "table": _d_table,
}

TYPES: tuple[str, ...] = tuple(_DECODERS)
"""The names of the 15 types, as ``@data-type`` spells them."""


def as_event(value: Any) -> Event | None:
    """The Zeek event ``value`` holds, if it has an event's shape (``[1, 1, [name, args]]``)."""
    if (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], Count)
        and isinstance(value[1], Count)
        and isinstance(value[2], tuple)
        and 2 <= len(value[2]) <= 3
        and isinstance(value[2][0], str)
        and isinstance(value[2][1], tuple)
    ):
        meta = value[2][2] if len(value[2]) == 3 else None
        return Event(value[2][0], value[2][1], meta if isinstance(meta, tuple) else None)
    return None
