// The console: a hash-routed single page; each page module renders into <main id="view"> and may ask
// to be refreshed every few seconds (one aggregated request per refresh, see api/console.py).
import { can, session, setToken, token, whoami } from "./api.js";
import { h, showError } from "./dom.js";
import * as admin from "./page_admin.js";
import * as device from "./page_device.js";
import * as devices from "./page_devices.js";
import * as models from "./page_models.js";
import * as overview from "./page_overview.js";
import * as rollout from "./page_rollout.js";
import * as rollouts from "./page_rollouts.js";
import * as telemetry from "./page_telemetry.js";

const ROUTES = [
  [/^overview$/, overview.render], [/^devices$/, devices.render], [/^devices\/(.+)$/, device.render],
  [/^rollouts$/, rollouts.render], [/^rollouts\/new$/, rollouts.renderCreate], [/^rollouts\/(\d+)$/, rollout.render],
  [/^models$/, models.render], [/^telemetry$/, telemetry.render], [/^admin$/, admin.render],
];
let timer = null;
let generation = 0;  // a page left behind must not paint over the next one

function loginPage(view, message) {
  const input = h("input", { id: "login-token", type: "password", autocomplete: "off", placeholder: "API token" });
  const form = h("form", { class: "login", id: "login" },
    h("h1", {}, "tinyfleet console"), h("p", { class: "muted" }, "Paste an API token (an admin creates one: tinyfleet tokens create)."),
    input, h("p", {}, h("button", { class: "primary", type: "submit" }, "Log in")), h("p", { class: "bad" }, message || ""));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    setToken(input.value.trim());
    try { await whoami(); location.hash = "#/overview"; route(); } catch (e) { setToken(""); loginPage(view, e.message); }
  });
  view.replaceChildren(form);
  input.focus();
}

async function route() {
  clearInterval(timer);
  const my = ++generation;
  const view = document.getElementById("view");
  showError("");
  const path = location.hash.replace(/^#\/?/, "") || "overview";
  const loggedIn = Boolean(token());
  document.getElementById("nav").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn;
  if (!loggedIn) { document.getElementById("who").textContent = ""; loginPage(view); return; }
  if (!session.name) {
    try { await whoami(); } catch (e) { setToken(""); loginPage(view, e.message); return; }
  }
  document.getElementById("who").textContent = session.name + " (" + session.role + ")";
  for (const tab of document.querySelectorAll("#nav a")) {
    tab.classList.toggle("active", path.startsWith(tab.getAttribute("href").slice(2)));
    tab.hidden = Boolean(tab.dataset.role) && !can(tab.dataset.role);
  }
  const match = ROUTES.map(([re, fn]) => [path.match(re), fn]).find(([m]) => m);
  if (!match) { view.replaceChildren(h("p", {}, "no such page: " + path)); return; }
  const [m, render] = match;
  view.replaceChildren();
  try {
    const refresh = await render(view, ...m.slice(1).map(decodeURIComponent));
    if (refresh && my === generation) {
      timer = setInterval(() => refresh().then(() => showError("")).catch(e => showError(e.message)), refresh.every || 3000);
    }
  } catch (e) {
    if (my === generation) showError(e.message);
  }
}

// A link may carry the token in its fragment (never sent to the server): /#token=...; kept, then hidden.
const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromLink) { setToken(fromLink); history.replaceState(null, "", location.pathname + "#/overview"); }

document.getElementById("logout").addEventListener("click", () => {
  setToken(""); session.name = ""; location.hash = "#/login"; route();
});
window.addEventListener("hashchange", route);
route();
