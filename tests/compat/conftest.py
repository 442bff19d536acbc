"""Fixtures: a real `yard node` on a free loopback port, and `yard` CLI helpers."""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

YARD = os.environ.get("YARD_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "yard"))

# Every process of these tests (daemons and the CLI) shares one credentials home, as the
# processes of one host do; its admin token is what an operator there holds.
HOME = tempfile.mkdtemp(prefix="yard-compat-home-")
os.environ["YARD_HOME"] = HOME
os.environ.pop("YARD_CREDENTIALS", None)
atexit.register(shutil.rmtree, HOME, True)


def admin_token():
    """The home's admin token (the home is made on first use)."""
    path = os.path.join(HOME, "credentials")
    if not os.path.exists(path):
        subprocess.run([YARD, "token", "list"], check=True, capture_output=True, timeout=30)
    with open(path) as f:
        return f.read().strip()


def make_token(name, role):
    """A new token of `role` in the shared home."""
    out = subprocess.run([YARD, "token", "create", name, "--role", role], check=True,
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Stops `proc` with `sig` if it still runs, then SIGKILL after `timeout` s; reaps it."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Node:
    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [YARD, "node", "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "YARD_LOG": "warn"},
        )
        line = self.proc.stdout.readline()
        assert " listening on " in line, line
        self.addr = line.split(" listening on ")[1].split()[0]
        self.uri = f"ws://{self.addr}/v1/messages/json"

    def yard(self, *args, check=True):
        env = {**os.environ, "YARD_ENDPOINT": self.addr, "YARD_LOG": "warn"}
        return subprocess.run([YARD, *args], env=env, capture_output=True, text=True, check=check, timeout=30)

    def sub(self, *args):
        """Starts `yard sub` and returns once its subscription is live."""
        env = {**os.environ, "YARD_ENDPOINT": self.addr}
        p = subprocess.Popen([YARD, "sub", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = p.stderr.readline()
        assert line.startswith("yard sub: subscribed to"), line
        return p

    def stop(self):
        stop_process(self.proc)


@pytest.fixture
def node():
    n = Node("--timestamp-precision", "us")
    yield n
    n.stop()


def wait_for(what, cond, timeout=10.0):
    """Polls `cond` until it gives a true value, which it returns; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port():
    """A loopback TCP port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
