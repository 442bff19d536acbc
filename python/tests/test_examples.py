"""Every example in python/examples runs against a real endpoint and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.testing import Home, YardNode

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def example_node(home: Home) -> Iterator[YardNode]:
    n = YardNode("--master", "users", home=home)
    yield n
    n.close()


def run(example: str, node: YardNode) -> str:
    env = {**os.environ, "SWITCHYARD_URL": node.url, "YARD_TOKEN": node.token}
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_pubsub(example_node: YardNode) -> None:
    out = run("pubsub.py", example_node)
    assert "/demo/a Count(42)" in out
    assert "IPv4Address('10.0.0.1'), Port(number=80, proto='tcp')" in out
    assert "/demo/c Timestamp(ns=" in out


def test_request_reply(example_node: YardNode) -> None:
    out = run("request_reply.py", example_node)
    assert "square(12) = 144" in out
    assert "refused: not_a_number - 'twelve' is not an integer" in out
    assert "nobody serves /svc/cube" in out


def test_store(example_node: YardNode) -> None:
    out = run("store.py", example_node)
    assert "logins: Count(1)" in out
    assert "alice: Count(42) keys: 102" in out
    assert "first change: insert alice Count(42)" in out


def test_every_example_has_a_test() -> None:
    tested = {"pubsub.py", "request_reply.py", "store.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.skipif(not os.environ.get("SWITCHYARD_WHEEL"), reason="SWITCHYARD_WHEEL not set")
def test_the_wheel_installs_in_a_fresh_virtualenv(tmp_path: Path, example_node: YardNode) -> None:
    wheel = os.environ["SWITCHYARD_WHEEL"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel],
        check=True,
        timeout=300,
    )
    script = "import switchyard, switchyard.sync as s; print(switchyard.__version__, s.__file__)"
    out = subprocess.run([py, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.startswith("0.1.0 ") and str(venv) in out
    env = {**os.environ, "SWITCHYARD_URL": example_node.url, "YARD_TOKEN": example_node.token}
    r = subprocess.run(
        [py, str(EXAMPLES / "request_reply.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "square(12) = 144" in r.stdout, r.stderr
