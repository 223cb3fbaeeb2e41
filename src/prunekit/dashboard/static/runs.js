// The runs list (filter, sort, pick runs to compare) and the comparison of several runs.
import {api, clear, dash, errorBox, fmt, h, table} from "./dom.js";
import {columnsFor} from "./columns.js";
import {paretoViews} from "./run.js";

const FIELDS = [
  ["title", "run", (r) => r.title],
  ["kind", "command", (r) => r.kind],
  ["status", "status", (r) => r.status],
  ["started", "started", (r) => fmt.when(r.started)],
  ["rows", "variants", (r) => r.rows],
  ["best_accuracy", "best accuracy %", (r) => fmt.pct(r.best_accuracy)],
  ["relative", "folder", (r) => r.relative],
];

export async function runsView(main) {
  const data = await api("/api/runs");
  const runs = data.runs.filter((r) => !r.error);
  const problems = data.runs.filter((r) => r.error);
  const state = {filter: "", sort: "started", descending: true, picked: new Set()};
  const body = h("div");
  const compare = h("button", {id: "compare", disabled: true, onclick: () => {
    location.hash = `#/compare/${[...state.picked].join(",")}`;
  }}, "Compare selected");
  const filter = h("input", {id: "filter", type: "search", placeholder: "filter: title, command, status, folder…",
    oninput: (e) => { state.filter = e.target.value.toLowerCase(); draw(); }});

  function draw() {
    const shown = runs.filter((r) => !state.filter
      || [r.title, r.kind, r.status, r.relative, r.directory].join(" ").toLowerCase().includes(state.filter));
    shown.sort((a, b) => {
      const [x, y] = [a[state.sort], b[state.sort]];
      const order = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
      return state.descending ? -order : order;
    });
    const header = [h("th", {}, ""), ...FIELDS.map(([key, label]) => h("th", {class: "sortable", "data-sort": key,
      onclick: () => { state.descending = state.sort === key ? !state.descending : false; state.sort = key; draw(); }},
    label + (state.sort === key ? (state.descending ? " ▾" : " ▴") : "")))];
    const rows = shown.map((r) => h("tr", {"data-run": r.id},
      h("td", {}, h("input", {type: "checkbox", class: "pick", checked: state.picked.has(r.id), onchange: (e) => {
        if (e.target.checked) state.picked.add(r.id); else state.picked.delete(r.id);
        compare.disabled = state.picked.size < 2;
      }})),
      FIELDS.map(([key, , f]) => h("td", {class: key === "status" ? `status ${r.status}` : ""},
        key === "title" ? h("a", {href: `#/run/${r.id}`}, f(r)) : f(r)))));
    clear(body, shown.length ? h("table", {id: "runs"}, h("thead", {}, h("tr", {}, header)), h("tbody", {}, rows))
      : h("p", {class: "muted"}, runs.length ? "No run matches the filter." : "No runs yet: run `prunekit run RECIPE --out DIR` into one of these folders, or launch one from this page."));
  }
  draw();
  clear(main, h("h1", {}, "Runs"),
    h("p", {class: "muted"}, `Serving ${data.roots.join(", ")}`),
    problems.map((p) => errorBox(p.error)),
    h("div", {class: "toolbar"}, filter, compare), body);
  return null;
}

export async function compareView(main, ids) {
  const runs = await Promise.all(ids.map((id) => api(`/api/runs/${id}`)));
  const rows = runs.flatMap((run, i) => run.rows.map((row) => ({...row, run: run.title, runIndex: i, base: run.rows[0]})));
  const columns = columnsFor(rows);
  const body = rows.map((r) => [r.run, r.name, ...columns.map(([, f]) => f(r, r.base))]);
  clear(main,
    h("h1", {}, `Comparing ${runs.length} runs`),
    h("p", {class: "muted"}, "Ratios are against each run's own baseline (its first row)."),
    h("div", {class: "scroll"}, table(["run", "variant", ...columns.map(([name]) => name)], body, {id: "compare-table", class: "numbers"})),
    h("h2", {}, "Accuracy against cost"),
    paretoViews(rows.map((r) => ({...r, label: `${r.run} · ${r.name}`, colorIndex: r.runIndex,
      isBaseline: r === rows.find((q) => q.runIndex === r.runIndex)}))),
    h("h2", {}, "Environments"),
    table(["run", "cpu", "threads", "torch", "prunekit"], runs.map((run) => [run.title, run.environment.cpu ?? dash,
      run.environment.threads ?? dash, run.environment.torch ?? dash, run.environment.prunekit ?? dash])),
  );
  return null;
}
