// @ts-check
// The page's one live connection: GET /v1/stream (server-sent events), read with fetch so that
// it carries the credential. It starts from a snapshot, applies topology and command events,
// and on any break reconnects with Last-Event-ID, so the center replays what was missed (or
// sends a new snapshot when it no longer has it). Views subscribe with onChange().

import { headers } from "./api.js";

/** @typedef {{seq: number, topology: any, commands: any[]}} Snapshot */

export const state = {
  /** @type {"connecting" | "live" | "reconnecting" | "unauthorized"} */
  link: "connecting",
  /** The newest event id applied (topology events). */
  seq: 0,
  /** @type {any} the center and clusters, as GET /v1/topology */
  topology: null,
  /** @type {Map<string, any>} command summaries by id */
  commands: new Map(),
  /** @type {any[]} recent topology changes, newest first */
  feed: [],
  /** @type {Map<string, [number, number][]>} metric points by series (newest last) */
  metrics: new Map(),
  /** Snapshots received (a new one after a gap or an overflow). */
  snapshots: 0,
  /** Characters received on the stream (what bench/dashboard.py reads per idle tab). */
  received: 0,
  lastError: "",
};

/** @type {Set<(what: string) => void>} */
const listeners = new Set();
/** Series prefixes on screen (the center sends their newest values once a second). */
let watched = "";
/** @type {AbortController | null} */
let current = null;

/** @param {(what: string) => void} f @returns {() => void} */
export function onChange(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** @param {string} what */
function emit(what) {
  for (const f of listeners) {
    try {
      f(what);
    } catch (e) {
      console.warn("a view failed to update", e);
    }
  }
}

/** Asks for live samples of these series prefixes (reconnects when they change). @param {string[]} prefixes */
export function watch(prefixes) {
  const next = prefixes.join(",");
  if (next === watched) return;
  watched = next;
  restart();
}

export function restart() {
  if (current) current.abort();
  current = null;
  start();
}

const FEED = 50;
const POINTS = 600;

/** @param {string} event @param {any} data @param {string} id */
function apply(event, data, id) {
  switch (event) {
    case "snapshot":
      state.topology = data.topology;
      state.commands = new Map(data.commands.map((/** @type {any} */ c) => [c.id, c]));
      state.feed = data.events.slice().reverse();
      state.seq = data.seq;
      state.snapshots += 1;
      break;
    case "topology": {
      if (!state.topology) return;
      const i = state.topology.clusters.findIndex((/** @type {any} */ c) => c.name === data.cluster.name);
      if (i >= 0) state.topology.clusters[i] = data.cluster;
      else state.topology.clusters.push(data.cluster);
      state.topology.clusters.sort((/** @type {any} */ a, /** @type {any} */ b) => a.name < b.name ? -1 : 1);
      state.feed = data.events.slice().reverse().concat(state.feed).slice(0, FEED);
      state.seq = data.seq;
      break;
    }
    case "command":
      state.commands.set(data.id, data);
      break;
    case "metrics":
      for (const [series, ts, v] of data) {
        const pts = state.metrics.get(series) || [];
        if (!pts.length || pts[pts.length - 1][0] < ts) pts.push([ts, v]);
        if (pts.length > POINTS) pts.splice(0, pts.length - POINTS);
        state.metrics.set(series, pts);
      }
      break;
    default:
      return;
  }
  if (id) state.seq = Number(id) || state.seq;
  emit(event);
}

/** @param {string} link */
function setLink(link) {
  if (state.link !== link) {
    state.link = link;
    emit("link");
  }
}

async function start() {
  const ctl = new AbortController();
  current = ctl;
  let wait = 500;
  while (current === ctl) {
    try {
      /** @type {Record<string, string>} */
      const extra = {};
      if (state.seq) extra["Last-Event-ID"] = String(state.seq);
      const q = watched ? `?series=${encodeURIComponent(watched)}` : "";
      const r = await fetch(`/v1/stream${q}`, { headers: headers(extra), signal: ctl.signal, cache: "no-store" });
      if (r.status === 401 || r.status === 403) {
        state.lastError = `${r.status}: ${await r.text()}`;
        setLink("unauthorized");
        return;
      }
      if (!r.ok || !r.body) throw new Error(`stream answered ${r.status}`);
      wait = 500;
      await read(r.body, ctl);
    } catch (e) {
      if (ctl.signal.aborted) return;
      state.lastError = String(e);
    }
    if (current !== ctl) return;
    setLink("reconnecting");
    await new Promise((ok) => setTimeout(ok, wait));
    wait = Math.min(wait * 2, 5000);
  }
}

/** @param {ReadableStream<Uint8Array>} body @param {AbortController} ctl */
async function read(body, ctl) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!ctl.signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    state.received += value.length;
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = "message", id = "", data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const v = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = v;
        else if (field === "id") id = v;
        else if (field === "data") data += (data ? "\n" : "") + v;
      }
      if (!data) continue;
      apply(event, JSON.parse(data), id);
      if (event === "snapshot" || event === "resumed") setLink("live");
    }
  }
}
