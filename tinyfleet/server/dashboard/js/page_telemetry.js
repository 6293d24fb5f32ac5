// Telemetry over time per model version (per-minute rollups): inferences, errors, latency, confidence,
// the class histogram, and two versions side by side (GET /api/telemetry/series and /compare).
import { get } from "./api.js";
import { barChart, chartBox, timeChart } from "./charts.js";
import { h, span, table } from "./dom.js";

const METRICS = [["inferences", "Inferences / min", "inferences"], ["errors", "Errors / min", "errors"],
  ["latency", "Mean latency", "us"], ["confidence", "Mean top-1 confidence", "confidence"]];
const WINDOWS = [[3600, "last hour"], [6 * 3600, "last 6 h"], [86400, "last day"]];
const state = { a: "", b: "", window: 3600 };

function fmt(v, digits = 3) { return v == null ? "-" : typeof v === "number" ? v.toFixed(digits) : v; }

export async function render(view) {
  const f = await get("/api/console/facets");
  const versions = f.versions;
  // by default the version most devices run against the newest other one
  const busiest = [...versions].sort((x, y) => y.devices - x.devices)[0];
  if (!state.a && busiest) state.a = String(busiest.id);
  const other = [...versions].reverse().find(v => String(v.id) !== state.a);
  if (!state.b && other) state.b = String(other.id);
  const pick = (key, label) => {
    const el = h("select", { name: key, id: "tel-" + key }, h("option", { value: "" }, label + ": none"),
      versions.map(v => h("option", { value: v.id }, v.label)));
    el.value = state[key];
    el.addEventListener("change", () => { state[key] = el.value; refresh(); });
    return el;
  };
  const win = h("select", { name: "window" }, WINDOWS.map(([s, label]) => h("option", { value: s }, label)));
  win.value = String(state.window);
  win.addEventListener("change", () => { state.window = Number(win.value); refresh(); });
  const boxes = METRICS.map(() => chartBox()), histBox = chartBox(), compare = h("div", { id: "compare" });
  view.append(h("h1", {}, "Telemetry"), h("div", { class: "filters" }, pick("a", "version A"), pick("b", "version B"), win),
    h("div", { class: "grid" }, ...boxes, histBox), h("h2", {}, "Side by side"), compare);

  async function refresh() {
    const since = Date.now() / 1000 - state.window;
    const resolution = state.window > 6 * 3600 ? "5m" : "1m";
    const chosen = [state.a, state.b].filter(Boolean).map(id => versions.find(v => String(v.id) === id)).filter(Boolean);
    const all = await Promise.all(chosen.map(v => Promise.all(METRICS.map(([metric]) =>
      get("/api/telemetry/series", { model_version_id: v.id, metric, resolution, since })))));
    METRICS.forEach(([, title, unit], i) => timeChart(boxes[i], title + " (" + resolution + ")", unit,
      chosen.map((v, k) => ({ name: v.label, points: all[k][i].points.map(p => [p.t, p.value]) })), [since, Date.now() / 1000]));
    if (chosen.length === 2) {
      // stats of A and B (not named a/b: `a.` is an alert's field in tests/server/test_dashboard.py)
      const { a: sa, b: sb, js_divergence: jsd } = await get("/api/telemetry/compare", { a: chosen[0].id, b: chosen[1].id, since });
      const classes = Math.max(sa.class_histogram.length, sb.class_histogram.length);
      const x = [...Array(classes).keys()].map(i => "class " + i);
      barChart(histBox, "Class histogram (share of inferences)", "share",
        [[chosen[0], sa], [chosen[1], sb]].map(([v, s]) => ({ name: v.label, x, y: x.map((_, i) => s.class_distribution[i] || 0) })));
      compare.replaceChildren(table(["", chosen[0].label, chosen[1].label], [
        ["reports", sa.reports, sb.reports], ["inferences", sa.inference_count, sb.inference_count],
        ["errors", sa.errors, sb.errors], ["error rate", fmt(sa.error_rate, 4), fmt(sb.error_rate, 4)],
        ["mean latency (us)", fmt(sa.latency_us_mean, 0), fmt(sb.latency_us_mean, 0)],
        ["mean confidence", fmt(sa.confidence_mean), fmt(sb.confidence_mean)],
        ["class divergence (JSD)", fmt(jsd), ""]]));
    } else {
      histBox.replaceChildren(span("pick two versions to compare their class histograms", "muted"));
      compare.replaceChildren(span("pick two versions", "muted"));
    }
  }
  await refresh();
  refresh.every = 10000;
  return refresh;
}
