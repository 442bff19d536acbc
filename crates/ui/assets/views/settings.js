// @ts-check
// Settings: the credential this browser keeps, the theme (the system's preference unless one
// is chosen), and the keyboard shortcuts.

import { h, put } from "../lib/dom.js";
import * as api from "../lib/api.js";
const me = api.me;

export function applyTheme() {
  const chosen = localStorage.getItem("yard.theme");
  const dark = chosen ? chosen === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}

matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);

export function settings() {
  const theme = h("select", { "data-testid": "theme-select" },
    ["system", "light", "dark"].map((t) => h("option", { value: t, selected: (localStorage.getItem("yard.theme") || "system") === t }, t)));
  theme.addEventListener("change", () => {
    const v = /** @type {HTMLSelectElement} */ (theme).value;
    if (v === "system") localStorage.removeItem("yard.theme");
    else localStorage.setItem("yard.theme", v);
    applyTheme();
  });
  const out = h("button", { type: "button", "data-testid": "sign-out", onclick: () => { api.setToken(""); location.hash = "#/overview"; location.reload(); } }, "Sign out");
  const el = h("section", null, h("h1", null, "Settings"),
    h("div", { class: "card" }, h("h2", null, "Credential"),
      h("p", null, "Signed in as ", h("strong", null, me.name || "–"), ` (${me.kind || "–"}).`),
      h("p", null, "May: ", Object.entries(me.may).filter(([, v]) => v).map(([k]) => k).join(", ") || "nothing"),
      h("p", { class: "dim" }, "The token is kept in this browser only (local storage) and sent to this center only."), out),
    h("div", { class: "card" }, h("h2", null, "Theme"), h("label", null, "theme ", theme)),
    h("div", { class: "card" }, h("h2", null, "Keyboard"), shortcuts()));
  return { el };
}

export function shortcuts() {
  return h("dl", { class: "keys" },
    [["?", "show or hide the shortcuts"], ["/", "search or filter on this page"], ["g o", "overview"], ["g t", "topology"], ["g m", "metrics"], ["g r", "resources"], ["g d", "data"], ["g s", "settings"], ["Esc", "close"]]
      .map(([k, v]) => [h("dt", null, h("kbd", null, k)), h("dd", null, v)]));
}
