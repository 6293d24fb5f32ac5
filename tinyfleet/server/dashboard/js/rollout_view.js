// How a rollout is drawn wherever it appears: its state, progress bar, bytes sent and canary gates.
// Names: r a rollout, g a gate, m a gate's metric (tests/server/test_dashboard.py reads them off the source).
import { bar, h, kib, link, span, table } from "./dom.js";

// A rollback's outcome per device: back on the old model (reverted, reinstalled, never left it), no
// previous model (nothing to return to), failed, pending.
export function rollbackSummary(outcome) {
  const n = k => outcome[k] || 0;
  const back = n("reverted") + n("reinstalled") + n("unchanged");
  const none = n("no_previous_model"), failed = n("failed"), pending = n("pending");
  const total = back + none + failed + pending;
  const parts = [back + "/" + total + " back on the old model"];
  if (none) parts.push(none + " had no previous model");
  if (failed) parts.push(failed + " failed");
  if (pending) parts.push(pending + " pending");
  return { back, none, failed, total, text: parts.join(", ") };
}

export function stateOf(r) {
  const outcome = r.rollback_outcome || {};
  if (r.state === "rolled_back" && Object.keys(outcome).length) {
    const sum = rollbackSummary(outcome);
    if (sum.back < sum.total) return span(r.state + (sum.back ? " (partly)" : " (nothing returned)"), "state-" + r.state);
  }
  return span(r.state, "state-" + r.state);
}

export function failedCount(r) { return (r.deploy.by_state.failed || 0) + (r.deploy.by_state.timed_out || 0); }

// Deploy progress, or where the rollback left each device once one started.
export function progress(r) {
  const outcome = r.rollback_outcome || {};
  if (Object.keys(outcome).length) {
    const sum = rollbackSummary(outcome);
    return bar([[sum.back, "bar back"], [sum.none, "bar warn"], [sum.failed, "bar fail"]], sum.total, sum.text);
  }
  const by = r.deploy.by_state;
  return bar([[by.confirmed || 0, "bar"], [failedCount(r), "bar fail"]], r.deploy.total,
    (by.confirmed || 0) + " confirmed of " + r.deploy.total);
}

export function sent(t) {
  if (!t || !t.raw_bytes) return "-";
  return kib(t.bytes_sent) + " of " + kib(t.raw_bytes) + " (" + Math.round(100 * t.bytes_sent / t.raw_bytes) + "%)";
}

// The model a rollout sends, marked when its packages go out encrypted per device (PROTOCOL 6).
export function modelCell(r) {
  const name = r.model_name + " " + r.version;
  if (!r.encrypted) return name;
  return h("span", {}, name + " ", h("span", { class: "badge", title: "payload encrypted, content key wrapped per device" }, "encrypted"));
}

export function rolloutRow(r) {
  return [link("#/rollouts/" + r.id, "#" + r.id + " " + r.name), modelCell(r), stateOf(r),
    (r.current_wave + 1) + "/" + r.wave_sizes.length, progress(r),
    (r.deploy.by_state.confirmed || 0) + "/" + r.deploy.total, failedCount(r), sent(r.transfer),
    h("span", { class: "wrap" }, r.state_reason || "")];
}

export const ROLLOUT_HEADERS = ["rollout", "model", "state", "wave", "progress", "confirmed", "failed", "bytes sent", "reason"];

export function rolloutTable(rollouts) { return table(ROLLOUT_HEADERS, rollouts.map(rolloutRow)); }

// The canary gate's numbers per metric: rates as %, latency in us, class_distribution as a divergence.
function gateNumber(metric, v) {
  if (v == null) return "-";
  if (metric === "error_rate") return (100 * v).toFixed(2) + "%";
  if (metric === "latency") return v.toFixed(0) + " us";
  return v.toFixed(3);
}

// Thresholds as the gate applies them: a rise (error rate, latency), a drop (confidence), a divergence.
function gateThreshold(metric, v) {
  if (metric === "error_rate") return "+" + (100 * v).toFixed(2) + " pp";
  if (metric === "latency") return "+" + (100 * v).toFixed(0) + "%";
  if (metric === "confidence") return "-" + v.toFixed(3);
  return "max " + v.toFixed(3);
}

// One wave's gate: its verdict and reason, and the metric table (canary against control).
export function gateBlock(g) {
  const rows = Object.entries(g.metrics).map(([name, m]) => [name,
    span(m.verdict.replace(/_/g, " "), "badge v-" + m.verdict), gateNumber(name, m.canary), gateNumber(name, m.control),
    gateThreshold(name, m.threshold), m.canary_samples + "/" + m.control_samples,
    m.p_value == null ? "-" : m.p_value.toPrecision(2),
    m.change == null ? "-" : (name === "latency" ? (100 * m.change).toFixed(1) + "%" : m.change.toFixed(3))]);
  const win = new Date(g.window_start * 1000).toLocaleTimeString() + " - " + new Date(g.window_end * 1000).toLocaleTimeString();
  return h("details", { class: "gate", open: true },
    h("summary", {}, span("wave " + (g.wave + 1) + ": " + g.verdict.replace(/_/g, " "), "badge v-" + g.verdict), " ",
      span(g.reason + " (window " + win + ")", "muted")),
    table(["metric", "verdict", "canary", "control", "threshold", "samples (canary/control)", "p-value", "change"], rows));
}

export function gates(r) {
  if (!r.canary) return span("no canary gate", "muted");
  if (!r.gates.length) return span("canary gate: none evaluated yet", "muted");
  return h("div", {}, r.gates.map(gateBlock));
}
