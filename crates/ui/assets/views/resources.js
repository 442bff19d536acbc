// @ts-check
// Resources and services of one cluster, read from its Mesos master through the center
// (/v1/clusters/C/rm/...): agents with resources used and total, frameworks and why each
// waits, recent tasks, and the services (deploy from a spec, scale, follow a rolling upgrade,
// remove), and a task's output, followed. Changes are offered only to a caller that may run
// commands. State in the URL: #/resources?cluster=NAME&service=NAME&task=ID&stream=stderr.

import { h, put, badge, problem, ask } from "../lib/dom.js";
import * as api from "../lib/api.js";
import * as stream from "../lib/stream.js";

const me = api.me;
/** How often the page reads the master again while it is shown. */
const EVERY_MS = 2000;
const TEMPLATE = JSON.stringify({
  name: "hello", instances: 2, command: "exec python3 -m http.server $PORT0 --bind 127.0.0.1",
  cpus: 0.1, mem: 64, ports: 1,
  health_check: { type: "http", port_index: 0, delay: 1, interval: 2 },
}, null, 2);

export function resources() {
  const params = () => new URLSearchParams(location.hash.split("?")[1] || "");
  const head = h("div");
  const agentsBox = h("div", { "data-testid": "rm-agents" });
  const frameworksBox = h("div", { "data-testid": "rm-frameworks" });
  const servicesBox = h("div", { "data-testid": "rm-services" });
  const deployBox = h("div", { "data-testid": "rm-deploy" });
  const tasksBox = h("div", { "data-testid": "rm-tasks" });
  const logBox = h("div", { "data-testid": "rm-task-log" });
  const el = h("section", { "data-testid": "resources-page" }, head,
    h("h2", null, "Agents"), agentsBox, h("h2", null, "Services"), servicesBox, deployBox,
    h("h2", null, "Frameworks"), frameworksBox, h("h2", null, "Recent tasks"), tasksBox, logBox);
  let closed = false;
  let timer = 0;
  /** Scale counts typed and not yet sent, by service. @type {Map<string, string>} */
  const typed = new Map();
  /** The problem of the last action, shown until the next one. */
  const actionSlot = h("div", { class: "problem-slot", "data-testid": "rm-action-result" });

  function clusters() {
    return (stream.state.topology ? stream.state.topology.clusters : []).map((/** @type {any} */ c) => c.name);
  }

  function cluster() {
    return params().get("cluster") || clusters()[0] || "";
  }

  /** @param {Record<string, string>} change */
  function setParams(change) {
    const p = params();
    for (const [k, v] of Object.entries(change)) v ? p.set(k, v) : p.delete(k);
    window.history.replaceState(null, "", `#/resources?${p}`);
  }

  /** @param {string} rest */
  const base = (rest) => `/v1/clusters/${encodeURIComponent(cluster())}/rm/${rest}`;

  function drawHead() {
    const names = clusters();
    const pick = h("select", { "data-testid": "rm-cluster", onchange: (/** @type {Event} */ e) => { setParams({ cluster: /** @type {HTMLSelectElement} */ (e.target).value, service: "" }); load(); } },
      names.map((n) => h("option", { value: n, selected: n === cluster() }, n)));
    put(head, h("h1", null, "Resources and services"),
      names.length ? h("p", null, h("label", null, "Cluster ", pick), h("span", { class: "dim" }, " · read from its Mesos master through the center")) :
        h("p", { class: "empty" }, "No cluster has registered yet."));
  }

  /** `used/total` of one scalar resource. @param {any} used @param {any} total @param {string} k */
  function share(used, total, k) {
    const u = (used && used[k]) || 0, t = (total && total[k]) || 0;
    const pct = t ? Math.round((100 * u) / t) : 0;
    // Set through the CSSOM: the page's policy refuses style attributes.
    const fill = h("div", { class: `fill${pct > 90 ? " high" : ""}` });
    fill.style.width = `${pct}%`;
    return h("div", { class: "share", title: `${u} of ${t}` },
      h("div", { class: "bar" }, fill),
      h("span", null, `${fmt(u)} / ${fmt(t)}`));
  }

  /** @param {number} x */
  const fmt = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(2));

  async function load() {
    clearTimeout(timer);
    drawHead();
    if (!cluster()) return;
    const [agents, frameworks, services, tasks] = await Promise.allSettled([
      api.get(base("agents")), api.get(base("frameworks")), api.get(base("services")), api.get(base("tasks?limit=50&order=des")),
    ]);
    if (closed) return;
    drawAgents(agents);
    drawFrameworks(frameworks);
    drawServices(services);
    drawTasks(tasks);
    timer = window.setTimeout(load, EVERY_MS);
  }

  /** @param {PromiseSettledResult<any>} r */
  function drawAgents(r) {
    if (r.status === "rejected") return put(agentsBox, problem(r.reason));
    const list = r.value.slaves || [];
    put(agentsBox, list.length ? h("table", null,
      h("thead", null, h("tr", null, ["agent", "address", "state", "cpus", "mem (MB)", "disk (MB)", "ports"].map((x) => h("th", null, x)))),
      h("tbody", null, list.map((/** @type {any} */ a) => h("tr", { "data-testid": `rm-agent-${a.name || a.id}` },
        h("td", null, a.name || a.id), h("td", null, `${a.hostname}:${a.port}`), h("td", null, badge(a.active ? "up" : "lost")),
        h("td", null, share(a.used_resources, a.resources, "cpus")), h("td", null, share(a.used_resources, a.resources, "mem")),
        h("td", null, share(a.used_resources, a.resources, "disk")), h("td", { class: "dim" }, a.resources && a.resources.ports || "–"))))) :
      h("p", { class: "empty" }, "No Mesos agent has registered with this master."));
  }

  /** @param {PromiseSettledResult<any>} r */
  function drawFrameworks(r) {
    if (r.status === "rejected") return put(frameworksBox, problem(r.reason));
    const list = r.value.frameworks || [];
    put(frameworksBox, list.length ? h("table", null,
      h("thead", null, h("tr", null, ["framework", "user", "state", "tasks", "cpus used", "mem used", "waiting because"].map((x) => h("th", null, x)))),
      h("tbody", null, list.map((/** @type {any} */ f) => h("tr", { "data-testid": `rm-framework-${f.name}` },
        h("td", null, f.name, h("div", { class: "dim small" }, f.id)), h("td", null, f.user),
        h("td", null, badge(f.connected ? (f.active ? "running" : "idle") : "lost")), h("td", null, (f.tasks || []).length),
        h("td", null, fmt((f.used_resources || {}).cpus || 0)), h("td", null, fmt((f.used_resources || {}).mem || 0)),
        h("td", { "data-testid": "waiting" }, f.waiting || "–"))))) :
      h("p", { class: "empty" }, "No framework is registered."));
  }

  /** @param {PromiseSettledResult<any>} r */
  function drawServices(r) {
    if (r.status === "rejected") return put(servicesBox, problem(r.reason));
    const list = r.value.services || [];
    put(servicesBox, actionSlot, list.length ? list.map(serviceCard) : h("p", { class: "empty" }, "No service is deployed."));
  }

  /** @param {any} s */
  function serviceCard(s) {
    const phase = s.phase || "–";
    // What the user typed survives the page's refresh every EVERY_MS.
    const scale = /** @type {HTMLInputElement} */ (h("input", { type: "number", min: "0", max: "1000", value: typed.get(s.name) ?? s.instances, "data-testid": "scale-count", class: "narrow" }));
    scale.addEventListener("input", () => typed.set(s.name, scale.value));
    const actions = me.may.command ? h("div", { class: "row" },
      h("button", { type: "button", "data-testid": "scale", onclick: () => {
        const n = Number(scale.value);
        typed.delete(s.name);
        act(`Scale ${s.name} to ${n}?`, () => api.post(base(`services/${encodeURIComponent(s.name)}/scale`), { instances: n }));
      } }, "Scale to"), " ", scale, " ",
      h("button", { type: "button", "data-testid": "remove", class: "danger", onclick: () => act(`Remove ${s.name}? Its ${s.running} instance(s) are killed.`, () => api.del(base(`services/${encodeURIComponent(s.name)}`))) }, "Remove")) : null;
    return h("div", { class: "card", "data-testid": `service-${s.name}`, "data-phase": phase, "data-running": s.running, "data-healthy": s.healthy },
      h("h3", null, s.name, " ", badge(phase, "service-phase"),
        h("span", { class: "dim" }, ` · ${s.running}/${s.instances} running · ${s.healthy} healthy · version ${s.version}`)),
      s.waiting ? h("p", { class: "dim", "data-testid": "service-waiting" }, `waiting: ${s.waiting}`) : null,
      h("table", null, h("thead", null, h("tr", null, ["instance", "version", "state", "healthy", "agent", "ports", "up"].map((x) => h("th", null, x)))),
        h("tbody", null, (s.tasks || []).map((/** @type {any} */ t) => h("tr", { "data-testid": "instance", "data-version": t.version, "data-state": t.state },
          h("td", null, t.id), h("td", null, t.version), h("td", null, badge(taskState(t.state))), h("td", null, t.healthy === null ? "–" : t.healthy ? "yes" : "no"),
          h("td", null, t.hostname), h("td", null, (t.ports || []).join(", ")), h("td", null, `${t.up_seconds} s`))))),
      actions);
  }

  /** @param {string} s */
  function taskState(s) {
    return ({ TASK_RUNNING: "running", TASK_STAGING: "starting", TASK_STARTING: "starting", TASK_KILLING: "pending", TASK_FINISHED: "idle", TASK_FAILED: "failed", TASK_LOST: "lost", TASK_KILLED: "idle" })[s] || s;
  }

  /** Asks, runs, shows the answer or the problem where the user acted. @param {string} question @param {() => Promise<any>} run */
  async function act(question, run) {
    if (!(await ask(question))) return;
    try {
      const r = await run();
      put(actionSlot, h("p", { class: "dim", "data-testid": "rm-done" }, describe(r)));
    } catch (e) {
      put(actionSlot, problem(e));
    }
    load();
  }

  /** @param {any} r */
  function describe(r) {
    if (!r) return "done";
    if (r.removing) return `${r.name}: removing`;
    if (r.version) return `${r.name}: version ${r.version} deploying; its instances appear above as they start`;
    if (r.instances !== undefined) return `${r.name}: scaling to ${r.instances}`;
    return JSON.stringify(r);
  }

  function drawDeploy() {
    if (!me.may.command) return put(deployBox, h("p", { class: "dim", "data-testid": "read-only" }, "Your credential can read these, not change them."));
    const spec = /** @type {HTMLTextAreaElement} */ (h("textarea", { rows: "9", cols: "70", spellcheck: "false", "data-testid": "spec" }));
    spec.value = TEMPLATE;
    const slot = h("div", { class: "problem-slot", "data-testid": "deploy-result" });
    put(deployBox, h("details", { class: "card" }, h("summary", { "data-testid": "deploy-open" }, "Deploy or upgrade a service"),
      h("p", { class: "dim" }, "The spec of `yard service deploy` (docs/RM.md), as JSON. Deploying a new spec under a running name is a rolling upgrade."),
      spec, h("div", null, h("button", { type: "button", class: "primary", "data-testid": "deploy-service", onclick: async () => {
        /** @type {any} */
        let body;
        try {
          body = JSON.parse(spec.value);
        } catch (e) {
          return put(slot, problem({ code: "invalid_spec", context: `the spec is not JSON: ${/** @type {Error} */ (e).message}` }));
        }
        if (!(await ask(`Deploy ${body.name} (${body.instances} instance(s)) on ${cluster()}?`, "Deploy"))) return;
        try {
          const r = await api.post(base("services"), body);
          put(slot, h("p", { class: "dim", "data-testid": "rm-done" }, describe(r)));
          setParams({ service: body.name });
        } catch (e) {
          put(slot, problem(e));
        }
        load();
      } }, "Deploy")), slot));
  }

  /** @param {PromiseSettledResult<any>} r */
  function drawTasks(r) {
    if (r.status === "rejected") return put(tasksBox, problem(r.reason));
    const list = r.value.tasks || [];
    put(tasksBox, list.length ? h("table", null,
      h("thead", null, h("tr", null, ["task", "name", "state", "agent", "cpus", "mem", "last status"].map((x) => h("th", null, x)))),
      h("tbody", null, list.map((/** @type {any} */ t) => {
        const last = (t.statuses || [])[(t.statuses || []).length - 1];
        return h("tr", { "data-testid": `rm-task-${t.id}` }, h("td", null, t.id, " ",
          h("a", { href: "#", "data-testid": "task-log-open", onclick: (/** @type {Event} */ e) => { e.preventDefault(); setParams({ task: t.id, stream: "" }); openLog(); } }, "log")),
          h("td", null, t.name), h("td", null, badge(taskState(t.state))),
          h("td", { class: "dim" }, t.slave_id), h("td", null, fmt((t.resources || {}).cpus || 0)), h("td", null, fmt((t.resources || {}).mem || 0)),
          h("td", { class: "dim" }, last ? `${last.state} ${new Date(last.timestamp * 1000).toLocaleTimeString([], { hour12: false })}${last.message ? ": " + last.message : ""}` : "–"));
      }))) : h("p", { class: "empty" }, "No task yet."));
  }

  // A task's output: read from its sandbox through the center, from where the last read ended.
  /** Kept of a log (the newest characters). */
  const LOG_KEPT = 256 * 1024;
  let logTimer = 0;
  let logOffset = 0;
  let logText = "";
  /** Bumped by every openLog(): an older read gives up. */
  let logGen = 0;

  function openLog() {
    clearTimeout(logTimer);
    logGen += 1;
    logOffset = 0;
    logText = "";
    const task = params().get("task");
    if (!task) return put(logBox);
    const stream = params().get("stream") === "stderr" ? "stderr" : "stdout";
    const pick = h("select", { "data-testid": "task-log-stream", onchange: (/** @type {Event} */ e) => { setParams({ stream: /** @type {HTMLSelectElement} */ (e.target).value }); openLog(); } },
      ["stdout", "stderr"].map((x) => h("option", { value: x, selected: x === stream }, x)));
    const pre = h("pre", { class: "log", "data-testid": "task-log-text" }, "…");
    const status = h("span", { class: "dim", "data-testid": "task-log-state" });
    put(logBox, h("div", { class: "card" }, h("h3", null, `Task ${task} `, pick, " ", status,
      " ", h("button", { type: "button", onclick: () => { setParams({ task: "", stream: "" }); openLog(); } }, "close")), pre));
    readLog(task, stream, pre, status, logGen);
  }

  /** @param {string} task @param {string} stream @param {HTMLElement} pre @param {HTMLElement} status @param {number} gen */
  async function readLog(task, stream, pre, status, gen) {
    /** @type {any} */
    let r;
    try {
      r = await api.get(base(`tasks/${encodeURIComponent(task)}/log?stream=${stream}&offset=${logOffset}`));
    } catch (e) {
      if (closed || gen !== logGen) return;
      put(status);
      pre.replaceWith(problem(e));
      return;
    }
    if (closed || gen !== logGen) return;
    logOffset = r.offset + r.data.length;
    logText = (logText + r.data).slice(-LOG_KEPT);
    const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = logText || "(empty)";
    if (follow) pre.scrollTop = pre.scrollHeight;
    const done = r.ended && !r.data;
    status.textContent = done ? "· the task has ended" : "· following";
    status.dataset.state = done ? "ended" : "following";
    if (!done) logTimer = window.setTimeout(() => readLog(task, stream, pre, status, gen), r.data ? 200 : 1500);
  }

  drawHead();
  drawDeploy();
  load();
  openLog();
  return {
    el,
    update: (/** @type {string} */ what) => { if (what === "snapshot") load(); },
    close: () => {
      closed = true;
      clearTimeout(timer);
      clearTimeout(logTimer);
    },
  };
}
