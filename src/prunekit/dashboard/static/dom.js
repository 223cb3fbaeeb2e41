// Small helpers every view shares: building elements (never from HTML strings, so nothing a
// run folder holds can become markup), talking to the API, formatting numbers as the report does.

const token = document.querySelector('meta[name="prunekit-token"]').content;

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Prunekit-Token": token},
    body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

export const measured = (v) => v !== null && v !== undefined && !Number.isNaN(v);
export const dash = "—";

export const fmt = {
  pct: (v, digits = 2) => (measured(v) ? (100 * v).toFixed(digits) : dash),
  ms: (v) => (measured(v) ? v.toFixed(3) : dash),
  int: (v) => (measured(v) ? Math.round(v).toLocaleString("en-US") : dash),
  kb: (v) => (measured(v) ? (v / 1024).toLocaleString("en-US", {minimumFractionDigits: 1, maximumFractionDigits: 1}) : dash),
  ratio: (v) => (measured(v) && Number.isFinite(v) ? `${v.toFixed(2)}×` : dash),
  num: (v, digits = 3) => (measured(v) ? Number(v).toPrecision(digits) : dash),
  signed: (v, digits = 2) => (measured(v) ? `${v >= 0 ? "+" : ""}${v.toFixed(digits)}` : dash),
  when: (t) => (t ? new Date(t * 1000).toLocaleString() : dash),
  compact: (v) => {
    if (!measured(v)) return dash;
    const a = Math.abs(v);
    if (a >= 1e9) return `${(v / 1e9).toFixed(2)} G`;
    if (a >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
    if (a >= 1e3) return `${(v / 1e3).toFixed(1)} k`;
    return String(Math.round(v * 1000) / 1000);
  },
};

export function table(header, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, header.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c)))))));
}

export function errorBox(message) {
  return h("p", {class: "error", role: "alert"}, message);
}

export function select(options, value, onchange, attrs = {}) {
  return h("select", {...attrs, onchange: (e) => onchange(e.target.value)},
    options.map(([v, label]) => h("option", {value: v, selected: String(v) === String(value)}, label)));
}
