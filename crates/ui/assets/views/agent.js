// @ts-check
// An agent: its charts load their history from the center's time-series store, then carry on
// live from the stream (the center sends the newest samples of the series on screen once a
// second); the log tail of one of its nodes follows. State in the URL: ?range=1h&node=NAME.

import { h, put, badge, ago, problem, ask } from "../lib/dom.js";
import * as api from "../lib/api.js";
import * as stream from "../lib/stream.js";

export const RANGES = ["15m", "1h", "6h", "1d", "7d", "30d", "365d"];
const CHARTS = 8;

/** @param {string} cl @param {string} name */
export function agent(cl, name) {
  const params = () => new URLSearchParams(location.hash.split("?")[1] || "");
  const range = () => (RANGES.includes(params().get("range") || "") ? params().get("range") : "1h") || "1h";
  const prefix = `${cl}/${name}/`;
  const head = h("div");
  const charts = h("div", { class: "charts", "data-testid": "charts" });
  const logs = h("div", { "data-testid": "logs" });
  // Restart the node whose log is shown (a restart command naming that one node).
  const nodeBox = h("div", { class: "row", "data-testid": "node-actions" });
  const nodeProblem = h("div", { class: "problem-slot" });
  /** @type {{id: string, node: string} | null} */
  let restarting = null;
  const el = h("section", { "data-testid": `agent-page-${cl}/${name}` }, head, h("h2", null, "Metrics"), charts, h("h2", null, "Log"), nodeBox, nodeProblem, logs);
  /** @type {Map<string, {plot: any, data: [number[], number[]], box: HTMLElement}>} */
  const plots = new Map();
  let closed = false;
  let logTimer = 0;
  let retryTimer = 0;

  /** @param {Record<string, string>} change */
  function setParams(change) {
    const p = params();
    for (const [k, v] of Object.entries(change)) v ? p.set(k, v) : p.delete(k);
    window.history.replaceState(null, "", `#/agents/${encodeURIComponent(cl)}/${encodeURIComponent(name)}?${p}`);
  }

  function drawHead() {
    const c = state().clusters.find((/** @type {any} */ x) => x.name === cl);
    const a = c && c.agents.find((/** @type {any} */ x) => x.name === name);
    if (!a) return put(head, h("h1", null, `Agent ${name}`), h("p", { class: "empty" }, `Not an agent of ${cl} (yet).`));
    put(head, h("h1", null, `Agent ${name} `, badge(a.state, "agent-state")),
      h("p", { class: "dim" }, `${a.address} · cluster `, h("a", { href: `#/clusters/${encodeURIComponent(cl)}` }, cl), ` · heartbeat ${ago(a.last_seen_ms)}`));
  }

  function state() {
    return stream.state.topology || { clusters: [] };
  }

  async function load() {
    const picker = h("div", { class: "ranges", "data-testid": "ranges" }, RANGES.map((r) =>
      h("button", { type: "button", class: r === range() ? "active" : "", "data-range": r, onclick: () => { setParams({ range: r }); load(); } }, r)));
    put(charts, picker);
    for (const p of plots.values()) p.plot.destroy();
    plots.clear();
    try {
      const s = await api.get(`/v1/metrics/series?prefix=${encodeURIComponent(prefix)}`);
      const names = s.series.slice(0, CHARTS);
      if (!names.length) {
        // A new agent's first samples are seconds away: ask again until they are there.
        charts.append(h("p", { class: "empty" }, "No metrics recorded for this agent yet."));
        clearTimeout(retryTimer);
        retryTimer = window.setTimeout(() => { if (!closed) load(); }, 2000);
        return;
      }
      for (const series of names) {
        const q = new URLSearchParams({ series, since: range(), resolution: "auto" });
        const r = await api.get(`/v1/metrics/query?${q}`);
        if (closed) return;
        const xs = [], ys = [];
        for (const p of r.points) {
          xs.push(p.ts / 1000);
          ys.push(p.value ?? p.avg ?? null);
        }
        chart(series, [xs, ys], r.resolution);
      }
      stream.watch([prefix]);
    } catch (e) {
      charts.append(problem(e));
    }
  }

  /** @param {string} series @param {[number[], any[]]} data @param {string} resolution */
  function chart(series, data, resolution) {
    const box = h("div", { class: "chart", "data-testid": `chart-${series}`, "data-points": data[0].length, "data-last-ts": data[0].length ? Math.round(data[0][data[0].length - 1] * 1000) : 0 },
      h("div", { class: "chart-title" }, series.slice(prefix.length), h("span", { class: "dim" }, ` ${resolution}`)));
    charts.append(box);
    const css = getComputedStyle(document.documentElement);
    const plot = new /** @type {any} */ (window).uPlot({
      width: Math.min(560, Math.max(280, (charts.clientWidth || 600) / 2 - 24)),
      height: 160,
      cursor: { sync: { key: "agent" } },
      legend: { show: false },
      scales: { x: { time: true } },
      axes: [{ stroke: css.getPropertyValue("--dim") }, { stroke: css.getPropertyValue("--dim"), size: 72 }],
      series: [{}, { stroke: css.getPropertyValue("--accent"), width: 1.5, spanGaps: true }],
    }, data, box);
    plots.set(series, { plot, data, box });
  }

  function live() {
    for (const [series, p] of plots) {
      const pts = stream.state.metrics.get(series);
      if (!pts) continue;
      const [xs, ys] = p.data;
      let added = false;
      for (const [ts, v] of pts) {
        const t = ts / 1000;
        if (!xs.length || xs[xs.length - 1] < t) {
          xs.push(t);
          ys.push(v);
          added = true;
        }
      }
      if (added) {
        p.plot.setData(p.data);
        p.box.dataset.lastTs = String(Math.round(xs[xs.length - 1] * 1000));
        p.box.dataset.points = String(xs.length);
      }
    }
  }

  function currentNode() {
    const c = state().clusters.find((/** @type {any} */ x) => x.name === cl);
    const a = c && c.agents.find((/** @type {any} */ x) => x.name === name);
    const nodes = a ? a.nodes.map((/** @type {any} */ n) => n.name) : [];
    return params().get("node") || nodes[0] || "";
  }

  function drawNodeActions() {
    const node = currentNode();
    if (!api.me.may.command || !node) return put(nodeBox);
    const cmd = restarting && stream.state.commands.get(restarting.id);
    const st = cmd ? cmd.state : "starting";
    put(nodeBox, h("button", { type: "button", "data-testid": "restart-node", onclick: () => restartNode(node) }, `Restart ${node}`), " ",
      restarting ? h("span", { "data-testid": "restart-node-state", "data-state": st, "data-id": restarting.id }, "restart of ", restarting.node, ": ", badge(st)) : null);
  }

  /** @param {string} node */
  async function restartNode(node) {
    if (!(await ask(`Restart ${node} on ${name}? It stops, starts again and must be healthy within 5 min.`))) return;
    put(nodeProblem);
    try {
      const r = await api.post("/v1/commands", { op: "restart", batch: 1, nodes: [`${name}/${node}`], cluster: cl });
      restarting = { id: r.id, node };
    } catch (e) {
      put(nodeProblem, problem(e));
    }
    drawNodeActions();
  }

  // The log follows: each read asks for what was written since the last one (the server's
  // `x-yard-log-next` position) and appends it, or starts afresh when the server says the
  // position could not be continued. At most LOG_KEEP characters are kept.
  const LOG_KEEP = 65536;
  let log = { node: "", after: "", text: "" };
  /** @type {HTMLPreElement | null} */
  let pre = null;

  async function drawLogs() {
    const c = state().clusters.find((/** @type {any} */ x) => x.name === cl);
    const a = c && c.agents.find((/** @type {any} */ x) => x.name === name);
    const nodes = a ? a.nodes.map((/** @type {any} */ n) => n.name) : [];
    const node = params().get("node") || nodes[0];
    if (!node) return put(logs, h("p", { class: "empty" }, "This agent runs no node."));
    if (node !== log.node) {
      log = { node, after: "", text: "" };
      pre = null;
    }
    const pick = () => {
      const sel = h("select", { "data-testid": "log-node" }, nodes.map((/** @type {string} */ n) => h("option", { value: n, selected: n === node }, n)));
      sel.addEventListener("change", () => { setParams({ node: /** @type {HTMLSelectElement} */ (sel).value }); drawNodeActions(); drawLogs(); });
      return h("label", null, "node ", sel);
    };
    try {
      const q = new URLSearchParams({ max_bytes: "16384" });
      if (log.after) q.set("after", log.after);
      const r = await fetch(`/v1/logs/${encodeURIComponent(cl)}/${encodeURIComponent(name)}/${encodeURIComponent(node)}?${q}`, { headers: api.headers(), cache: "no-store" });
      const text = await r.text();
      if (closed || node !== log.node) return;
      if (!r.ok) throw new api.ApiError(r.status, `http_${r.status}`, text);
      const continued = r.headers.get("x-yard-log-continued") === "true";
      log.text = (continued ? log.text + text : text).slice(-LOG_KEEP);
      log.after = r.headers.get("x-yard-log-next") || "";
      if (!pre || !logs.contains(pre)) {
        pre = /** @type {HTMLPreElement} */ (h("pre", { class: "log", "data-testid": "log-text" }));
        put(logs, pick(), pre);
        pre.textContent = log.text || "(empty)";
        pre.scrollTop = pre.scrollHeight;
      } else if (!continued || text) {
        // Kept at the bottom only if the reader was there.
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent = log.text || "(empty)";
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
    } catch (e) {
      pre = null;
      put(logs, pick(), problem(e));
    }
    clearTimeout(logTimer);
    if (!closed) logTimer = window.setTimeout(drawLogs, 3000);
  }

  drawHead();
  load();
  drawNodeActions();
  drawLogs();
  return {
    el,
    update(/** @type {string} */ what) {
      if (what === "metrics") live();
      else if (what === "command") drawNodeActions();
      else if (what !== "link") drawHead();
    },
    close() {
      closed = true;
      clearTimeout(logTimer);
      clearTimeout(retryTimer);
      for (const p of plots.values()) p.plot.destroy();
      stream.watch([]);
    },
  };
}
