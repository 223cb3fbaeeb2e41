// Launch a recipe from the page and watch it: stages, epochs and loss, live, with cancel.
import {api, clear, errorBox, fmt, h, select} from "./dom.js";
import {color, lines} from "./plots.js";
import {describe} from "./run.js";

export async function launchView(main) {
  const data = await api("/api/jobs");
  const recipe = h("textarea", {id: "recipe", rows: 18, spellcheck: false});
  recipe.value = data.template;
  const name = h("input", {id: "run-name", value: `launched-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}`});
  let root = 0;
  const message = h("div", {id: "launch-message"});
  const jobsSlot = h("div", {id: "jobs"});
  const eventsOf = new Map();
  let timer = null;

  async function launch() {
    clear(message);
    try {
      const job = await api("/api/jobs", {recipe: recipe.value, name: name.value, root});
      clear(message, h("p", {}, `Started ${job.name} in ${job.directory}.`));
      refresh();
    } catch (err) { clear(message, errorBox(err.message)); }
  }

  async function jobView(job) {
    let events = eventsOf.get(job.id) || [];
    if (job.run_id) {
      const after = events.length ? events[events.length - 1].seq : 0;
      events = events.concat((await api(`/api/runs/${job.run_id}/events?after=${after}`)).events);
      eventsOf.set(job.id, events);
    }
    const epochs = events.filter((e) => e.event === "epoch");
    const byTraining = new Map();
    for (const e of epochs) (byTraining.get(e.description) || byTraining.set(e.description, []).get(e.description)).push([e.epoch, e.loss]);
    const stage = [...events].reverse().find((e) => ["stage", "variant", "measure", "latency"].includes(e.event));
    const step = [...events].reverse().find((e) => e.event === "step" || e.event === "train");
    const lastEpoch = epochs[epochs.length - 1];
    return h("div", {class: "job", "data-job": job.id},
      h("h3", {}, job.name, " ", h("span", {class: `status ${job.status}`, "data-status": job.status}, job.status),
        job.status === "running" ? h("button", {class: "cancel", onclick: async () => { await api(`/api/jobs/${job.id}/cancel`, {}); refresh(); }}, "Cancel") : null,
        job.run_id ? h("a", {href: `#/run/${job.run_id}/progress`}, "open run") : null),
      h("p", {class: "stage"}, stage ? describe(stage) : "starting…"),
      lastEpoch ? h("p", {class: "epoch"}, describe(lastEpoch)) : null,
      step && step.steps ? h("progress", {max: step.steps, value: step.step ?? 0}) : null,
      byTraining.size ? lines({xLabel: "epoch", yLabel: "training loss", width: 420, height: 220,
        series: [...byTraining].map(([n, pts], i) => ({name: n, color: color(i), points: pts}))}) : null,
      job.status !== "running" && job.output.length ? h("pre", {class: "output"}, job.output.join("\n")) : null,
      h("p", {class: "muted"}, `started ${fmt.when(job.started)} · ${job.directory}`));
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const jobs = (await api("/api/jobs")).jobs;
      clear(jobsSlot, jobs.length ? await Promise.all(jobs.map(jobView)) : h("p", {class: "muted"}, "Nothing launched yet."));
      if (jobs.some((j) => j.status === "running")) timer = setTimeout(refresh, 700);
    } catch (err) { clear(jobsSlot, errorBox(err.message)); }
  }

  clear(main, h("h1", {}, "Launch a recipe"),
    h("p", {class: "muted"}, "The recipe runs as `prunekit run` in its own process, into a new folder of a run directory. Zoo models only: the dashboard never runs code from a file (no --trust-code)."),
    recipe,
    h("div", {class: "toolbar"},
      h("label", {}, "run name ", name),
      h("label", {}, "into ", select(data.roots.map((r, i) => [i, r]), 0, (v) => { root = Number(v); }, {id: "run-root"})),
      h("button", {id: "launch", class: "primary", onclick: launch}, "Launch")),
    message, h("h2", {}, "Launched from this page"), jobsSlot);
  await refresh();
  return () => clearTimeout(timer);
}
