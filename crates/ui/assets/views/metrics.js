// @ts-check
// Metrics explorer: series searched on the center (GET /v1/metrics/series?q=&limit=), a range
// from 15 minutes to a year, the resolution automatic or chosen, one crosshair across the
// charts, and an overlay that draws the chosen series in one chart (to compare clusters).
// State in the URL: #/metrics?s=A,B&range=1h&res=auto&overlay=1.

import { h, put, problem } from "../lib/dom.js";
import * as api from "../lib/api.js";
import { RANGES } from "./agent.js";
import { points, plot } from "../lib/chart.js";

const MAX = 8;
const RESOLUTIONS = ["auto", "raw", "1m", "1h"];

export function metrics() {
  const params = () => new URLSearchParams(location.hash.split("?")[1] || "");
  const chosen = () => (params().get("s") || "").split(",").filter(Boolean);
  const range = () => (RANGES.includes(params().get("range") || "") ? params().get("range") : "1h") || "1h";
  const res = () => (RESOLUTIONS.includes(params().get("res") || "") ? params().get("res") : "auto") || "auto";
  const search = h("input", { type: "search", placeholder: "search series, e.g. cpu or local/agent-1/", "data-search": "", "data-testid": "series-search" });
  const found = h("div", { "data-testid": "series-found" });
  const picked = h("div", { class: "picked", "data-testid": "series-picked" });
  const controls = h("div", { class: "ranges" });
  const charts = h("div", { class: "charts", "data-testid": "explorer-charts" });
  const el = h("section", { "data-testid": "metrics" }, h("h1", null, "Metrics"),
    h("div", { class: "card" }, search, found), picked, controls, charts);
  /** @type {any[]} */
  let plots = [];
  let closed = false;
  /** Bumped by every draw: an older draw still waiting on the center gives up. */
  let generation = 0;

  /** @param {Record<string, string>} change */
  function set(change) {
    const p = params();
    for (const [k, v] of Object.entries(change)) v ? p.set(k, v) : p.delete(k);
    window.history.replaceState(null, "", `#/metrics?${p}`);
    draw();
  }

  async function find() {
    const q = /** @type {HTMLInputElement} */ (search).value.trim();
    if (!q) return put(found);
    try {
      const r = await api.get(`/v1/metrics/series?${new URLSearchParams({ q, limit: "20" })}`);
      put(found, h("ul", { class: "found" }, r.series.map((/** @type {string} */ s) =>
        h("li", null, h("button", { type: "button", class: "link-button", "data-series": s, onclick: () => {
          const now = chosen().filter((x) => x !== s);
          now.push(s);
          set({ s: now.slice(-MAX).join(",") });
        } }, s)))),
        h("p", { class: "dim" }, r.total > r.series.length ? `the first ${r.series.length} of ${r.total} series that match; narrow the search` : `${r.total} series`));
    } catch (e) {
      put(found, problem(e));
    }
  }
  let timer = 0;
  search.addEventListener("input", () => { clearTimeout(timer); timer = window.setTimeout(find, 200); });

  async function draw() {
    const mine = ++generation;
    const list = chosen();
    put(picked, list.map((s) => h("span", { class: "chip", "data-testid": `picked-${s}` }, s, " ",
      h("button", { type: "button", title: "remove", onclick: () => set({ s: list.filter((x) => x !== s).join(",") }) }, "×"))));
    const overlay = params().get("overlay") === "1";
    put(controls,
      RANGES.map((r) => h("button", { type: "button", class: r === range() ? "active" : "", "data-range": r, onclick: () => set({ range: r }) }, r)),
      " ", h("label", null, "resolution ", (() => {
        const sel = h("select", { "data-testid": "resolution" }, RESOLUTIONS.map((x) => h("option", { value: x, selected: x === res() }, x)));
        sel.addEventListener("change", () => set({ res: /** @type {HTMLSelectElement} */ (sel).value }));
        return sel;
      })()),
      " ", h("label", null, (() => {
        const box = h("input", { type: "checkbox", checked: overlay, "data-testid": "overlay" });
        box.addEventListener("change", () => set({ overlay: /** @type {HTMLInputElement} */ (box).checked ? "1" : "" }));
        return box;
      })(), " in one chart"));
    for (const p of plots) p.destroy();
    plots = [];
    put(charts);
    if (!list.length) return charts.append(h("p", { class: "empty" }, "Search for series above and pick some."));
    /** @type {[string, number[], any[], string][]} */
    const data = [];
    for (const series of list) {
      try {
        const d = await points(series, range(), res());
        if (closed || mine !== generation) return;
        data.push(d);
      } catch (e) {
        charts.append(problem(e));
      }
    }
    const width = Math.max(320, (charts.clientWidth || 900) - 24);
    if (overlay) {
      const box = h("div", { class: "chart wide", "data-testid": "chart-overlay", "data-series": data.length });
      charts.append(box);
      plots.push(plot(box, data, { width, sync: "explorer" }));
    } else {
      for (const d of data) {
        const [series, xs, , resolution] = d;
        const box = h("div", { class: "chart wide", "data-testid": `explore-${series}`, "data-points": xs.length },
          h("div", { class: "chart-title" }, series, h("span", { class: "dim" }, ` ${resolution}, ${xs.length} points`)));
        charts.append(box);
        plots.push(plot(box, [d], { width, sync: "explorer" }));
      }
    }
  }

  draw();
  return {
    el,
    close() {
      closed = true;
      for (const p of plots) p.destroy();
    },
  };
}
