// Admin: users and API tokens (a new token is shown once), and the audit log of changes.
import { api, can, get, post } from "./api.js";
import { confirmAction, h, showError, span, table, when } from "./dom.js";

const TIMES = new Set(["at", "created_at", "last_used_at", "revoked_at"]);

// Rows of unknown shape as a table: one column per field of the first row, times made readable.
function generic(rows, extra) {
  if (!rows.length) return span("none", "muted");
  const keys = Object.keys(rows[0]);
  return table([...keys, ...(extra ? [""] : [])], rows.map(row =>
    [...keys.map(k => (TIMES.has(k) ? when(row[k]) : typeof row[k] === "object" && row[k] !== null ? JSON.stringify(row[k]) : row[k])),
      ...(extra ? [extra(row)] : [])]));
}

async function optional(path) {
  try { return await get(path); } catch (e) { if (e.status === 404) return null; throw e; }
}

export async function render(view) {
  if (!can("admin")) { view.append(h("p", { class: "bad" }, "this page is for admins")); return null; }
  const tokens = h("div", { id: "tokens" }), audit = h("div", { id: "audit" }), secret = h("div", { id: "new-token" });
  const userForm = h("form", { class: "filters", id: "user-form" }, h("input", { name: "name", placeholder: "user name", required: true }),
    h("select", { name: "role" }, ["viewer", "operator", "admin"].map(r2 => h("option", { value: r2 }, r2))),
    h("button", { type: "submit" }, "Add user"));
  const tokenForm = h("form", { class: "filters", id: "token-form" }, h("input", { name: "user", placeholder: "user", required: true }),
    h("input", { name: "name", placeholder: "token name", required: true }), h("button", { class: "primary", type: "submit" }, "Create token"));
  view.append(h("h1", {}, "Tokens & audit"), h("h2", {}, "Users"), userForm, h("h2", {}, "API tokens"), tokenForm, secret, tokens,
    h("h2", {}, "Audit log"), audit);
  userForm.addEventListener("submit", async ev => {
    ev.preventDefault();
    try { await post("/api/users", Object.fromEntries(new FormData(userForm))); userForm.reset(); showError(""); } catch (e) { showError(e.message); }
  });
  tokenForm.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const out = await post("/api/tokens", Object.fromEntries(new FormData(tokenForm)));
      secret.replaceChildren(h("p", {}, "New token (shown once, copy it now):"), h("div", { class: "secret", id: "token-value" }, out.token));
      tokenForm.reset();
      await refresh();
    } catch (e) { showError(e.message); }
  });

  async function refresh() {
    const list = await optional("/api/tokens");
    tokens.replaceChildren(list === null ? span("this server has no per-user tokens", "muted") : generic(list, row => row.revoked_at ? "" :
      h("button", { type: "button", class: "danger", onclick: async () => {
        if (!(await confirmAction("Revoke token " + (row.name || row.id) + "? Clients using it get 401 at once."))) return;
        try { await api("/api/tokens/" + row.id, { method: "DELETE" }); await refresh(); } catch (e) { showError(e.message); }
      } }, "revoke")));
    const log = await optional("/api/audit");
    const items = log === null ? null : Array.isArray(log) ? log : log.items || [];
    audit.replaceChildren(items === null ? span("this server keeps no audit log", "muted") : generic(items));
  }
  await refresh();
  refresh.every = 10000;
  return refresh;
}
