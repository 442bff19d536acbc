// @ts-check
// Building DOM without a framework: h(tag, attrs, ...children). Attributes starting with "on"
// become listeners; `data-*`, `class`, `title` and the rest are set as attributes. Text is always
// a text node (never parsed as markup), so values from the system cannot inject markup.

/**
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value") /** @type {HTMLInputElement} */ (el).value = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

/** @param {Element} el @param {any[]} children */
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. @param {Element} el @param {...any} children */
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** "3 s ago", "5 min ago". @param {number} ms unix milliseconds */
export function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A local time with seconds. @param {number} ms */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/** A state badge, coloured by the state's class. @param {string} state @param {string} [testid] */
export function badge(state, testid) {
  return h("span", { class: `badge s-${cls(state)}`, "data-state": state, "data-testid": testid }, state);
}

/** The colour class of a state. @param {string} state */
export function cls(state) {
  switch (state) {
    case "up": case "running": case "healthy": case "ok": case "stable": return "ok";
    case "lost": case "failed": case "unhealthy": case "timed_out": return "bad";
    case "starting": case "backoff": case "pending": case "deploying": case "upgrading": case "removing": return "warn";
    default: return "idle";
  }
}

/** An error box shown where the user acted. @param {any} e */
export function problem(e) {
  const text = e && e.code ? `${e.code}: ${e.context}` : String(e && e.message || e);
  return h("div", { class: "problem", role: "alert", "data-testid": "error" }, text);
}

/** An SVG element, as h() builds HTML ones. @param {string} tag @param {Record<string, any> | null} [attrs] @param {...any} children @returns {SVGElement} */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** Asks in a modal dialog; resolves true when the user confirms. @param {string} question @param {string} [ok] */
export function ask(question, ok = "Run") {
  const dialog = /** @type {HTMLDialogElement} */ (h("dialog", { "data-testid": "confirm" },
    h("form", { method: "dialog" }, h("p", null, question),
      h("button", { value: "cancel", type: "submit" }, "Cancel"), " ",
      h("button", { value: "ok", type: "submit", class: "primary", "data-testid": "confirm-ok" }, ok))));
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    dialog.showModal();
  });
}
