"""``compress``: "make it this much cheaper, lose at most this much", one call.

The path: measure each group's sensitivity on a validation split (:mod:`prunekit.sensitivity`,
cached), walk from the dense model to the budget spending where the sensitivity says it hurts
least (:mod:`.search`), then prune along that walk in ``steps`` iterative steps — each to a
geometric share of the budget (for 0.25 in 2 steps: 0.5, then 0.25), each followed by fine-tuning
(or distillation from the dense model) — and measure every step. How many units each group
loses at a step is chosen among a few allocations at the walk's estimated cost — the walk's,
the uniform ratio's and blends — by a short probe on the validation split (:mod:`.choose`);
which units, the criterion decides on the *current* fine-tuned weights. When the last planned
step misses the budget as measured (the estimate leaves out what no rule describes; latency is
timed, not estimated), up to two more steps aim lower by the miss.

Each fine-tuning decays its rate to zero and hands back its best epoch on the validation split
(:mod:`.fine_tuning`). A step whose validation drop exceeds ``max_drop`` after its fine-tuning
gets the same fine-tuning once more. A step whose drop still exceeds ``max_drop`` is reported
and dropped, and the path goes back to the last step within the bound and tries half as far
first (the geometric mean of the two costs), then the failed aim again from there — up to
``RETRIES`` times, because on a validation split of hundreds of samples one step too large is
often what separates a met budget from a missed one. It stops when the budget is met, or when
a step over the bound has no retry left (then the best step within the bound is the answer
and :attr:`CompressResult.met` is False). Each row names the step it was pruned from
(``after``). The quality bound is on the task's headline metric
(:func:`prunekit.sensitivity.headline`), judged on the validation split, which neither
fine-tuning nor the sensitivity search trains on; the test split is reported beside it. Beside
the steps, a uniform baseline (:mod:`.uniform`: one ratio for every group, at the chosen step's
counted cost, the same steps and fine-tuning) shows what the search bought; the rows mark the
Pareto front of cost against validation quality.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.compress.budget import Budget, PlanCost, time_models
from prunekit.compress.choose import Candidate, candidate_plans, choose
from prunekit.compress.search import (
    blended_removed,
    greedy_walk,
    removal_mask,
    state_at,
    uniform_removed,
)
from prunekit.compress.session import DEFAULT_SETTINGS, Session, Settings, validation_split
from prunekit.compress.uniform import uniform_row
from prunekit.data import Dataset
from prunekit.evaluate import count_macs, count_params
from prunekit.sensitivity import Sensitivity, measure_sensitivity
from prunekit.structured.prune import graph_and_scores

log = logging.getLogger(__name__)

Row = dict[str, Any]
EXTRA_STEPS = 2
"""How many more steps may aim lower when the planned ones miss the budget as measured."""
RETRIES = 2
"""How many times a step over the bound is retried from the last step within it."""


@dataclass
class CompressResult:
    """Every row (dense, each step, the uniform baseline), the chosen model and the verdict;
    ``models`` holds, by row name, the dense model, every step within the bound and the
    uniform baseline (a step over the bound is reported, not kept)."""

    rows: list[Row]
    model: nn.Module
    met: bool
    verdict: str
    sensitivity: Sensitivity
    noise: str = ""
    models: dict[str, nn.Module] = field(default_factory=dict)


def compress(
    model: nn.Module,
    data: Dataset,
    budget: Budget,
    *,
    max_drop: float,
    settings: Settings = DEFAULT_SETTINGS,
    latency_input: Tensor | None = None,
    sensitivity_cache: str | None = None,
    held_out: tuple[Tensor, Tensor] | None = None,
    trust_code: bool = False,
    progress: bool = True,
) -> CompressResult:
    """Prune ``model`` to ``budget`` losing at most ``max_drop`` of the headline metric (see
    the module docstring). ``model`` is pruned in place until a step is retried (the retry
    works on a copy of the last step within the bound); the chosen one (the last within the
    bound) is :attr:`CompressResult.model`.

    ``latency_input`` is the batch a latency budget is timed on (default: 8 test samples).
    ``held_out`` replaces the validation split (for a model that was trained on the whole
    training split, which would make its validation score a training score): the bound is
    judged on it and the whole training split fine-tunes.

    >>> from prunekit.data import load_dataset
    >>> from prunekit.models import build_model
    >>> data = load_dataset("digits")
    >>> net = build_model("mlp", in_features=64, hidden=(64, 32))
    >>> from prunekit.train import fit
    >>> fit(net, data.x_train, data.y_train, epochs=4, progress=False) and None
    >>> result = compress(net, data, Budget("macs", 0.5), max_drop=5.0,
    ...                   settings=Settings(steps=2, epochs=1, uniform=False), progress=False)
    >>> result.met, result.rows[-1]["budget_fraction"] <= 0.5
    (True, True)
    """
    s = settings
    if s.steps < 1:
        raise ValueError(f"steps must be >= 1, got {s.steps}")
    if s.candidates < 1 or not 0.0 <= s.probe_epochs <= 10.0:
        raise ValueError(f"candidates must be >= 1 and probe_epochs in [0, 10], got "
                         f"{s.candidates} and {s.probe_epochs}")
    if max_drop < 0 or not math.isfinite(max_drop):
        raise ValueError(f"the quality bound is a drop >= 0, got {max_drop}")
    latency_input = data.x_test[:8] if latency_input is None else latency_input
    run = Session(model, data, budget, max_drop, s, latency_input, trust_code, progress, held_out)
    sensitivity = measure_sensitivity(
        model, run.example, (run.x_val, run.y_val), granularity="structured", amounts=s.amounts,
        criterion=s.criterion, task=data.task, loss=run.loss.name,
        data=run.scoring.batches, cache=sensitivity_cache, progress=progress,
    )
    dense_model = copy.deepcopy(model).eval()
    _, graph, scores = graph_and_scores(model, run.example, s.criterion, run.scoring, ())
    cost = _plan_cost(run, graph, model)
    labels = ["+".join(g.modules) for g in graph.groups]
    sizes = {label: g.size for label, g in zip(labels, graph.groups)}
    curves = {c.target: c for c in sensitivity.curves}

    def predicted(g: int, amount: float) -> float:
        curve = curves.get(labels[g])
        return sensitivity.drop(curve, amount) if curve else 0.0

    def walk_to(target: float) -> list:
        return greedy_walk(graph, scores.scores, cost, predicted, target=target,
                           max_layer_ratio=s.max_layer_ratio, round_to=s.round_to)

    def uniform_at(target: float) -> tuple[int, ...]:
        return uniform_removed(graph, scores.scores, cost, target,
                               max_layer_ratio=s.max_layer_ratio, round_to=s.round_to)[1]

    walk = walk_to(budget.fraction)
    dense_row = run.row("dense", model, None, step=0, estimated_fraction=1.0,
                        predicted_drop=0.0, after="")
    rows, models = [dense_row], {"dense": dense_model}
    best, failed, aim, work = 0, "", budget.fraction, model
    good_estimate, measured_fraction = 1.0, 1.0  # of the last step within the bound
    queue = [budget.fraction ** ((k + 1) / s.steps) for k in range(s.steps)]  # aims to take
    extra, retries = EXTRA_STEPS, RETRIES
    while True:
        if queue:
            aim = queue.pop(0)
            state = state_at(walk, aim)
        elif extra and measured_fraction > budget.fraction:
            extra -= 1
            aim = aim * budget.fraction / measured_fraction  # aim lower by the miss
            walk = walk_to(aim)
            state = walk[-1]
        else:
            break
        if state.cost >= good_estimate - 1e-12:
            continue  # the walk goes no further than the last step: nothing left to remove
        index = len(rows) - 1
        name, after = f"step {index + 1}", rows[best]["name"]
        uniform = uniform_at(state.cost)
        blend = functools.partial(blended_removed, graph, scores.scores, cost, state.removed,
                                  uniform, budget=state.cost, max_layer_ratio=s.max_layer_ratio,
                                  round_to=s.round_to)  # blend(alpha)
        plans = candidate_plans(state.removed, uniform, s.candidates, blend)
        chosen = choose(plans, lambda removed, i=index, current=work: run.probe(
            current, dict(zip(labels, removed)), sizes, 1000 + i))
        run.prune_to(work, dict(zip(labels, chosen.removed)), sizes)
        run.fine_tune(work, f"compress {name}", index + 1)
        if run.settings.epochs and run.over_bound(run.drop(run.validation_score(work))):
            run.fine_tune(work, f"compress {name} (recovering)", 100 + index)  # once more
        row = run.row(name, work, dense_row, step=index + 1, after=after,
                      estimated_fraction=cost(removal_mask(graph, scores.scores, chosen.removed)),
                      predicted_drop=sum(predicted(g, r / sizes[labels[g]])
                                         for g, r in enumerate(chosen.removed)),
                      allocation=chosen.label, probes=_probes(plans))
        rows.append(row)
        if run.over_bound(row["drop"]):
            failed = (f"step {index + 1} lost {row['drop']:.2f} {run.unit} of validation "
                      f"{run.metric}, more than the bound {max_drop:g}")
            half = state_at(walk, math.sqrt(good_estimate * state.cost))
            if not retries or not state.cost < half.cost < good_estimate - 1e-12:
                break
            retries -= 1  # retry from the last step within the bound, half as far first
            log.info("compress: %s; retrying from %s, half as far first", failed, after)
            work = copy.deepcopy(models[after]).train()
            queue = [half.cost, aim, *queue]
            continue
        failed = ""
        models[name] = copy.deepcopy(work).eval()
        best, good_estimate = len(rows) - 1, state.cost
        measured_fraction = (_timed_fraction(run, dense_model, work) if budget.kind == "latency"
                             else row["budget_fraction"])
        row["budget_fraction"] = measured_fraction
        if measured_fraction <= budget.fraction:
            break
    if s.uniform and best > 0:
        rows.append(uniform_row(run, dense_model, graph, scores.scores, cost, rows[best],
                             sizes, labels, dense_row, models))
    noise = _time_rows(run, rows, models)
    met = not failed and best > 0 and rows[best]["budget_fraction"] <= budget.fraction
    chosen = rows[best]
    verdict = _verdict(run, met, failed, chosen, budget, max_drop)
    for i, row in enumerate(rows):
        row["chosen"] = i == best
    _mark_pareto(rows, run.metric)
    return CompressResult(rows, models[chosen["name"]], met, verdict, sensitivity, noise, models)


def _probes(plans: list[Candidate]) -> str:
    """The probes' validation losses of a step's candidates, for the report ("" when only one
    was tried)."""
    if len(plans) == 1:
        return ""
    return ", ".join(f"{plan.label} loss {-plan.score:.4g}" for plan in plans)


def _plan_cost(run: Session, graph: Any, model: nn.Module) -> PlanCost:
    kind = run.budget.kind
    if kind == "latency":
        from prunekit.structured.latency_table import measure_latency_table

        table = measure_latency_table(model, run.latency_input, threads=run.settings.threads,
                                      round_to=max(1, run.settings.round_to))
        return PlanCost(graph, "latency", 0.0, table)
    measured = count_macs(model, run.example) if kind == "macs" else count_params(model)[0]
    return PlanCost(graph, kind, float(measured))


def _timed_fraction(run: Session, dense: nn.Module, model: nn.Module) -> float:
    s = run.settings
    timed = time_models({"dense": dense, "pruned": copy.deepcopy(model)}, run.latency_input,
                        reference="dense", backend=s.backend, threads=s.threads,
                        budget_s=s.latency_budget_s)
    return 1.0 / timed.speedup("dense", "pruned")


def _time_rows(run: Session, rows: list[Row], models: dict[str, nn.Module]) -> str:
    """Time every kept model with the dense one's twin; fill latency columns; the band."""
    s = run.settings
    timed = time_models({name: copy.deepcopy(m) for name, m in models.items()},
                        run.latency_input, reference="dense", backend=s.backend,
                        threads=s.threads, budget_s=s.latency_budget_s)
    medians = timed.medians
    for row in rows:
        if row["name"] not in medians:
            row |= {"latency_ms": math.nan, "speedup": math.nan}
            continue
        row |= {"latency_ms": medians[row["name"]], "latency_p95_ms": medians[row["name"]],
                "batch_size": len(run.latency_input), "threads": s.threads or torch.get_num_threads(),
                "speedup": timed.speedup("dense", row["name"]),
                "speedup_text": timed.describe("dense", row["name"]),
                "noise_band": timed.band.width,
                "macs_ratio": rows[0]["macs"] / row["macs"] if row["macs"] else math.nan}
        if run.budget.kind == "latency" and row["name"] == "uniform":
            row["budget_fraction"] = 1.0 / row["speedup"]
    return f"noise band ±{100 * timed.band.width:.1f} % ({timed.band.rounds} rounds)"


def _verdict(run: Session, met: bool, failed: str, chosen: Row, budget: Budget,
             max_drop: float) -> str:
    reached = (f"{chosen['name']} reaches {chosen['budget_fraction']:.3f} of the dense "
               f"{budget.kind} at {chosen['drop']:+.2f} {run.unit} validation {run.metric}")
    if met:
        return f"met {budget.option} within {max_drop:g} {run.unit}: {reached}"
    why = failed or "no further pruning fits the groups' caps (raise --max-layer-ratio)"
    if chosen["step"] == 0:
        reached = "no step stayed within the bound; the dense model is the best found"
    return f"could not meet {budget.option} within {max_drop:g} {run.unit}: {why}; best: {reached}"


def _mark_pareto(rows: list[Row], metric: str) -> None:
    from prunekit.report.plots import pareto_front

    points = [(r["budget_fraction"], r[f"val_{metric}"]) for r in rows
              if math.isfinite(r.get("budget_fraction", math.nan))]
    front = set(pareto_front(points))
    for row in rows:
        row["pareto"] = (row.get("budget_fraction"), row[f"val_{metric}"]) in front


__all__ = ["CompressResult", "Settings", "compress", "validation_split"]
