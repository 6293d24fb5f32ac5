// Rollouts: the list, and the create form (schemas.RolloutCreate; README "Canary gates").
import { can, get, post } from "./api.js";
import { h, span } from "./dom.js";
import { rolloutTable } from "./rollout_view.js";

export async function render(view) {
  const list = h("div", { id: "rollout-list" });
  view.append(h("h1", {}, "Rollouts"),
    can("operator") ? h("p", {}, h("a", { href: "#/rollouts/new", id: "new-rollout" }, "+ New rollout")) : null, list);
  async function refresh() {
    const rollouts = await get("/api/rollouts");
    list.replaceChildren(rollouts.length ? rolloutTable(rollouts) : span("no rollouts yet", "muted"));
  }
  await refresh();
  refresh.every = 3000;
  return refresh;
}

// "1, 10%, 100%" -> [{count: 1}, {percent: 10}, {percent: 100}]
export function parseWaves(text) {
  return text.split(",").map(s => s.trim()).filter(Boolean).map(s =>
    s.endsWith("%") ? { percent: Number(s.slice(0, -1)) } : { count: Number(s) });
}

function field(label, name, attrs = {}) {
  return h("label", {}, label + " ", h("input", { name, id: "f-" + name, ...attrs }));
}

function choice(label, name, options, value) {
  const el = h("select", { name, id: "f-" + name }, options.map(([v, text]) => h("option", { value: v }, text)));
  if (value != null) el.value = value;
  return h("label", {}, label + " ", el);
}

const CANARY = [["window_seconds", "window (s)", 300], ["min_inferences", "min inferences per side", 1000],
  ["min_devices", "min devices per side", 1], ["error_rate_max_increase", "max error-rate rise (0.01 = 1 pp)", 0.01], ["error_rate_alpha", "error-rate test alpha", 0.05],
  ["latency_max_increase", "max latency rise (0.1 = 10 %)", 0.1], ["confidence_max_drop", "max confidence drop", 0.05],
  ["class_jsd_max", "max class divergence (JSD)", 0.05], ["max_wait_seconds", "max wait for data (s)", 3600]];

export async function renderCreate(view) {
  if (!can("operator")) { view.append(h("p", { class: "bad" }, "your role may not create rollouts")); return null; }
  const f = await get("/api/console/facets");
  const canaryFields = h("fieldset", { id: "canary-fields", disabled: true }, h("legend", {}, "thresholds"),
    CANARY.map(([name, label, value]) => field(label, "canary_" + name, { type: "number", step: "any", value })),
    choice("when the gate fails", "canary_on_fail", [["pause", "pause"], ["rollback", "roll back"]]),
    choice("when data stays short", "canary_on_not_enough_data", [["hold", "hold (pause)"], ["pass", "let the wave through"]]));
  const useCanary = h("input", { type: "checkbox", name: "use_canary", id: "f-use_canary" });
  useCanary.addEventListener("change", () => { canaryFields.disabled = !useCanary.checked; });
  const message = h("p", { class: "bad", id: "form-error" });
  const form = h("form", { class: "stack", id: "rollout-form" },
    field("name", "name", { required: true, maxlength: 100 }),
    choice("model version", "model_version_id", f.versions.map(v => [v.id, v.label]), f.versions.length ? f.versions[f.versions.length - 1].id : null),
    h("fieldset", {}, h("legend", {}, "devices (selector)"),
      choice("group", "group", [["", "any"], ...f.groups.map(g2 => [g2, g2])]),
      field("tags (comma separated, all required)", "tags"),
      choice("hardware class", "hardware_class", [["", "any"], ...f.hardware_classes.map(c => [c.id, String(c.id)])])),
    h("fieldset", {}, h("legend", {}, "waves"),
      field("waves (device counts or percentages)", "waves", { value: "1, 50%, 100%", required: true }),
      field("success threshold %", "success_threshold_percent", { type: "number", step: "any", value: 100 }),
      field("soak after each wave (s)", "soak_seconds", { type: "number", step: "any", value: 0 }),
      field("max concurrent downloads", "max_concurrent", { type: "number", value: 50 }),
      field("failure threshold", "failure_threshold", { value: "1", title: "a device count, or a percentage like 10%" }),
      choice("on too many failures", "failure_action", [["pause", "pause"], ["rollback", "roll back"]])),
    h("fieldset", {}, h("legend", {}, h("label", {}, useCanary, " canary gate between waves")), canaryFields),
    h("label", {}, h("input", { type: "checkbox", name: "encrypted", id: "f-encrypted" }),
      " encrypted (payload encrypted, content key wrapped for each device)"),
    h("label", {}, h("input", { type: "checkbox", name: "start", id: "f-start", checked: true }), " start now"),
    h("button", { class: "primary", type: "submit", id: "create-rollout" }, "Create rollout"), message);
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    const threshold = v.failure_threshold.trim();
    const body = {
      name: v.name, model_version_id: Number(v.model_version_id), waves: parseWaves(v.waves),
      selector: { group: v.group || null, tags: v.tags.split(",").map(s => s.trim()).filter(Boolean),
        hardware_class: v.hardware_class === "" ? null : Number(v.hardware_class) },
      success_threshold_percent: Number(v.success_threshold_percent), soak_seconds: Number(v.soak_seconds),
      max_concurrent: Number(v.max_concurrent), failure_action: v.failure_action, start: Boolean(v.start),
      encrypted: Boolean(v.encrypted),
      failure_threshold: threshold.endsWith("%") ? { percent: Number(threshold.slice(0, -1)) } : { count: Number(threshold) },
    };
    if (useCanary.checked) {
      body.canary = Object.fromEntries(CANARY.map(([name]) => [name, Number(v["canary_" + name])]));
      body.canary.on_fail = v.canary_on_fail;
      body.canary.on_not_enough_data = v.canary_on_not_enough_data;
    }
    try {
      const created = await post("/api/rollouts", body);
      location.hash = "#/rollouts/" + created.id;
    } catch (e) {
      message.textContent = e.message;
    }
  });
  view.append(h("h1", {}, "New rollout"), form);
  return null;
}
