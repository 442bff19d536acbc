"""The HTTP calls of the center's and the masters' APIs, on the standard library.

Blocking ``http.client`` requests run in a worker thread (``asyncio.to_thread``), so the
asyncio API never blocks its loop; this module is the only place that speaks HTTP.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from . import errors
from .errors import ConfigurationError, ConnectFailed


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def text(self) -> str:
        return self.body.decode(errors="replace")


class Http:
    """One HTTP(S) base address with a credential; every call has a timeout."""

    def __init__(
        self,
        url: str,
        token: str | None,
        ca: str | None,
        timeout: float,
        basic: tuple[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"URL {url!r}: expected http://HOST:PORT or https://HOST:PORT")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._ssl = ssl.create_default_context(cafile=ca) if self._https else None
        self.timeout = timeout
        self._auth: str | None = None
        if token:
            self._auth = f"Bearer {token}"
        elif basic:
            import base64

            self._auth = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()

    def _blocking(
        self,
        method: str,
        path: str,
        body: bytes | None,
        content_type: str | None,
        timeout: float,
    ) -> Response:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        headers = {"Accept": "application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        if content_type:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        except TimeoutError:
            raise errors.RequestTimeout(
                f"{method} {self.url}{path}: no answer in {timeout} s"
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise ConnectFailed(f"{method} {self.url}{path}: {e}") from None
        finally:
            conn.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> Response:
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                path = f"{path}?{urlencode(q)}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = "application/json"
        t = timeout if timeout is not None else self.timeout
        r = await asyncio.to_thread(self._blocking, method, path, body, content_type, t)
        if r.status not in ok:
            raise error_of(r, f"{method} {path}")
        return r

    async def get(self, path: str, **query: Any) -> Any:
        return (await self.request("GET", path, query=query)).json()


def error_of(r: Response, what: str) -> errors.SwitchyardError:
    """The exception for an HTTP error answer (``{"code","context"}`` or plain text)."""
    code, context = "", r.text().strip()
    try:
        j = json.loads(r.body)
        if isinstance(j, dict):
            code = str(j.get("code") or j.get("error") or "")
            context = str(j.get("context") or j.get("message") or context)
    except ValueError:
        pass
    return errors.from_server(
        code or f"http_{r.status}", f"{what}: {context}", http_status=r.status
    )
