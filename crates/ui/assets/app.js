// @ts-check
// The dashboard: hash routes (#/overview, #/topology, #/clusters/NAME, #/agents/C/A, #/metrics,
// #/data, #/resources, #/settings),
// every view's state in the URL; one live stream shared by every view; keyboard shortcuts.

import { h, put, problem } from "./lib/dom.js";
import * as api from "./lib/api.js";
import * as stream from "./lib/stream.js";
import { overview } from "./views/overview.js";
import { topology } from "./views/topology.js";
import { cluster } from "./views/cluster.js";
import { agent } from "./views/agent.js";
import { metrics } from "./views/metrics.js";
import { data } from "./views/data.js";
import { resources } from "./views/resources.js";
import { settings, applyTheme } from "./views/settings.js";

/** @typedef {{ el: HTMLElement, update?: (what: string) => void, close?: () => void }} View */

const me = api.me;

const routes = [
  { re: /^#\/overview$/, view: () => overview() },
  { re: /^#\/topology(?:\?(.*))?$/, view: (/** @type {string[]} */ m) => topology(new URLSearchParams(m[1] || "")) },
  { re: /^#\/clusters\/([^/?]+)(?:\?.*)?$/, view: (/** @type {string[]} */ m) => cluster(decodeURIComponent(m[1])) },
  { re: /^#\/agents\/([^/?]+)\/([^/?]+)(?:\?.*)?$/, view: (/** @type {string[]} */ m) => agent(decodeURIComponent(m[1]), decodeURIComponent(m[2])) },
  { re: /^#\/metrics(?:\?.*)?$/, view: () => metrics() },
  { re: /^#\/data(?:\?.*)?$/, view: () => data() },
  { re: /^#\/resources(?:\?.*)?$/, view: () => resources() },
  { re: /^#\/settings$/, view: () => settings() },
];

/** @type {View | null} */
let shown = null;
const main = /** @type {HTMLElement} */ (document.getElementById("view"));
const linkBadge = /** @type {HTMLElement} */ (document.getElementById("link"));

function route() {
  const hash = location.hash || "#/overview";
  if (shown && shown.close) shown.close();
  shown = null;
  for (const r of routes) {
    const m = hash.match(r.re);
    if (m) {
      shown = r.view(m);
      break;
    }
  }
  if (!shown) shown = { el: h("div", { class: "empty" }, `No page ${hash}: `, h("a", { href: "#/overview" }, "overview")) };
  put(main, shown.el);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", hash.startsWith(a.getAttribute("href") || "-"));
  }
  main.focus({ preventScroll: true });
}

function showLink() {
  const text = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", unauthorized: "not signed in" }[stream.state.link];
  linkBadge.textContent = text;
  linkBadge.dataset.state = stream.state.link;
  document.body.classList.toggle("stale", stream.state.link === "reconnecting");
}

/** The sign-in panel: a 401 says why and how to get a credential. @param {string} why */
function signIn(why) {
  const input = h("input", { type: "password", id: "token", placeholder: "yard_…", autocomplete: "off", "data-testid": "token-input" });
  const box = h("div", { class: "problem-slot" });
  const form = h("form", {
    class: "card signin", "data-testid": "signin",
    onsubmit: async (/** @type {Event} */ e) => {
      e.preventDefault();
      api.setToken(/** @type {HTMLInputElement} */ (input).value);
      try {
        await whoami();
        boot();
      } catch (err) {
        put(box, problem(err));
      }
    },
  },
  h("h2", null, "Sign in"),
  h("p", null, why),
  h("p", null, "Open the link `yard up` printed (it works once), run `yard login-link` for a new one, or paste a token (`yard token create NAME --role viewer`)."),
  h("label", { for: "token" }, "Token "), input, " ", h("button", { type: "submit" }, "Sign in"), box);
  put(main, form);
}

async function whoami() {
  const w = await api.get("/v1/whoami");
  me.name = w.name;
  me.kind = w.kind;
  me.may = w.may;
  const who = /** @type {HTMLElement} */ (document.getElementById("who"));
  who.textContent = `${w.name}${w.may.command ? "" : " (read-only)"}`;
  who.dataset.testid = "who";
}

async function boot() {
  const m = location.hash.match(/^#login=([A-Za-z0-9_]+)$/);
  if (m) {
    // The one-time code leaves the address bar and the history at once.
    history.replaceState(null, "", location.pathname + "#/overview");
    try {
      await api.login(m[1]);
    } catch (e) {
      return signIn(`That login link did not work (${e instanceof api.ApiError ? e.context : e}).`);
    }
  }
  if (!api.token()) return signIn("This dashboard needs a credential.");
  try {
    await whoami();
  } catch (e) {
    if (e instanceof api.ApiError && e.status === 401) return signIn(`The center refused the credential: ${e.context}`);
    put(main, problem(e));
    return;
  }
  route();
  stream.restart();
}

stream.onChange((what) => {
  if (what === "link") {
    showLink();
    if (stream.state.link === "unauthorized") signIn(`The center refused the credential: ${stream.state.lastError}`);
  }
  if (shown && shown.update) shown.update(what);
});

// Keyboard: "?" lists the shortcuts, "/" searches, "g" then a letter goes to a page.
const keys = { o: "#/overview", t: "#/topology", m: "#/metrics", d: "#/data", r: "#/resources", s: "#/settings" };
let pendingG = false;
document.addEventListener("keydown", (e) => {
  const t = /** @type {HTMLElement} */ (e.target);
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (pendingG) {
    pendingG = false;
    const to = keys[/** @type {"o"|"t"|"m"|"d"|"r"|"s"} */ (e.key)];
    if (to) location.hash = to;
    return;
  }
  if (e.key === "g") pendingG = true;
  else if (e.key === "?") toggleHelp();
  else if (e.key === "/") {
    const s = /** @type {HTMLInputElement | null} */ (document.querySelector("[data-search]"));
    if (s) {
      e.preventDefault();
      s.focus();
    }
  } else if (e.key === "Escape") {
    document.getElementById("help")?.setAttribute("hidden", "");
  }
});

function toggleHelp() {
  const help = /** @type {HTMLElement} */ (document.getElementById("help"));
  if (help.hasAttribute("hidden")) help.removeAttribute("hidden");
  else help.setAttribute("hidden", "");
}

document.getElementById("help-button")?.addEventListener("click", toggleHelp);
document.getElementById("theme")?.addEventListener("click", () => {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem("yard.theme", next);
  applyTheme();
});
window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#login=")) boot();
  else if (api.token()) route();
});
// For measurements (bench/dashboard.py) and debugging from the console.
Object.defineProperty(window, "yardStream", { value: stream.state });
applyTheme();
showLink();
boot();
