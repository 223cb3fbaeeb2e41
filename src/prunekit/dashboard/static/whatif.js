// The model's pruning groups as a graph, and the what-if: set amounts, see what a one-shot
// pruning of a copy does (MACs, parameters, size, latency, accuracy), then keep it.
import {api, clear, dash, errorBox, fmt, h, measured, select, table} from "./dom.js";
import {color, dag, sparkline} from "./plots.js";

const STRUCTURED = ["l2", "l1", "bn_scale", "taylor", "activation_mean", "apoz", "lsh", "random"];
const UNSTRUCTURED = ["magnitude", "random"];

const ratio = (after, before) => (measured(after) && before ? fmt.ratio(after / before) : dash);
const METRICS = [
  ["accuracy", "accuracy % (held-out)", (v) => fmt.pct(v), (a, b) => (measured(a) && measured(b) ? `${fmt.signed(100 * (a - b))} pt` : dash)],
  ["loss", "loss (held-out)", (v) => fmt.num(v, 4), (a, b) => (measured(a) && measured(b) ? fmt.signed(a - b, 4) : dash)],
  ["macs", "MACs", fmt.int, ratio],
  ["params", "parameters", fmt.int, ratio],
  ["nonzero_params", "non-zero parameters", fmt.int, ratio],
  ["file_bytes", "file KB (compressed)", fmt.kb, ratio],
  ["latency_ms", "latency ms (p50)", fmt.ms, ratio],
  ["latency_p95_ms", "latency ms (p95)", fmt.ms, ratio],
];

function swatch(fill) {
  const el = h("span", {class: "swatch"});
  el.style.background = fill;  // through the CSSOM: the page's policy forbids inline styles
  return el;
}

function amountInput(value, onchange, attrs = {}) {
  const out = h("output", {class: "amount-value"}, `${Math.round(100 * value)} %`);
  const input = h("input", {type: "range", min: 0, max: 0.9, step: 0.05, value, ...attrs,
    oninput: (e) => { out.textContent = `${Math.round(100 * e.target.value)} %`; },
    onchange: (e) => onchange(Number(e.target.value))});
  return h("span", {class: "amount"}, input, out);
}

function resultTable(result) {
  const {before, after} = result;
  return h("div", {id: "whatif-result"},
    table(["", "now", "what-if", "change"], METRICS.map(([key, label, f, change]) => [label,
      h("td", {"data-metric": key, "data-which": "before"}, f(before[key])),
      h("td", {"data-metric": key, "data-which": "after"}, f(after[key])),
      h("td", {"data-metric": key, "data-which": "change"}, change(after[key], before[key]))]), {class: "numbers"}),
    h("p", {class: "muted"}, result.held_out ? `Scored on ${result.held_out} held-out samples of the run's own test split. ` : `Not scored: ${result.why_no_data}. `,
      `Latency: batch ${result.batch_size}, ${result.threads} thread(s) as the run measured, ${result.latency_repeats} rounds timed round-robin against the original. Took ${result.seconds.toFixed(2)} s.`),
    result.details.groups ? h("p", {class: "muted", id: "whatif-removed"}, `Removed ${result.details.removed_units} of ${result.details.units} units: `,
      result.details.groups.filter((g) => g.removed).map((g) => `${g.modules.join("+")} −${g.removed}/${g.units}`).join(", ") || "none") : null);
}

export async function whatifView(body, run) {
  const variants = run.rows.map((r) => r.name);
  const state = {variant: variants.includes("baseline") ? "baseline" : variants[variants.length - 1],
    granularity: "structured", criterion: "l2", scope: "layer", mode: "all", amount: 0.5, amounts: {}, selected: null};
  const structureSlot = h("div", {id: "structure"});
  const resultSlot = h("div");
  const exportSlot = h("div", {id: "export-output"});
  const controls = h("div", {class: "toolbar"});
  let structure = null;

  const choice = () => ({granularity: state.granularity, criterion: state.criterion, scope: state.scope,
    ...(state.mode === "all" ? {amount: state.amount} : {amounts: state.amounts})});

  async function tryIt() {
    clear(resultSlot, h("p", {class: "muted", id: "whatif-busy"}, "pruning a copy and measuring it…"));
    clear(exportSlot);
    try {
      resultSlot.replaceChildren(resultTable(await api(`/api/runs/${run.id}/whatif`, {variant: state.variant, choice: choice()})));
    } catch (err) { clear(resultSlot, errorBox(err.message)); }
  }

  async function keep(as) {
    clear(exportSlot, h("p", {class: "muted"}, as === "stage" ? "checking that the stage reproduces this what-if…" : "saving the pruned model…"));
    try {
      const result = await api(`/api/runs/${run.id}/export`, {variant: state.variant, choice: choice(), as});
      clear(exportSlot, as === "stage"
        ? [h("p", {}, "This stage reproduces the what-if exactly (checked by running it on another copy). Add it to a recipe:"), h("pre", {id: "stage-yaml"}, result.yaml)]
        : h("p", {}, "Saved: ", h("a", {id: "model-link", href: `/files/${result.root}/${result.file}`}, result.file), ` (${fmt.kb(result.bytes)} KB; loads with prunekit.load)`));
    } catch (err) { clear(exportSlot, errorBox(err.message)); }
  }

  function drawControls() {
    const criteria = state.granularity === "structured" ? STRUCTURED : UNSTRUCTURED;
    if (!criteria.includes(state.criterion)) state.criterion = criteria[0];
    clear(controls,
      h("label", {}, "variant ", select(variants.map((v) => [v, v]), state.variant, (v) => { state.variant = v; state.amounts = {}; load(); }, {id: "whatif-variant"})),
      h("label", {}, "prune ", select([["structured", "units (structured)"], ["unstructured", "weights (unstructured)"]], state.granularity,
        (v) => { state.granularity = v; state.amounts = {}; drawControls(); drawStructure(); }, {id: "granularity"})),
      h("label", {}, "criterion ", select(criteria.map((c) => [c, c]), state.criterion, (v) => { state.criterion = v; load(); }, {id: "criterion"})),
      h("label", {}, h("input", {type: "radio", name: "mode", id: "mode-all", checked: state.mode === "all", onchange: () => { state.mode = "all"; }}), " one amount for all "),
      amountInput(state.amount, (v) => { state.amount = v; state.mode = "all"; document.getElementById("mode-all").checked = true; tryIt(); }, {id: "amount-all"}),
      h("label", {}, "scope ", select([["layer", "each group/layer"], ["global", "global ranking"]], state.scope, (v) => { state.scope = v; }, {id: "scope"})),
      h("label", {}, h("input", {type: "radio", name: "mode", id: "mode-each", checked: state.mode === "each", onchange: () => { state.mode = "each"; }}), " the amounts per group/layer below"),
      h("button", {id: "try", class: "primary", onclick: tryIt}, "Try it"),
      h("button", {id: "export-stage", onclick: () => keep("stage")}, "Keep as recipe stage"),
      h("button", {id: "export-model", onclick: () => keep("model")}, "Save pruned model"));
  }

  const setAmount = (key) => (v) => {
    if (v) state.amounts[key] = v; else delete state.amounts[key];
    state.mode = "each";
    document.getElementById("mode-each").checked = true;
    tryIt();
  };

  function drawStructure() {
    if (state.granularity === "unstructured") {
      const layers = (run.layers[state.variant] || []).filter((l) => /Linear|Conv/.test(l.kind));
      clear(structureSlot, h("h2", {}, "Layers"),
        layers.length ? table(["layer", "kind", "weights", "zero now", "amount"], layers.map((l) => [l.layer, l.kind, fmt.int(l.params),
          fmt.pct(l.sparsity, 1), amountInput(state.amounts[l.layer] || 0, setAmount(l.layer), {class: "layer-amount", "data-layer": l.layer})]), {id: "whatif-layers"})
          : h("p", {class: "muted"}, "This run recorded no per-layer data for this variant."));
      return;
    }
    if (!structure) return;
    const pinnedModules = new Set(structure.pinned.map((p) => p.module));
    const nodeColor = (n) => (n.group !== null && n.group !== undefined ? color(n.group)
      : n.op === "input" || n.op === "output" ? "#333" : pinnedModules.has(n.module) ? "#bbb" : "#ddd");
    const nodeTitle = (n) => {
      if (n.group !== null && n.group !== undefined) return `${n.label}: makes the units of group ${n.group}`;
      const pin = structure.pinned.find((p) => p.module === n.module);
      return pin ? `${n.label}: pinned (${pin.reason})` : n.label;
    };
    const selectGroup = (n) => { if (n.group !== null && n.group !== undefined) { state.selected = n.group; drawStructure(); } };
    clear(structureSlot,
      h("h2", {}, `Pruning groups (${structure.groups.length}, ${structure.units} units), scored by ${structure.criterion}`),
      h("p", {class: "muted"}, "Each colour is a group: units born in the same layers and removed together, with every slice they couple. Grey layers are pinned. Click a layer to pick its group."),
      h("div", {class: "scroll"}, dag({nodes: structure.nodes, edges: structure.edges, nodeColor, nodeTitle, onselect: selectGroup, selected: state.selected})),
      table(["group", "made by", "units", "couples", `score (${structure.criterion}): mean · min–max · sorted`, "amount"],
        structure.groups.map((g) => [
          h("td", {}, swatch(color(g.index)), ` ${g.index}`),
          g.modules.join(", "), g.size,
          h("td", {class: "couples"}, g.couples.map((c) => `${c.module}.${c.param}[${c.dim}] ${c.role} ×${c.positions}`).join("; ")),
          h("td", {}, g.score.mean === null ? "no opinion (NaN)" : `${fmt.num(g.score.mean)} · ${fmt.num(g.score.min)}–${fmt.num(g.score.max)} `, sparkline(g.score.sorted)),
          amountInput(state.amounts[String(g.index)] || 0, setAmount(String(g.index)), {class: "group-amount", "data-group": g.index}),
        ]), {id: "groups", class: state.selected === null ? "" : "has-selection"}),
      h("h3", {}, "Pinned (never removed)"),
      structure.pinned.length ? table(["layer", "output channels pinned", "why"], structure.pinned.map((p) => [p.module, `${p.pinned} of ${p.of}`, p.reason]), {id: "pinned"})
        : h("p", {class: "muted"}, "Nothing is pinned."));
    const rows = structureSlot.querySelectorAll("#groups tbody tr");
    rows.forEach((tr, i) => tr.classList.toggle("selected", state.selected === structure.groups[i].index));
  }

  async function load() {
    drawControls();
    clear(structureSlot, h("p", {class: "muted"}, "tracing the model…"));
    clear(resultSlot);
    try {
      structure = await api(`/api/runs/${run.id}/structure?variant=${encodeURIComponent(state.variant)}&criterion=${encodeURIComponent(state.granularity === "structured" ? state.criterion : "l2")}`);
      drawStructure();
    } catch (err) { structure = null; clear(structureSlot, errorBox(err.message)); }
  }

  clear(body, controls, h("div", {class: "whatif-panel"}, h("h2", {}, "What-if"), resultSlot, exportSlot), structureSlot);
  await load();
}
