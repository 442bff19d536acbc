// @ts-check
// A cluster: its agents, its nodes (filtered and paged by the center), and the actions:
// rolling restart, deploy (upload a file), rollback and exec. Each asks for confirmation,
// follows the command live (GET /v1/commands/ID?after=V&wait_ms=…, as `yard commands --follow`)
// and ends with the per-node result table. Actions the caller may not run are not offered.

import { h, put, badge, ago, problem, ask } from "../lib/dom.js";
import * as api from "../lib/api.js";
const me = api.me;
import { state } from "../lib/stream.js";
import { points, plot } from "../lib/chart.js";

const PAGE = 50;
/** The per-cluster charts: one line per agent (the first few), over the last hour. */
const CHARTS = [["cpu", "CPU (share of one core)"], ["mem_used_pct", "memory used (%)"]];
const CHART_AGENTS = 8;
const CHART_EVERY_MS = 30_000;

/** @param {string} name */
export function cluster(name) {
  const params = () => new URLSearchParams(location.hash.split("?")[1] || "");
  const head = h("div");
  const agents = h("div");
  const nodes = h("div", { "data-testid": "nodes" });
  const actions = h("div", { class: "actions", "data-testid": "actions" });
  const progress = h("div", { "data-testid": "progress" });
  const history = h("div", { "data-testid": "history" });
  const charts = h("div", { class: "charts", "data-testid": "cluster-charts" });
  /** @type {any[]} */
  let plots = [];
  let chartTimer = 0;
  const el = h("section", { "data-testid": `cluster-page-${name}` },
    head, h("h2", null, "Agents"), agents, h("h2", null, "Charts"), charts, h("h2", null, "Nodes"), nodes,
    me.may.command ? [h("h2", null, "Actions"), actions, progress] : h("p", { class: "dim", "data-testid": "read-only" }, "Your credential can read this cluster, not change it."),
    h("h2", null, "Commands"), history);
  let closed = false;

  function drawHead() {
    const c = (state.topology ? state.topology.clusters : []).find((/** @type {any} */ x) => x.name === name);
    if (!c) return put(head, h("h1", null, `Cluster ${name}`), h("p", { class: "empty" }, "Not known to the center (yet)."));
    put(head, h("h1", null, `Cluster ${name} `, badge(c.manager_state, "manager-state")),
      h("p", { class: "dim" }, `manager ${c.manager.address}, reported ${ago(c.last_report_ms)}`));
    put(agents, h("table", { "data-testid": "agents" },
      h("thead", null, h("tr", null, ["agent", "state", "address", "nodes", "tasks", "last heartbeat"].map((x) => h("th", null, x)))),
      h("tbody", null, c.agents.slice(0, 200).map((/** @type {any} */ a) => h("tr", { "data-testid": `row-agent-${a.name}`, "data-state": a.state },
        h("td", null, h("a", { href: `#/agents/${encodeURIComponent(name)}/${encodeURIComponent(a.name)}` }, a.name)),
        h("td", null, badge(a.state)), h("td", null, a.address), h("td", null, a.nodes.length),
        h("td", null, a.tasks_total || 0), h("td", null, ago(a.last_seen_ms)))))),
      c.agents.length > 200 ? h("p", { class: "dim" }, `The first 200 of ${c.agents.length} agents; the topology page pages through all of them.`) : null);
  }

  async function drawNodes() {
    const p = params();
    const q = new URLSearchParams({ cluster: name, limit: String(PAGE) });
    if (p.get("q")) q.set("q", p.get("q") || "");
    if (p.get("after")) q.set("after", p.get("after") || "");
    try {
      const r = await api.get(`/v1/nodes?${q}`);
      if (closed) return;
      const search = h("input", { type: "search", placeholder: "filter nodes (agent, name or state)", value: p.get("q") || "", "data-search": "", "data-testid": "node-filter" });
      search.addEventListener("change", () => go({ q: /** @type {HTMLInputElement} */ (search).value, after: "" }));
      put(nodes, search, h("table", null,
        h("thead", null, h("tr", null, ["agent", "node", "state", "health", "pid", "restarts", "generation", ""].map((x) => h("th", null, x)))),
        h("tbody", null, r.nodes.map((/** @type {any} */ n) => h("tr", { "data-testid": `row-node-${n.agent}/${n.name}`, "data-state": n.state, "data-generation": n.generation },
          h("td", null, n.agent), h("td", null, n.name), h("td", null, badge(n.state)), h("td", null, badge(n.health)),
          h("td", null, n.pid ?? "–"), h("td", null, n.restarts), h("td", null, n.generation),
          h("td", null, h("a", { href: `#/agents/${encodeURIComponent(name)}/${encodeURIComponent(n.agent)}?node=${encodeURIComponent(n.name)}` }, "log")))))),
        h("div", { class: "pager", "data-testid": "nodes-total" }, `${r.nodes.length} of ${r.total} nodes `,
          p.get("after") ? h("button", { type: "button", onclick: () => go({ after: "" }) }, "first page") : null,
          r.next ? h("button", { type: "button", onclick: () => go({ after: r.next }) }, "next ›") : null));
    } catch (e) {
      put(nodes, problem(e));
    }
  }

  /** @param {Record<string, string>} change */
  function go(change) {
    const p = params();
    for (const [k, v] of Object.entries(change)) v ? p.set(k, v) : p.delete(k);
    history_(p);
    drawNodes();
  }

  /** @param {URLSearchParams} p */
  function history_(p) {
    const qs = p.toString();
    window.history.replaceState(null, "", `#/clusters/${encodeURIComponent(name)}${qs ? "?" + qs : ""}`);
  }

  async function drawHistory() {
    try {
      const r = await api.get("/v1/commands");
      if (closed) return;
      const mine = r.commands.filter((/** @type {any} */ c) => name in c.clusters).slice(-20).reverse();
      put(history, mine.length ? h("table", null,
        h("thead", null, h("tr", null, ["command", "op", "by", "state", "started", "took"].map((x) => h("th", null, x)))),
        h("tbody", null, mine.map((/** @type {any} */ c) => h("tr", { "data-testid": `hist-${c.id}` },
          h("td", null, h("code", null, c.id)), h("td", null, c.op), h("td", null, c.by || "–"),
          h("td", null, badge(c.clusters[name].state)), h("td", null, ago(c.started_ms)),
          h("td", null, c.finished_ms ? `${((c.finished_ms - c.started_ms) / 1000).toFixed(1)} s` : "…")))))
        : h("p", { class: "empty" }, "No command has run on this cluster."));
    } catch (e) {
      put(history, problem(e));
    }
  }

  /**
   * Asks, then starts a command and follows it.
   * @param {string} what @param {() => Promise<any>} body
   */
  async function confirmThen(what, body) {
    if (!(await ask(what))) return;
    put(progress, h("p", null, "Starting…"));
    try {
      const spec = await body();
      const started = await api.post("/v1/commands", { ...spec, cluster: name });
      follow(started.id);
    } catch (e) {
      put(progress, problem(e));
    }
  }

  /** @param {string} id */
  async function follow(id) {
    let after = 0;
    while (!closed) {
      let rec;
      try {
        rec = await api.get(`/v1/commands/${encodeURIComponent(id)}?after=${after}&wait_ms=10000`);
      } catch (e) {
        put(progress, problem(e));
        return;
      }
      after = rec.version;
      const done = rec.rows.filter((/** @type {any} */ r) => r.state !== "pending" && r.state !== "running").length;
      put(progress, h("div", { class: "card", "data-testid": "run", "data-id": id, "data-op": rec.op, "data-state": rec.state },
        h("h3", null, `${rec.op} `, h("code", null, id), " ", badge(rec.state),
          h("span", { class: "dim", "data-testid": "run-count" }, ` [${done}/${rec.rows.length}]`)),
        h("progress", { max: Math.max(1, rec.rows.length), value: done }),
        h("table", { "data-testid": "results" },
          h("thead", null, h("tr", null, ["agent", "node", "state", "exit", "detail", "output"].map((x) => h("th", null, x)))),
          h("tbody", null, rec.rows.map((/** @type {any} */ r) => h("tr", { "data-state": r.state },
            h("td", null, r.agent), h("td", null, r.node || "–"), h("td", null, badge(r.state)),
            h("td", null, r.exit_code ?? "–"), h("td", null, r.detail), h("td", null, h("pre", null, r.output))))))));
      if (rec.state !== "running") {
        drawHistory();
        drawNodes();
        return;
      }
    }
  }

  function drawActions() {
    const batch = h("input", { type: "number", min: 1, value: 1, id: "batch", "data-testid": "batch" });
    const timeout = h("input", { type: "number", min: 1, value: 300, id: "timeout", "data-testid": "timeout" });
    const file = h("input", { type: "file", "data-testid": "deploy-file" });
    const argv = h("input", { type: "text", placeholder: "uname -a", "data-testid": "exec-argv" });
    const n = (/** @type {HTMLElement} */ x) => Number(/** @type {HTMLInputElement} */ (x).value);
    put(actions,
      h("div", { class: "action" }, h("h3", null, "Rolling restart"),
        h("label", null, "batch ", batch), " ", h("label", null, "timeout (s) ", timeout), " ",
        h("button", { type: "button", "data-testid": "restart", onclick: () => confirmThen(
          `Restart every node of ${name}, ${n(batch)} at a time, each batch healthy before the next?`,
          async () => ({ op: "restart", batch: n(batch), timeout_s: n(timeout) })) }, "Restart…")),
      h("div", { class: "action" }, h("h3", null, "Deploy"), file, " ",
        h("button", { type: "button", "data-testid": "deploy", onclick: () => {
          const f = /** @type {HTMLInputElement} */ (file).files?.[0];
          if (!f) return put(progress, problem(new Error("choose a file to deploy first")));
          confirmThen(`Deploy ${f.name} (${f.size} bytes) to every agent of ${name}?`, async () => {
            const up = await api.upload(f);
            return { op: "deploy", sha256: up.sha256, name: f.name, size: up.size };
          });
        } }, "Deploy…"), " ",
        h("button", { type: "button", "data-testid": "rollback", onclick: () => confirmThen(
          `Switch every agent of ${name} back to the previous artifact?`, async () => ({ op: "rollback" })) }, "Roll back…")),
      h("div", { class: "action" }, h("h3", null, "Exec"), argv, " ",
        h("button", { type: "button", "data-testid": "exec", onclick: () => {
          const words = /** @type {HTMLInputElement} */ (argv).value.trim().split(/\s+/).filter(Boolean);
          if (!words.length) return put(progress, problem(new Error("give a command to run")));
          confirmThen(`Run ${JSON.stringify(words.join(" "))} on every agent of ${name}?`, async () => ({ op: "exec", argv: words }));
        } }, "Run…")));
  }

  /** Each agent's CPU and memory in one chart per figure, so that an odd agent stands out. */
  async function drawCharts() {
    clearTimeout(chartTimer);
    const c = (state.topology ? state.topology.clusters : []).find((/** @type {any} */ x) => x.name === name);
    const names = c ? c.agents.map((/** @type {any} */ a) => a.name).slice(0, CHART_AGENTS) : [];
    const boxes = [];
    /** @type {any[]} */
    const drawn = [];
    for (const [metric, title] of CHARTS) {
      const series = names.map((/** @type {string} */ a) => `${name}/${a}/${metric}`);
      const data = [];
      for (const s of series) {
        try {
          const d = await points(s, "1h", "auto");
          if (d[1].length) data.push(d);
        } catch (e) {
          boxes.push(problem(e));
        }
      }
      if (closed) return;
      const link = h("a", { href: `#/metrics?s=${series.map(encodeURIComponent).join(",")}&overlay=1` }, "explore");
      const box = h("div", { class: "chart", "data-testid": `cluster-chart-${metric}`, "data-series": data.length },
        h("div", { class: "chart-title" }, title, h("span", { class: "dim" }, ` · last hour · ${data.length} agent${data.length === 1 ? "" : "s"} · `), link));
      boxes.push(box);
      if (data.length) drawn.push([box, data]);
      else box.append(h("p", { class: "empty" }, "No samples yet."));
    }
    for (const p of plots) p.destroy();
    put(charts, boxes);
    const width = Math.min(640, Math.max(300, (charts.clientWidth || 1000) / 2 - 24));
    plots = drawn.map(([box, data]) => plot(box, data, { width, height: 180, sync: `cluster-${name}` }));
    if (names.length > CHART_AGENTS) charts.append(h("p", { class: "dim" }, `The first ${CHART_AGENTS} of ${c.agents.length} agents.`));
    if (!closed) chartTimer = window.setTimeout(drawCharts, drawn.length ? CHART_EVERY_MS : 3000);
  }

  drawHead();
  drawCharts();
  drawNodes();
  drawHistory();
  if (me.may.command) drawActions();
  let lastNodes = 0;
  return {
    el,
    update(/** @type {string} */ what) {
      if (what === "topology" || what === "snapshot") {
        drawHead();
        if (Date.now() - lastNodes > 1000) {
          lastNodes = Date.now();
          drawNodes();
        }
      }
      if (what === "command") drawHistory();
    },
    close() {
      closed = true;
      clearTimeout(chartTimer);
      for (const p of plots) p.destroy();
    },
  };
}
