// One rollout: per-wave progress, the soak countdown, gate verdicts with their numbers, failing devices
// with the runtime's error names, bytes sent, and the operator's commands (each confirmed first).
import { can, get, post } from "./api.js";
import { bar, confirmAction, h, kib, link, showError, span, table } from "./dom.js";
import { gates, modelCell, progress, rollbackSummary, sent, stateOf } from "./rollout_view.js";

// command -> the states it applies in (services/rollouts.py) and what the dialog warns about
const COMMANDS = [
  ["start", ["draft"], "Start this rollout: devices of its first wave begin downloading."],
  ["pause", ["running"], "Pause: no new device starts; those already downloading finish."],
  ["resume", ["paused"], "Resume: failures so far are accepted and the rollout goes on."],
  ["rollback", ["running", "paused", "completed"], "Roll back: every device this rollout touched returns to the model it ran before."],
  ["abort", ["draft", "running", "paused"], "Abort: stop here; devices keep what they have now."],
];
const IN_FLIGHT = ["notified", "downloading", "verifying", "trial"];

function waveRows(page, r) {
  const bytes = Object.fromEntries(r.transfer.waves.map(w => [w.wave, w]));
  return page.waves.map(w => {
    const by = w.by_state, failed = (by.failed || 0) + (by.timed_out || 0);
    const busy = IN_FLIGHT.reduce((n, k) => n + (by[k] || 0), 0);
    const label = w.wave === r.current_wave && ["running", "paused"].includes(r.state) ? span("wave " + (w.wave + 1) + " (current)", "state-running") : "wave " + (w.wave + 1);
    const back = by.rolled_back || 0;  // deploys a rollback undid
    return [label, w.size, bar([[by.confirmed || 0, "bar"], [back, "bar back"], [failed, "bar fail"]], w.total),
      by.confirmed || 0, busy, by.queued || 0, failed, back, bytes[w.wave] ? kib(bytes[w.wave].bytes_sent) + " of " + kib(bytes[w.wave].raw_bytes) : "-"];
  });
}

export async function render(view, id) {
  const head = h("div"), buttons = h("div", { class: "actions", id: "rollout-actions" }), soak = h("p", { id: "soak" });
  const waves = h("div", { id: "waves" }), gateBox = h("div", { id: "gates" }), failing = h("div", { id: "rollout-failing" });
  view.append(h("h1", { id: "rollout-title" }, "Rollout #" + id), head, buttons, soak, h("h2", {}, "Waves"), waves,
    h("h2", {}, "Canary gates"), gateBox, h("h2", {}, "Failing devices"), failing);
  let shownState = null;

  function drawButtons(r) {
    if (!can("operator")) { buttons.replaceChildren(); return; }
    buttons.replaceChildren(...COMMANDS.filter(([, states]) => states.includes(r.state)).map(([cmd, , warning]) => {
      const btn = h("button", { type: "button", id: "cmd-" + cmd, class: cmd === "rollback" || cmd === "abort" ? "danger" : "" },
        cmd === "rollback" ? "roll back" : cmd);
      btn.addEventListener("click", async () => {
        if (!(await confirmAction(warning + " (rollout #" + r.id + " " + r.name + ")"))) return;
        try { await post("/api/rollouts/" + r.id + "/" + cmd); await refresh(); } catch (e) { showError(e.message); }
      });
      return btn;
    }));
  }

  async function refresh() {
    const page = await get("/api/console/rollouts/" + id);
    const r = page.rollout;
    const outcome = Object.keys(r.rollback_outcome || {}).length ? rollbackSummary(r.rollback_outcome).text : null;
    head.replaceChildren(table(["model", "state", "wave", "progress", "bytes sent", "payloads", "reason"], [[
      modelCell(r), h("span", { id: "rollout-state" }, stateOf(r)), (r.current_wave + 1) + "/" + r.wave_sizes.length,
      progress(r), sent(r.transfer), Object.entries(r.transfer.encodings).map(([k, v]) => k + " " + v).join(", ") || "-",
      h("span", { class: "wrap" }, r.state_reason || "")]]),
    outcome ? h("p", { id: "rollback-outcome" }, "rollback: " + outcome) : "");
    if (r.state !== shownState) { drawButtons(r); shownState = r.state; }  // not every poll: a click in flight keeps its button
    soak.replaceChildren(page.soak ? span("wave " + (page.soak.wave + 1) + " passed; soaking, next wave in " +
      Math.ceil(page.soak.remaining) + " s", "state-running") : "");
    waves.replaceChildren(table(["wave", "devices", "progress", "confirmed", "in progress", "queued", "failed", "rolled back", "bytes sent"], waveRows(page, r)));
    gateBox.replaceChildren(gates(r));
    failing.replaceChildren(page.failing.length ? table(["device", "wave", "purpose", "error", "detail"], page.failing.map(f =>
      [link("#/devices/" + encodeURIComponent(f.device_id), f.device_id), f.wave + 1, f.purpose, span(f.error_name, "bad"),
        h("span", { class: "wrap" }, f.error)])) : span("none", "muted"));
  }
  await refresh();
  refresh.every = 2000;
  return refresh;
}
