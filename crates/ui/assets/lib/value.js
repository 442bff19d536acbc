// @ts-check
// Typed values as the fabric carries them (Broker JSON v1: {"@data-type": T, "data": D}),
// shown in the literal syntax `yard pub` reads and `yard sub` prints, and as a tree that names
// every element's type (the value viewer).

import { h } from "./dom.js";

/** Elements shown per container level before "… N more". */
const SHOWN = 200;

/** @typedef {{"@data-type": string, data: any}} Typed */

/** The literal text of a value (`42`, `+7`, `[1, "a"]`, `{"k": 80/tcp}`). @param {Typed} v @returns {string} */
export function literal(v) {
  if (!v || typeof v !== "object") return String(v);
  const d = v.data;
  switch (v["@data-type"]) {
    case "none": return "none";
    case "boolean": return d ? "true" : "false";
    case "count": return String(d);
    case "integer": return d >= 0 ? `+${d}` : String(d);
    case "real": return Number.isInteger(d) ? d.toFixed(1) : String(d);
    case "string": return JSON.stringify(d);
    case "enum-value": return /^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*$/.test(d) ? d : `enum(${JSON.stringify(d)})`;
    case "vector": return `[${d.map(literal).join(", ")}]`;
    case "set": return `{${d.map(literal).join(", ")}}`;
    case "table": return d.length ? `{${d.map((/** @type {any} */ e) => `${literal(e.key)}: ${literal(e.value)}`).join(", ")}}` : "{:}";
    default: return String(d);
  }
}

/** A short literal for lists: cut at `max` characters. @param {Typed} v @param {number} [max] */
export function short(v, max = 120) {
  const t = literal(v);
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** The value viewer: type and literal of the value and of each element. @param {Typed} v @returns {HTMLElement} */
export function tree(v) {
  const type = v && v["@data-type"];
  const tag = h("span", { class: "vtype", "data-testid": "value-type" }, type);
  const kids = (/** @type {any[]} */ items, /** @type {(x: any) => any} */ one) => {
    const more = items.length - SHOWN;
    return h("ul", { class: "vtree" }, items.slice(0, SHOWN).map((x) => h("li", null, one(x))),
      more > 0 ? h("li", { class: "dim" }, `… ${more} more`) : null);
  };
  switch (type) {
    case "vector":
    case "set":
      return h("div", { class: "vnode" }, tag, ` ${v.data.length} element${v.data.length === 1 ? "" : "s"}`, kids(v.data, tree));
    case "table":
      return h("div", { class: "vnode" }, tag, ` ${v.data.length} entr${v.data.length === 1 ? "y" : "ies"}`,
        kids(v.data, (/** @type {any} */ e) => h("div", { class: "ventry" }, tree(e.key), h("span", { class: "dim" }, " → "), tree(e.value))));
    default:
      return h("span", { class: "vnode" }, tag, " ", h("code", { "data-testid": "value-literal" }, literal(v)));
  }
}
