// @ts-check
// The center's HTTP API, from the page's own origin, with the credential kept in this browser
// (localStorage "yard.token"). Every answer that is not 2xx becomes an ApiError carrying the
// center's {code, context}, shown where the user acted.

const KEY = "yard.token";

/** Who the caller is and what it may do (GET /v1/whoami). */
export const me = { name: "", kind: "", may: /** @type {Record<string, boolean>} */ ({}) };

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} context */
  constructor(status, code, context) {
    super(`${code}: ${context}`);
    this.status = status;
    this.code = code;
    this.context = context;
  }
}

export function token() {
  return localStorage.getItem(KEY) || "";
}

/** @param {string} t */
export function setToken(t) {
  if (t) localStorage.setItem(KEY, t.trim());
  else localStorage.removeItem(KEY);
}

/** @param {Record<string, string>} [extra] */
export function headers(extra) {
  /** @type {Record<string, string>} */
  const h = { ...(extra || {}) };
  const t = token();
  if (t) h["Authorization"] = `Bearer ${t}`;
  return h;
}

/** @param {Response} r */
async function answer(r) {
  const text = await r.text();
  /** @type {any} */
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!r.ok) {
    const code = body && body.code || `http_${r.status}`;
    const context = body && body.context || text || r.statusText;
    throw new ApiError(r.status, code, context);
  }
  return body;
}

/** @param {string} path */
export async function get(path) {
  return answer(await fetch(path, { headers: headers(), cache: "no-store" }));
}

/** @param {string} path */
export async function del(path) {
  return answer(await fetch(path, { method: "DELETE", headers: headers(), cache: "no-store" }));
}

/** A GET whose answer's headers matter too (pages of store keys). @param {string} path */
export async function getWithHeaders(path) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  return { body: await answer(r), headers: r.headers };
}

/** Saves what `path` answers as a file named `name` (a store's backup). @param {string} path @param {string} name */
export async function download(path, name) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!r.ok) return answer(r);
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return Number(r.headers.get("x-yard-entries") || 0);
}

/**
 * A WebSocket to this origin's `path`. A browser cannot set Authorization on it, so the
 * credential rides as the subprotocol `yard.bearer.<base64url>` beside `yard.v1`, which the
 * server selects (it never echoes the credential). @param {string} path
 */
export function socket(path) {
  const bytes = new TextEncoder().encode(token());
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  const b64 = btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const protocols = token() ? ["yard.v1", `yard.bearer.${b64}`] : ["yard.v1"];
  return new WebSocket(`${scheme}://${location.host}${path}`, protocols);
}

/** @param {string} path @param {any} body */
export async function post(path, body) {
  return answer(await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  }));
}

/** Uploads a file as an artifact. @param {File} file */
export async function upload(file) {
  return answer(await fetch("/v1/artifacts", {
    method: "POST",
    headers: headers({ "Content-Type": "application/octet-stream" }),
    body: file,
  }));
}

/** Trades a one-time login code (from the link `yard up` prints) for a credential. @param {string} code */
export async function login(code) {
  const r = await post("/v1/login", { code });
  setToken(r.token);
  return r;
}
