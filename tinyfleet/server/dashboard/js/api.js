// The REST API with the operator's token (kept in sessionStorage: gone when the tab closes).
const KEY = "tinyfleet-token";
const RANK = { viewer: 0, operator: 1, admin: 2 };
export const session = { name: "", role: "viewer" };

export function token() { return sessionStorage.getItem(KEY) || ""; }
export function setToken(t) { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// One call: JSON in and out; a failure becomes an ApiError with the server's one-line `detail`.
export async function api(path, { method = "GET", json, raw, query } = {}) {
  const headers = { Authorization: "Bearer " + token() };
  let payload;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(json); }
  if (raw !== undefined) { headers["Content-Type"] = "application/octet-stream"; payload = raw; }
  let url = path;
  if (query) {
    const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v != null));
    if ([...qs].length) url += "?" + qs;
  }
  const resp = await fetch(url, { method, headers, body: payload });
  const out = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, path + ": " + ((out && out.detail) || resp.status));
  return { data: out, headers: resp.headers };
}

export async function get(path, query) { return (await api(path, { query })).data; }
export async function post(path, json) { return (await api(path, { method: "POST", json })).data; }

// Who the token belongs to. A server without per-user tokens (no /api/me yet) has one all-powerful token.
export async function whoami() {
  try {
    Object.assign(session, await get("/api/me"));
  } catch (e) {
    if (e.status !== 404) throw e;
    await get("/api/console/facets");  // still proves the token
    Object.assign(session, { name: "api token", role: "admin" });
  }
  return session;
}

export function can(role) { return (RANK[session.role] ?? -1) >= RANK[role]; }
