"""The resource manager against the real Mesos clients, unmodified: pymesos 0.3.15's scheduler
driver and avmesos-cli 1.0.0's `mesos-cli` (installed by scripts/install-mesos-clients.sh).

A `yard manager` (the master, Mesos API on an ephemeral port) and `yard agent`s run as real
processes; tasks run in real cgroups."""

import base64
import json
import os
import pathlib
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data

from conftest import YARD, admin_token, free_port, stop_process, wait_for

# The framework's Mesos principal: the master is started with --mesos-credentials, and pymesos
# and mesos-cli send it as HTTP Basic credentials, as they would to a Mesos master.
PRINCIPAL = "compat"
SECRET = "s3cret-" + os.urandom(8).hex()


def driver(sched, framework, master):
    return MesosSchedulerDriver(sched, framework, master, principal=PRINCIPAL, secret=SECRET)

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_GONE"}
AGENT_TIMEOUT_S = 3


def session_alive(sid):
    """True while any process belongs to session `sid` (a task runs in its own session)."""
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                return True
    return False


def free_port_block(n):
    """The first of `n` consecutive loopback ports that are all free now."""
    for base in range(32000, 60000, 500):
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


class Daemon:
    def __init__(self, *args):
        self.args = args
        self.proc = subprocess.Popen([YARD, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "YARD_LOG": "error"})
        line = self.proc.stdout.readline()
        assert " listening on " in line, f"{args}: {line!r}"
        self.addr = line.split(" listening on ")[1].split()[0]
        self.mesos = line.split("Mesos API http://")[1].split("/")[0]

    def get(self, path):
        req = urllib.request.Request(f"http://{self.mesos}{path}",
                                     headers={"Authorization": f"Bearer {admin_token()}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            stop_process(self.proc, sig, timeout=15)


class Cluster:
    def __init__(self, tmp, agents=2, allow_root=True):
        self.tmp = tmp
        self.allow_root = allow_root
        # Tasks run as `nobody`: their sandboxes must lie under directories others may pass
        # through (pytest's own are private to root).
        self.agent_root = pathlib.Path(tempfile.mkdtemp(prefix="yard-agents-"))
        os.chmod(self.agent_root, 0o711)
        self.fabric = f"127.0.0.1:{free_port()}"
        self.mesos_port = free_port()
        self.ports = free_port_block(100 * agents)
        self.manager = self.start_manager()
        self.agents = [self.start_agent(f"a{i}") for i in range(agents)]
        wait_for("agents registered", lambda: sum(s["active"] for s in self.manager.get("/slaves")["slaves"]) == agents)

    def start_manager(self):
        return Daemon("manager", "--cluster", "rm", "--center", "127.0.0.1:1", "--listen", self.fabric,
                      "--data", str(self.tmp / "manager"), "--mesos-listen", f"127.0.0.1:{self.mesos_port}",
                      "--mesos-credentials", f"{PRINCIPAL}:{SECRET}",
                      "--agent-timeout", f"{AGENT_TIMEOUT_S}s", "--scheduler-heartbeat", "1s", "--offer-timeout", "5s")

    def start_agent(self, name):
        # The agents share this host: each offers its own 100 host ports, free right now.
        first = self.ports + 100 * int(name[1:])
        return Daemon("agent", "--manager", self.fabric, "--name", name, "--listen", "127.0.0.1:0",
                      "--data", str(self.agent_root / name), "--mesos-listen", "127.0.0.1:0", "--heartbeat", "250ms",
                      "--resources", f"cpus:2;mem:1024;disk:1024;ports:[{first}-{first + 99}]", "--cgroups-enable-cfs",
                      "--update-retry", "500ms", *(["--allow-root-tasks"] if self.allow_root else []))

    def yard(self, *args):
        env = {**os.environ, "YARD_MESOS": self.manager.mesos, "YARD_LOG": "warn"}
        return subprocess.run([YARD, *args], env=env, capture_output=True, text=True, timeout=30, check=True).stdout

    def stop(self):
        for d in [*self.agents, self.manager]:
            d.stop()
        shutil.rmtree(self.agent_root, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def task(tid, agent_id, cmd, cpus=0.1, mem=32):
    return {"task_id": {"value": tid}, "agent_id": agent_id, "name": tid, "command": {"value": cmd},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}]}


class Sched(Scheduler):
    """Launches what `plan` asks on the first offer that fits; records every update and event."""

    def __init__(self):
        self.plan = queue.Queue()  # (agent hostname-or-None, [task dicts without agent_id])
        self.updates = []
        self.events = queue.Queue()
        self.lost_agents = []
        self.messages = []
        self.lost_executors = []

    def resourceOffers(self, driver, offers):
        for o in offers:
            try:
                want_agent, specs = self.plan.get_nowait()
            except queue.Empty:
                driver.declineOffer(o["id"], {"refuse_seconds": 0.2})
                continue
            if want_agent is not None and o["agent_id"]["value"] != want_agent:
                self.plan.put((want_agent, specs))
                driver.declineOffer(o["id"], {"refuse_seconds": 0.2})
                continue
            driver.launchTasks(o["id"], [{**s, "agent_id": o["agent_id"]} if isinstance(s, dict)
                                         else task(*s[:1], o["agent_id"], *s[1:]) for s in specs])

    def statusUpdate(self, driver, status):
        self.updates.append((time.monotonic(), status))
        self.events.put(("update", status))

    def slaveLost(self, driver, agent_id):
        self.lost_agents.append(agent_id["value"])

    def frameworkMessage(self, driver, executor_id, agent_id, data):
        self.messages.append((executor_id["value"], agent_id["value"], decode_data(data)))

    def executorLost(self, driver, executor_id, agent_id, status):
        self.lost_executors.append((executor_id["value"], status))

    def states(self, tid):
        return [s["state"] for _, s in self.updates if s["task_id"]["value"] == tid]

    def last(self, tid):
        for _, s in reversed(self.updates):
            if s["task_id"]["value"] == tid:
                return s
        return None


@pytest.fixture
def sched(cluster):
    s = Sched()
    # Root: the tasks run this venv's Python, which lives under root's private home.
    d = driver(s, {"user": "root", "name": "compat"}, cluster.manager.mesos)
    d.start()
    s.driver = d
    yield s
    d.stop()
    d.join()


def test_command_tasks_run_finish_fail_and_are_killed(cluster, sched):
    sched.plan.put((None, [("ok", "echo hello"), ("bad", "exit 3"), ("long", "sleep 60")]))
    wait_for("long running", lambda: "TASK_RUNNING" in sched.states("long"))
    sched.driver.killTask({"value": "long"})
    wait_for("all terminal", lambda: all(sched.last(t) and sched.last(t)["state"] in TERMINAL for t in ("ok", "bad", "long")))
    assert sched.states("ok") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert sched.states("bad") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    assert sched.states("long") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert sched.last("ok")["message"] == "Command exited with status 0"
    assert sched.last("bad")["message"] == "Command exited with status 3"
    # Each update carried a uuid that pymesos acknowledged: nothing stays pending at the agent.
    assert all(s.get("uuid") for _, s in sched.updates)
    for a in cluster.agents:
        wait_for("acknowledged", lambda: all(t["unacknowledged_updates"] == 0 for t in a.get("/state")["tasks"]))
    # The task's output is in its sandbox.
    done = [t for a in cluster.agents for t in a.get("/state")["completed_tasks"] if t["id"] == "ok"]
    with open(os.path.join(done[0]["sandbox"], "stdout")) as f:
        assert f.read() == "hello\n"
    # The master's view, as Mesos tools read it.
    tasks = {t["id"]: t for t in cluster.manager.get("/tasks?order=asc&limit=-1")["tasks"]}
    assert [s["state"] for s in tasks["bad"]["statuses"]][-1] == "TASK_FAILED"
    assert tasks["long"]["executor_id"] == ""


def test_tasks_run_as_the_user_they_name_and_root_must_be_allowed(tmp_path):
    """On agents started without --allow-root-tasks, a framework that names `nobody` gets its
    tasks run as nobody, in sandboxes they own; one that names root gets TASK_FAILED with the
    reason."""
    import pwd
    nobody = pwd.getpwnam("nobody")
    c = Cluster(tmp_path, agents=1, allow_root=False)
    try:
        for user, tid, cmd in [("nobody", "who", "id -u; id -G; touch mine"), ("root", "rooted", "id -u")]:
            s = Sched()
            d = driver(s, {"user": user, "name": f"as-{user}"}, c.manager.mesos)
            d.start()
            try:
                s.plan.put((None, [(tid, cmd)]))
                wait_for(f"{tid} ended", lambda: s.last(tid) and s.last(tid)["state"] in TERMINAL)
                last = s.last(tid)
            finally:
                d.stop()
                d.join()
            if user == "root":
                assert last["state"] == "TASK_FAILED", last
                assert "--allow-root-tasks" in last["message"], last
                continue
            assert last["state"] == "TASK_FINISHED", last
            done = [t for t in c.agents[0].get("/state")["completed_tasks"] if t["id"] == tid]
            with open(os.path.join(done[0]["sandbox"], "stdout")) as f:
                assert f.read().split() == [str(nobody.pw_uid), str(nobody.pw_gid)]
            assert os.stat(os.path.join(done[0]["sandbox"], "mine")).st_uid == nobody.pw_uid
    finally:
        c.stop()


ECHO_EXECUTOR = os.path.join(os.path.dirname(__file__), "echo_executor.py")


def executor_task(tid, what, executor_id="echo"):
    """A task for tests/compat/echo_executor.py, a custom executor on pymesos's driver."""
    res = lambda cpus, mem: [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                             {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}]
    return {"task_id": {"value": tid}, "name": tid, "data": encode_data(what.encode()), "resources": res(0.1, 16),
            "executor": {"executor_id": {"value": executor_id}, "name": "echo",
                         "command": {"value": f"exec {sys.executable} {ECHO_EXECUTOR}"}, "resources": res(0.1, 64)}}


def test_a_custom_executor_on_the_pymesos_driver(cluster, sched):
    sched.plan.put((None, [executor_task("e-ok", "finish"), executor_task("e-bad", "fail"),
                           executor_task("e-long", "wait"), executor_task("e-orphan", "wait")]))
    wait_for("e-long running", lambda: "TASK_RUNNING" in sched.states("e-long"), timeout=20)
    # Another local user cannot speak for the executor: an update it forges without the
    # executor's token, or anyone's update with a wrong token, is refused and changes nothing.
    on = next(a for a in cluster.agents if a.get("/state")["id"] == sched.last("e-long")["agent_id"]["value"])
    fid = on.get("/state")["executors"][0]["framework_id"]
    forged = json.dumps({"type": "UPDATE", "framework_id": {"value": fid}, "executor_id": {"value": "echo"},
                         "update": {"status": {"task_id": {"value": "e-long"}, "state": "TASK_FINISHED",
                                               "uuid": encode_data(os.urandom(16)), "source": "SOURCE_EXECUTOR"}}})
    curl = ["curl", "-s", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
            "--data", forged, f"http://{on.mesos}/api/v1/executor"]
    def post(*prefix, header=()):
        out = subprocess.run([*prefix, *curl, *header], capture_output=True, text=True, timeout=10).stdout
        body, _, code = out.rpartition("\n")
        return code, body
    code, body = post("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    assert code == "401" and "uid 65534" in body, (code, body)
    code, body = post(header=("-H", "Authorization: Bearer 0123456789abcdef"))
    assert code == "401" and "not this executor's" in body, (code, body)
    assert [t["state"] for t in on.get("/state")["tasks"] if t["id"] == "e-long"] == ["TASK_RUNNING"]
    sched.driver.killTask({"value": "e-long"})
    wait_for("three terminal", lambda: all(sched.last(t) and sched.last(t)["state"] in TERMINAL
                                           for t in ("e-ok", "e-bad", "e-long")))
    assert sched.states("e-ok") == ["TASK_RUNNING", "TASK_FINISHED"]
    assert sched.states("e-bad") == ["TASK_RUNNING", "TASK_FAILED"]
    assert sched.states("e-long") == ["TASK_RUNNING", "TASK_KILLED"]
    assert sched.last("e-bad")["message"] == "echo was told to fail"
    assert sched.last("e-ok")["executor_id"] == {"value": "echo"}
    # The executor's MESSAGE reached the framework, and a framework message reaches the executor.
    wait_for("message from the executor", lambda: ("echo", sched.last("e-ok")["agent_id"]["value"], b"done e-ok") in sched.messages)
    agent_id = sched.last("e-ok")["agent_id"]["value"]
    sched.driver.sendFrameworkMessage({"value": "echo"}, {"value": agent_id}, encode_data(b"ping"))
    wait_for("echoed", lambda: ("echo", agent_id, b"echo:ping") in sched.messages)
    # All four ran on one executor process, in its own session; its updates were acknowledged.
    agent = next(a for a in cluster.agents if a.get("/state")["id"] == agent_id)
    state = agent.get("/state")
    [ex] = state["executors"]
    assert ex["id"] == "echo" and ex["subscribed"] and ex["tasks"] == ["e-orphan"]
    wait_for("acknowledged", lambda: all(t["unacknowledged_updates"] == 0 for t in agent.get("/state")["tasks"]))
    # The executor dies: its unfinished task fails with it, and the framework hears of the executor.
    os.kill(ex["pid"], signal.SIGKILL)
    wait_for("e-orphan failed", lambda: sched.last("e-orphan")["state"] in TERMINAL)
    assert sched.last("e-orphan")["state"] == "TASK_FAILED"
    assert sched.last("e-orphan")["reason"] == "REASON_EXECUTOR_TERMINATED"
    wait_for("executorLost", lambda: [e for e, _ in sched.lost_executors] == ["echo"])
    assert sched.lost_executors[0][1] == signal.SIGKILL
    wait_for("executor gone", lambda: agent.get("/state")["executors"] == [] and not session_alive(ex["pid"]))


def test_health_checks_report_healthy_and_kill_a_sick_task(cluster):
    s = Sched()
    d = driver(s, {"user": "root", "name": "health", "capabilities": [{"type": "TASK_KILLING_STATE"}]},
               cluster.manager.mesos)
    d.start()
    try:
        fast = {"delay_seconds": 0, "interval_seconds": 0.2, "grace_period_seconds": 0, "timeout_seconds": 2}
        well = task("well", None, "touch ready; sleep 60")
        well["health_check"] = {"type": "COMMAND", "command": {"value": "test -f ready"}, **fast}
        closed = free_port()
        sick = task("sick", None, "sleep 60")
        sick["health_check"] = {"type": "TCP", "tcp": {"port": closed}, "consecutive_failures": 2, **fast}
        bye = task("bye", None, "sleep 60")
        s.plan.put((None, [{k: v for k, v in t.items() if k != "agent_id"} for t in (well, sick, bye)]))
        wait_for("well reported healthy", lambda: any(u.get("healthy") is True for _, u in s.updates
                                                     if u["task_id"]["value"] == "well"))
        wait_for("sick killed", lambda: s.last("sick") and s.last("sick")["state"] in TERMINAL)
        last = s.last("sick")
        assert last["state"] == "TASK_KILLED" and last["healthy"] is False
        assert "health check failed" in last["message"]
        # The framework handles TASK_KILLING, so a kill goes through it.
        wait_for("bye running", lambda: "TASK_RUNNING" in s.states("bye"))
        d.killTask({"value": "bye"})
        wait_for("bye killed", lambda: s.last("bye")["state"] == "TASK_KILLED")
        assert s.states("bye") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]
        assert s.states("sick")[-2:] == ["TASK_KILLING", "TASK_KILLED"]
        # The master's view keeps the health of the latest status.
        [well_view] = cluster.manager.get("/tasks?task_id=well")["tasks"]
        assert well_view["statuses"][-1]["healthy"] is True
    finally:
        d.stop()
        d.join()


def mesos_cli(tmp_path, *args):
    cfg = tmp_path / "mesos-cli.toml"
    env = {**os.environ, "MESOS_CLI_CONFIG": str(cfg), "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["mesos-cli", *args], env=env, capture_output=True, text=True, timeout=30, check=True).stdout


def test_the_master_refuses_callers_without_the_principal(cluster):
    def status(path, data=None, auth=None):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        req = urllib.request.Request(f"http://{cluster.manager.mesos}{path}", data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.headers

    subscribe = json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": "x"}}}).encode()
    # No credential: a 401 that says what is expected, for state reads and scheduler calls.
    for path, data in [("/master/state", None), ("/tasks", None), ("/api/v1/scheduler", subscribe)]:
        code, headers = status(path, data)
        assert code == 401, path
        assert "Basic" in headers.get("WWW-Authenticate", ""), headers
    # The wrong secret is refused; the right one reads.
    wrong = "Basic " + base64.b64encode(f"{PRINCIPAL}:nope".encode()).decode()
    assert status("/master/state", auth=wrong)[0] == 401
    right = "Basic " + base64.b64encode(f"{PRINCIPAL}:{SECRET}".encode()).decode()
    assert status("/master/state", auth=right)[0] == 200


def test_mesos_cli_lists_agents_frameworks_and_tasks(cluster, sched, tmp_path):
    (tmp_path / "mesos-cli.toml").write_text(
        f'[master]\n  address = "{cluster.manager.mesos}"\n  principal = "{PRINCIPAL}"\n  secret = "{SECRET}"\n')
    sched.plan.put((None, [("web", "sleep 60")]))
    wait_for("web running", lambda: "TASK_RUNNING" in sched.states("web"))
    agents = mesos_cli(tmp_path, "agent", "list")
    for s in cluster.manager.get("/slaves")["slaves"]:
        assert s["id"] in agents
    frameworks = mesos_cli(tmp_path, "framework", "list")
    assert "compat" in frameworks
    running = mesos_cli(tmp_path, "task", "list")
    assert "web" in running and "TASK_RUNNING" in running


def test_a_task_over_its_memory_is_killed_and_reported(cluster, sched):
    hog = f"{sys.executable} -c 'x = bytearray(300 * 1024 * 1024); import time; time.sleep(30)'"
    sched.plan.put((None, [("hog", hog, 0.1, 64)]))
    wait_for("hog ended", lambda: sched.last("hog") and sched.last("hog")["state"] in TERMINAL, timeout=30)
    last = sched.last("hog")
    assert last["state"] == "TASK_FAILED"
    assert last.get("reason") == "REASON_CONTAINER_LIMITATION_MEMORY", last
    assert "Memory limit exceeded" in last["message"]


def test_a_cpu_bound_task_stays_under_its_quota(cluster, sched):
    sched.plan.put((None, [("spin", "while :; do :; done", 0.25, 32)]))
    wait_for("spin running", lambda: "TASK_RUNNING" in sched.states("spin"))
    agent = next(a for a in cluster.agents if any(t["id"] == "spin" for t in a.get("/state")["tasks"]))

    def stats():
        return next(s for s in agent.get("/monitor/statistics") if s["executor_id"] == "spin")["statistics"]

    first = stats()
    assert first["cpus_quota_secs"] == pytest.approx(0.025)
    assert first["cpus_period_secs"] == pytest.approx(0.1)
    t0, c0 = time.monotonic(), first["cpus_time_secs"]
    wait_for("3 s of wall time", lambda: time.monotonic() - t0 >= 3.0, timeout=10)
    used = (stats()["cpus_time_secs"] - c0) / (time.monotonic() - t0)
    # A spinning shell would use a whole core; the quota holds it at a quarter.
    assert 0.1 < used < 0.25 * 1.2, used
    sched.driver.killTask({"value": "spin"})
    wait_for("spin killed", lambda: sched.last("spin")["state"] == "TASK_KILLED")


def test_a_killed_agent_is_reported_within_the_bound(cluster, sched):
    victim = cluster.agents[0]
    vid = victim.get("/state")["id"]
    sched.plan.put((vid, [("doomed", "sleep 60; true")]))
    wait_for("doomed running", lambda: "TASK_RUNNING" in sched.states("doomed"))
    pid = next(t["pid"] for t in victim.get("/state")["tasks"] if t["id"] == "doomed")
    killed_at = time.monotonic()
    victim.stop(signal.SIGKILL)
    wait_for("TASK_LOST", lambda: sched.last("doomed")["state"] == "TASK_LOST", timeout=AGENT_TIMEOUT_S + 5)
    at = next(t for t, s in sched.updates if s["task_id"]["value"] == "doomed" and s["state"] == "TASK_LOST")
    assert at - killed_at <= AGENT_TIMEOUT_S + 1.5, at - killed_at
    assert sched.last("doomed")["reason"] == "REASON_AGENT_REMOVED"
    wait_for("slaveLost", lambda: vid in sched.lost_agents)
    # Every process of the task (the shell and its sleep) died with the agent.
    wait_for("task processes gone", lambda: not session_alive(pid))
    slaves = {s["id"]: s for s in cluster.manager.get("/slaves")["slaves"]}
    assert slaves[vid]["active"] is False


def test_a_manager_restart_loses_no_task(cluster, sched):
    sched.plan.put((None, [("survivor", "sleep 120")]))
    wait_for("survivor running", lambda: "TASK_RUNNING" in sched.states("survivor"))
    agent = next(a for a in cluster.agents if any(t["id"] == "survivor" for t in a.get("/state")["tasks"]))
    pid = next(t["pid"] for t in agent.get("/state")["tasks"] if t["id"] == "survivor")
    cluster.manager.stop()
    cluster.manager = cluster.start_manager()

    def running_again():
        tasks = cluster.manager.get("/tasks?task_id=survivor")["tasks"]
        return tasks and tasks[0]["state"] == "TASK_RUNNING"

    wait_for("the task known again", running_again, timeout=20)
    # pymesos resubscribed with its framework id, and its reconciliation answers RUNNING.
    wait_for("framework back", lambda: any(f["connected"] and f["name"] == "compat"
                                           for f in cluster.manager.get("/master/frameworks")["frameworks"]), timeout=20)
    n = len(sched.updates)
    asked = [0.0]

    def reconciled():
        # pymesos drops calls until it has read SUBSCRIBED itself: ask again until answered.
        if time.monotonic() - asked[0] > 1.0:
            sched.driver.reconcileTasks([{"task_id": {"value": "survivor"}}])
            asked[0] = time.monotonic()
        return any(s["task_id"]["value"] == "survivor" for _, s in sched.updates[n:])

    wait_for("reconciled", reconciled)
    assert sched.last("survivor")["state"] == "TASK_RUNNING"
    assert os.path.exists(f"/proc/{pid}"), "the task kept running"
    assert next(t["pid"] for t in agent.get("/state")["tasks"] if t["id"] == "survivor") == pid


SERVICE = """name = "web"
instances = 2
user = "root"
command = "exec {python} -m http.server $PORT0 --bind 127.0.0.1"
cpus = 0.1
mem = 64
ports = 1
constraints = [["agent", "UNIQUE"]]
env = {{ RELEASE = "{release}" }}

[health_check]
type = "http"
port_index = 0
delay = 0
interval = 0.3
grace = 10

[upgrade]
minimum_healthy_capacity = 0.5
maximum_over_capacity = 0.0
"""


def test_a_service_survives_agent_loss_upgrades_and_a_manager_restart(tmp_path):
    c = Cluster(tmp_path, agents=3)
    try:
        svc = tmp_path / "web.toml"
        svc.write_text(SERVICE.format(python=sys.executable, release="1"))
        c.yard("service", "deploy", str(svc))
        status = lambda: json.loads(c.yard("service", "status", "web", "--json"))
        wait_for("two healthy instances", lambda: status()["healthy"] == 2 and status()["phase"] == "stable", timeout=30)
        first = status()
        assert len({t["agent_id"] for t in first["tasks"]}) == 2, "one instance per agent"
        # Its instances answer on their ports, and their output is in their sandboxes.
        for t in first["tasks"]:
            urllib.request.urlopen(f"http://127.0.0.1:{t['ports'][0]}/", timeout=5).read()
        one = first["tasks"][0]["id"]
        assert "Serving HTTP" in c.yard("task", "logs", one)
        checks = c.yard("task", "logs", one, "--stderr")
        assert '"GET / HTTP/1.1" 200' in checks and "Traceback" not in checks
        assert one in c.yard("tasks") and "yard-services" in c.yard("frameworks")

        # kill -9 of an agent: its instance comes back on the third agent.
        lost = first["tasks"][0]["agent_id"]
        victim = next(a for a in c.agents if a.get("/state")["id"] == lost)
        victim.stop(signal.SIGKILL)

        def recovered():
            st = status()
            agents = {t["agent_id"] for t in st["tasks"] if t["state"] == "TASK_RUNNING"}
            return st["healthy"] == 2 and lost not in agents and len(agents) == 2

        wait_for("instance replaced on another agent", recovered, timeout=AGENT_TIMEOUT_S + 20)
        lost_state = json.loads(c.yard("tasks", "--all", "--json"))["tasks"]
        assert [t["state"] for t in lost_state if t["id"] == one] == ["TASK_LOST"]

        # Asking for more than the constraint allows: the reason is visible.
        c.yard("service", "scale", "web", "3")
        wait_for("waiting explained", lambda: "constraint agent UNIQUE" in (status()["waiting"] or ""))
        c.yard("service", "scale", "web", "2")

        # A new version rolls out, one instance at a time, never below one healthy.
        before = {t["id"] for t in status()["tasks"]}
        svc.write_text(SERVICE.format(python=sys.executable, release="2"))
        c.yard("service", "deploy", str(svc))
        v2 = status()["version"]
        assert v2 != first["version"]
        lowest = 2

        def rolled():
            nonlocal lowest
            st = status()
            lowest = min(lowest, st["healthy"])
            return st["phase"] == "stable" and {t["version"] for t in st["tasks"]} == {v2} and st["healthy"] == 2

        wait_for("version 2 everywhere", rolled, timeout=40)
        assert lowest >= 1, "minimum healthy capacity kept"
        assert not before & {t["id"] for t in status()["tasks"]}

        # A manager restart: the service and its instances are still there, none restarted.
        running = {t["id"] for t in status()["tasks"]}
        c.manager.stop()
        c.manager = c.start_manager()
        wait_for("instances adopted again", lambda: {t["id"] for t in status()["tasks"] if t["healthy"]} == running, timeout=30)

        c.yard("service", "rm", "web")
        wait_for("service gone", lambda: "web" not in c.yard("service", "list"))
        assert not json.loads(c.yard("tasks", "--json"))["tasks"]
    finally:
        c.stop()
