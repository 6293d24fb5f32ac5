// Models: every version with its packages (size, tensor arena, ops, payload variants), and an upload
// form for a .tflite file (the server checks it in the real engine and signs it).
import { api, can, get, post } from "./api.js";
import { h, kib, span, table, when } from "./dom.js";

function variants(pkg) {
  if (!pkg.variants.length) return span("raw only", "muted");
  return h("span", { class: "wrap" }, pkg.variants.map(v => v.encoding + (v.base_sha256 ? " from " + v.base_sha256.slice(0, 8) : "") + " " +
    (v.status === "ready" ? kib(v.size) : v.status + (v.error ? ": " + v.error : ""))).join("; "));
}

function uploadForm(models, done) {
  const file = h("input", { type: "file", name: "file", accept: ".tflite", required: true, id: "upload-file" });
  const message = h("p", { id: "upload-message" });
  const form = h("form", { class: "stack", id: "upload-form" },
    h("label", {}, "model ", h("input", { name: "model", list: "model-names", required: true, placeholder: "name (new or existing)" }),
      h("datalist", { id: "model-names" }, models.map(x => h("option", { value: x.name })))),
    h("label", {}, "version ", h("input", { name: "version", required: true, placeholder: "1.2.0", pattern: "\\d+\\.\\d+\\.\\d+" })),
    h("label", {}, "hardware class ", h("input", { name: "hardware_class", type: "number", min: 0, required: true, value: 1 })),
    h("label", {}, "notes ", h("input", { name: "notes", maxlength: 500 })),
    h("label", {}, ".tflite file ", file), h("button", { class: "primary", type: "submit" }, "Upload and sign"), message);
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    message.className = "muted"; message.textContent = "uploading and checking in the engine...";
    try {
      let model = models.find(x => x.name === v.model);
      if (!model) model = await post("/api/models", { name: v.model });
      const bytes = await file.files[0].arrayBuffer();
      await api("/api/models/" + model.id + "/versions", { method: "POST", raw: bytes,
        query: { version: v.version, hardware_class: v.hardware_class, notes: v.notes } });
      message.className = "ok"; message.textContent = v.model + " " + v.version + " uploaded";
      await done();
    } catch (e) {
      message.className = "bad"; message.textContent = e.message;
    }
  });
  return form;
}

export async function render(view) {
  const list = h("div", { id: "models" });
  view.append(h("h1", {}, "Models"), list);
  async function refresh() {
    const models = await get("/api/console/models");
    const rows = models.flatMap(x => x.versions.flatMap(v => (v.packages.length ? v.packages : [null]).map(pkg => [
      x.name, v.version, when(v.created_at), pkg ? pkg.hardware_class : "-", pkg ? kib(pkg.size) : "-",
      pkg ? kib(pkg.model_size) : "-", pkg ? kib(pkg.arena_bytes) : "-", pkg ? pkg.encoding : "-",
      pkg ? h("span", { class: "wrap" }, pkg.ops.join(", ") || "-") : "-", pkg ? variants(pkg) : "-",
      pkg ? pkg.signed_by + " " + pkg.key_id : "-", pkg ? pkg.sequence : "-"])));
    list.replaceChildren(rows.length ? table(["model", "version", "created", "hw class", "package", "model size", "arena",
      "encoding", "ops", "payload variants", "signed by", "sequence"], rows) : span("no models yet", "muted"));
    return models;
  }
  const models = await refresh();
  if (can("operator")) view.append(h("h2", {}, "Upload a model"), uploadForm(models, refresh));
  return null;
}
