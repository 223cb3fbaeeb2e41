// The comparison table's columns: every column of the report (prunekit.report.table), with
// the 95th-percentile latency beside the median. Ratios are against the first row, the baseline.
import {dash, fmt, measured} from "./dom.js";

const speedup = (r, b, key = "latency_ms") => (measured(r[key]) && r[key] > 0 ? fmt.ratio(b.latency_ms / r[key]) : dash);

// Each task's headline metric (prunekit.tasks, as prunekit.report.plots.HEADLINE): the report
// judges a regression model by R² and an autoencoder by PSNR, not by an accuracy it has not.
const HEADLINES = {
  classification: {key: "accuracy", scale: 100, label: "accuracy %", delta: "Δ acc (pt)"},
  multilabel: {key: "accuracy", scale: 100, label: "label accuracy %", delta: "Δ acc (pt)"},
  regression: {key: "r2", scale: 1, label: "R²", delta: "Δ R²"},
  reconstruction: {key: "psnr", scale: 1, label: "PSNR dB", delta: "Δ PSNR dB"},
};

export const headline = (rows) => HEADLINES[(rows[0] || {}).task] || HEADLINES.classification;

function metricColumns(rows) {
  const {key, scale, label, delta} = headline(rows);
  const value = (v) => (measured(v) ? (scale * v).toFixed(scale === 100 ? 2 : 4) : dash);
  return [
    [label, (r) => value(r[key])],
    [delta, (r, b) => (measured(r[key]) && measured(b[key]) ? fmt.signed(scale * (r[key] - b[key])) : dash)],
  ];
}

const COSTS = [
  ["latency ms (p50)", (r) => fmt.ms(r.latency_ms)],
  ["latency ms (p95)", (r) => fmt.ms(r.latency_p95_ms)],
  ["speed-up", (r, b) => speedup(r, b)],
  ["params", (r) => fmt.int(r.params)],
  ["non-zero", (r) => fmt.int(r.nonzero_params)],
  ["sparsity %", (r) => fmt.pct(r.sparsity, 1)],
  ["MACs", (r) => fmt.int(r.macs)],
  ["file KB", (r) => fmt.kb(r.file_bytes)],
  ["size vs dense", (r, b) => (measured(r.file_bytes) && b.dense_file_bytes ? `${(r.file_bytes / b.dense_file_bytes).toFixed(3)}×` : dash)],
];

const OPTIONAL = [
  ["sparse_latency_ms", "sparse-kernel ms", (r) => fmt.ms(r.sparse_latency_ms)],
  ["sparse_latency_ms", "sparse speed-up", (r, b) => (r.sparse_layers === 0 ? "all dense" : speedup(r, b, "sparse_latency_ms"))],
  ["onnx_latency_ms", "onnxruntime ms", (r) => fmt.ms(r.onnx_latency_ms)],
];

export function columnsFor(rows) {
  return [...metricColumns(rows), ...COSTS, ...OPTIONAL.filter(([key]) => rows.some((r) => key in r)).map(([, name, f]) => [name, f])];
}

// Weights removed or zeroed, against the baseline: where a structured variant really stands
// (its pruned weights are gone, not zero, so its "sparsity" alone reads 0 %).
export const removedOrZero = (r, b) => (b.params ? 1 - r.nonzero_params / b.params : NaN);
