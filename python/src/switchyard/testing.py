"""Real ``yard`` processes for tests: ``with YardNode() as node: ...``.

Each :class:`YardNode` runs ``yard node`` on a free loopback port with a credentials home of
its own (an admin token in :attr:`token`), and stops it (SIGTERM, then SIGKILL) on exit.
The binary is ``$YARD_BIN``, else ``yard`` on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def yard_bin() -> str:
    path = os.environ.get("YARD_BIN") or shutil.which("yard")
    if not path:
        raise FileNotFoundError("no yard binary: set YARD_BIN or put yard on PATH")
    return path


class Home:
    """A credentials home (``YARD_HOME``) with its admin token."""

    def __init__(self, path: str | None = None) -> None:
        self._own = path is None
        self.path = path or tempfile.mkdtemp(prefix="switchyard-home-")
        self.env = {**os.environ, "YARD_HOME": self.path, "YARD_LOG": "warn"}
        self.env.pop("YARD_CREDENTIALS", None)
        self.env.pop("YARD_TOKEN", None)
        creds = Path(self.path, "credentials")
        if not creds.exists():
            self.yard("token", "list")
        self.token = creds.read_text().strip()

    def yard(self, *args: str, endpoint: str | None = None) -> str:
        """Runs the ``yard`` CLI in this home; its stdout (raises on failure)."""
        env = dict(self.env)
        if endpoint:
            env["YARD_ENDPOINT"] = endpoint
        r = subprocess.run([yard_bin(), *args], env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"yard {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def token_for(self, name: str, role: str) -> str:
        """A new token of ``role`` (admin, operator, viewer, app)."""
        return self.yard("token", "create", name, "--role", role).strip()

    def cleanup(self) -> None:
        if self._own:
            shutil.rmtree(self.path, ignore_errors=True)


class YardNode:
    """``yard node --listen 127.0.0.1:0 [extra]``; :attr:`url` is its WebSocket address."""

    def __init__(self, *extra: str, home: Home | None = None, listen: str = "127.0.0.1:0") -> None:
        self._own_home = home is None
        self.home = home or Home()
        self.token = self.home.token
        self._extra: Sequence[str] = extra
        self._listen = listen
        self.proc: subprocess.Popen[str] | None = None
        self.addr = ""
        self.start()

    def start(self) -> None:
        """Starts the process (again, on the same address after a :meth:`stop`)."""
        listen = self.addr or self._listen
        self.proc = subprocess.Popen(
            [yard_bin(), "node", "--listen", listen, *self._extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.home.env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if " listening on " not in line:
            self.stop()
            raise RuntimeError(f"yard node did not start: {line!r}")
        self.addr = line.split(" listening on ")[1].split()[0]

    @property
    def url(self) -> str:
        return f"ws://{self.addr}"

    @property
    def http(self) -> str:
        return f"http://{self.addr}"

    def yard(self, *args: str) -> str:
        return self.home.yard(*args, endpoint=self.addr)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        if self._own_home:
            self.home.cleanup()

    def __enter__(self) -> YardNode:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
