// @ts-check
// Overview: the system's health at a glance, the figures of `yard stats`, the commands under
// way and the feed of recent changes. Everything but the figures comes from the live stream.

import { h, put, badge, ago, clock, problem } from "../lib/dom.js";
import * as api from "../lib/api.js";
import { state } from "../lib/stream.js";

/** Counts over the topology. @param {any} topo */
export function health(topo) {
  const n = { clusters: 0, managersLost: 0, agents: 0, agentsLost: 0, nodes: 0, running: 0, healthy: 0, tasks: 0 };
  for (const c of topo ? topo.clusters : []) {
    n.clusters += 1;
    if (c.manager_state !== "up") n.managersLost += 1;
    for (const a of c.agents) {
      n.agents += 1;
      if (a.state !== "up") n.agentsLost += 1;
      n.tasks += a.tasks_total || 0;
      for (const node of a.nodes) {
        n.nodes += 1;
        if (node.state === "running") n.running += 1;
        if (node.health === "healthy") n.healthy += 1;
      }
    }
  }
  return n;
}

/** @param {string} label @param {any} value @param {string} testid @param {string} [tone] */
function tile(label, value, testid, tone) {
  return h("div", { class: `tile ${tone || ""}` }, h("div", { class: "value", "data-testid": testid }, String(value)), h("div", { class: "label" }, label));
}

/** A change, in words. @param {any} e */
export function describe(e) {
  const where = [e.cluster, e.agent, e.node].filter(Boolean).join("/");
  const what = String(e.event).replace(/_/g, " ");
  return e.event === "node_changed" ? `${where}: ${e.state}, ${e.health}` : `${where}: ${what}`;
}

export function overview() {
  const tiles = h("div", { class: "tiles" });
  const clusters = h("div", { class: "cards" });
  const commands = h("div");
  const feed = h("ol", { class: "feed", "data-testid": "feed" });
  const figures = h("div");
  const el = h("section", { "data-testid": "overview" },
    h("h1", null, "Overview"), tiles,
    h("h2", null, "Clusters"), clusters,
    h("div", { class: "columns" },
      h("div", null, h("h2", null, "Commands"), commands),
      h("div", null, h("h2", null, "Recent changes"), feed)),
    h("h2", null, "Figures"), figures);

  function draw() {
    const n = health(state.topology);
    put(tiles,
      tile("clusters", n.clusters, "n-clusters", n.managersLost ? "bad" : ""),
      tile("agents up", n.agents - n.agentsLost, "n-agents-up"),
      tile("agents lost", n.agentsLost, "n-agents-lost", n.agentsLost ? "bad" : ""),
      tile("nodes running", `${n.running}/${n.nodes}`, "n-nodes-running", n.running < n.nodes ? "warn" : ""),
      tile("nodes healthy", n.healthy, "n-nodes-healthy"),
      tile("tasks", n.tasks, "n-tasks"),
      tile("commands under way", [...state.commands.values()].filter((c) => c.state === "running").length, "n-commands"));
    put(clusters, (state.topology ? state.topology.clusters : []).map((/** @type {any} */ c) => {
      const up = c.agents.filter((/** @type {any} */ a) => a.state === "up").length;
      return h("a", { class: "card cluster", href: `#/clusters/${encodeURIComponent(c.name)}`, "data-testid": `cluster-${c.name}` },
        h("h3", null, c.name, " ", badge(c.manager_state, `cluster-state-${c.name}`)),
        h("p", null, `${up}/${c.agents.length} agents up · manager reported ${ago(c.last_report_ms)}`));
    }));
    const list = [...state.commands.values()].sort((a, b) => b.started_ms - a.started_ms).slice(0, 10);
    put(commands, list.length ? h("table", null,
      h("thead", null, h("tr", null, h("th", null, "command"), h("th", null, "op"), h("th", null, "state"), h("th", null, "started"))),
      h("tbody", null, list.map((c) => h("tr", { "data-testid": `command-${c.id}` },
        h("td", null, h("code", null, c.id)), h("td", null, c.op), h("td", null, badge(c.state)), h("td", null, ago(c.started_ms))))))
      : h("p", { class: "empty" }, "No commands yet."));
    put(feed, state.feed.slice(0, 20).map((e) => h("li", { "data-seq": e.seq }, h("time", null, clock(e.ts)), " ", describe(e))));
  }

  let last = 0;
  async function figuresNow() {
    last = Date.now();
    try {
      const s = await api.get("/v1/stats");
      const t = s.total;
      put(figures, h("table", { "data-testid": "stats" },
        h("thead", null, h("tr", null, ["cluster", "agents up", "lost", "nodes", "running", "healthy", "restarts", "cpu %", "memory"].map((x) => h("th", null, x)))),
        h("tbody", null, [...s.clusters, { ...t, cluster: "all clusters" }].map((r) => h("tr", null,
          h("td", null, r.cluster), h("td", null, r.agents_up), h("td", null, r.agents_lost), h("td", null, r.nodes),
          h("td", null, r.nodes_running), h("td", null, r.nodes_healthy), h("td", null, r.restarts),
          h("td", null, r.cpu_avg_pct == null ? "–" : r.cpu_avg_pct.toFixed(1)),
          h("td", null, `${(r.mem_used_bytes / 1048576).toFixed(0)} MiB`))))));
    } catch (e) {
      put(figures, problem(e));
    }
  }
  draw();
  figuresNow();
  return {
    el,
    update(/** @type {string} */ what) {
      if (what === "link") return;
      draw();
      if (Date.now() - last > 5000) figuresNow();
    },
  };
}
