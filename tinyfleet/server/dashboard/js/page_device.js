// One device: presence, reported state and slots, its action history with the runtime's error names,
// and its telemetry over the last hour.
import { get } from "./api.js";
import { chartBox, timeChart } from "./charts.js";
import { ago, h, kib, link, span, table, when } from "./dom.js";

const METRICS = [["inferences", "Inferences / min", "inferences"], ["errors", "Errors / min", "errors"],
  ["latency", "Mean latency", "us"], ["confidence", "Mean top-1 confidence", "confidence"]];

function slotRows(rep) {
  if (!rep || !rep.slots) return [];
  return rep.slots.map((slot, i) => [i, i === rep.active_slot ? span("active", "ok") : "",
    slot && slot.valid ? "yes" : "no", slot ? (slot.model_name || "-") + " " + (slot.version || "") : "-",
    slot && slot.model_sha256 ? slot.model_sha256.slice(0, 12) : "-", slot && slot.sequence != null ? slot.sequence : "-"]);
}

export async function render(view, id) {
  const info = h("div"), history = h("div"), charts = h("div", { class: "grid" });
  const boxes = METRICS.map(() => chartBox());
  charts.append(...boxes);
  view.append(h("h1", {}, "Device " + id), info, h("h2", {}, "Telemetry (last hour)"), charts, h("h2", {}, "Action history"), history);

  async function refresh() {
    const page = await get("/api/console/devices/" + encodeURIComponent(id));
    const d = page.device, rep = d.reported;
    info.replaceChildren(table(["field", "value"], [
      ["presence", span(d.online ? "online" : "offline", d.online ? "online" : "offline")],
      ["last seen", ago(d.last_seen)], ["name", d.name || "-"], ["hardware class", d.hardware_class],
      ["group", d.group || "-"], ["tags", d.tags.join(", ") || "-"], ["phase", rep ? rep.phase : "-"],
      ["active version", page.active_version || (d.active_model_sha256 || "none").slice(0, 12)],
      ["runtime version", d.runtime_version ?? "-"], ["created", when(d.created_at)],
    ]), h("h2", {}, "Slots"), slotRows(rep).length ? table(["slot", "", "valid", "model", "digest", "sequence"], slotRows(rep))
      : span("no state reported yet", "muted"));
    history.replaceChildren(page.actions.length ? table(["when", "rollout", "purpose", "operation", "target", "state", "error", "bytes"],
      page.actions.map(act => [when(act.created_at), link("#/rollouts/" + act.rollout_id, "#" + act.rollout_id), act.purpose,
        act.operation, act.target_version || "-", act.state,
        act.error_name ? h("span", { class: "bad", title: act.error }, act.error_name + " (" + act.error_code + ")") : "-",
        kib(act.bytes_sent)])) : span("no actions yet", "muted"));
    const since = Date.now() / 1000 - 3600;
    const all = await Promise.all(METRICS.map(([metric]) =>
      get("/api/telemetry/series", { device_id: id, metric, resolution: "1m", since })));
    all.forEach((series, i) => timeChart(boxes[i], METRICS[i][1], METRICS[i][2],
      [{ name: id, points: series.points.map(p => [p.t, p.value]) }], [since, Date.now() / 1000]));
  }
  await refresh();
  refresh.every = 10000;  // five requests a refresh: less often than the one-request pages
  return refresh;
}
