"""A real Prometheus server (the Debian package) scrapes a running `yard center` and answers a
Switchyard series through its own query API."""

import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request

import pytest

from conftest import YARD, free_port, wait_for


def stop(procs, work):
    """Stops the processes, newest first (SIGTERM, then SIGKILL after 10 s), and removes `work`."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    shutil.rmtree(work, ignore_errors=True)


def test_prometheus_scrapes_the_center_and_answers_a_switchyard_series():
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed (scripts/test.sh installs the Debian package)"
    work = tempfile.mkdtemp(prefix="yard-prom-")
    env = {**os.environ, "YARD_LOG": "warn"}
    center = subprocess.Popen(
        [YARD, "center", "--listen", "127.0.0.1:0", "--data", os.path.join(work, "center")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    procs = [center]
    try:
        line = center.stdout.readline()
        addr = line.split(" listening on ")[1].split()[0]
        manager = subprocess.Popen(
            [YARD, "manager", "--cluster", "prom", "--center", addr, "--listen", "127.0.0.1:0",
             "--data", os.path.join(work, "manager"), "--report-interval", "1s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        procs.append(manager)
        manager.stdout.readline()
        prom_port = free_port()
        # A viewer token for the scraper (metrics need a credential), in a private file.
        token_file = os.path.join(work, "scrape.token")
        out = subprocess.run([YARD, "token", "create", "prometheus", "--role", "viewer"],
                             check=True, capture_output=True, text=True, timeout=30)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, out.stdout.strip().encode())
        os.close(fd)
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n"
                "scrape_configs:\n  - job_name: yard-center\n"
                f"    authorization:\n      credentials_file: {token_file}\n"
                f"    static_configs:\n      - targets: ['{addr}']\n"
                # The same target without a credential: refused, so `up` is 0.
                "  - job_name: yard-anonymous\n"
                f"    static_configs:\n      - targets: ['{addr}']\n")
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prom)

        def query():
            q = urllib.parse.urlencode({"query": 'yard_center_clusters{job="yard-center"}'})
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/query?{q}", timeout=2) as r:
                    answer = json.load(r)
            except OSError:
                return None
            result = answer.get("data", {}).get("result", [])
            # The manager's registration makes it 1.
            return result if result and result[0]["value"][1] == "1" else None

        result = wait_for("Prometheus to return yard_center_clusters = 1", query, 60)

        def anonymous_up():
            q = urllib.parse.urlencode({"query": 'up{job="yard-anonymous"}'})
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/query?{q}", timeout=2) as r:
                    res = json.load(r).get("data", {}).get("result", [])
            except OSError:
                return None
            return res if res else None

        assert wait_for("the anonymous job scraped", anonymous_up, 60)[0]["value"][1] == "0"
        assert result[0]["metric"]["__name__"] == "yard_center_clusters"
        assert result[0]["metric"]["instance"] == addr
    finally:
        stop(procs, work)


def test_prometheus_scrapes_a_tls_node_checking_it_against_the_cluster_root():
    """Prometheus's own `tls_config` against `yard node --tls-cert`: with the cluster's root it
    scrapes; with the root of another authority, or plain `http`, the target is down."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed (scripts/test.sh installs the Debian package)"
    work = tempfile.mkdtemp(prefix="yard-prom-tls-")
    procs = []
    try:
        def yard(home, *args):
            return subprocess.run([YARD, *args], check=True, capture_output=True, text=True,
                                  timeout=30, env={**os.environ, "YARD_HOME": home}).stdout
        home, other = os.path.join(work, "home"), os.path.join(work, "other")
        for h in (home, other):
            yard(h, "ca", "init")
        certs = os.path.join(work, "certs")
        yard(home, "cert", "issue", "node:scraped", "--host", "127.0.0.1", "--out", certs)
        other_root = os.path.join(work, "other-ca.crt")
        with open(other_root, "w") as f:
            f.write(yard(other, "ca", "show", "--pem"))
        token = yard(home, "token", "create", "prometheus", "--role", "viewer").strip()
        token_file = os.path.join(work, "scrape.token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, token.encode())
        os.close(fd)
        node = subprocess.Popen(
            [YARD, "node", "--listen", "127.0.0.1:0",
             "--tls-cert", os.path.join(certs, "node-scraped.crt"),
             "--tls-key", os.path.join(certs, "node-scraped.key"),
             "--tls-ca", os.path.join(certs, "ca.crt")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "YARD_HOME": home, "YARD_LOG": "warn"})
        procs.append(node)
        addr = node.stdout.readline().split(" listening on ")[1].split()[0]
        prom_port = free_port()
        config = os.path.join(work, "prometheus.yml")
        job = lambda name, scheme, ca: (
            f"  - job_name: {name}\n    scheme: {scheme}\n"
            f"    authorization:\n      credentials_file: {token_file}\n"
            + (f"    tls_config:\n      ca_file: {ca}\n      min_version: TLS13\n" if ca else "")
            + f"    static_configs:\n      - targets: ['{addr}']\n")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                    + job("tls", "https", os.path.join(certs, "ca.crt"))
                    + job("stranger", "https", other_root)
                    + job("plain", "http", None))
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prom)

        def query(q):
            q = urllib.parse.urlencode({"query": q})
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/query?{q}", timeout=2) as r:
                    return json.load(r).get("data", {}).get("result", []) or None
            except OSError:
                return None

        got = wait_for("a series scraped over TLS",
                       lambda: query('yard_uptime_seconds{job="tls"}'), 60)
        assert got[0]["metric"]["instance"] == addr
        for name in ("stranger", "plain"):
            up = wait_for(f"the {name} job scraped", lambda: query(f'up{{job="{name}"}}'), 60)
            assert up[0]["value"][1] == "0", (name, up)
    finally:
        stop(procs, work)
