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


def stop_process(p: subprocess.Popen[str], sig: int, timeout: float) -> None:
    """Sends ``sig`` if ``p`` still runs, SIGKILL after ``timeout`` s; reaps it."""
    if p.poll() is None:
        p.send_signal(sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    if p.stdout:
        p.stdout.close()


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
        if p is not None:
            stop_process(p, sig, timeout)

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


class Daemon:
    """A ``yard`` daemon of a :class:`Cluster`; ``addr`` is where it listens."""

    def __init__(self, home: Home, *args: str) -> None:
        self.proc = subprocess.Popen(
            [yard_bin(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=home.env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if " listening on " not in line:
            self.stop()
            raise RuntimeError(f"yard {' '.join(args)} did not start: {line!r}")
        self.addr = line.split(" listening on ")[1].split()[0]
        mesos = line.split("Mesos API http://")
        self.mesos = mesos[1].split("/")[0] if len(mesos) > 1 else None

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, 15)


TICKER = """
[[node]]
name = "ticker"
command = "/bin/sh"
args = ["-c", "while true; do echo tick; sleep 1; done"]
"""


class Cluster:
    """A center, the manager of cluster ``name`` and ``agents`` agents, each running the node
    ``ticker``. With ``mesos`` (needs root, for cgroups) the manager is a Mesos master and the
    agents run tasks and services. :attr:`center` is the center's HTTP address."""

    def __init__(
        self, name: str = "sdk", agents: int = 2, *, mesos: bool = False, home: Home | None = None
    ) -> None:
        self._own_home = home is None
        self.home = home or Home()
        self.name = name
        self.work = tempfile.mkdtemp(prefix="switchyard-cluster-")
        # Nodes and tasks run as an unprivileged user: it must reach its directories.
        os.chmod(self.work, 0o755)
        self.daemons: list[Daemon] = []
        try:
            c = self._start("center", "--listen", "127.0.0.1:0", "--data", self._dir("center"))
            self.center = f"http://{c.addr}"
            config = Path(self.work, "cluster.toml")
            config.write_text(TICKER)
            mesos_args = ["--mesos-listen", "127.0.0.1:0" if mesos else "off"]
            m = self._start(
                "manager", "--cluster", name, "--center", c.addr, "--listen", "127.0.0.1:0",
                "--data", self._dir("manager"), "--config", str(config),
                "--report-interval", "1s", "--metrics-interval", "500ms", *mesos_args,
            )  # fmt: skip
            self.mesos = m.mesos
            for i in range(agents):
                extra = ["--resources", "cpus:2;mem:1024;disk:1024"] if mesos else []
                self._start(
                    "agent", "--manager", m.addr, "--name", f"agent-{i + 1}",
                    "--listen", "127.0.0.1:0", "--data", self._dir(f"agent-{i + 1}"),
                    "--heartbeat", "250ms", *mesos_args, *extra,
                )  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _dir(self, name: str) -> str:
        return str(Path(self.work, name))

    def _start(self, *args: str) -> Daemon:
        d = Daemon(self.home, *args)
        self.daemons.append(d)
        return d

    def close(self) -> None:
        for d in reversed(self.daemons):
            d.stop()
        shutil.rmtree(self.work, ignore_errors=True)
        if self._own_home:
            self.home.cleanup()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
