// @ts-check
// Charts of the center's time series with uPlot (vendored, loaded by index.html): what the
// metrics explorer and the cluster page share. `points` reads one series' history; `plot`
// draws series in one chart, coloured from the theme, with a crosshair shared by `sync` key.

import * as api from "./api.js";

const PALETTE = ["--accent", "--ok", "--warn", "--bad", "--idle"];

/** One series' history: [series, times (s), values, resolution]. @param {string} series @param {string} since @param {string} resolution @returns {Promise<[string, number[], any[], string]>} */
export async function points(series, since, resolution) {
  const r = await api.get(`/v1/metrics/query?${new URLSearchParams({ series, since, resolution })}`);
  return [series, r.points.map((/** @type {any} */ p) => p.ts / 1000), r.points.map((/** @type {any} */ p) => p.value ?? p.avg ?? null), r.resolution];
}

/**
 * Draws `data` (from points()) in one chart in `box`; a legend names the series when there
 * are several. @param {HTMLElement} box @param {[string, number[], any[], string][]} data
 * @param {{width: number, height?: number, sync: string}} o @returns {any} the uPlot
 */
export function plot(box, data, o) {
  const css = getComputedStyle(document.documentElement);
  const uPlot = /** @type {any} */ (window).uPlot;
  const lines = data.map(([label], i) => ({ label, stroke: css.getPropertyValue(PALETTE[i % PALETTE.length]), width: 1.5, spanGaps: true }));
  const opts = {
    width: o.width, height: o.height || 220,
    cursor: { sync: { key: o.sync } }, scales: { x: { time: true } },
    legend: { show: data.length > 1 },
    axes: [{ stroke: css.getPropertyValue("--dim") }, { stroke: css.getPropertyValue("--dim"), size: 72 }],
    series: [{}, ...lines],
  };
  const joined = data.length === 1 ? [data[0][1], data[0][2]] : uPlot.join(data.map(([, xs, ys]) => [xs, ys]));
  return new uPlot(opts, joined, box);
}
