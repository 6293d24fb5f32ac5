// Charts through Plotly (served from the installed plotly package: /console/assets/plotly.min.js).
const CONFIG = { displayModeBar: false, responsive: true };

function layout(title, ytitle, extra = {}) {
  return {
    title: { text: title, font: { size: 14 } }, height: 260, margin: { l: 55, r: 15, t: 35, b: 40 },
    yaxis: { title: { text: ytitle }, rangemode: "tozero" }, legend: { orientation: "h", y: -0.25 }, ...extra,
  };
}

// series: [{name, points: [[unix seconds, value], ...]}] as lines over time; window: [since, until]
// in Unix seconds, the x axis's span (a single minute of data would otherwise fill it).
export function timeChart(el, title, ytitle, series, window) {
  const traces = series.map(s => ({
    name: s.name, type: "scatter", mode: "lines+markers", marker: { size: 4 },
    x: s.points.map(([t]) => new Date(t * 1000)), y: s.points.map(([, v]) => v),
  }));
  if (!traces.some(t => t.x.length)) { el.replaceChildren(emptyNote(title)); return; }
  const xaxis = { type: "date" };
  if (window) xaxis.range = window.map(t => new Date(t * 1000));
  globalThis.Plotly.react(el, traces, layout(title, ytitle, { xaxis }), CONFIG);
}

// bars: [{name, x: [...], y: [...]}] grouped side by side.
export function barChart(el, title, ytitle, bars) {
  const traces = bars.map(b => ({ type: "bar", name: b.name, x: b.x, y: b.y }));
  if (!traces.some(t => t.x.length)) { el.replaceChildren(emptyNote(title)); return; }
  globalThis.Plotly.react(el, traces, layout(title, ytitle, { barmode: "group" }), CONFIG);
}

export function pieChart(el, title, labels, values) {
  if (!values.length) { el.replaceChildren(emptyNote(title)); return; }
  globalThis.Plotly.react(el, [{ type: "pie", labels, values, hole: 0.45, sort: false }],
    { title: { text: title, font: { size: 14 } }, height: 260, margin: { l: 10, r: 10, t: 35, b: 10 } }, CONFIG);
}

function emptyNote(title) {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = title + ": no data yet";
  return p;
}

export function chartBox() { const div = document.createElement("div"); div.className = "chart"; return div; }
