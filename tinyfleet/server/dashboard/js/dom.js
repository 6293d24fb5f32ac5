// Small DOM helpers: every value is inserted as text, never as HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function span(text, cls) { return h("span", { class: cls }, text); }

export function table(headers, rows, attrs = {}) {
  const head = h("tr", {}, headers.map(x => (x instanceof Node ? x : h("th", {}, x))));
  return h("table", attrs, h("thead", {}, head), h("tbody", {}, rows.map(cells =>
    cells instanceof Node ? cells : h("tr", {}, cells.map(c => h("td", {}, c ?? "-"))))));
}

export function ago(ts) {
  if (!ts) return "-";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 60 ? Math.round(s) + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}

export function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "-"; }

export function kib(n) {
  if (n == null) return "-";
  return n >= 1048576 ? (n / 1048576).toFixed(2) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
}

// segments: [[count, class], ...] in a 160 px bar; what is left of total stays empty.
export function bar(segments, total, title) {
  const wrap = h("span", { class: "bar-wrap", title });
  for (const [count, cls] of segments) {
    const part = h("span", { class: cls });
    part.style.width = (total ? Math.round(160 * count / total) : 0) + "px";
    wrap.append(part);
  }
  return wrap;
}

export function link(href, text) { return h("a", { href }, text); }

// The confirmation dialog in index.html; resolves true when the operator confirms.
export function confirmAction(text) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise(resolve => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.showModal();
  });
}

export function showError(message) { document.getElementById("error").textContent = message || ""; }
