"""The resource manager across hosts, with the real pymesos: a center, a manager and three agent
hosts, each a network namespace of scripts/testbed.sh, every daemon joined with a token and
speaking TLS 1.3 to the others. pymesos cannot speak TLS, so it runs on the manager's host
against the master's loopback listener, which serves plain HTTP beside TLS when asked
(`--mesos-listen 127.0.0.1:5050 --mesos-plain`, docs/RM.md). A service keeps its count
through the loss of an agent host, and the host is reconciled when it comes back.

Needs root (network namespaces and cgroups); skipped, saying so, without it."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

from conftest import YARD, stop_process, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTBED = ROOT / "scripts" / "testbed.sh"
CENTER = "10.79.0.1:9900"
MANAGER = "10.79.0.2:9901"
AGENT_TIMEOUT_S = 3

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the multi-host test bed needs root for network namespaces")


class Bed:
    """The namespaces, the daemons in them and their homes; `close` stops the daemons (so
    that agents remove their tasks' cgroups) and then removes every namespace."""

    def __init__(self, hosts):
        self.prefix = f"yp{os.getpid() & 0xffff:04x}"
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="yard-bed-"))
        os.chmod(self.work, 0o711)
        self.procs = []
        subprocess.run(["bash", str(TESTBED), "up", self.prefix, *hosts], check=True, timeout=60)

    def home(self, name):
        h = self.work / name
        h.mkdir(exist_ok=True)
        return h

    def on(self, host):
        """The command prefix that runs a program on `host`: its network namespace only
        (`ip netns exec` would also remount /sys, hiding the cgroup controllers agents use)."""
        return ["nsenter", f"--net=/run/netns/{self.prefix}-{host}"]

    def cmd(self, host, home, *args):
        return [*self.on(host), YARD, *args]

    def env(self, home, **extra):
        env = {**os.environ, "YARD_HOME": str(home), "YARD_LOG": "warn", **extra}
        env.pop("YARD_CREDENTIALS", None)
        return env

    def run(self, host, home, *args, **extra):
        out = subprocess.run(self.cmd(host, home, *args), env=self.env(home, **extra),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return out.stdout

    def daemon(self, host, home, *args):
        log = home / "daemon.log"
        with open(log, "a") as err:
            p = subprocess.Popen(self.cmd(host, home, *args), env=self.env(home), stdout=subprocess.PIPE,
                                 stderr=err, text=True)
        self.procs.append(p)
        line = p.stdout.readline()
        assert " listening on " in line, f"{args}: {line!r} {log.read_text()}"
        return p

    def script(self, *args):
        subprocess.run(["bash", str(TESTBED), args[0], self.prefix, *args[1:]], check=True, timeout=60)

    def close(self):
        # All asked at once (agents first), then each waited for.
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            stop_process(p, timeout=20)
        subprocess.run(["bash", str(TESTBED), "down", self.prefix], timeout=60)
        shutil.rmtree(self.work, ignore_errors=True)


SERVICE = """name = "hello"
instances = 2
user = "root"
command = "exec {python} -m http.server $PORT0 --bind 0.0.0.0"
cpus = 0.1
mem = 64
ports = 1
constraints = [["agent", "UNIQUE"]]

[health_check]
type = "http"
port_index = 0
delay = 0
interval = 0.3
grace = 10
"""

FRAMEWORK = textwrap.dedent("""\
    import sys
    from pymesos import MesosSchedulerDriver, Scheduler

    class S(Scheduler):
        launched = False

        def resourceOffers(self, d, offers):
            for o in offers:
                if self.launched:
                    d.declineOffer(o["id"])
                    continue
                self.launched = True
                d.launchTasks(o["id"], [{"task_id": {"value": "hello"}, "agent_id": o["agent_id"],
                    "name": "hello", "command": {"value": "echo hello from $(hostname -I)"},
                    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                                  {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]}])

        def statusUpdate(self, d, s):
            print(s["state"], flush=True)
            if s["state"] in ("TASK_FINISHED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR"):
                d.stop()

    token = open(sys.argv[1]).read().strip()
    d = MesosSchedulerDriver(S(), {"user": "root", "name": "bed"}, "127.0.0.1:5050",
                             principal="admin", secret=token)
    d.run()
""")


def test_pymesos_and_a_service_across_hosts_through_the_loss_of_an_agent_host():
    bed = Bed(["center=10.79.0.1", "m=10.79.0.2", "h1=10.79.0.3", "h2=10.79.0.4", "h3=10.79.0.5",
               "out=10.79.0.9"])
    try:
        ch = bed.home("center")
        bed.run("center", ch, "ca", "init")
        bed.daemon("center", ch, "center", "--listen", CENTER, "--data", str(ch / "data"))
        token = lambda allows, uses: bed.run("center", ch, "join-token", "create", allows, "--uses",
                                             uses, "--center", CENTER).strip()
        mh = bed.home("manager")
        manager_args = ("manager", "--cluster", "web", "--join", token("manager:web", "1"),
                        "--listen", MANAGER, "--center", CENTER, "--data", str(mh / "data"),
                        "--mesos-listen", "127.0.0.1:5050", "--mesos-plain",
                        "--agent-timeout", f"{AGENT_TIMEOUT_S}s", "--offer-timeout", "5s")
        manager = bed.daemon("m", mh, *manager_args)
        agent_token = token("agent:web/*", "3")
        for i, host in enumerate(["h1", "h2", "h3"], 1):
            ah = bed.home(host)
            os.chmod(ah, 0o711)
            bed.daemon(host, ah, "agent", "--cluster", "web", "--name", host, "--join", agent_token,
                       "--listen", f"10.79.0.{i + 2}:9910", "--manager", MANAGER,
                       "--data", str(ah / "data"), "--heartbeat", "250ms", "--allow-root-tasks",
                       "--mesos-listen", f"10.79.0.{i + 2}:5051",
                       "--resources", "cpus:2;mem:1024;disk:1024;ports:[31000-31099]",
                       "--update-retry", "500ms")
        # The Mesos API on the manager's host: the CLI and pymesos in plain text on loopback,
        # with the manager home's admin credential.
        admin = mh / "credentials"
        mesos = lambda *args: bed.run("m", mh, *args, YARD_MESOS="http://127.0.0.1:5050")

        def slaves():
            out = subprocess.run([*bed.on("m"), "curl", "-s", "-H",
                                  f"Authorization: Bearer {admin.read_text().strip()}",
                                  "http://127.0.0.1:5050/slaves"], capture_output=True, text=True)
            try:
                return json.loads(out.stdout)["slaves"]
            except (ValueError, KeyError):
                return []

        wait_for("three agents registered", lambda: sum(s["active"] for s in slaves()) == 3, timeout=30)

        # A pymesos framework, through the documented path, runs a task on an agent host.
        fw = bed.work / "framework.py"
        fw.write_text(FRAMEWORK)
        out = subprocess.run([*bed.on("m"), sys.executable, str(fw), str(admin)],
                             capture_output=True, text=True, timeout=60)
        states = out.stdout.split()
        assert "TASK_RUNNING" in states and states[-1] == "TASK_FINISHED", out.stdout + out.stderr

        # The outsider: it may hold the public root, but no credential and no certificate. No
        # Mesos call (the master is not beyond its host; the agents' APIs are TLS and need a
        # credential), no sandbox file, no WebSocket, no change at the center.
        root = ch / "ca" / "ca.crt"
        task_id = json.loads(mesos("tasks", "--all", "--json"))["tasks"][0]["id"]

        def outsider(url, *extra):
            out = subprocess.run([*bed.on("out"), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                  "--max-time", "5", "--cacert", str(root), *extra, url],
                                 capture_output=True, text=True, timeout=20)
            return out.stdout

        assert outsider("http://10.79.0.2:5050/master/state") == "000", "the master beyond its host"
        for i in (3, 4, 5):
            agent = f"https://10.79.0.{i}:5051"
            assert outsider(f"{agent}/state") == "401"
            assert outsider(f"{agent}/files/read?path=/&offset=0") == "401"
            assert outsider(f"{agent}/files/browse?path=/") == "403", "a route without a rule"
            # Plain text beyond loopback: refused with a 400 that says the listener speaks TLS.
            assert outsider(f"http://10.79.0.{i}:5051/state") == "400"
        assert outsider(f"https://{CENTER}/v1/messages/json", "-H", "Connection: Upgrade", "-H",
                        "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13", "-H",
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==") == "401"
        assert outsider(f"https://{CENTER}/v1/commands", "-X", "POST", "-H",
                        "Content-Type: application/json", "-d", '{"op":"exec","cluster":"web","argv":["id"]}') == "401"
        assert outsider(f"https://{CENTER}/v1/topology") == "401"
        assert task_id in mesos("tasks", "--all"), "the task the outsider could not read"

        # A service of two, one instance per agent host.
        svc = bed.work / "hello.toml"
        svc.write_text(SERVICE.format(python=sys.executable))
        mesos("service", "deploy", str(svc))
        status = lambda: json.loads(mesos("service", "status", "hello", "--json"))
        wait_for("two healthy instances", lambda: status()["healthy"] == 2 and status()["phase"] == "stable",
                 timeout=40)
        first = status()

        # The manager's host upgraded in place (docs/OPS.md: the daemon stopped and started
        # again with the same flags, its spent join token among them): its home keeps the
        # identity, and the service's instances run on, adopted, none restarted.
        running = {t["id"] for t in first["tasks"]}
        manager.send_signal(signal.SIGTERM)
        manager.wait(timeout=20)
        manager = bed.daemon("m", mh, *manager_args)
        wait_for("the instances adopted by the restarted manager",
                 lambda: {t["id"] for t in status()["tasks"] if t["healthy"]} == running, timeout=30)
        # Where they run is known as before: their hosts and ports.
        assert [(t["hostname"], t["ports"]) for t in status()["tasks"]] == \
            [(t["hostname"], t["ports"]) for t in first["tasks"]], status()
        first = status()
        names = {"10.79.0.3": "h1", "10.79.0.4": "h2", "10.79.0.5": "h3"}
        hosts = {s["id"]: s["hostname"] for s in slaves()}
        used = {t["agent_id"] for t in first["tasks"]}
        assert len(used) == 2, first
        # Each instance answers on its agent's address, from the manager's host.
        for t in first["tasks"]:
            curl = subprocess.run([*bed.on("m"), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                   f"http://{hosts[t['agent_id']]}:{t['ports'][0]}/"],
                                  capture_output=True, text=True, timeout=10)
            assert curl.stdout == "200", (t, curl.stdout, curl.stderr)
        lost = first["tasks"][0]["agent_id"]
        victim = names[hosts[lost]]

        # The victim's host is cut off: its instance is lost and comes back on the third host.
        bed.script("cut", victim)

        def recovered():
            st = status()
            running = {t["agent_id"] for t in st["tasks"] if t["state"] == "TASK_RUNNING"}
            return st["healthy"] == 2 and lost not in running and len(running) == 2

        wait_for("the instance replaced on another host", recovered, timeout=AGENT_TIMEOUT_S + 30)

        # Back: the host registers again, and its old instance is not kept beside the new one.
        bed.script("mend", victim)
        # (An agent whose heartbeat fell due while its manager was away once never beat again.)
        wait_for("the host back", lambda: sum(s["active"] for s in slaves()) == 3, timeout=30)

        def reconciled():
            tasks = json.loads(mesos("tasks", "--json"))["tasks"]
            on_victim = [t for t in tasks if t.get("agent_id") == lost and t["state"] == "TASK_RUNNING"]
            return status()["healthy"] == 2 and not on_victim

        wait_for("the returned host reconciled", reconciled, timeout=30)
        mesos("service", "rm", "hello")
        wait_for("service gone", lambda: "hello" not in mesos("service", "list"), timeout=30)
    finally:
        bed.close()
