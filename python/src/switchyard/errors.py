"""Every error the SDK raises, one class per code the server sends.

All derive from :class:`SwitchyardError`, which carries ``code`` (the server's code, or the
SDK's own), ``context`` (the server's explanation) and, for HTTP, ``http_status``. A second
builtin base lets ``except TimeoutError``, ``except KeyError`` and the like work as expected.
"""

from __future__ import annotations

from typing import Any


class SwitchyardError(Exception):
    """Base of every SDK error."""

    code: str = "error"

    def __init__(
        self,
        context: str = "",
        *,
        code: str | None = None,
        http_status: int | None = None,
        request_id: Any = None,
    ) -> None:
        super().__init__(context)
        if code is not None:
            self.code = code
        self.context = context
        self.http_status = http_status
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.context}" if self.context else self.code


class InvalidValue(SwitchyardError, ValueError):
    """A Python value that has no fabric form, or a malformed value from the wire."""

    code = "invalid_value"


class ConfigurationError(SwitchyardError):
    """A bad address, URL or option: retrying will not help."""

    code = "configuration"


# --- connection -----------------------------------------------------------------------------


class ConnectionLost(SwitchyardError, ConnectionError):
    """The connection to the endpoint ended while the call was under way."""

    code = "connection_lost"


class ConnectFailed(ConnectionLost):
    """The endpoint could not be reached (or reconnection gave up)."""

    code = "connect_failed"


class BackpressureOverflow(ConnectionLost):
    """The server dropped this client because it read too slowly (``backpressure_overflow``)."""

    code = "backpressure_overflow"


class KeepaliveTimeout(ConnectionLost):
    code = "connection_timeout"


class ServerShuttingDown(ConnectionLost):
    code = "shutting_down"


class SlowConsumer(SwitchyardError):
    """A subscription's local queue was full and messages were dropped for it.

    ``dropped`` says how many since the last time this was raised.
    """

    code = "slow_consumer"

    def __init__(self, context: str, dropped: int) -> None:
        super().__init__(context)
        self.dropped = dropped


# --- authentication and policy --------------------------------------------------------------


class Unauthenticated(SwitchyardError, PermissionError):
    """No credential, or a wrong one (HTTP 401, ``unauthenticated``)."""

    code = "unauthenticated"


class Forbidden(SwitchyardError, PermissionError):
    """The credential's policy does not allow this (``forbidden``)."""

    code = "forbidden"


# --- messages -------------------------------------------------------------------------------


class InvalidMessage(SwitchyardError, ValueError):
    """The server could not read what was sent (``deserialization_failed``, ``invalid_message``)."""

    code = "invalid_message"


class InvalidTopic(SwitchyardError, ValueError):
    """A topic the server refuses (``invalid_topic_key``: reserved ``<$>`` topics)."""

    code = "invalid_topic_key"


class TooManySubscriptions(SwitchyardError):
    code = "too_many_subscriptions"


# --- requests -------------------------------------------------------------------------------


class RequestError(SwitchyardError):
    """A request that got no answer."""


class NoResponders(RequestError, LookupError):
    """Nobody in the mesh subscribes to the request's topic (``no_path_to_peer``)."""

    code = "no_path_to_peer"


class RequestTimeout(RequestError, TimeoutError):
    """No answer in time (``request_timeout``), or a client-side deadline passed."""

    code = "request_timeout"


class RemoteFailure(RequestError):
    """The responder answered with a failure: ``failure`` is its code.

    A responder raises this to answer with a failure of its own choosing.
    """

    code = "request_failed"

    def __init__(self, failure: str, context: str = "", **kw: Any) -> None:
        super().__init__(context, **kw)
        self.failure = failure

    def __str__(self) -> str:
        return f"request_failed ({self.failure}): {self.context}"


# --- stores ---------------------------------------------------------------------------------


class StoreError(SwitchyardError):
    """A store operation failed."""


class NoSuchKey(StoreError, KeyError):
    code = "no_such_key"

    def __str__(self) -> str:
        return SwitchyardError.__str__(self)


class NoSuchStore(StoreError, LookupError):
    code = "no_such_store"


class NoSuchMaster(StoreError, LookupError):
    code = "no_such_master"


class TypeClash(StoreError, TypeError):
    code = "type_clash"


class InvalidData(StoreError, ValueError):
    code = "invalid_data"


class MasterExists(StoreError):
    code = "master_exists"


class StaleData(StoreError):
    code = "stale_data"


class Buffered(StoreError):
    """A clone kept the write until its master is back, so its result is not known yet."""

    code = "buffered"


class BackendFailure(StoreError):
    code = "backend_failure"


# --- HTTP APIs ------------------------------------------------------------------------------


class BadRequest(SwitchyardError, ValueError):
    code = "bad_request"


class NotFound(SwitchyardError, LookupError):
    code = "not_found"


class Conflict(SwitchyardError):
    code = "conflict"


class Unavailable(SwitchyardError):
    """The service answered 502/503 (e.g. ``rm_unreachable``)."""

    code = "unavailable"


class CommandFailed(SwitchyardError):
    """A center command ended with failed or skipped steps; ``command`` is its final state."""

    code = "command_failed"

    def __init__(self, context: str, command: Any) -> None:
        super().__init__(context)
        self.command = command


_BY_CODE: dict[str, type[SwitchyardError]] = {
    c.code: c
    for c in (
        BackpressureOverflow,
        KeepaliveTimeout,
        ServerShuttingDown,
        Unauthenticated,
        Forbidden,
        InvalidTopic,
        TooManySubscriptions,
        NoResponders,
        RequestTimeout,
        NoSuchKey,
        NoSuchStore,
        NoSuchMaster,
        TypeClash,
        InvalidData,
        MasterExists,
        StaleData,
        BackendFailure,
    )
}
_BY_CODE["deserialization_failed"] = InvalidMessage
_BY_CODE["invalid_message"] = InvalidMessage
_BY_CODE["invalid_uri"] = ConfigurationError
_BY_CODE["invalid_application_name"] = ConfigurationError
_BY_CODE["authentication_failed"] = Unauthenticated

_BY_STATUS: dict[int, type[SwitchyardError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    502: Unavailable,
    503: Unavailable,
    504: RequestTimeout,
}


def from_server(
    code: str,
    context: str = "",
    *,
    http_status: int | None = None,
    request_id: Any = None,
    failure: str | None = None,
) -> SwitchyardError:
    """The exception for an error the server sent."""
    if code == "request_failed":
        return RemoteFailure(
            failure or "unknown", context, http_status=http_status, request_id=request_id
        )
    cls = _BY_CODE.get(code)
    if cls is None and http_status is not None:
        cls = _BY_STATUS.get(http_status)
    cls = cls or SwitchyardError
    return cls(context, code=code, http_status=http_status, request_id=request_id)
