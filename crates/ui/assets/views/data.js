// @ts-check
// Data discovery: the mesh as this center's endpoint sees it (its links with queue depth and
// drops, and the endpoints reached through them), a live tail of a topic prefix with the rate of
// each topic seen, and the stores: a key browser paged on the server (a count and a cursor) and
// a typed value viewer, with the backup as a download.
// State in the URL: #/data?tail=PREFIX&store=NAME&prefix=P&after=CURSOR&key=JSON.

import { h, svg, put, problem, clock } from "../lib/dom.js";
import * as api from "../lib/api.js";
import * as stream from "../lib/stream.js";
import { short, tree } from "../lib/value.js";

const PAGE = 50;
/** Messages kept in the tail (newest first). */
const TAIL = 200;
/** The window over which a topic's rate is counted. */
const RATE_MS = 10000;
/** Past this many agents a manager's agents are drawn as one cell. */
const AGGREGATE = 12;

export function data() {
  const params = () => new URLSearchParams(location.hash.split("?")[1] || "");
  const mesh = h("div", { "data-testid": "mesh" });
  const tailBox = h("div", { "data-testid": "tail" });
  const storesBox = h("div", { "data-testid": "stores" });
  const browser = h("div", { "data-testid": "store-browser" });
  const el = h("section", { "data-testid": "data-page" },
    h("h1", null, "Data"),
    h("h2", null, "Mesh"), mesh,
    h("h2", null, "Topics"), tailBox,
    h("h2", null, "Stores"), storesBox, browser);
  let closed = false;
  let meshTimer = 0;

  /** @param {Record<string, string>} change */
  function setParams(change) {
    const p = params();
    for (const [k, v] of Object.entries(change)) v ? p.set(k, v) : p.delete(k);
    const qs = p.toString();
    window.history.replaceState(null, "", `#/data${qs ? "?" + qs : ""}`);
  }

  // ---- the mesh ----

  /** Names the endpoints the topology knows. */
  function names() {
    /** @type {Map<string, {label: string, kind: string, cluster?: string}>} */
    const m = new Map();
    const t = stream.state.topology;
    if (!t) return m;
    m.set(t.center.id, { label: "center", kind: "center" });
    for (const c of t.clusters) {
      if (c.manager && c.manager.id) m.set(c.manager.id, { label: `manager ${c.name}`, kind: "manager", cluster: c.name });
      for (const a of c.agents) if (a.id) m.set(a.id, { label: a.name, kind: "agent", cluster: c.name });
    }
    return m;
  }

  async function drawMesh() {
    clearTimeout(meshTimer);
    try {
      const st = await api.get("/v1/status/json");
      const far = await managersLinks(st);
      if (closed) return;
      put(mesh, graph(st, far), linksTable(st), managersTable(far), counters(st));
    } catch (e) {
      put(mesh, problem(e));
    }
    if (!closed) meshTimer = window.setTimeout(drawMesh, 5000);
  }

  /** The clusters whose manager's own links are asked for (each is one call to its manager). */
  const FAR = 8;

  /**
   * The links of the managers this center links to, as each manager sees them (its queue to
   * each agent, with drops): cluster name → the answer of `GET /v1/clusters/C/links`, or the
   * error met asking it.
   * @param {any} st
   * @returns {Promise<Map<string, any>>}
   */
  async function managersLinks(st) {
    const who = names();
    const clusters = (st.peers || []).map((/** @type {any} */ p) => who.get(p.id))
      .filter((/** @type {any} */ n) => n && n.kind === "manager").map((/** @type {any} */ n) => n.cluster).slice(0, FAR);
    const answers = await Promise.all(clusters.map((/** @type {string} */ c) =>
      api.get(`/v1/clusters/${encodeURIComponent(c)}/links`).catch((e) => ({ error: e }))));
    return new Map(clusters.map((/** @type {string} */ c, /** @type {number} */ i) => [c, answers[i]]));
  }

  /** @param {any} l a link: its queue and drops, as a label */
  const figures = (l) => `q ${l.queue_depth}/${l.queue_capacity} · drops ${l.drops}`;
  /** @param {any} l */
  const linkClass = (l) => {
    const full = l.queue_capacity ? l.queue_depth / l.queue_capacity : 0;
    return l.drops ? " dropping" : full > 0.5 ? " busy" : "";
  };

  /**
   * @param {any} st
   * @param {Map<string, any>} far
   */
  function graph(st, far) {
    const who = names();
    const cx = 380, cy = 190;
    const reachable = new Set(st.reachable || []);
    const links = (st.peers || []).filter((/** @type {any} */ p) => p.id);
    const placed = new Set([st.endpoint]);
    /** @type {SVGElement[]} */
    const edges = [];
    /** @type {SVGElement[]} */
    const dots = [];
    const box = { x0: cx, y0: cy, x1: cx, y1: cy };
    const dot = (/** @type {number} */ x, /** @type {number} */ y, /** @type {string} */ label, /** @type {string} */ kind, /** @type {string} */ testid, /** @type {string} */ title) => {
      box.x0 = Math.min(box.x0, x); box.x1 = Math.max(box.x1, x);
      box.y0 = Math.min(box.y0, y); box.y1 = Math.max(box.y1, y);
      dots.push(svg("g", { class: `mnode m-${kind}`, "data-testid": testid },
        svg("title", null, title),
        svg("circle", { cx: x, cy: y, r: kind === "center" ? 14 : 9 }),
        svg("text", { x, y: y + (kind === "center" ? 28 : 22), "text-anchor": "middle" }, label)));
    };
    dot(cx, cy, "this center", "center", "mesh-self", st.endpoint);
    links.forEach((/** @type {any} */ p, /** @type {number} */ i) => {
      const angle = (2 * Math.PI * i) / Math.max(links.length, 1) - Math.PI / 2;
      const x = cx + 120 * Math.cos(angle), y = cy + 110 * Math.sin(angle);
      const n = who.get(p.id);
      placed.add(p.id);
      edges.push(svg("line", { x1: cx, y1: cy, x2: x, y2: y, class: `mlink${linkClass(p)}` }));
      edges.push(svg("text", { x: (cx + x) / 2, y: (cy + y) / 2 - 4, class: "mlabel", "text-anchor": "middle" }, figures(p)));
      dot(x, y, n ? n.label : p.id.slice(0, 8), n ? n.kind : "endpoint", `mesh-peer-${n ? n.label : p.id}`, `${p.id} at ${p.listen || p.address}`);
      // The agents of a manager this center links to: reached through it.
      if (!n || n.kind !== "manager") return;
      const behind = [...who.entries()].filter(([id, m]) => m.kind === "agent" && m.cluster === n.cluster && reachable.has(id));
      behind.forEach(([id]) => placed.add(id));
      // The manager's own link to each agent, when it answered: solid, with its figures.
      const answer = far.get(n.cluster || "");
      /** @type {Map<string, any>} */
      const own = new Map(((answer && answer.links) || []).map((/** @type {any} */ l) => [l.id, l]));
      const spread = Math.PI / Math.max(links.length, 1);
      /** @type {[string, string, any][]} */
      let shown;
      if (behind.length > AGGREGATE) {
        const mine = behind.map(([id]) => own.get(id)).filter(Boolean);
        const sum = mine.length ? {
          queue_depth: Math.max(...mine.map((l) => l.queue_depth)), queue_capacity: mine[0].queue_capacity,
          drops: mine.reduce((t, l) => t + l.drops, 0) } : null;
        shown = [[`${behind.length} agents`, "cell", sum]];
      } else shown = behind.map(([id, m]) => [m.label, "agent", own.get(id) || null]);
      shown.forEach(([label, kind, l], j) => {
        const a = angle + (shown.length > 1 ? spread * (j / (shown.length - 1) - 0.5) : 0);
        const ax = cx + 300 * Math.cos(a), ay = cy + 165 * Math.sin(a);
        edges.push(svg("line", { x1: x, y1: y, x2: ax, y2: ay, class: l ? `mlink${linkClass(l)}` : "mlink via" }));
        if (l) edges.push(svg("text", { x: (x + ax) / 2, y: (y + ay) / 2 - 4, class: "mlabel", "text-anchor": "middle", "data-testid": `mesh-far-${label}` }, kind === "cell" ? `max ${figures(l)}` : figures(l)));
        dot(ax, ay, label, kind, `mesh-via-${label}`, `${label}: reachable through ${n.label}`);
      });
    });
    const others = [...reachable].filter((id) => !placed.has(id));
    return h("div", { class: "card" },
      // The drawing's own extent, with room for the labels: no empty band around a small mesh.
      svg("svg", { viewBox: `${box.x0 - 90} ${box.y0 - 30} ${box.x1 - box.x0 + 180} ${box.y1 - box.y0 + 70}`,
        width: box.x1 - box.x0 + 180, height: box.y1 - box.y0 + 70, class: "meshgraph", role: "img", "aria-label": "mesh graph" }, edges, dots),
      h("p", { class: "dim" }, `Solid: a link with its queue and drops, as its sending end sees it (the center's links, and those of up to ${FAR} managers). Dashed: an endpoint reached through another whose link figures were not gathered. `,
        `${reachable.size} endpoint${reachable.size === 1 ? "" : "s"} reachable`, others.length ? `, ${others.length} of them not named by the topology` : "", "."));
  }

  /** @param {any} st */
  function linksTable(st) {
    const who = names();
    return h("table", { "data-testid": "mesh-links" },
      h("caption", null, "This center's links"),
      h("thead", null, h("tr", null, ["link", "listen", "direction", "state", "queue", "drops", "sent", "received", "up for", "last error"].map((x) => h("th", null, x)))),
      h("tbody", null, (st.peers || []).map((/** @type {any} */ p) => h("tr", null,
        h("td", null, (who.get(p.id) || { label: p.id || "(not reached)" }).label), h("td", null, p.listen || p.address), h("td", null, p.direction),
        h("td", null, p.state), h("td", null, `${p.queue_depth}/${p.queue_capacity} (${p.overflow_policy})`), h("td", null, p.drops),
        h("td", null, p.sent), h("td", null, p.received), h("td", null, `${p.connected_seconds} s`), h("td", null, p.last_error || "")))));
  }

  /** The managers' own links (each row as its manager sees it).
   * @param {Map<string, any>} far */
  function managersTable(far) {
    const who = names();
    /** @type {HTMLElement[]} */
    const rows = [];
    for (const [cluster, a] of far) {
      if (a.error) {
        rows.push(h("tr", null, h("td", null, `manager ${cluster}`), h("td", { colspan: 6 }, problem(a.error))));
        continue;
      }
      for (const l of a.links) rows.push(h("tr", null,
        h("td", null, `manager ${cluster}`), h("td", null, (who.get(l.id) || { label: l.id || "(not reached)" }).label),
        h("td", null, l.state), h("td", null, `${l.queue_depth}/${l.queue_capacity}`), h("td", null, l.drops),
        h("td", null, l.sent), h("td", null, l.received)));
    }
    if (!rows.length) return h("div");
    return h("table", { "data-testid": "mesh-far-links" },
      h("caption", null, "The managers' links, as each manager sees them"),
      h("thead", null, h("tr", null, ["from", "to", "state", "queue", "drops", "sent", "received"].map((x) => h("th", null, x)))),
      h("tbody", null, rows));
  }

  /** @param {any} st */
  function counters(st) {
    const m = st.messages || {}, x = st.mesh || {};
    const fig = (/** @type {string} */ k, /** @type {any} */ v) => h("div", { class: "fig" }, h("b", null, String(v ?? "–")), h("span", null, k));
    return h("div", { class: "figs", "data-testid": "mesh-counters" },
      fig("published", m.published), fig("delivered", m.delivered), fig("dropped", m.dropped),
      fig("forwarded", x.forwarded), fig("dropped at peers", x.peer_dropped), fig("from peers", x.from_peers),
      fig("local clients", (st.clients || []).length), fig("subscriptions", st.subscriptions));
  }

  // ---- the live tail ----

  /** @type {WebSocket | null} */
  let ws = null;
  /** @type {{at: number, topic: string, value: any}[]} */
  let rows = [];
  /** @type {Map<string, {count: number, times: number[]}>} */
  let topics = new Map();
  let drawPending = 0;
  const tailState = h("span", { class: "badge", "data-testid": "tail-state" }, "stopped");
  const tailProblem = h("div", { class: "problem-slot" });
  const topicsTable = h("div", { "data-testid": "topics" });
  const messages = h("div", { "data-testid": "tail-messages" });
  const prefixInput = /** @type {HTMLInputElement} */ (h("input", { type: "text", value: params().get("tail") || "/", "data-testid": "tail-prefix", placeholder: "topic prefix, e.g. /demo" }));
  put(tailBox, h("form", { class: "row", onsubmit: (/** @type {Event} */ e) => { e.preventDefault(); startTail(prefixInput.value); } },
    h("label", null, "Tail topics starting with ", prefixInput), " ",
    h("button", { type: "submit", "data-testid": "tail-start" }, "Tail"), " ",
    h("button", { type: "button", onclick: stopTail, "data-testid": "tail-stop" }, "Stop"), " ", tailState),
  tailProblem, topicsTable, messages);

  /** @param {string} prefix */
  function startTail(prefix) {
    stopTail();
    setParams({ tail: prefix || "/" });
    rows = [];
    topics = new Map();
    put(tailProblem);
    setTail("connecting");
    const sock = api.socket("/v1/messages/json");
    ws = sock;
    sock.onopen = () => sock.send(JSON.stringify([prefix]));
    sock.onmessage = (ev) => {
      /** @type {any} */
      let m;
      try {
        m = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (m.type === "ack") {
        setTail("live");
        return drawTail();
      }
      if (m.type === "error") return put(tailProblem, problem(m));
      if (m.type !== "data-message") return;
      const at = Date.now();
      rows.unshift({ at, topic: m.topic, value: { "@data-type": m["@data-type"], data: m.data } });
      if (rows.length > TAIL) rows.length = TAIL;
      const t = topics.get(m.topic) || { count: 0, times: [] };
      t.count += 1;
      t.times.push(at);
      topics.set(m.topic, t);
      if (!drawPending) drawPending = window.setTimeout(drawTail, 250);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      setTail("stopped");
      if (ev.code !== 1000) put(tailProblem, problem({ code: `closed_${ev.code}`, context: ev.reason || "the WebSocket closed (is the credential allowed to subscribe to this prefix?)" }));
    };
  }

  function stopTail() {
    const s = ws;
    ws = null;
    if (s) s.close(1000);
    setTail("stopped");
  }

  /** @param {string} s */
  function setTail(s) {
    tailState.textContent = s;
    tailState.className = `badge s-${s === "live" ? "ok" : s === "connecting" ? "warn" : "idle"}`;
    tailState.dataset.state = s;
  }

  function drawTail() {
    drawPending = 0;
    if (closed) return;
    const now = Date.now();
    const list = [...topics.entries()].map(([topic, t]) => {
      t.times = t.times.filter((x) => now - x < RATE_MS);
      return { topic, count: t.count, rate: t.times.length / (RATE_MS / 1000) };
    }).sort((a, b) => b.rate - a.rate || a.topic.localeCompare(b.topic)).slice(0, 50);
    put(topicsTable, list.length ? h("table", null,
      h("thead", null, h("tr", null, ["topic seen by this tail", "messages", "per second (10 s)"].map((x) => h("th", null, x)))),
      h("tbody", null, list.map((t) => h("tr", { "data-testid": `topic-${t.topic}` }, h("td", null, t.topic), h("td", null, t.count), h("td", null, t.rate.toFixed(1)))))) :
      h("p", { class: "empty" }, ws ? "Nothing published under this prefix yet." : "Not tailing."));
    put(messages, rows.length ? h("table", { class: "tail" },
      h("thead", null, h("tr", null, ["time", "topic", "type", "value"].map((x) => h("th", null, x)))),
      h("tbody", null, rows.map((r) => h("tr", { "data-testid": "tail-row" },
        h("td", null, clock(r.at)), h("td", null, r.topic), h("td", null, h("span", { class: "vtype" }, r.value["@data-type"])),
        h("td", null, h("code", null, short(r.value))))))) : null);
  }

  // ---- the stores ----

  async function drawStores() {
    try {
      const list = await api.get("/v1/stores");
      if (closed) return;
      const name = h("input", { type: "text", placeholder: "a store held elsewhere in the mesh", "data-testid": "store-name" });
      put(storesBox, list.length ? h("table", { "data-testid": "store-list" },
        h("thead", null, h("tr", null, ["store", "role", "backend", "entries", "clones", "master reachable"].map((x) => h("th", null, x)))),
        h("tbody", null, list.map((/** @type {any} */ s) => h("tr", { "data-testid": `store-${s.name}` },
          h("td", null, h("a", { href: "#", onclick: (/** @type {Event} */ e) => { e.preventDefault(); openStore(s.name); } }, s.name)),
          h("td", null, s.role), h("td", null, s.backend), h("td", null, s.entries), h("td", null, (s.clones || []).length),
          h("td", null, s.connected === undefined ? "–" : s.connected ? "yes" : "no"))))) :
        h("p", { class: "empty" }, "This center's endpoint holds no store."),
      h("form", { class: "row", onsubmit: (/** @type {Event} */ e) => { e.preventDefault(); openStore(/** @type {HTMLInputElement} */ (name).value.trim()); } },
        h("label", null, "Open a store by name ", name), " ", h("button", { type: "submit" }, "Open")),
      h("p", { class: "dim" }, "Stores held by other endpoints are read at their master through the mesh."));
    } catch (e) {
      put(storesBox, problem(e));
    }
  }

  /** @param {string} name */
  function openStore(name) {
    if (!name) return;
    setParams({ store: name, prefix: "", after: "", key: "" });
    drawBrowser();
  }

  async function drawBrowser() {
    const p = params();
    const name = p.get("store");
    if (!name) return put(browser);
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (p.get("prefix")) q.set("prefix", p.get("prefix") || "");
    if (p.get("after")) q.set("after", p.get("after") || "");
    const base = `/v1/stores/${encodeURIComponent(name)}`;
    const slot = h("div", { class: "problem-slot" });
    try {
      const [info, page] = await Promise.all([api.get(base).catch(() => null), api.getWithHeaders(`${base}/keys?${q}`)]);
      if (closed) return;
      const total = Number(page.headers.get("x-yard-total") || page.body.length);
      const next = page.headers.get("x-yard-next");
      const filter = /** @type {HTMLInputElement} */ (h("input", { type: "search", value: p.get("prefix") || "", placeholder: "key prefix", "data-search": "", "data-testid": "key-prefix" }));
      filter.addEventListener("change", () => { setParams({ prefix: filter.value, after: "", key: "" }); drawBrowser(); });
      const viewer = h("div", { class: "card viewer", "data-testid": "value-viewer" });
      const keyList = h("ul", { class: "keys-list", "data-testid": "keys" }, page.body.map((/** @type {any} */ k) => {
        const text = JSON.stringify(k);
        return h("li", null, h("a", {
          href: "#", "data-testid": `key-${k.data}`, class: text === p.get("key") ? "active" : "",
          onclick: (/** @type {Event} */ e) => { e.preventDefault(); setParams({ key: text }); showValue(name, k, viewer); },
        }, short(k, 80)));
      }));
      put(browser, h("div", { class: "card" },
        h("h3", null, `Store ${name}`, info ? h("span", { class: "dim" }, ` · ${info.role} · ${info.backend} · ${info.entries} entries`) : null),
        h("div", { class: "row" }, filter, " ",
          h("button", { type: "button", "data-testid": "backup", onclick: async () => {
            try {
              const n = await api.download(`${base}/backup`, `${name}.yardbackup`);
              put(slot, h("p", { class: "dim", "data-testid": "backup-done" }, `Backup of ${n} entries downloaded.`));
            } catch (e) {
              put(slot, problem(e));
            }
          } }, "Download backup")),
        slot,
        h("div", { class: "split" }, h("div", null, keyList,
          h("div", { class: "pager", "data-testid": "keys-total" },
            total ? `${page.body.length} of ${total} key${total === 1 ? "" : "s"}${next ? " (more on the next pages)" : ""} ` : "No keys match. ",
            p.get("after") ? h("button", { type: "button", onclick: () => { setParams({ after: "" }); drawBrowser(); } }, "first page") : null,
            next ? h("button", { type: "button", "data-testid": "keys-next", onclick: () => { setParams({ after: next }); drawBrowser(); } }, "next ›") : null)),
        viewer)));
      const selected = p.get("key");
      if (selected) {
        try {
          showValue(name, JSON.parse(selected), viewer);
        } catch {
          setParams({ key: "" });
        }
      } else put(viewer, h("p", { class: "dim" }, "Pick a key to see its value and types."));
    } catch (e) {
      put(browser, h("div", { class: "card" }, h("h3", null, `Store ${name}`), problem(e)));
    }
  }

  /** @param {string} name @param {any} key @param {HTMLElement} viewer */
  async function showValue(name, key, viewer) {
    put(viewer, h("p", { class: "dim" }, "loading…"));
    try {
      const v = await api.post(`/v1/stores/${encodeURIComponent(name)}/ops`, { op: "get", key });
      if (closed) return;
      put(viewer, h("div", { class: "dim" }, "key ", tree(key)), h("div", { "data-testid": "value" }, tree(v)));
    } catch (e) {
      put(viewer, problem(e));
    }
  }

  drawMesh();
  drawStores();
  drawBrowser();
  if (params().get("tail")) startTail(params().get("tail") || "/");
  else drawTail();
  return {
    el,
    update: (/** @type {string} */ what) => { if (what === "snapshot") drawMesh(); },
    close: () => {
      closed = true;
      clearTimeout(meshTimer);
      clearTimeout(drawPending);
      stopTail();
    },
  };
}
