// @ts-check
// The browser's one live connection: GET /v1/stream (server-sent events), read with fetch so
// that it carries the credential. It starts from a snapshot, applies topology and command
// events, and on any break reconnects with Last-Event-ID, so the center replays what was missed
// (or sends a new snapshot when it no longer has it). Views subscribe with onChange().
//
// One stream serves every tab of the dashboard in this browser: a browser holds at most six
// HTTP/1.1 connections to a host, and a stream per tab would leave a seventh tab with none. The
// tab holding the Web Lock "yard.stream" (the leader) reads the stream and passes each frame to
// the others on the BroadcastChannel of the same name; a tab that opens asks the leader for its
// state (a snapshot), and tells it which series it watches (the leader asks the center for the
// union). When the leader closes, the lock passes to another tab, which reconnects with its own
// Last-Event-ID: the center replays what it missed, so no tab sees a gap.

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
  /** @type {"leader" | "follower" | "alone"} whether this tab reads the stream for the others */
  role: "follower",
};

/** @type {Set<(what: string) => void>} */
const listeners = new Set();
/** Series prefixes on this tab's screen (the center sends their newest values once a second). */
let watched = "";
/** What the stream was opened with: every tab's prefixes, joined. */
let streamed = "";
/** @type {AbortController | null} */
let current = null;

const NAME = "yard.stream";
const tab = Math.random().toString(36).slice(2);
/** @type {BroadcastChannel | null} */
const channel = typeof BroadcastChannel === "function" && navigator.locks ? new BroadcastChannel(NAME) : null;
/** The leader's view of what the other tabs watch: tab → prefixes and when last said. */
const watchers = new Map();
/** A tab says again what it watches this often; the leader forgets a tab silent for 3 times it. */
const ANNOUNCE_MS = 20000;
let begun = false;

/** Every tab's prefixes (the leader's), joined. */
function wanted() {
  const all = new Set(watched ? watched.split(",") : []);
  const now = Date.now();
  for (const [id, w] of watchers) {
    if (now - w.at > 3 * ANNOUNCE_MS) watchers.delete(id);
    else for (const p of w.prefixes) all.add(p);
  }
  return [...all].sort().join(",");
}

/** @param {any} m */
function post(m) {
  if (channel) channel.postMessage(m);
}

function announce() {
  post({ kind: "watch", tab, prefixes: watched ? watched.split(",") : [] });
}

/** @param {MessageEvent} ev */
function heard(ev) {
  const m = ev.data;
  if (state.role === "leader") {
    if (m.kind === "hello") {
      post({ kind: "state", to: m.tab, link: state.link, error: state.lastError, snapshot: {
        seq: state.seq, topology: state.topology, commands: [...state.commands.values()],
        events: state.feed.slice().reverse() } });
    }
    if (m.kind === "watch" || m.kind === "hello") {
      watchers.set(m.tab, { prefixes: m.prefixes || [], at: Date.now() });
      if (wanted() !== streamed) reconnect();
    }
    if (m.kind === "bye") {
      watchers.delete(m.tab);
      if (wanted() !== streamed) reconnect();
    }
    if (m.kind === "restart") reconnect();
    return;
  }
  if (m.kind === "leader") {
    // A new leader: it learns what this tab watches, and gives it a state if it has none.
    if (state.topology) announce();
    else post({ kind: "hello", tab, prefixes: watched ? watched.split(",") : [] });
  }
  if (m.kind === "state" && m.to === tab && m.snapshot.topology) {
    apply("snapshot", m.snapshot, "");
    state.lastError = m.error;
    setLink(m.link);
  }
  if (m.kind === "link") {
    state.lastError = m.error;
    setLink(m.link);
  }
  // Frames before this tab's first state are covered by it.
  if (m.kind === "frame" && (state.topology || m.event === "snapshot")) apply(m.event, m.data, m.id);
}

function begin() {
  begun = true;
  if (!channel) {
    state.role = "alone";
    return reconnect();
  }
  channel.onmessage = heard;
  post({ kind: "hello", tab, prefixes: watched ? watched.split(",") : [] });
  window.setInterval(announce, ANNOUNCE_MS);
  window.addEventListener("pagehide", () => post({ kind: "bye", tab }));
  // Held until the tab closes; then the next tab waiting for it leads.
  navigator.locks.request(NAME, () => {
    state.role = "leader";
    watchers.clear();
    post({ kind: "leader" });
    reconnect();
    return new Promise(() => {});
  });
}

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
  if (state.role === "follower") announce();
  else if (begun && wanted() !== streamed) reconnect();
}

/** Starts the stream, or (signed in again) opens it afresh with the credential now kept. */
export function restart() {
  if (!begun) return begin();
  if (state.role === "follower") post({ kind: "restart" });
  else reconnect();
}

function reconnect() {
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

/** The leader applies a frame and passes it on. @param {string} event @param {any} data @param {string} id */
function take(event, data, id) {
  apply(event, data, id);
  post({ kind: "frame", event, data, id });
}

/** @param {string} link */
function setLink(link) {
  if (state.role !== "follower") post({ kind: "link", link, error: state.lastError });
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
      streamed = wanted();
      const q = streamed ? `?series=${encodeURIComponent(streamed)}` : "";
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
      take(event, JSON.parse(data), id);
      if (event === "snapshot" || event === "resumed") setLink("live");
    }
  }
}
