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
gets the same fine-tuning once more. It stops when the budget is met, or when a step's drop
still exceeds ``max_drop`` (then the best step within the bound is the answer and
:attr:`CompressResult.met` is False). The quality bound is on the task's headline metric
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
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.batchnorm_stats import reestimate_batchnorm
from prunekit.compress.budget import Budget, LatencyBackend, PlanCost, file_bytes, time_models
from prunekit.compress.choose import Candidate, candidate_plans, choose
from prunekit.compress.fine_tuning import CosineDecay, KeepBestEpoch
from prunekit.compress.search import (
    blended_removed,
    greedy_walk,
    removal_mask,
    state_at,
    uniform_removed,
)
from prunekit.compress.uniform import uniform_row
from prunekit.data import Dataset
from prunekit.evaluate import count_macs, count_params, prunable_sparsity
from prunekit.sensitivity import AMOUNTS, Sensitivity, headline, measure_sensitivity
from prunekit.structured.importance import ScoringData, first_batches
from prunekit.structured.prune import graph_and_scores, remove_planned
from prunekit.tasks import evaluate_task, get_task
from prunekit.train import Distillation, fit

log = logging.getLogger(__name__)

Row = dict[str, Any]
EXTRA_STEPS = 2


@dataclass(frozen=True)
class Settings:
    """How :func:`compress` prunes and recovers (every field has the CLI's default)."""

    steps: int = 3
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: str = "adam"
    loss: str | None = None
    distill: bool = False
    criterion: str = "l2"
    max_layer_ratio: float = 0.9
    round_to: int = 1
    validation: float = 0.2
    amounts: tuple[float, ...] = AMOUNTS["structured"]
    threads: int | None = None
    backend: LatencyBackend = "torch"
    latency_budget_s: float = 10.0
    uniform: bool = True
    candidates: int = 3
    probe_epochs: float = 0.5
    seed: int = 0


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


def validation_split(
    data: Dataset, fraction: float, seed: int = 0
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """(fit, validation) from the training split, seeded: the validation samples judge the
    quality bound and feed the sensitivity, and nothing trains on them.

    >>> from prunekit.data import load_dataset
    >>> (x_fit, _), (x_val, _) = validation_split(load_dataset("digits"), 0.2)
    >>> len(x_fit), len(x_val)
    (1151, 287)
    """
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))
    n_val = int(fraction * len(order))
    if not 1 <= n_val < len(order):
        raise ValueError(f"validation={fraction} leaves {n_val} validation samples of "
                         f"{len(order)}: give a fraction that keeps both sides non-empty")
    val, rest = order[:n_val], order[n_val:]
    return (data.x_train[rest], data.y_train[rest]), (data.x_train[val], data.y_train[val])


class _Run:
    """One compression: the splits, the dense model's numbers, the fine-tuning."""

    def __init__(self, model: nn.Module, data: Dataset, budget: Budget, max_drop: float,
                 settings: Settings, latency_input: Tensor, trust_code: bool,
                 progress: bool, held_out: tuple[Tensor, Tensor] | None) -> None:
        self.settings, self.budget, self.max_drop = settings, budget, max_drop
        self.task = get_task(data.task)
        self.loss = self.task.check_loss(settings.loss or self.task.default_loss,
                                         trust_code=trust_code)
        self.metric, self.scale, self.unit = headline(data.task)
        if held_out is None:
            (self.x_fit, self.y_fit), (self.x_val, self.y_val) = validation_split(
                data, settings.validation, settings.seed)
        else:  # the caller's held-out set: the whole training split fine-tunes
            (self.x_fit, self.y_fit), (self.x_val, self.y_val) = (
                (data.x_train, data.y_train), held_out)
        self.data, self.example = data, data.x_train[:1]
        self.latency_input = latency_input
        self.trust_code, self.progress = trust_code, progress
        self.teacher = copy.deepcopy(model).eval()
        self.scoring = ScoringData(
            first_batches(self.x_fit, self.y_fit),
            loss=self.loss,
        )
        self.dense_val = self.validation_score(model)

    def validation_score(self, model: nn.Module) -> float:
        return evaluate_task(model, self.x_val, self.y_val, task=self.task.name,
                             loss=self.loss)[self.metric]

    def drop(self, score: float) -> float:
        return self.scale * (self.dense_val - score)

    def over_bound(self, drop: float) -> bool:
        """Is ``drop`` more than the bound? A drop equal to it is within ("at most"), also
        when the subtraction leaves a rounding residue (0.97 - 0.96 is not exactly 0.01)."""
        return drop > self.max_drop + 1e-9 * max(1.0, abs(self.max_drop))

    def fine_tune(self, model: nn.Module, label: str, index: int) -> None:
        s = self.settings
        if s.epochs == 0:
            return
        fit(model, self.x_fit, self.y_fit, epochs=s.epochs, lr=s.lr, batch_size=s.batch_size,
            optimizer=s.optimizer, loss=self.loss, seed=s.seed + index, progress=self.progress,
            description=label,
            callbacks=[CosineDecay(s.epochs * math.ceil(len(self.x_fit) / s.batch_size)),
                       KeepBestEpoch(self.validation_score)],
            distillation=Distillation(self.teacher) if s.distill else None)

    def probe(self, model: nn.Module, removed: dict[str, int], sizes: dict[str, int],
              index: int) -> float:
        """Validation score of a copy of ``model`` pruned to ``removed``, its BatchNorm
        statistics re-estimated and trained for ``probe_epochs`` (on a seeded share of the fit
        split); ``model`` itself is left as it is."""
        s = self.settings
        trial = copy.deepcopy(model)
        self.prune_to(trial, removed, sizes)
        reestimate_batchnorm(trial, [x for x, _ in self.scoring.batches])
        count = int(s.probe_epochs * len(self.x_fit)) if s.epochs else 0
        if count >= 1:
            pick = torch.randperm(len(self.x_fit),
                                  generator=torch.Generator().manual_seed(s.seed + index))[:count]
            fit(trial, self.x_fit[pick], self.y_fit[pick], epochs=1, lr=s.lr,
                batch_size=s.batch_size, optimizer=s.optimizer, loss=self.loss,
                seed=s.seed + index, progress=False,
                callbacks=[CosineDecay(math.ceil(count / s.batch_size))],
                distillation=Distillation(self.teacher) if s.distill else None)
        return self.validation_score(trial.eval())

    def prune_to(self, model: nn.Module, removed: dict[str, int], sizes: dict[str, int]) -> None:
        """Remove units so that each group (by its modules) has lost ``removed`` of its dense
        ``sizes``; which units, the criterion decides on the current weights."""
        start = time.perf_counter()
        inputs, graph, scores = graph_and_scores(model, self.example, self.settings.criterion,
                                                 self.scoring, ())
        values = scores.scores.double().numpy()
        remove = np.zeros(graph.num_units, dtype=bool)
        for group in graph.groups:
            label = "+".join(group.modules)
            if label not in removed:
                log.warning("compress: group %s was not in the dense model's graph; kept", label)
                continue
            count = group.size - (sizes[label] - removed[label])
            s = values[group.units]
            valid = np.flatnonzero(~np.isnan(s))
            order = group.units[valid[np.argsort(s[valid], kind="stable")]]
            remove[order[: max(0, min(count, len(order)))]] = True
        remove_planned(graph, scores, remove, inputs, float(remove.mean()), start)

    def row(self, name: str, model: nn.Module, dense: Row | None, **extra: Any) -> Row:
        params, nonzero = count_params(model)
        scores = evaluate_task(model, self.data.x_test, self.data.y_test, task=self.task.name,
                               loss=self.loss)
        val = self.validation_score(model)
        size = file_bytes(model)
        row = {"name": name, "task": self.task.name, **scores, f"val_{self.metric}": val,
               "drop": self.drop(val), "params": params, "nonzero_params": nonzero,
               "sparsity": prunable_sparsity(model), "macs": count_macs(model, self.example),
               "file_bytes": size, "dense_file_bytes": dense["file_bytes"] if dense else size,
               **extra}
        key = {"macs": "macs", "params": "params", "size": "file_bytes"}.get(self.budget.kind)
        if key is not None:
            row["budget_fraction"] = row[key] / dense[key] if dense else 1.0
        return row


def compress(
    model: nn.Module,
    data: Dataset,
    budget: Budget,
    *,
    max_drop: float,
    settings: Settings = Settings(),
    latency_input: Tensor | None = None,
    sensitivity_cache: str | None = None,
    held_out: tuple[Tensor, Tensor] | None = None,
    trust_code: bool = False,
    progress: bool = True,
) -> CompressResult:
    """Prune ``model`` to ``budget`` losing at most ``max_drop`` of the headline metric (see
    the module docstring). ``model`` is pruned in place and ends as the last step tried; the
    chosen one (the last within the bound) is :attr:`CompressResult.model`.

    ``latency_input`` is the batch a latency budget is timed on (default: 8 test samples).
    ``held_out`` replaces the validation split (for a model that was trained on the whole
    training split, which would make its validation score a training score): the bound is
    judged on it and the whole training split fine-tunes.

    >>> from prunekit.data import load_dataset
    >>> from prunekit.models import build_model
    >>> data = load_dataset("digits")
    >>> net = build_model("mlp", in_features=64, hidden=(64, 32))
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
    run = _Run(model, data, budget, max_drop, s, latency_input, trust_code, progress, held_out)
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
                        predicted_drop=0.0)
    rows, models = [dense_row], {"dense": dense_model}
    best, failed, estimate, aim = 0, "", 1.0, budget.fraction
    planned = [budget.fraction ** ((k + 1) / s.steps) for k in range(s.steps)]
    measured_fraction = 1.0
    for index in range(s.steps + EXTRA_STEPS):
        if index >= s.steps:
            if measured_fraction <= budget.fraction:
                break
            aim = aim * budget.fraction / measured_fraction  # aim lower by the miss
            walk = walk_to(aim)
            state = walk[-1]
        else:
            state = state_at(walk, planned[index])
        if state.cost >= estimate - 1e-12 and index > 0:
            break  # the walk can go no further: nothing left to remove within the caps
        estimate = state.cost
        name = f"step {index + 1}"
        uniform = uniform_at(state.cost)
        blend = functools.partial(blended_removed, graph, scores.scores, cost, state.removed,
                                  uniform, budget=state.cost, max_layer_ratio=s.max_layer_ratio,
                                  round_to=s.round_to)  # blend(alpha)
        plans = candidate_plans(state.removed, uniform, s.candidates, blend)
        chosen = choose(plans, lambda removed, i=index: run.probe(
            model, dict(zip(labels, removed)), sizes, 1000 + i))
        run.prune_to(model, dict(zip(labels, chosen.removed)), sizes)
        run.fine_tune(model, f"compress {name}", index + 1)
        if run.settings.epochs and run.over_bound(run.drop(run.validation_score(model))):
            run.fine_tune(model, f"compress {name} (recovering)", 100 + index)  # once more
        row = run.row(name, model, dense_row, step=index + 1,
                      estimated_fraction=cost(removal_mask(graph, scores.scores, chosen.removed)),
                      predicted_drop=sum(predicted(g, r / sizes[labels[g]])
                                         for g, r in enumerate(chosen.removed)),
                      allocation=chosen.label, probes=_probes(plans))
        rows.append(row)
        if run.over_bound(row["drop"]):
            failed = (f"step {index + 1} lost {row['drop']:.2f} {run.unit} of validation "
                      f"{run.metric}, more than the bound {max_drop:g}")
            break
        models[name] = copy.deepcopy(model).eval()
        best = len(rows) - 1
        measured_fraction = (_timed_fraction(run, dense_model, model) if budget.kind == "latency"
                             else row["budget_fraction"])
        row["budget_fraction"] = measured_fraction
        if index + 1 >= s.steps and measured_fraction <= budget.fraction:
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
    """The probe scores of a step's candidates, for the report ("" when only one was tried)."""
    if len(plans) == 1:
        return ""
    return ", ".join(f"{plan.label} {plan.score:.4g}" for plan in plans)


def _plan_cost(run: _Run, graph: Any, model: nn.Module) -> PlanCost:
    kind = run.budget.kind
    if kind == "latency":
        from prunekit.structured.latency_table import measure_latency_table

        table = measure_latency_table(model, run.latency_input, threads=run.settings.threads,
                                      round_to=max(1, run.settings.round_to))
        return PlanCost(graph, "latency", 0.0, table)
    measured = count_macs(model, run.example) if kind == "macs" else count_params(model)[0]
    return PlanCost(graph, kind, float(measured))


def _timed_fraction(run: _Run, dense: nn.Module, model: nn.Module) -> float:
    s = run.settings
    timed = time_models({"dense": dense, "pruned": copy.deepcopy(model)}, run.latency_input,
                        reference="dense", backend=s.backend, threads=s.threads,
                        budget_s=s.latency_budget_s)
    return 1.0 / timed.speedup("dense", "pruned")


def _time_rows(run: _Run, rows: list[Row], models: dict[str, nn.Module]) -> str:
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


def _verdict(run: _Run, met: bool, failed: str, chosen: Row, budget: Budget,
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
