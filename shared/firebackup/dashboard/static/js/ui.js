// Small DOM helpers: elements built with properties and text nodes only (never innerHTML), so API data is text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0; let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function when(iso, timeZone) {
  if (!iso) return "–";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone }).format(new Date(iso));
}

// To the second: an instant chosen for a point-in-time restore is finer than when()'s minutes.
export function instant(iso) {
  if (!iso) return "–";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" }).format(new Date(toMs(iso)));
}

// Milliseconds since the epoch of an RFC 3339 instant that may carry nine fractional digits; `up` rounds a
// sub-millisecond rest up (a lower bound must not admit an instant before it).
export function toMs(iso, up = false) {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(iso);
  if (!m) return new Date(iso).getTime();
  const frac = (m[2] || "").padEnd(9, "0");
  return new Date(`${m[1]}.${frac.slice(0, 3)}Z`).getTime() + (up && /[1-9]/.test(frac.slice(3)) ? 1 : 0);
}

// The value a datetime-local input takes for an instant: the browser's local time, to the millisecond.
export function localInput(ms) {
  return new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 23);
}

export function seconds(a, b) {
  if (!a || !b) return null;
  return Math.max(0, (new Date(b) - new Date(a)) / 1000);
}

export function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function stateBadge(state) { return h("span", { class: `state-${state}` }, state); }

export function table(caption, columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", {}, `${caption}: ${empty}`);
  // Focusable so a keyboard can scroll a table wider than a phone's screen.
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption }, h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map(c => h("th", { scope: "col", class: c.class }, c.label)))),
    h("tbody", {}, rows.map(r => h("tr", {}, columns.map(c => h("td", { class: c.class }, c.cell(r))))))));
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint && h("span", { class: "hint", id: hintId }, hint));
}

export function select(name, options, value) {
  return h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function notify(message, bad = false) {
  const box = document.getElementById("notice");
  const p = h("p", { class: bad ? "bad" : "" }, message);
  box.append(p);
  setTimeout(() => p.remove(), bad ? 8000 : 4000);
}

// A button that runs an async action, shows its error as a notice, and is disabled while it runs.
export function action(label, run, opts = {}) {
  const b = h("button", { type: "button", class: opts.class, "aria-label": opts.aria }, label);
  b.addEventListener("click", async () => {
    if (opts.confirm && !window.confirm(opts.confirm)) return;
    b.disabled = true;
    try { await run(); } catch (e) { notify(e.message, true); } finally { b.disabled = false; }
  });
  return b;
}

// A form whose submit runs an async handler with its values; errors are shown, never thrown.
export function form(title, fields, submitLabel, run) {
  const f = h("form", { class: "panel", "aria-label": title }, h("h2", {}, title), fields, h("button", { type: "submit" }, submitLabel));
  f.addEventListener("submit", async ev => {
    ev.preventDefault();
    const btn = f.querySelector("button[type=submit]");
    btn.disabled = true;
    try { await run(new FormData(f), f); } catch (e) { notify(e.message, true); } finally { btn.disabled = false; }
  });
  return f;
}

// Backup size (bars) and duration (line) over time, as an SVG with a text alternative.
export function sizeDurationChart(backups) {
  const pts = backups.filter(b => b.state === "completed").slice(0, 30).reverse();
  if (!pts.length) return h("p", {}, "No completed backups to chart yet.");
  const W = 600, H = 200, pad = 36, bw = Math.min(40, (W - 2 * pad) / pts.length);
  const maxB = Math.max(...pts.map(b => b.bytes_stored), 1);
  const durs = pts.map(b => seconds(b.started_at || b.created_at, b.finished_at) || 0);
  const maxD = Math.max(...durs, 0.001);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H + 20}`, role: "img", "aria-labelledby": "chart-title" },
    s("title", { id: "chart-title" }, `Size (bars, up to ${bytes(maxB)}) and duration (line, up to ${duration(maxD)}) of the last ${pts.length} backups`),
    s("line", { class: "axis", x1: pad, y1: H, x2: W - pad, y2: H }));
  let line = "";
  pts.forEach((b, i) => {
    const x = pad + i * bw, bh = (H - 20) * b.bytes_stored / maxB;
    svg.append(s("rect", { class: "bar", x: x + bw * 0.15, y: H - bh, width: bw * 0.7, height: bh }));
    const y = H - (H - 20) * durs[i] / maxD;
    line += `${i ? "L" : "M"}${x + bw / 2},${y}`;
    svg.append(s("circle", { class: "dot", cx: x + bw / 2, cy: y, r: 3 }));
  });
  svg.append(s("path", { class: "line", d: line }));
  svg.append(s("text", { x: pad, y: H + 16 }, when(pts[0].created_at)));
  svg.append(s("text", { x: W - pad, y: H + 16, "text-anchor": "end" }, when(pts[pts.length - 1].created_at)));
  svg.append(s("text", { x: 2, y: 12 }, bytes(maxB)));
  svg.append(s("text", { x: W - 2, y: 12, "text-anchor": "end" }, duration(maxD)));
  return h("figure", { class: "chart" }, svg, h("figcaption", { class: "hint" }, "Bars: bytes stored. Line: duration."));
}
