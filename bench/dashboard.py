"""The dashboard against a large fleet: `yard bench fleet` feeds a real center (100 clusters of
100 agents unless told otherwise) and this program opens the dashboard in Debian's Chromium
(Playwright, the pinned .venv of scripts/test.sh) while the fleet runs. It prints, in one line:

  first_paint_ms       first contentful paint of the overview
  overview_ms          from navigation until the overview shows every agent up
  topology_ms          from the click until the topology shows every cluster's health cells
  stream_bytes_s_tab   what one idle tab's live stream carries per second (over --idle)
  center_cpu_idle      the center's CPU (cores) over --idle with no tab open
  center_cpu_tabs      the same with --tabs tabs open on the overview

Run: .venv/bin/python bench/dashboard.py [--clusters 100 --agents 100 --tabs 10 --idle 20]
(YARD_BIN picks the binary; target/release/yard by default)."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YARD = os.environ.get("YARD_BIN", os.path.join(ROOT, "target", "release", "yard"))


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def cpu_over(pid, seconds):
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    time.sleep(seconds)
    return (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--tabs", type=int, default=10)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of each idle measurement")
    a = ap.parse_args()
    ready = os.path.join(tempfile.mkdtemp(prefix="yard-bench-ui-"), "ready.json")
    # Long enough for the warm-up of the page and both idle windows.
    budget = 120 + 3 * a.idle
    fleet = subprocess.Popen([YARD, "bench", "fleet", "--clusters", str(a.clusters), "--agents", str(a.agents),
                              "--interval", "5s", "--duration", f"{int(budget)}s", "--ready-file", ready],
                             env={**os.environ, "YARD_LOG": "warn"}, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(ready):
            if fleet.poll() is not None or time.monotonic() > deadline:
                sys.exit("the fleet did not start")
            time.sleep(0.2)
        time.sleep(0.2)
        with open(ready) as f:
            info = json.load(f)
        center, pid = info["center"], info["pid"]
        cpu_idle = cpu_over(pid, a.idle)
        link = subprocess.run([YARD, "login-link", "--center", center], capture_output=True, text=True,
                              check=True).stdout.strip()
        agents = a.clusters * a.agents
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            ctx = browser.new_context(viewport={"width": 1440, "height": 900})
            page = ctx.new_page()
            page.goto(link)
            page.wait_for_function(
                f"() => document.querySelector('[data-testid=\"n-agents-up\"]')?.textContent === '{agents}'",
                timeout=60_000)
            overview_ms = page.evaluate("performance.now()")
            fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1")
            t = page.evaluate("performance.now()")
            page.click('[data-testid="nav-topology"]')
            page.wait_for_function(
                f"() => document.querySelectorAll('[data-testid^=\"cells-\"]').length === {a.clusters}",
                timeout=60_000)
            topology_ms = page.evaluate("performance.now()") - t
            page.click('[data-testid="nav-overview"]')
            token = page.evaluate("localStorage.getItem('yard.token')")
            assert token
            tabs = [page]
            for _ in range(a.tabs - 1):
                # A context each, as separate operators' browsers: one browser holds at most 6
                # HTTP/1.1 connections to a host, and each tab's stream holds one.
                other = browser.new_context(viewport={"width": 1440, "height": 900})
                other.add_init_script(f"localStorage.setItem('yard.token', {json.dumps(token)})")
                t2 = other.new_page()
                t2.goto(f"http://{center}/ui/#/overview")
                t2.wait_for_function(
                    f"() => document.querySelector('[data-testid=\"n-agents-up\"]')?.textContent === '{agents}'",
                    timeout=60_000)
                tabs.append(t2)
            r0 = page.evaluate("window.yardStream.received")
            cpu_tabs = cpu_over(pid, a.idle)
            received = page.evaluate("window.yardStream.received") - r0
            browser.close()
        print(f"dashboard clusters={a.clusters} agents={agents} first_paint_ms={fcp:.0f} "
              f"overview_ms={overview_ms:.0f} topology_ms={topology_ms:.0f} "
              f"stream_bytes_s_tab={received / a.idle:.1f} center_cpu_idle={cpu_idle:.3f} "
              f"center_cpu_tabs={cpu_tabs:.3f} tabs={a.tabs}")
        # The fleet ends its own window and stops its center (its figures follow).
        out, _ = fleet.communicate(timeout=budget + 180)
        print(out.strip())
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
            if os.path.exists(ready):
                with open(ready) as f:
                    pid = json.load(f)["pid"]
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass


if __name__ == "__main__":
    main()
