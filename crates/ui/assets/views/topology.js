// @ts-check
// Topology: center → clusters → manager → agents → nodes and tasks, coloured by state,
// collapsible, with a side panel for the selected item (#/topology?sel=cluster/agent/node).
// A cluster of more than AGGREGATE agents is drawn as health cells (counts by state) with a
// paged, filtered list on demand, never one element per agent of a large fleet.

import { h, put, badge, ago } from "../lib/dom.js";
import { state } from "../lib/stream.js";

export const AGGREGATE = 50;
const PAGE = 50;

/** @param {URLSearchParams} params */
export function topology(params = new URLSearchParams()) {
  const tree = h("div", { class: "tree", "data-testid": "tree" });
  const side = h("aside", { class: "side", "data-testid": "side" });
  const el = h("section", { class: "with-side" }, h("div", null, h("h1", null, "Topology"), tree), side);
  /** Clusters folded by the user (open by default). @type {Set<string>} */
  const folded = new Set((params.get("fold") || "").split(",").filter(Boolean));
  /** Page and filter of each large cluster's agent list. @type {Map<string, {page: number, q: string, open: boolean}>} */
  const lists = new Map();

  function sel() {
    return new URLSearchParams(location.hash.split("?")[1] || "").get("sel") || "";
  }

  /** @param {string} path */
  function select(path) {
    const p = new URLSearchParams(location.hash.split("?")[1] || "");
    p.set("sel", path);
    history.replaceState(null, "", `#/topology?${p}`);
    draw();
  }

  /** @param {string} path @param {any[]} children */
  function item(path, ...children) {
    return h("button", { class: `item${sel() === path ? " selected" : ""}`, type: "button", onclick: () => select(path), "data-path": path }, children);
  }

  /** @param {any} c @param {any} a */
  function agentRow(c, a) {
    const path = `${c.name}/${a.name}`;
    return h("li", { "data-testid": `agent-${path}`, "data-state": a.state },
      item(path, badge(a.state), " ", h("strong", null, a.name), " ", h("span", { class: "dim" }, a.address)),
      h("ul", null,
        a.nodes.map((/** @type {any} */ n) => h("li", { "data-testid": `node-${path}/${n.name}`, "data-state": n.state, "data-health": n.health },
          item(`${path}/${n.name}`, badge(n.state), " ", n.name, " ", h("span", { class: "dim" }, n.health)))),
        (a.tasks || []).map((/** @type {any} */ t) => h("li", { "data-testid": `task-${path}/${t.id}`, "data-state": t.state },
          badge(t.state), " task ", t.id, " ", h("span", { class: "dim" }, t.framework)))));
  }

  /** Health cells: one per state, with its count. @param {any} c */
  function cells(c) {
    /** @type {Record<string, number>} */
    const by = {};
    for (const a of c.agents) {
      const bad = a.nodes.some((/** @type {any} */ n) => n.state !== "running" || n.health === "unhealthy");
      const k = a.state !== "up" ? "lost" : bad ? "degraded" : "up";
      by[k] = (by[k] || 0) + 1;
    }
    return h("div", { class: "cells", "data-testid": `cells-${c.name}` },
      ["up", "degraded", "lost"].filter((k) => by[k]).map((k) =>
        h("span", { class: `cell s-${k === "up" ? "ok" : k === "lost" ? "bad" : "warn"}`, "data-cell": k }, `${by[k]} ${k}`)));
  }

  /** @param {any} c */
  function bigList(c) {
    const l = lists.get(c.name) || { page: 0, q: "", open: false };
    lists.set(c.name, l);
    if (!l.open) return h("button", { type: "button", onclick: () => { l.open = true; draw(); } }, `List ${c.agents.length} agents`);
    const match = c.agents.filter((/** @type {any} */ a) => !l.q || a.name.includes(l.q) || a.state === l.q);
    const pages = Math.max(1, Math.ceil(match.length / PAGE));
    l.page = Math.min(l.page, pages - 1);
    const shown = match.slice(l.page * PAGE, (l.page + 1) * PAGE);
    const q = h("input", { type: "search", placeholder: "filter agents (name or state)", value: l.q, "data-search": "" });
    q.addEventListener("change", () => { l.q = /** @type {HTMLInputElement} */ (q).value; l.page = 0; draw(); });
    return h("div", null, q,
      h("ul", null, shown.map((/** @type {any} */ a) => agentRow(c, a))),
      h("div", { class: "pager" },
        h("button", { type: "button", disabled: l.page === 0, onclick: () => { l.page -= 1; draw(); } }, "‹"),
        ` ${l.page + 1} / ${pages} (${match.length} agents) `,
        h("button", { type: "button", disabled: l.page >= pages - 1, onclick: () => { l.page += 1; draw(); } }, "›")));
  }

  function draw() {
    const t = state.topology;
    if (!t) return put(tree, h("p", { class: "empty" }, "Waiting for the center…"));
    put(tree, h("ul", { class: "root" }, h("li", { "data-testid": "center" },
      item("", "center ", h("code", null, t.center.id.slice(0, 8)), " ", h("span", { class: "dim" }, t.center.address)),
      h("ul", null, t.clusters.map((/** @type {any} */ c) => {
        const open = !folded.has(c.name);
        const up = c.agents.filter((/** @type {any} */ a) => a.state === "up").length;
        const d = h("details", { open, "data-testid": `tcluster-${c.name}`, "data-state": c.manager_state },
          h("summary", null, item(c.name, badge(c.manager_state), " ", h("strong", null, c.name), ` ${up}/${c.agents.length} agents up`)),
          h("ul", null, h("li", { "data-testid": `manager-${c.name}` },
            item(`${c.name}/manager`, badge(c.manager_state), " manager ", h("span", { class: "dim" }, c.manager.address)),
            c.agents.length > AGGREGATE ? h("div", null, cells(c), bigList(c))
              : h("ul", null, c.agents.map((/** @type {any} */ a) => agentRow(c, a))))));
        d.addEventListener("toggle", () => {
          if (/** @type {HTMLDetailsElement} */ (d).open) folded.delete(c.name);
          else folded.add(c.name);
        });
        return h("li", null, d);
      })))));
    put(side, panel(t, sel()));
  }

  draw();
  return { el, update: (/** @type {string} */ what) => { if (what !== "metrics" && what !== "link") draw(); } };
}

/** The side panel of the selected item. @param {any} t @param {string} path */
function panel(t, path) {
  if (!path) {
    return h("div", null, h("h2", null, "Center"), h("dl", null,
      h("dt", null, "id"), h("dd", null, t.center.id), h("dt", null, "address"), h("dd", null, t.center.address),
      h("dt", null, "clusters"), h("dd", null, t.clusters.length)),
      h("p", { class: "dim" }, "Select an item to see it here."));
  }
  const [cn, an, nn] = path.split("/");
  const c = t.clusters.find((/** @type {any} */ x) => x.name === cn);
  if (!c) return h("p", { class: "empty" }, `No cluster ${cn}.`);
  if (!an) {
    return h("div", { "data-testid": "side-cluster" }, h("h2", null, `Cluster ${c.name}`), h("dl", null,
      h("dt", null, "manager"), h("dd", null, badge(c.manager_state), " ", c.manager.address),
      h("dt", null, "agents"), h("dd", null, c.agents.length),
      h("dt", null, "registrations"), h("dd", null, c.registrations),
      h("dt", null, "last report"), h("dd", null, ago(c.last_report_ms))),
      h("a", { href: `#/clusters/${encodeURIComponent(c.name)}` }, "Open the cluster →"));
  }
  if (an === "manager") {
    return h("div", null, h("h2", null, `Manager of ${c.name}`), h("dl", null,
      h("dt", null, "id"), h("dd", null, c.manager.id), h("dt", null, "address"), h("dd", null, c.manager.address),
      h("dt", null, "started"), h("dd", null, ago(c.manager.started_ms))));
  }
  const a = c.agents.find((/** @type {any} */ x) => x.name === an);
  if (!a) return h("p", { class: "empty" }, `No agent ${an} in ${cn}.`);
  if (!nn) {
    return h("div", { "data-testid": "side-agent" }, h("h2", null, `Agent ${a.name}`), h("dl", null,
      h("dt", null, "state"), h("dd", null, badge(a.state)), h("dt", null, "address"), h("dd", null, a.address),
      h("dt", null, "roles"), h("dd", null, a.roles.join(", ") || "–"), h("dt", null, "last heartbeat"), h("dd", null, ago(a.last_seen_ms)),
      h("dt", null, "nodes"), h("dd", null, a.nodes.length), h("dt", null, "tasks"), h("dd", null, a.tasks_total || 0)),
      h("a", { href: `#/agents/${encodeURIComponent(c.name)}/${encodeURIComponent(a.name)}` }, "Charts and logs →"));
  }
  const n = a.nodes.find((/** @type {any} */ x) => x.name === nn);
  if (!n) return h("p", { class: "empty" }, `No node ${nn} on ${an}.`);
  return h("div", { "data-testid": "side-node" }, h("h2", null, `Node ${n.name}`), h("dl", null,
    h("dt", null, "state"), h("dd", null, badge(n.state)), h("dt", null, "health"), h("dd", null, badge(n.health)),
    h("dt", null, "pid"), h("dd", null, n.pid ?? "–"), h("dt", null, "restarts"), h("dd", null, n.restarts),
    h("dt", null, "generation"), h("dd", { "data-testid": "side-generation" }, n.generation)));
}
