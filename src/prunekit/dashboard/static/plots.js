// Plots drawn as SVG, by hand: scatter (with the Pareto front and the dense baseline marked),
// horizontal bars, lines, a sparkline and the layered graph of a model's layers. No library:
// the page must work offline and stay small enough to read.

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
  "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f"];
export const color = (i) => PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const title = (text) => s("title", {}, text);

export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
  const raw = (hi - lo) / count;
  const step = 10 ** Math.floor(Math.log10(raw));
  const mult = [1, 2, 2.5, 5, 10].find((m) => m * step >= raw) * step;
  const ticks = [+(Math.floor(lo / mult) * mult).toPrecision(12)];
  while (ticks[ticks.length - 1] < hi) ticks.push(+(ticks[ticks.length - 1] + mult).toPrecision(12));
  return ticks;
}

function tickText(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  return String(+v.toPrecision(4));
}

function frame(width, height, margin, xTicks, yTicks, x, y, xLabel, yLabel) {
  const g = s("g", {class: "axes"});
  for (const t of yTicks) {
    g.append(s("line", {x1: margin.left, x2: width - margin.right, y1: y(t), y2: y(t), class: "grid"}));
    g.append(s("text", {x: margin.left - 6, y: y(t) + 4, "text-anchor": "end"}, tickText(t)));
  }
  for (const t of xTicks) {
    g.append(s("line", {x1: x(t), x2: x(t), y1: margin.top, y2: height - margin.bottom, class: "grid"}));
    g.append(s("text", {x: x(t), y: height - margin.bottom + 16, "text-anchor": "middle"}, tickText(t)));
  }
  g.append(s("text", {x: (margin.left + width - margin.right) / 2, y: height - 6, "text-anchor": "middle", class: "label"}, xLabel));
  g.append(s("text", {x: 14, y: (margin.top + height - margin.bottom) / 2, "text-anchor": "middle", class: "label",
    transform: `rotate(-90 14 ${(margin.top + height - margin.bottom) / 2})`}, yLabel));
  return g;
}

function scales(points, width, height, margin) {
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs));
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const x = (v) => margin.left + ((v - x0) / (x1 - x0 || 1)) * (width - margin.left - margin.right);
  const y = (v) => height - margin.bottom - ((v - y0) / (y1 - y0 || 1)) * (height - margin.top - margin.bottom);
  return {x, y, xTicks, yTicks};
}

// Points not beaten by another on both counts: lower x (cost) and higher y (accuracy).
export function paretoFront(points) {
  const sorted = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
  const front = [];
  for (const p of sorted) if (!front.length || p.y > front[front.length - 1].y) front.push(p);
  return front;
}

// points: [{x, y, label, color, baseline}]
export function scatter({points, xLabel, yLabel, width = 440, height = 300, caption}) {
  const margin = {top: 14, right: 18, bottom: 40, left: 56};
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, class: "plot scatter", role: "img",
    "aria-label": caption || `${yLabel} against ${xLabel}`});
  const usable = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (!usable.length) {
    svg.append(s("text", {x: width / 2, y: height / 2, "text-anchor": "middle", class: "muted"}, "nothing measured to plot"));
    return svg;
  }
  const {x, y, xTicks, yTicks} = scales(usable, width, height, margin);
  svg.append(frame(width, height, margin, xTicks, yTicks, x, y, xLabel, yLabel));
  const base = usable.find((p) => p.baseline);
  if (base) {
    svg.append(s("line", {x1: margin.left, x2: width - margin.right, y1: y(base.y), y2: y(base.y), class: "baseline-line"}));
  }
  const front = paretoFront(usable);
  if (front.length > 1) {
    let d = `M${x(front[0].x)},${y(front[0].y)}`;
    for (const p of front.slice(1)) d += ` H${x(p.x)} V${y(p.y)}`;
    svg.append(s("path", {d, class: "front"}, title("Pareto front: no other point is both cheaper and more accurate")));
  }
  for (const p of usable) {
    const tip = title(`${p.label}: ${yLabel} ${tickText(p.y)}, ${xLabel} ${tickText(p.x)}${p.baseline ? " (dense baseline)" : ""}`);
    const cx = x(p.x), cy = y(p.y);
    const mark = p.baseline
      ? s("path", {d: `M${cx},${cy - 7} L${cx + 7},${cy} L${cx},${cy + 7} L${cx - 7},${cy} Z`, class: "point baseline", fill: "#111"}, tip)
      : s("circle", {cx, cy, r: 5, class: "point", fill: p.color || color(0)}, tip);
    const text = p.baseline ? `${p.label} (dense)` : p.label;
    const leftSide = cx > width - margin.right - 6.5 * text.length;  // keep the label inside
    svg.append(mark, s("text", {x: leftSide ? cx - 8 : cx + 8, y: cy - 7, class: "point-label",
      "text-anchor": leftSide ? "end" : "start"}, text));
  }
  return svg;
}

// rows: [{label, values: [v per series], notes: [text per series]}], series: [{name, color}]
export function bars({rows, series, max, unit = "", width = 520, caption, ghosts}) {
  const rowH = 8 + 14 * series.length, left = 150, right = 70, top = 22;
  const height = top + rowH * rows.length + 8;
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, class: "plot bars", role: "img", "aria-label": caption || "bars"});
  const top_ = max ?? Math.max(1e-12, ...rows.flatMap((r) => r.values.filter(Number.isFinite)), ...(ghosts || []).flat().filter(Number.isFinite));
  const scale = (v) => ((width - left - right) * Math.max(0, v)) / top_;
  series.forEach((serie, j) => {
    svg.append(s("rect", {x: left + j * 110, y: 4, width: 10, height: 10, fill: serie.color}),
      s("text", {x: left + j * 110 + 14, y: 13, class: "legend"}, serie.name));
  });
  rows.forEach((row, i) => {
    const y0 = top + i * rowH;
    svg.append(s("text", {x: left - 6, y: y0 + rowH / 2 + 2, "text-anchor": "end", class: "bar-label"}, row.label));
    row.values.forEach((v, j) => {
      const yb = y0 + 4 + j * 14;
      const ghost = ghosts?.[i]?.[j];
      if (Number.isFinite(ghost)) svg.append(s("rect", {x: left, y: yb, width: scale(ghost), height: 11, class: "ghost"}));
      if (!Number.isFinite(v)) {
        svg.append(s("text", {x: left + 4, y: yb + 9, class: "muted"}, "—"));
        return;
      }
      const note = row.notes?.[j] ?? `${+v.toPrecision(3)}${unit}`;
      svg.append(s("rect", {x: left, y: yb, width: scale(v), height: 11, fill: series[j].color, class: "bar"},
        title(`${row.label} · ${series[j].name}: ${note}`)),
      s("text", {x: left + Math.max(scale(v), scale(ghost ?? 0)) + 4, y: yb + 9, class: "bar-value"}, note));
    });
  });
  return svg;
}

// series: [{name, color, points: [[x, y]]}]
export function lines({series, xLabel, yLabel, width = 480, height = 280, caption}) {
  const margin = {top: 14, right: 150, bottom: 40, left: 56};
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, class: "plot lines", role: "img", "aria-label": caption || yLabel});
  const all = series.flatMap((l) => l.points.map(([px, py]) => ({x: px, y: py}))).filter((p) => Number.isFinite(p.y));
  if (!all.length) return svg;
  const {x, y, xTicks, yTicks} = scales(all, width, height, margin);
  svg.append(frame(width, height, margin, xTicks, yTicks, x, y, xLabel, yLabel));
  series.forEach((line, i) => {
    const pts = line.points.filter(([, py]) => Number.isFinite(py));
    if (!pts.length) return;
    svg.append(s("polyline", {points: pts.map(([px, py]) => `${x(px)},${y(py)}`).join(" "), class: "series", stroke: line.color},
      title(line.name)));
    for (const [px, py] of pts) svg.append(s("circle", {cx: x(px), cy: y(py), r: 3, fill: line.color}, title(`${line.name}: ${tickText(py)} at ${tickText(px)}`)));
    const ly = margin.top + 12 + i * 14;
    svg.append(s("rect", {x: width - margin.right + 6, y: ly - 7, width: 10, height: 3, fill: line.color}),
      s("text", {x: width - margin.right + 20, y: ly, class: "legend"}, line.name));
  });
  return svg;
}

export function sparkline(values, width = 90, height = 18) {
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, class: "spark"});
  if (!values.length) return svg;
  const hi = Math.max(...values) || 1;
  const step = width / values.length;
  values.forEach((v, i) => svg.append(s("rect", {x: i * step, y: height - (height * v) / hi, width: Math.max(1, step - 0.5), height: (height * v) / hi})));
  return svg;
}

// A layered drawing of a DAG: each node's column is its longest distance from the input.
export function dag({nodes, edges, nodeColor, nodeTitle, onselect, selected}) {
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  const incoming = new Map(nodes.map((n) => [n.id, []]));
  for (const [a, b] of edges) incoming.get(b)?.push(a);
  for (const n of nodes) for (const p of incoming.get(n.id)) depth.set(n.id, Math.max(depth.get(n.id), depth.get(p) + 1));
  const columns = [];
  for (const n of nodes) (columns[depth.get(n.id)] ||= []).push(n);
  const colW = 128, rowH = 40, boxW = 112, boxH = 26;
  const width = Math.max(1, columns.length) * colW + 16;
  const height = Math.max(...columns.map((c) => c.length)) * rowH + 16;
  const pos = new Map();
  columns.forEach((col, i) => col.forEach((n, j) => pos.set(n.id, [8 + i * colW, 8 + j * rowH + (height - 16 - col.length * rowH) / 2])));
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, class: "plot dag", role: "img", "aria-label": "layers and pruning groups"});
  for (const [a, b] of edges) {
    const [ax, ay] = pos.get(a), [bx, by] = pos.get(b);
    const [x1, y1, x2, y2] = [ax + boxW, ay + boxH / 2, bx, by + boxH / 2];
    svg.append(s("path", {d: `M${x1},${y1} C${x1 + 12},${y1} ${x2 - 12},${y2} ${x2},${y2}`, class: "edge"}));
  }
  for (const n of nodes) {
    const [px, py] = pos.get(n.id);
    const fill = nodeColor(n);
    const box = s("g", {class: `node${selected === n.group && n.group !== null ? " selected" : ""}`, "data-node": n.id,
      "data-group": n.group ?? "", onclick: () => onselect?.(n)},
    s("rect", {x: px, y: py, width: boxW, height: boxH, rx: 5, fill}),
    s("text", {x: px + boxW / 2, y: py + 17, "text-anchor": "middle"}, n.label.length > 17 ? `…${n.label.slice(-16)}` : n.label),
    title(nodeTitle(n)));
    svg.append(box);
  }
  return svg;
}
