// Fleet overview: devices by active version, phase and presence, devices failing now, active rollouts,
// open alerts and readiness; one GET /api/console/overview per refresh.
import { get } from "./api.js";
import { barChart, chartBox, pieChart } from "./charts.js";
import { ago, h, link, span, table } from "./dom.js";
import { rolloutTable } from "./rollout_view.js";

function card(label, value, cls) { return h("div", { class: "card " + (cls || "") }, h("div", { class: "num" }, value), label); }

// /readyz needs no token and answers 503 with the same body when not ready.
async function readiness(el) {
  try {
    const body = await (await fetch("/readyz")).json();
    if (body.ready) { el.replaceChildren(span("ready", "ok")); return; }
    el.replaceChildren(span("not ready: " + body.failing.map(n => n + " (" + body.checks[n].detail + ")").join(", "), "bad"));
  } catch (e) {
    el.replaceChildren(span("readiness unknown: " + e.message, "bad"));
  }
}

// The MQTT gateway's counters, folded: connection and errors in the summary line, the rest inside.
function drawGateway(el, gw) {
  const wasOpen = el.open;
  const errors = [gw.rollout_last_error, gw.broker_reload_error].filter(Boolean);
  const counters = [["rollout ticks", gw.rollout_ticks], ["broker reloads", gw.broker_reloads]];
  for (const kind of ["received", "malformed", "events"])
    for (const [k, v] of Object.entries(gw[kind] || {})) counters.push([kind + " " + k, v]);
  el.replaceChildren(h("summary", {}, span(gw.connected ? "connected to the broker" : "not connected to the broker",
    gw.connected ? "ok" : "bad"), errors.length ? span(" - " + errors.join("; "), "bad") : ""), table(["counter", "value"], counters));
  el.open = wasOpen;  // redrawn every poll: stay as the operator left it
}

export async function render(view) {
  const ready = h("div", { class: "muted", id: "ready" }, "readiness: checking");
  const cards = h("div", { class: "cards", id: "cards" });
  const versionChart = chartBox(), phaseChart = chartBox();
  const alerts = h("div", { id: "alerts" }), rollouts = h("div", { id: "active-rollouts" });
  const failing = h("div", { id: "failing" }), gateway = h("details", { id: "gateway" });
  view.append(h("h1", {}, "Fleet overview"), ready, cards, h("div", { class: "grid" }, versionChart, phaseChart),
    h("h2", {}, "Open alerts"), alerts, h("h2", {}, "Active rollouts"), rollouts,
    h("h2", {}, "Devices failing now"), failing, h("h2", {}, "Gateway"), gateway);

  async function refresh() {
    readiness(ready);
    const o = await get("/api/console/overview");
    const dev = o.devices;
    const open = o.alerts.filter(a => a.state === "open");
    cards.replaceChildren(card("devices", dev.total), card("online", dev.online), card("offline", dev.offline),
      card("failing now", dev.failing, dev.failing ? "alert" : ""), card("active rollouts", o.rollouts.length),
      card("open alerts", open.length, open.length ? "alert" : ""));
    pieChart(versionChart, "Devices by active version", dev.by_version.map(v => v.label + " (" + v.online + " online)"),
      dev.by_version.map(v => v.devices));
    const phases = Object.keys(dev.by_phase).sort();
    barChart(phaseChart, "Devices by state", "devices", [{ name: "devices", x: phases, y: phases.map(k => dev.by_phase[k]) }]);
    alerts.replaceChildren(open.length ? h("ul", {}, open.map(a => h("li", {}, span(a.kind, "badge v-fail"), " ", a.message, " ",
      span("(opened " + ago(a.opened_at) + ", last seen " + ago(a.last_seen_at) + ")", "muted")))) : span("none", "muted"));
    rollouts.replaceChildren(o.rollouts.length ? rolloutTable(o.rollouts) : span("none", "muted"));
    failing.replaceChildren(o.failing.length ? table(["device", "rollout", "wave", "error", "detail", "when"],
      o.failing.map(f => [link("#/devices/" + encodeURIComponent(f.device_id), f.device_id), link("#/rollouts/" + f.rollout_id, "#" + f.rollout_id),
        f.wave + 1, span(f.error_name, "bad"), h("span", { class: "wrap" }, f.error), ago(f.updated_at)]))
      : span("none", "muted"));
    drawGateway(gateway, o.gateway);
  }
  await refresh();
  refresh.every = 3000;
  return refresh;
}
