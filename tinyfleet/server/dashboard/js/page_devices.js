// Devices: server-side search, filters, sort and pages (GET /api/devices?...; X-Total-Count = matches).
import { api, get } from "./api.js";
import { ago, h, link, span } from "./dom.js";

const PAGE = 50;
const COLUMNS = [["id", "id"], ["name", "name"], ["hardware_class", "hw class"], ["group", "group"], [null, "tags"],
  [null, "presence"], [null, "phase"], [null, "active model"], ["last_seen", "last seen"]];
// kept across visits to the page: back from a device page lands on the same search
const state = { q: "", group: "", tag: "", hardware_class: "", model_version_id: "", online: "", failing: "", sort: "id", offset: 0 };

export function activeModel(d) {
  const rep = d.reported;
  const slot = rep && rep.active_slot != null && rep.slots ? rep.slots[rep.active_slot] : null;
  if (slot && slot.valid) return slot.model_name + " " + slot.version;
  return (d.active_model_sha256 || "-").slice(0, 12);
}

function select(key, label, options) {
  const el = h("select", { name: key, "aria-label": label },
    h("option", { value: "" }, label + ": any"), options.map(([v, text]) => h("option", { value: v }, text)));
  el.value = state[key];
  return el;
}

export async function render(view) {
  const f = await get("/api/console/facets");
  const q = h("input", { name: "q", type: "search", placeholder: "search id or name", value: state.q });
  const controls = [q,
    select("group", "group", f.groups.map(g2 => [g2, g2])), select("tag", "tag", f.tags.map(t => [t, t])),
    select("hardware_class", "hw class", f.hardware_classes.map(c => [c.id, c.id + (c.name ? " " + c.name : "")])),
    select("model_version_id", "version", f.versions.map(v => [v.id, v.label])),
    select("online", "presence", [["true", "online"], ["false", "offline"]]),
    select("failing", "failing", [["true", "failing now"], ["false", "not failing"]])];
  const count = span("", "muted"), body = h("tbody", { id: "device-rows" }), head = h("tr");
  const prev = h("button", { type: "button" }, "\u2190 previous"), next = h("button", { type: "button" }, "next \u2192");
  view.append(h("h1", {}, "Devices"), h("div", { class: "filters" }, controls, count),
    h("table", { id: "devices" }, h("thead", {}, head), body), h("div", { class: "pager" }, prev, next));

  function drawHead() {
    head.replaceChildren(...COLUMNS.map(([key, label]) => {
      if (!key) return h("th", {}, label);
      const sorted = state.sort.replace(/^-/, "") === key;
      const th = h("th", { class: "sortable" + (sorted ? " sorted" + (state.sort.startsWith("-") ? " desc" : "") : "") }, label);
      th.addEventListener("click", () => { state.sort = state.sort === key ? "-" + key : key; state.offset = 0; refresh(); });
      return th;
    }));
  }

  async function refresh() {
    drawHead();
    const query = { ...state, limit: PAGE };
    const { data, headers } = await api("/api/devices", { query });
    const total = Number(headers.get("X-Total-Count") || data.length);
    count.textContent = total ? (state.offset + 1) + "-" + (state.offset + data.length) + " of " + total + " devices" : "no devices match";
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + PAGE >= total;
    body.replaceChildren(...data.map(d => h("tr", {}, [link("#/devices/" + encodeURIComponent(d.id), d.id), d.name || "-",
      d.hardware_class, d.group || "-", d.tags.join(", ") || "-",
      span(d.online ? "online" : "offline", d.online ? "online" : "offline"),
      d.reported ? d.reported.phase : "-", activeModel(d), ago(d.last_seen)].map(c => h("td", {}, c)))));
  }
  let typing = null;
  q.addEventListener("input", () => {  // search as one types, one request after a short pause
    clearTimeout(typing);
    typing = setTimeout(() => { state.q = q.value.trim(); state.offset = 0; refresh(); }, 250);
  });
  for (const el of controls.slice(1)) el.addEventListener("change", () => { state[el.name] = el.value; state.offset = 0; refresh(); });
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
  next.addEventListener("click", () => { state.offset += PAGE; refresh(); });
  await refresh();
  refresh.every = 5000;
  return refresh;
}
