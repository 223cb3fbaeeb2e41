// One run: its table, Pareto plots, per-layer charts, sensitivity curves, progress, what-if.
import {api, clear, dash, errorBox, fmt, h, measured, select, table} from "./dom.js";
import {columnsFor, headline, removedOrZero} from "./columns.js";
import {bars, color, lines, scatter} from "./plots.js";
import {whatifView} from "./whatif.js";

const TABS = [["results", "Results"], ["layers", "Layers"], ["sensitivity", "Sensitivity"],
  ["whatif", "Structure & what-if"], ["progress", "Progress"]];

// rows: [{label, colorIndex, isBaseline, task, accuracy (or r2, psnr), latency_ms, file_bytes, macs, ...}]
export function paretoViews(rows) {
  const {key, scale, label} = headline(rows);
  if (!rows.some((r) => measured(r[key]))) {
    const base = rows[0];
    return h("div", {class: "plots", id: "pareto"},
      h("p", {class: "muted"}, `${label} was not measured in this run (no data was given), so there is no quality front; this is what each variant costs, against the first row.`),
      bars({caption: "cost against the first row", series: rows.map((r, i) => ({name: r.label, color: color(r.colorIndex ?? i)})),
        rows: [["MACs", "macs"], ["parameters", "params"], ["latency p50", "latency_ms"], ["file size", "file_bytes"]].map(([label, key]) => ({
          label, values: rows.map((r) => r[key] / base[key]), notes: rows.map((r) => fmt.ratio(r[key] / base[key]))})), unit: "×"}));
  }
  const views = [
    ["latency ms (p50)", (r) => r.latency_ms],
    ["file size KB", (r) => r.file_bytes / 1024],
    ["MACs", (r) => r.macs],
    ["weights removed or zero, % of the baseline's", (r) => 100 * removedOrZero(r, r.base || rows[0])],
  ];
  return h("div", {class: "plots", id: "pareto"}, views.map(([xLabel, x]) => h("figure", {},
    scatter({xLabel, yLabel: label, caption: `${label} against ${xLabel}`,
      points: rows.map((r, i) => ({x: x(r), y: scale * r[key], label: r.label, color: color(r.colorIndex ?? i), baseline: r.isBaseline}))}),
    h("figcaption", {}, `${label} against ${xLabel}`))));
}

function header(run) {
  const env = run.environment || {};
  return h("div", {class: "run-head"},
    h("h1", {}, run.title),
    h("p", {class: "meta"},
      h("span", {class: `status ${run.status}`}, run.status), ` · ${run.kind} · started ${fmt.when(run.started)}`,
      run.finished ? ` · finished ${fmt.when(run.finished)}` : "", ` · fingerprint ${run.fingerprint}`),
    h("p", {class: "meta"}, `${run.directory} · ${env.cpu ?? "cpu ?"} (${env.cpu_count ?? "?"} cores, ${(env.cpu_flags || []).join(" ")}) · `
      + `${env.threads ?? "?"} threads · torch ${env.torch ?? "?"} · prunekit ${env.prunekit ?? "?"}`),
    run.error ? errorBox(run.error) : null,
    run.files.length ? h("p", {class: "files"}, "Files: ", run.files.map((f) => h("a", {href: `/files/${run.root}/${f}`, target: "_blank", rel: "noopener"}, f))) : null);
}

function resultsTab(run) {
  if (!run.rows.length) return h("p", {class: "muted"}, "No results recorded yet.");
  const columns = columnsFor(run.rows);
  const base = run.rows[0];
  return h("div", {},
    h("div", {class: "scroll"}, table(["variant", ...columns.map(([name]) => name)],
      run.rows.map((r) => [r.name, ...columns.map(([, f]) => f(r, base))]), {id: "results", class: "numbers"})),
    h("p", {class: "muted"}, `Latency: batch ${base.batch_size ?? "?"}, ${base.threads ?? "?"} thread(s), median and 95th percentile of repeated runs timed round-robin.`),
    h("h2", {}, "Accuracy against cost"),
    h("p", {class: "muted"}, "◆ the dense baseline; the line is the Pareto front (no other variant is both cheaper and more accurate)."),
    paretoViews(run.rows.map((r, i) => ({...r, label: r.name, colorIndex: i, isBaseline: i === 0, base}))));
}

function layersTab(run, state, redraw) {
  const variants = Object.keys(run.layers);
  if (!variants.length) return h("p", {class: "muted"}, "This run recorded no per-layer data.");
  const variant = variants.includes(state.variant) ? state.variant : variants[variants.length - 1];
  const layers = run.layers[variant];
  const names = run.layers[variants[0]].map((l) => l.layer);
  const prunable = names.filter((n) => variants.some((v) => run.layers[v].find((l) => l.layer === n && /Linear|Conv/.test(l.kind))));
  const pick = select(variants.map((v) => [v, v]), variant, (v) => { state.variant = v; redraw(); }, {id: "layer-variant"});
  return h("div", {},
    h("div", {class: "toolbar"}, h("label", {}, "variant ", pick)),
    h("div", {class: "plots"},
      h("figure", {id: "chart-sparsity"}, h("figcaption", {}, "Zero weights per layer (%), every variant"),
        bars({caption: "sparsity per layer", max: 100, unit: " %",
          series: variants.map((v, i) => ({name: v, color: color(i)})),
          rows: prunable.map((n) => ({label: n, values: variants.map((v) => 100 * (run.layers[v].find((l) => l.layer === n)?.sparsity ?? NaN))}))})),
      h("figure", {id: "chart-channels"}, h("figcaption", {}, `Channels kept of the baseline's, ${variant}`),
        bars({caption: "channels kept", series: [{name: "kept (grey: baseline's)", color: color(2)}],
          rows: layers.filter((l) => l.out_channels !== null).map((l) => ({label: l.layer, values: [l.out_channels],
            notes: [`${l.out_channels} / ${l.original_out_channels ?? "?"}`]})),
          ghosts: layers.filter((l) => l.out_channels !== null).map((l) => [l.original_out_channels])})),
      h("figure", {id: "chart-shares"}, h("figcaption", {}, `Share of MACs and of measured time per layer, ${variant}`),
        bars({caption: "shares", max: 100, unit: " %", series: [{name: "MACs", color: color(0)}, {name: "latency", color: color(1)}],
          rows: layers.map((l) => ({label: l.layer, values: [100 * l.macs_share, 100 * (l.latency_share ?? NaN)]}))}))),
    h("p", {class: "muted"}, "Latency shares are timed with hooks around each layer inside the forward pass; the rest of the pass (pooling, reshapes, Python) is what the shares leave out."),
    h("div", {class: "scroll"}, table(["layer", "kind", "params", "non-zero", "sparsity %", "out (baseline)", "in (baseline)", "MACs", "MACs %", "ms", "time %"],
      layers.map((l) => [l.layer, l.kind, fmt.int(l.params), fmt.int(l.nonzero_params), fmt.pct(l.sparsity, 1),
        l.out_channels === null ? dash : `${l.out_channels} (${l.original_out_channels ?? "?"})`,
        l.in_channels === null ? dash : `${l.in_channels} (${l.original_in_channels ?? "?"})`,
        fmt.int(l.macs), fmt.pct(l.macs_share, 1), fmt.ms(l.latency_ms), fmt.pct(l.latency_share, 1)]), {id: "layers", class: "numbers"})));
}

function sensitivityTab(run, state, redraw) {
  const status = h("span", {class: "muted", id: "sensitivity-status"});
  const variants = run.rows.map((r) => r.name);
  state.sensVariant ||= variants[0];
  const measure = (granularity) => async () => {
    status.textContent = `measuring ${granularity} sensitivity of ${state.sensVariant}…`;
    try {
      await api(`/api/runs/${run.id}/sensitivity`, {variant: state.sensVariant, granularity});
      state.reload = true;
      redraw();
    } catch (err) { status.textContent = err.message; }
  };
  const points = run.sensitivity.filter((p) => p.variant === state.sensVariant);
  const granularities = [...new Set(points.map((p) => p.granularity))];
  const controls = h("div", {class: "toolbar"},
    h("label", {}, "variant ", select(variants.map((v) => [v, v]), state.sensVariant, (v) => { state.sensVariant = v; redraw(); })),
    h("button", {id: "measure-structured", onclick: measure("structured")}, "Measure structured (groups)"),
    h("button", {id: "measure-unstructured", onclick: measure("unstructured")}, "Measure unstructured (layers)"), status);
  if (!points.length) {
    return h("div", {}, controls, h("p", {class: "muted"}, "No sensitivity recorded for this variant. Measure it: each group (or layer) alone is pruned one-shot at a few amounts and scored on the held-out batch; the curves show where the model can give and where it cannot."));
  }
  return h("div", {}, controls, h("div", {class: "plots", id: "sensitivity"}, granularities.flatMap((g) => [...new Set(points.filter((p) => p.granularity === g).map((p) => p.metric))].map((metric) => {
    const mine = points.filter((p) => p.granularity === g && p.metric === metric);
    const targets = [...new Set(mine.map((p) => p.target))];
    return h("figure", {}, lines({xLabel: `amount pruned (${g})`, yLabel: metric === "accuracy" ? "accuracy %" : metric,
      series: targets.map((t, i) => ({name: t, color: color(i), points: mine.filter((p) => p.target === t)
        .map((p) => [100 * p.amount, metric === "accuracy" ? 100 * p.value : p.value])}))}),
    h("figcaption", {}, `${metric} with one ${g === "structured" ? "group" : "layer"} pruned at a time`));
  }))));
}

function progressTab(events, run) {
  if (!events.length) return h("p", {class: "muted"}, "This run recorded no progress events.");
  const epochs = events.filter((e) => e.event === "epoch");
  const last = events[events.length - 1];
  const stages = events.filter((e) => ["stage", "variant", "measure", "latency"].includes(e.event));
  const byTraining = new Map();
  for (const e of epochs) (byTraining.get(e.description) || byTraining.set(e.description, []).get(e.description)).push([e.epoch, e.loss]);
  const step = [...events].reverse().find((e) => e.event === "step" || e.event === "train");
  return h("div", {id: "progress"},
    h("p", {}, h("span", {class: `status ${run.status}`}, run.status), ` · last: ${describe(last)}`),
    step && step.steps ? h("progress", {max: step.steps, value: step.step ?? 0}) : null,
    h("div", {class: "plots"}, h("figure", {}, lines({xLabel: "epoch", yLabel: "training loss",
      series: [...byTraining].map(([name, pts], i) => ({name, color: color(i), points: pts}))}), h("figcaption", {}, "training loss per epoch"))),
    h("ol", {class: "events"}, stages.map((e) => h("li", {}, `${new Date(e.time * 1000).toLocaleTimeString()} ${describe(e)}`))));
}

export function describe(e) {
  if (!e) return dash;
  if (e.event === "epoch") return `${e.description}: epoch ${e.epoch}/${e.epochs}, loss ${fmt.num(e.loss, 4)}`;
  if (e.event === "step") return `${e.description}: step ${e.step}/${e.steps}`;
  if (e.event === "train") return `${e.description}: training ${e.epochs} epoch(s)`;
  if (e.event === "stage") return `${e.variant}: stage ${e.stage + 1}/${e.of} (${e.kind})`;
  if (e.event === "variant") return `variant ${e.variant} (${e.index + 1}/${e.of})`;
  if (e.event === "measure") return `measuring ${e.variant}`;
  if (e.event === "latency") return `timing ${e.variants} models together`;
  return e.event;
}

export async function runView(main, id, tab) {
  let run = await api(`/api/runs/${id}`);
  const state = {};
  let events = [];
  let timer = null;
  const body = h("div", {id: "tab-body"});
  const headerSlot = h("div");
  const tabs = h("nav", {class: "tabs"}, TABS.map(([key, label]) => h("a", {href: `#/run/${id}/${key}`, class: key === tab ? "active" : "", id: `tab-${key}`}, label)));

  async function redraw() {
    if (state.reload) { run = await api(`/api/runs/${id}`); state.reload = false; }
    clear(headerSlot, header(run));
    try {
      if (tab === "layers") clear(body, layersTab(run, state, redraw));
      else if (tab === "sensitivity") clear(body, sensitivityTab(run, state, redraw));
      else if (tab === "progress") clear(body, progressTab(events, run));
      else if (tab !== "whatif") clear(body, resultsTab(run));
    } catch (err) { clear(body, errorBox(err.message)); }
  }

  async function poll() {
    const fresh = await api(`/api/runs/${id}/events?after=${events.length ? events[events.length - 1].seq : 0}`);
    events = events.concat(fresh.events);
    if (run.status === "running" || fresh.events.length) run = await api(`/api/runs/${id}`);
    await redraw();
    if (run.status === "running") timer = setTimeout(poll, 700);
  }

  clear(main, headerSlot, tabs, body);
  if (tab === "whatif") {
    clear(headerSlot, header(run));
    await whatifView(body, run);
  } else if (tab === "progress" || run.status === "running") {
    await poll();
  } else {
    await redraw();
  }
  return () => clearTimeout(timer);
}
