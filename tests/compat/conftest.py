"""Fixtures: a real `yard node` on a free loopback port, and `yard` CLI helpers."""

import os
import subprocess
import time

import pytest

YARD = os.environ.get("YARD_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "yard"))


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
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def node():
    n = Node("--timestamp-precision", "us")
    yield n
    n.stop()


def wait_for(what, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
