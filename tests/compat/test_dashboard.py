"""The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium, installed by
scripts/test.sh) driven by Playwright, against a real center, manager and agents on free ports.

What the page shows is checked against the center's API (selected by data-testid); live changes
are waited for with deadlines, never fixed sleeps. Screenshots of every page, light and dark,
go to target/ui-shots/ for a person to look at (nothing compares pixels)."""

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import YARD, admin_token, free_port, make_token, wait_for

import playwright.sync_api as playwright_api  # noqa: E402 (pinned in requirements.txt)
from playwright.sync_api import expect  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SHOTS = os.path.join(os.path.dirname(__file__), "..", "..", "target", "ui-shots")
AGENT_TIMEOUT_S = 2

CLUSTER_TOML = """
[[node]]
name = "ticker"
command = "/bin/sh"
args = ["-c", "while true; do echo tick $(date +%s); sleep 1; done"]
"""


class Proc:
    """A daemon of this test, stopped (and reaped) at the end."""

    def __init__(self, args):
        self.proc = subprocess.Popen([YARD, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env={**os.environ, "YARD_LOG": "warn"})
        line = self.proc.stdout.readline()
        assert " listening on " in line, line
        self.addr = line.split(" listening on ")[1].split()[0]

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class System:
    """A center (on a fixed free port, so that it can be restarted in place), the manager of
    cluster `web` and two agents, each running the node `ticker`."""

    def __init__(self):
        self.work = tempfile.mkdtemp(prefix="yard-ui-")
        # Nodes run as the agent's node user (nobody): it must reach its work directory.
        os.chmod(self.work, 0o755)
        self.port = free_port()
        self.procs = {}
        self.start_center()
        config = os.path.join(self.work, "cluster.toml")
        with open(config, "w") as f:
            f.write(CLUSTER_TOML)
        self.procs["manager"] = Proc([
            "manager", "--cluster", "web", "--center", self.center, "--listen", "127.0.0.1:0",
            "--data", os.path.join(self.work, "manager"), "--config", config,
            "--agent-timeout", f"{AGENT_TIMEOUT_S}s", "--report-interval", "1s",
            "--metrics-interval", "500ms", "--mesos-listen", "off"])
        self.manager = self.procs["manager"].addr
        for name in ("agent-1", "agent-2"):
            self.start_agent(name)
        wait_for("two agents with a running ticker", lambda: self.running() == 2, 30)

    @property
    def center(self):
        return f"127.0.0.1:{self.port}"

    def start_center(self):
        self.procs["center"] = Proc(["center", "--listen", self.center,
                                     "--data", os.path.join(self.work, "center")])

    def start_agent(self, name, manager=None):
        self.procs[name] = Proc([
            "agent", "--manager", manager or self.manager, "--name", name, "--listen", "127.0.0.1:0",
            "--data", os.path.join(self.work, name), "--heartbeat", "250ms", "--mesos-listen", "off"])

    def api(self, path, token=None, method="GET", body=None):
        req = urllib.request.Request(f"http://{self.center}{path}", method=method)
        req.add_header("Authorization", f"Bearer {token or admin_token()}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, data=data, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def topology(self):
        return self.api("/v1/topology")

    def running(self):
        try:
            nodes = self.api("/v1/nodes?cluster=web")["nodes"]
        except (urllib.error.URLError, ConnectionError):
            return 0
        return sum(1 for n in nodes if n["state"] == "running" and n["agent_state"] == "up")

    def login_url(self, role="operator"):
        out = subprocess.run([YARD, "login-link", "--center", self.center, "--role", role],
                             capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip()

    def stop(self):
        for p in reversed(list(self.procs.values())):
            p.stop()
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture(scope="module")
def system():
    s = System()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "chromium is not installed (scripts/test.sh installs the Debian package)"
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


class Page:
    """A browser tab on the center that records every console error, page error, failed
    request and request to another host (those are aborted)."""

    def __init__(self, browser, system, dark=False, beside=None):
        """With `beside`, a second tab of that tab's browser (its storage, its connections)."""
        self.ctx = beside.ctx if beside else browser.new_context(
            viewport={"width": 1440, "height": 900}, color_scheme="dark" if dark else "light")
        self.page = self.ctx.new_page()
        self.system = system
        self.problems = beside.problems if beside else []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}")
                     if "/v1/stream" not in r.url else None)

        def only_the_center(route):
            if route.request.url.startswith(f"http://{system.center}/"):
                route.continue_()
            else:
                self.problems.append(f"foreign request: {route.request.url}")
                route.abort()

        self.page.route("**/*", only_the_center)

    def sign_in(self, role="operator"):
        self.page.goto(self.system.login_url(role))
        self.page.wait_for_selector('[data-testid="link"][data-state="live"]', timeout=10_000)
        return self

    def token(self):
        return self.page.evaluate("localStorage.getItem('yard.token')")

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, f"{name}.png")
        # From the top: the sticky header would otherwise sit where the page was scrolled to.
        self.page.evaluate("() => window.scrollTo(0, 0)")
        self.page.screenshot(path=path, full_page=True)
        assert os.path.getsize(path) > 10_000, f"{name}: the screenshot looks blank"

    def testid(self, tid):
        return self.page.locator(f'[data-testid="{tid}"]')

    def close(self):
        self.ctx.close()


@pytest.fixture
def tab(browser, system):
    t = Page(browser, system)
    yield t
    t.close()
    assert not t.problems, t.problems


def test_the_dashboard_is_served_with_a_strict_policy_and_the_root_leads_to_it(system):
    req = urllib.request.Request(f"http://{system.center}/ui/")
    with urllib.request.urlopen(req, timeout=10) as r:
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        etag = r.headers["ETag"]
        assert b'<script type="module" src="app.js">' in r.read()
    req = urllib.request.Request(f"http://{system.center}/ui/", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 304
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{system.center}/ui/nothing.js", timeout=10)
    assert e.value.code == 404
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {
        "redirect_request": lambda *a, **k: None}))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(f"http://{system.center}/", timeout=10)
    assert e.value.code == 302 and e.value.headers["Location"] == "/ui/"


def raw(system, method, path, headers=(), body=None):
    """Status and JSON body (or None) of one request, no credential unless a header gives one."""
    req = urllib.request.Request(f"http://{system.center}{path}", method=method, data=body)
    for k, v in headers:
        req.add_header(k, v)
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {
        "redirect_request": lambda *a, **k: None}))
    try:
        with opener.open(req, timeout=10) as r:
            if r.headers.get("Content-Type", "").startswith("text/event-stream"):
                return r.status, None
            text = r.read()
            return r.status, json.loads(text) if r.headers.get("Content-Type") == "application/json" else None
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, None


NEW_ROUTES = [("GET", "/v1/stream"), ("GET", "/v1/whoami"), ("POST", "/v1/login"),
              ("POST", "/v1/login/links"), ("GET", "/"), ("GET", "/ui/")]
# The resource manager through the center (cluster web runs no master: a caller who gets
# through the guard hears 404 no_rm; one who does not, 401 or 403 before anything is asked).
RM_ROUTES = [("GET", "/v1/clusters/web/rm/agents"), ("GET", "/v1/clusters/web/rm/services"),
             ("GET", "/v1/clusters/web/rm/tasks/t1/log"), ("POST", "/v1/clusters/web/rm/services"),
             ("POST", "/v1/clusters/web/rm/services/s/scale"), ("DELETE", "/v1/clusters/web/rm/services/s")]


def test_the_dashboard_routes_without_a_credential_and_from_a_foreign_origin(system):
    json_body = [("Content-Type", "application/json")]
    # Without a credential: the stream and link minting ask for one; a made-up code is refused;
    # whoami says anonymous and may nothing; the files hold no data and load.
    assert raw(system, "GET", "/v1/stream")[0] == 401
    assert raw(system, "POST", "/v1/login/links", json_body, b"{}")[0] == 401
    status, body = raw(system, "POST", "/v1/login", json_body, b'{"code": "0123456789abcdef"}')
    assert (status, body["code"]) == (401, "bad_login_code"), body
    status, body = raw(system, "GET", "/v1/whoami")
    assert status == 200 and body["name"] == "anonymous", body
    assert not any(body["may"][k] for k in ("read", "outputs", "command", "admin")), body
    assert raw(system, "GET", "/")[0] == 302
    assert raw(system, "GET", "/ui/")[0] == 200
    # A viewer may read the stream, not mint links.
    viewer = [("Authorization", f"Bearer {make_token('ui-viewer', 'viewer')}")]
    assert raw(system, "GET", "/v1/stream", viewer)[0] == 200
    assert raw(system, "POST", "/v1/login/links", viewer + json_body, b"{}")[0] == 403
    # The resource manager's routes: none without a credential; a viewer reads, changes nothing.
    for method, path in RM_ROUTES:
        body = b"{}" if method == "POST" else None
        status, _ = raw(system, method, path, json_body if body else [], body)
        assert status == 401, (method, path, status)
        status, answer = raw(system, method, path, viewer + (json_body if body else []), body)
        want = (404, "no_rm") if method == "GET" else (403, "forbidden")
        assert (status, answer and answer["code"]) == want, (method, path, status, answer)
    # A manager's links (read), the paged events and a followed log: none without a credential;
    # a viewer reads them.
    for path, ok in (("/v1/clusters/web/links", 200), ("/v1/events?limit=1", 200),
                     ("/v1/logs/web/agent-1/ticker?after=1:0", 200)):
        assert raw(system, "GET", path, [])[0] == 401, path
        assert raw(system, "GET", path, viewer)[0] == ok, path
    # From another site's page, even with the admin's credential: every one refused (the
    # WebSocket upgrade with a credential in its subprotocol too).
    foreign = [("Origin", "http://evil.example"), ("Authorization", f"Bearer {admin_token()}")]
    status, _ = raw(system, "GET", "/v1/messages/json", [
        ("Origin", "http://evil.example"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Protocol", "yard.v1, yard.bearer." + base64.urlsafe_b64encode(admin_token().encode()).decode().rstrip("="))])
    assert status == 403, status
    for method, path in NEW_ROUTES + RM_ROUTES + [("GET", "/v1/clusters/web/links")]:
        body = b"{}" if method == "POST" else None
        status, _ = raw(system, method, path, foreign + (json_body if body else []), body)
        assert status == 403, (method, path, status)
    # A cross-site simple POST (no JSON type) cannot mint a link either.
    status, _ = raw(system, "POST", "/v1/login/links",
                    [("Sec-Fetch-Site", "cross-site"), ("Content-Type", "text/plain"),
                     ("Authorization", f"Bearer {admin_token()}")], b"{}")
    assert status in (403, 415), status


def test_the_login_link_works_once_and_the_page_shows_what_the_api_says(tab, system):
    url = system.login_url()
    tab.page.goto(url)
    tab.page.wait_for_selector('[data-testid="link"][data-state="live"]', timeout=10_000)
    # The code left the address bar at once; the browser holds a token of its own.
    assert "login=" not in tab.page.url
    token = tab.token()
    assert token.startswith("yard_")
    names = [t["name"] for t in json.loads(subprocess.run(
        [YARD, "token", "list", "--json"], capture_output=True, text=True, check=True).stdout)]
    assert any(n.startswith("dashboard-") for n in names), names
    # The same link a second time: refused, with the way to sign in.
    second = Page(tab.page.context.browser, system)
    try:
        second.page.goto(url)
        second.page.wait_for_selector('[data-testid="signin"]', timeout=10_000)
        assert "used already" in second.testid("signin").inner_text()
    finally:
        second.close()

    topo = system.topology()
    web = next(c for c in topo["clusters"] if c["name"] == "web")
    agents = web["agents"]
    assert tab.testid("n-clusters").inner_text() == str(len(topo["clusters"]))
    assert tab.testid("n-agents-up").inner_text() == str(
        sum(a["state"] == "up" for c in topo["clusters"] for a in c["agents"]))
    assert tab.testid("cluster-state-web").get_attribute("data-state") == web["manager_state"]
    tab.shot("overview-light")

    tab.testid("nav-topology").click()
    for a in agents:
        row = tab.testid(f"agent-web/{a['name']}")
        row.wait_for()
        assert row.get_attribute("data-state") == a["state"]
        for n in a["nodes"]:
            node = tab.testid(f"node-web/{a['name']}/{n['name']}")
            assert node.get_attribute("data-state") == n["state"]
    # Selecting a node fills the side panel and lands in the URL; a reload shows the same.
    tab.page.locator('[data-path="web/agent-1/ticker"]').click()
    assert "sel=web%2Fagent-1%2Fticker" in tab.page.url
    tab.testid("side-node").wait_for()
    tab.page.reload()
    tab.testid("side-node").wait_for()
    tab.shot("topology-light")


def test_an_agent_started_by_hand_appears_and_shows_lost_once_killed(tab, system):
    # In a cluster of its own: a lost agent stays in its cluster's record, and the commands of
    # the tests below run on cluster web.
    tab.sign_in()
    tab.page.goto(f"http://{system.center}/ui/#/topology")
    tab.testid("agent-web/agent-1").wait_for()
    system.procs["edge"] = Proc([
        "manager", "--cluster", "edge", "--center", system.center, "--listen", "127.0.0.1:0",
        "--data", os.path.join(system.work, "manager-edge"), "--agent-timeout", f"{AGENT_TIMEOUT_S}s",
        "--report-interval", "1s", "--mesos-listen", "off"])
    system.start_agent("agent-3", system.procs["edge"].addr)
    try:
        row = tab.testid("agent-edge/agent-3")
        row.wait_for(timeout=5_000)
        assert row.get_attribute("data-state") == "up"
        system.procs["agent-3"].stop(signal.SIGKILL)
        tab.page.wait_for_selector('[data-testid="agent-edge/agent-3"][data-state="lost"]',
                                   timeout=(AGENT_TIMEOUT_S + 5) * 1000)
    finally:
        system.procs.pop("agent-3").stop(signal.SIGKILL)


def finished_run(tab, op, seen, timeout_s):
    """The run card of an `op` command that ended well and is none of `seen` (their ids); on a
    timeout, the assertion shows what the page showed."""
    others = "".join(f':not([data-id="{i}"])' for i in seen)
    card = tab.page.locator(f'[data-testid="run"][data-op="{op}"][data-state="ok"]{others}')
    try:
        card.wait_for(timeout=timeout_s * 1000)
    except playwright_api.TimeoutError:
        raise AssertionError(f"no {op} ended well within {timeout_s} s; the page showed:\n"
                             + tab.testid("progress").inner_text()) from None
    return card


def test_a_rolling_restart_from_the_page_completes_and_raises_the_generations(tab, system):
    before = {(n["agent"], n["name"]): n["generation"] for n in system.api("/v1/nodes?cluster=web")["nodes"]
              if n["agent_state"] == "up"}
    tab.sign_in()
    tab.page.goto(f"http://{system.center}/ui/#/clusters/web")
    # The cluster's charts: one line per agent, from the time-series store.
    for metric in ("cpu", "mem_used_pct"):
        tab.page.locator(f'[data-testid="cluster-chart-{metric}"][data-series="2"]').wait_for(timeout=15_000)
    tab.testid("restart").click()
    tab.testid("confirm").wait_for()
    tab.shot("cluster-confirm-light")
    tab.testid("confirm-ok").click()
    run = finished_run(tab, "restart", [], 60)
    assert tab.testid("run-count").inner_text().strip() == f"[{len(before)}/{len(before)}]"
    cid = run.get_attribute("data-id")
    rec = system.api(f"/v1/commands/{cid}")
    assert rec["state"] == "ok" and rec["op"] == "restart"
    assert rec["by"].startswith("dashboard-")
    after = {(n["agent"], n["name"]): n["generation"] for n in system.api("/v1/nodes?cluster=web")["nodes"]}
    assert all(after[k] > v for k, v in before.items()), (before, after)
    tab.testid(f"hist-{cid}").wait_for()
    tab.shot("cluster-light")


def test_deploy_a_file_and_roll_it_back_from_the_page(tab, system, tmp_path):
    tab.sign_in()
    tab.page.goto(f"http://{system.center}/ui/#/clusters/web")
    done = []

    def run(op):
        done.append(finished_run(tab, op, done, 30).get_attribute("data-id"))

    for text in ("v1", "v2"):
        f = tmp_path / "app.txt"
        f.write_text(text)
        tab.testid("deploy-file").set_input_files(str(f))
        tab.testid("deploy").click()
        tab.testid("confirm-ok").click()
        run("deploy")
    tab.testid("rollback").click()
    tab.testid("confirm-ok").click()
    run("rollback")
    for a in ("agent-1", "agent-2"):
        current = os.path.join(system.work, a, "deploy", "app.txt")
        with open(current) as f:
            assert f.read() == "v1", a


def test_one_node_restarts_from_its_agent_page_and_the_others_do_not(tab, system):
    def generations():
        return {(n["agent"], n["name"]): n["generation"] for n in system.api("/v1/nodes?cluster=web")["nodes"]}

    before = generations()
    tab.sign_in()
    tab.page.goto(f"http://{system.center}/ui/#/agents/web/agent-1?node=ticker")
    tab.testid("restart-node").click()
    tab.testid("confirm-ok").click()
    state = tab.page.locator('[data-testid="restart-node-state"][data-state="ok"]')
    state.wait_for(timeout=60_000)
    rec = system.api(f"/v1/commands/{state.get_attribute('data-id')}")
    assert [(r["agent"], r["node"], r["state"]) for r in rec["rows"]] == [("agent-1", "ticker", "ok")], rec
    after = generations()
    assert after[("agent-1", "ticker")] > before[("agent-1", "ticker")]
    assert after[("agent-2", "ticker")] == before[("agent-2", "ticker")]
    # A node that does not exist is refused before anything starts.
    try:
        system.api("/v1/commands", method="POST", body={"op": "restart", "batch": 1, "cluster": "web",
                                                        "nodes": ["agent-1/nope"]})
        raise AssertionError("a restart of an unknown node was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and json.loads(e.read())["code"] == "unknown_node"


def test_a_viewer_sees_no_action_and_a_forced_one_is_refused(tab, system):
    tab.sign_in("viewer")
    tab.page.goto(f"http://{system.center}/ui/#/clusters/web")
    tab.testid("read-only").wait_for()
    assert tab.testid("restart").count() == 0
    assert "(read-only)" in tab.testid("who").inner_text()
    status = tab.page.evaluate("""async () => (await fetch('/v1/commands', {method: 'POST',
        headers: {'Authorization': 'Bearer ' + localStorage.getItem('yard.token'), 'Content-Type': 'application/json'},
        body: JSON.stringify({op: 'exec', argv: ['id'], cluster: 'web'})})).status""")
    assert status == 403
    # That refusal is the one console error the page may show.
    forced = [p for p in tab.problems if "status of 403" in p]
    assert len(forced) == 1, tab.problems
    tab.problems.remove(forced[0])


def test_a_wrong_credential_shows_the_401_and_how_to_sign_in(browser, system):
    t = Page(browser, system)
    try:
        t.page.add_init_script("localStorage.setItem('yard.token', 'yard_000000000000_wrong')")
        t.page.goto(f"http://{system.center}/ui/#/overview")
        t.testid("signin").wait_for()
        text = t.testid("signin").inner_text()
        assert "refused the credential" in text and "yard login-link" in text, text
        # The 401 itself is the one console error a refused credential gives.
        t.problems = [p for p in t.problems if "401" not in p]
        assert not t.problems, t.problems
    finally:
        t.close()


def test_an_agent_chart_loads_its_history_and_then_advances(tab, system):
    wait_for("cpu history of agent-1",
             lambda: system.api("/v1/metrics/series?prefix=web/agent-1/")["series"], 20)
    tab.sign_in()
    tab.page.goto(f"http://{system.center}/ui/#/agents/web/agent-1?range=15m")
    chart = tab.page.locator('[data-testid^="chart-web/agent-1/"]').first
    chart.wait_for()
    first = int(chart.get_attribute("data-last-ts"))
    assert int(chart.get_attribute("data-points")) > 0
    tab.page.wait_for_function(
        f"""() => {{ const c = document.querySelector('[data-testid^="chart-web/agent-1/"]');
                    return c && Number(c.dataset.lastTs) > {first}; }}""", timeout=10_000)
    log = tab.testid("log-text")
    expect(log).to_contain_text("tick")
    # The log follows by reading on from the position of the last read and appending.
    before = log.inner_text().splitlines()
    with tab.page.expect_request(lambda r: "/v1/logs/" in r.url and "after=" in r.url,
                                 timeout=10_000):
        pass
    expect(log).not_to_have_text(log.inner_text(), timeout=10_000)
    after = log.inner_text().splitlines()
    assert after[:len(before)] == before and len(after) > len(before), (before, after)
    tab.shot("agent-light")


def test_the_metrics_explorer_searches_on_the_server_compares_and_keeps_its_state(tab, system):
    wait_for("cpu series of both agents", lambda: all(
        system.api(f"/v1/metrics/series?prefix=web/{a}/cpu")["series"] for a in ("agent-1", "agent-2")), 20)
    tab.sign_in()
    tab.page.goto(f"http://{system.center}/ui/#/metrics")
    tab.testid("series-search").fill("/cpu")
    for a in ("agent-1", "agent-2"):
        button = tab.page.locator(f'[data-series="web/{a}/cpu"]')
        button.wait_for()
        button.click()
        tab.testid(f"picked-web/{a}/cpu").wait_for()
    # What the server found is what the page lists.
    want = system.api("/v1/metrics/series?q=/cpu&limit=20")
    listed = tab.page.locator("[data-series]").evaluate_all("els => els.map(e => e.dataset.series)")
    assert listed == want["series"], (listed, want)
    tab.page.locator('[data-testid="explore-web/agent-1/cpu"]').wait_for()
    assert int(tab.page.locator('[data-testid="explore-web/agent-1/cpu"]').get_attribute("data-points")) > 0
    tab.testid("overlay").check()
    tab.page.locator('[data-testid="chart-overlay"][data-series="2"]').wait_for()
    tab.page.locator('[data-range="6h"]').click()
    assert "range=6h" in tab.page.url and "overlay=1" in tab.page.url
    tab.page.locator('[data-range="6h"].active').wait_for()
    tab.page.locator('[data-testid="chart-overlay"][data-series="2"]').wait_for()
    tab.page.reload()
    tab.page.locator('[data-testid="chart-overlay"][data-series="2"]').wait_for()
    assert tab.page.locator('[data-range="6h"]').get_attribute("class") == "active"
    tab.shot("metrics-light")


def test_a_center_restart_shows_reconnecting_and_resumes(tab, system):
    tab.sign_in()
    tab.page.goto(f"http://{system.center}/ui/#/topology")
    tab.testid("agent-web/agent-1").wait_for()
    system.procs["center"].stop()
    tab.page.wait_for_selector('[data-testid="link"][data-state="reconnecting"]', timeout=10_000)
    system.start_center()
    tab.page.wait_for_selector('[data-testid="link"][data-state="live"]', timeout=20_000)
    # The restarted center's snapshot is what the page shows: the agents are still there.
    wait_for("the manager to report to the new center", lambda: system.running() == 2, 20)
    tab.testid("agent-web/agent-2").wait_for(timeout=10_000)
    # The stream cut by the restart and the attempts while the center was down are the only
    # errors the browser may report.
    expected = ("ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_CONNECTION_REFUSED", "ERR_EMPTY_RESPONSE")
    tab.problems = [p for p in tab.problems if not any(e in p for e in expected)]


def put_value(system, store, key, value):
    """Writes one typed value through the center's store API (what any client of it could do)."""
    req = urllib.request.Request(
        f"http://{system.center}/v1/stores/{store}/keys/{urllib.parse.quote(key, safe='')}",
        method="PUT", data=json.dumps(value).encode())
    req.add_header("Authorization", f"Bearer {admin_token()}")
    req.add_header("Content-Type", "application/json")
    urllib.request.urlopen(req, timeout=10).read()


def inventory(system):
    """A user store on the center's endpoint: two typed values and 60 counts, so that its keys
    take two pages of the browser (50 a page)."""
    if not any(s["name"] == "inventory" for s in system.api("/v1/stores")):
        system.api("/v1/stores", method="POST", body={"name": "inventory", "role": "master", "backend": "memory"})
    put_value(system, "inventory", "host/a", {"@data-type": "count", "data": 42})
    put_value(system, "inventory", "host/b", {"@data-type": "vector", "data": [
        {"@data-type": "string", "data": "web"}, {"@data-type": "port", "data": "80/tcp"},
        {"@data-type": "address", "data": "10.0.0.7"}]})
    for i in range(60):
        put_value(system, "inventory", f"item/{i:02}", {"@data-type": "count", "data": i})


def test_data_discovery_tails_a_topic_and_browses_a_stores_typed_values(tab, system):
    inventory(system)
    tab.sign_in()
    tab.page.goto(f"http://{system.center}/ui/#/data")
    # The mesh: this center's link to the manager, and the agents reached through it.
    tab.testid("mesh-peer-manager web").wait_for()
    tab.testid("mesh-via-agent-1").wait_for()
    # The manager's own links to its agents, gathered by the center, with their figures: the
    # same links the API gives.
    links = system.api("/v1/clusters/web/links")
    web = next(c for c in system.topology()["clusters"] if c["name"] == "web")
    ids = {a["name"]: a["id"] for a in web["agents"]}
    assert {ids["agent-1"], ids["agent-2"]} <= {l["id"] for l in links["links"]}, links
    expect(tab.testid("mesh-far-agent-1")).to_contain_text("drops 0")
    far = tab.testid("mesh-far-links")
    expect(far).to_contain_text("agent-2")
    assert far.locator("tbody tr", has_text="manager web").count() == len(links["links"])
    # The tail: a WebSocket to /v1/messages/json with the page's own credential; `yard pub` on
    # an agent's endpoint crosses the mesh (agent, manager, center) to it.
    tab.testid("tail-prefix").fill("/demo")
    tab.testid("tail-start").click()
    tab.page.wait_for_selector('[data-testid="tail-state"][data-state="live"]', timeout=5_000)
    agent = system.procs["agent-1"].addr
    subprocess.run([YARD, "pub", "-e", agent, "/demo/reading", "42", '[1, "two", 80/tcp]'],
                   check=True, capture_output=True, timeout=30)
    rows = tab.testid("tail-row")
    rows.nth(1).wait_for(timeout=2_000)
    assert "/demo/reading" in rows.nth(0).inner_text()
    assert '[1, "two", 80/tcp]' in rows.nth(0).inner_text(), rows.nth(0).inner_text()
    assert "count" in rows.nth(1).inner_text() and "42" in rows.nth(1).inner_text()
    assert tab.testid("topic-/demo/reading").inner_text().split("\t")[1] == "2"
    tab.shot("data-light")
    # The stores: the key browser pages on the server and says how many keys there are.
    tab.testid("store-inventory").get_by_role("link").click()
    total = tab.testid("keys-total")
    total.wait_for()
    assert total.inner_text().startswith("50 of 62 keys"), total.inner_text()
    tab.testid("keys-next").click()
    expect(total).to_contain_text("12 of 62 keys")
    assert tab.testid("keys-next").count() == 0
    tab.testid("key-prefix").fill("host/")
    tab.testid("key-prefix").press("Enter")
    expect(total).to_contain_text("2 of 2 keys")
    tab.testid("key-host/b").click()
    viewer = tab.testid("value")
    viewer.locator('[data-testid="value-type"]').first.wait_for()
    types = viewer.locator('[data-testid="value-type"]').all_inner_texts()
    assert types == ["vector", "string", "port", "address"], types
    literals = viewer.locator('[data-testid="value-literal"]').all_inner_texts()
    assert literals == ['"web"', "80/tcp", "10.0.0.7"], literals
    # The state is in the URL: a reload shows the same store, prefix and value.
    tab.page.reload()
    tab.testid("value").locator('[data-testid="value-type"]').first.wait_for()
    assert tab.testid("key-prefix").input_value() == "host/"
    tab.testid("key-host/a").click()
    expect(tab.testid("value").locator('[data-testid="value-literal"]')).to_have_text("42")
    # The backup downloads as a file holding every entry.
    with tab.page.expect_download() as d:
        tab.testid("backup").click()
    path = d.value.path()
    assert os.path.getsize(path) > 0
    assert tab.testid("backup-done").inner_text() == "Backup of 62 entries downloaded."


def test_a_viewer_tails_topics_with_its_own_credential(browser, system):
    # The tail starts from the URL, with the viewer's credential in the WebSocket's subprotocol.
    t = Page(browser, system)
    try:
        t.sign_in("viewer")
        t.page.goto(f"http://{system.center}/ui/#/data?tail=/demo")
        t.page.wait_for_selector('[data-testid="tail-state"][data-state="live"]', timeout=5_000)
        assert not t.problems, t.problems
    finally:
        t.close()


def rm_cluster(system):
    """Cluster `rm`: a manager whose Mesos master listens on a free port, and one agent that
    offers its resources (tasks in cgroups, as root). Stopped by the caller."""
    procs = {}
    procs["manager"] = Proc([
        "manager", "--cluster", "rm", "--center", system.center, "--listen", "127.0.0.1:0",
        "--data", os.path.join(system.work, "manager-rm"), "--report-interval", "1s",
        "--agent-timeout", f"{AGENT_TIMEOUT_S}s", "--mesos-listen", f"127.0.0.1:{free_port()}"])
    first = free_port()
    procs["agent"] = Proc([
        "agent", "--manager", procs["manager"].addr, "--name", "r1", "--listen", "127.0.0.1:0",
        "--data", os.path.join(system.work, "r1"), "--heartbeat", "250ms", "--mesos-listen", "127.0.0.1:0",
        "--resources", f"cpus:2;mem:512;disk:256;ports:[{first}-{first}]"])
    # This manager's registration (a test before may have left cluster rm's record behind).
    wait_for("cluster rm registered by this manager, with its master's address",
             lambda: any(c["name"] == "rm" and c["manager"]["address"] == procs["manager"].addr
                         and c["manager"].get("mesos") for c in system.topology()["clusters"]), 15)
    return procs


def service(system, name):
    """The service as the center passes it from cluster rm's master (None once it is gone)."""
    for s in system.api("/v1/clusters/rm/rm/services")["services"]:
        if s["name"] == name:
            return s
    return None


def test_resources_and_services_deploy_scale_and_remove_from_the_page(tab, system):
    procs = rm_cluster(system)
    try:
        tab.sign_in()
        tab.page.goto(f"http://{system.center}/ui/#/resources?cluster=rm")
        # The agent with its resources, as the master reports them (read through the center).
        row = tab.testid("rm-agent-r1")
        row.wait_for(timeout=15_000)
        assert "0 / 2" in row.inner_text() and "0 / 512" in row.inner_text(), row.inner_text()
        spec = {"name": "ui-svc", "instances": 1, "command": "echo hello from ui-svc; exec sleep 600",
                "cpus": 0.5, "mem": 32}
        tab.testid("deploy-open").click()
        tab.testid("spec").fill(json.dumps(spec))
        tab.testid("deploy-service").click()
        tab.testid("confirm-ok").click()
        card = tab.page.locator('[data-testid="service-ui-svc"][data-running="1"]')
        card.wait_for(timeout=15_000)
        assert service(system, "ui-svc")["running"] == 1
        # The agent's used share follows the task (0.5 of 2 cpus).
        expect(row).to_contain_text("0.50 / 2")
        # The instance's output, read from its sandbox through the center.
        tab.testid("rm-tasks").locator('[data-testid="task-log-open"]').first.click()
        expect(tab.testid("task-log-text")).to_contain_text("hello from ui-svc")
        assert "task=ui-svc." in tab.page.url
        tab.shot("resources-light")
        # Scale: the count goes up on the page as it does in the master.
        tab.testid("service-ui-svc").locator('[data-testid="scale-count"]').fill("2")
        tab.testid("service-ui-svc").locator('[data-testid="scale"]').click()
        tab.testid("confirm-ok").click()
        tab.page.locator('[data-testid="service-ui-svc"][data-running="2"]').wait_for(timeout=15_000)
        assert service(system, "ui-svc")["running"] == 2
        # An invalid spec is refused by the master, and the page says why where the user acted.
        tab.testid("spec").fill(json.dumps({**spec, "instances": -1}))
        tab.testid("deploy-service").click()
        tab.testid("confirm-ok").click()
        tab.testid("deploy-result").locator('[data-testid="error"]').wait_for()
        # Chromium logs the refused request: that one was asked for.
        refused = [p for p in tab.problems if "status of 400" in p]
        assert len(refused) == 1, tab.problems
        tab.problems.remove(refused[0])
        # Remove: the instances are killed and the service leaves the page and the master.
        tab.testid("service-ui-svc").locator('[data-testid="remove"]').click()
        tab.testid("confirm-ok").click()
        tab.testid("service-ui-svc").wait_for(state="detached", timeout=20_000)
        assert service(system, "ui-svc") is None
    finally:
        for p in reversed(list(procs.values())):
            p.stop()


def test_a_viewer_reads_resources_but_is_offered_no_change_and_a_forced_one_is_refused(tab, system):
    procs = rm_cluster(system)
    try:
        tab.sign_in("viewer")
        tab.page.goto(f"http://{system.center}/ui/#/resources?cluster=rm")
        tab.testid("rm-agent-r1").wait_for(timeout=15_000)
        tab.testid("read-only").wait_for()
        assert tab.testid("deploy-service").count() == 0
        forced = tab.page.evaluate("""async () => {
            const r = await fetch('/v1/clusters/rm/rm/services', {method: 'POST',
              headers: {'Authorization': 'Bearer ' + localStorage.getItem('yard.token'), 'Content-Type': 'application/json'},
              body: JSON.stringify({name: 'x', instances: 1, command: 'true', cpus: 0.1, mem: 8})});
            return [r.status, (await r.json()).code];
        }""")
        assert forced == [403, "forbidden"], forced
        # Chromium logs the refused request: that one was asked for.
        refused = [p for p in tab.problems if "status of 403" in p]
        assert len(refused) == 1, tab.problems
        tab.problems.remove(refused[0])
    finally:
        for p in reversed(list(procs.values())):
            p.stop()


def test_keyboard_shortcuts_and_screens_in_the_dark_theme(browser, system):
    t = Page(browser, system, dark=True)
    try:
        t.sign_in()
        assert t.page.evaluate("document.documentElement.dataset.theme") == "dark"
        t.page.keyboard.press("?")
        t.testid("help").wait_for()
        t.page.keyboard.press("Escape")
        t.page.keyboard.press("g")
        t.page.keyboard.press("t")
        t.page.wait_for_url("**/#/topology")
        t.testid("tree").wait_for()
        t.shot("topology-dark")
        t.page.goto(f"http://{system.center}/ui/#/overview")
        t.testid("n-clusters").wait_for()
        t.shot("overview-dark")
        t.page.goto(f"http://{system.center}/ui/#/clusters/web")
        t.testid("nodes-total").wait_for()
        t.shot("cluster-dark")
        t.page.goto(f"http://{system.center}/ui/#/agents/web/agent-1")
        t.page.locator('[data-testid^="chart-web/agent-1/"]').first.wait_for()
        t.shot("agent-dark")
        t.page.goto(f"http://{system.center}/ui/#/metrics?s=web/agent-1/cpu,web/agent-2/cpu&overlay=1")
        t.testid("chart-overlay").wait_for()
        t.shot("metrics-dark")
        inventory(system)
        t.page.goto(f"http://{system.center}/ui/#/data?tail=/demo&store=inventory&prefix=host/")
        t.testid("keys-total").wait_for()
        t.testid("mesh-peer-manager web").wait_for()
        t.shot("data-dark")
        procs = rm_cluster(system)
        try:
            t.page.goto(f"http://{system.center}/ui/#/resources?cluster=rm")
            t.testid("rm-agent-r1").wait_for(timeout=15_000)
            t.shot("resources-dark")
            # Away from the page before its master stops (it would show the 502s, rightly).
            t.page.goto(f"http://{system.center}/ui/#/settings")
            t.testid("sign-out").wait_for()
        finally:
            for p in reversed(list(procs.values())):
                p.stop()
        t.shot("settings-dark")
        assert not t.problems, t.problems
    finally:
        t.close()


def test_every_tab_of_a_browser_shares_one_stream_and_another_takes_over_without_a_gap(browser, system):
    """A browser holds six HTTP/1.1 connections to a host: eight tabs, each with its own stream,
    would leave two with no connection at all. The tabs share the one stream of their leader;
    when it closes, another tab leads, resumes where it was, and no tab misses an event."""
    up = sum(a["state"] == "up" for c in system.topology()["clusters"] for a in c["agents"])
    tabs = [Page(browser, system)]
    tabs[0].sign_in()
    ctx = tabs[0].ctx
    streams = []
    ctx.on("request", lambda r: "/v1/stream" in r.url and streams.append(r))
    for _ in range(7):
        t = Page(browser, system, beside=tabs[0])
        t.page.goto(f"http://{system.center}/ui/#/overview")
        t.page.wait_for_selector('[data-testid="link"][data-state="live"]', timeout=10_000)
        expect(t.testid("n-agents-up")).to_have_text(str(up))
        tabs.append(t)
    roles = [t.page.evaluate("window.yardStream.role") for t in tabs]
    assert sorted(roles) == ["follower"] * 7 + ["leader"], roles
    assert len(streams) == 0, [r.url for r in streams]  # all opened after the leader's stream

    def change_and_see_it_everywhere(pages):
        cmd = system.api("/v1/commands", method="POST",
                         body={"op": "restart", "batch": 1, "cluster": "web", "nodes": ["agent-1/ticker"]})
        wait_for("the restart done", lambda: system.api(f"/v1/commands/{cmd['id']}")["state"]
                 not in ("pending", "running"), 30)
        newest = system.api("/v1/events?limit=1000")
        while newest["next"] is not None:
            newest = system.api(f"/v1/events?after={newest['next']}&limit=1000")
        seq = newest["events"][-1]["seq"]
        for t in pages:
            t.page.wait_for_function(f"() => window.yardStream.seq >= {seq}", timeout=10_000)

    change_and_see_it_everywhere(tabs)
    # The leader closes: another tab leads, asking the center to resume from its own last id.
    leader = tabs[roles.index("leader")]
    rest = [t for t in tabs if t is not leader]
    with rest[0].page.expect_request(lambda r: "/v1/stream" in r.url, timeout=10_000) as req:
        leader.page.close()
    assert req.value.headers.get("last-event-id"), "the new leader resumes, it does not start over"
    wait_for("a new leader", lambda: sorted(t.page.evaluate("window.yardStream.role") for t in rest)
             == ["follower"] * 6 + ["leader"], 10)
    change_and_see_it_everywhere(rest)
    assert [t.page.evaluate("window.yardStream.snapshots") for t in rest] == [1] * 7, \
        "no tab needed a new snapshot"
    problems = [p for p in tabs[0].problems if "ERR_" not in p]
    ctx.close()
    assert not problems, problems
