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
