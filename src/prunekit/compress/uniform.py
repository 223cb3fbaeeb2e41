"""The baseline compress must beat: one pruning ratio for every group, at the same cost.

Why its own module: the comparison is only fair if the uniform model is pruned to the *counted*
cost of the step it is compared with and trained exactly as the steps are — the same number of
steps, epochs, rate decay, best-epoch selection and once-more recovery — and that is the whole
of what this module does. Counted, not estimated: the graph's MACs and parameter estimates are
exact where every layer has a rule (checked on ResNet-20: equal to the count), and there the
bisection lands where the estimate would; file size, and layers no rule describes (held fixed
by the estimate), are where they part. A single ratio moves coarse groups in coarse steps, so
the baseline is the largest uniform model that does not exceed the step's cost (ResNet-20's
16-channel groups: 0.215 of the MACs against a step at 0.249). ``run`` is a
:class:`.session.Session` (the splits, the pruning by counts, the fine-tuning), the same one
the steps use.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Protocol

from torch import Tensor, nn

from prunekit.compress.budget import Budget, PlanCost
from prunekit.compress.search import uniform_removed

Row = dict[str, Any]


class Run(Protocol):
    """What the uniform baseline uses of a compression run."""

    settings: Any
    budget: Budget
    max_drop: float
    example: Tensor

    def prune_to(self, model: nn.Module, removed: dict[str, int],
                 sizes: dict[str, int]) -> None: ...

    def fine_tune(self, model: nn.Module, label: str, index: int) -> None: ...

    def validation_score(self, model: nn.Module) -> float: ...

    def drop(self, score: float) -> float: ...

    def over_bound(self, drop: float) -> bool: ...

    def row(self, name: str, model: nn.Module, dense: Row | None, **extra: Any) -> Row: ...


def uniform_row(run: Run, dense: nn.Module, graph: Any, scores: Tensor, cost: PlanCost,
             target_row: Row, sizes: dict[str, int], labels: Sequence[str], dense_row: Row,
             models: dict[str, nn.Module]) -> Row:
    """One ratio for every group, at the chosen step's measured cost (estimated, for latency),
    in as many steps with the same fine-tuning (best epoch kept, once more when over the bound,
    as the steps get): the baseline the search must beat."""
    s = run.settings
    model = copy.deepcopy(dense)
    steps = int(target_row["step"])
    final = target_row["estimated_fraction"]
    if run.budget.kind != "latency":
        final = _estimate_measuring(run, dense, graph, scores, cost, target_row, sizes, labels)
    ratio = 0.0
    for k in range(steps):
        ratio, removed = uniform_removed(graph, scores, cost, final ** ((k + 1) / steps),
                                         max_layer_ratio=s.max_layer_ratio, round_to=s.round_to)
        run.prune_to(model, dict(zip(labels, removed)), sizes)
        run.fine_tune(model, f"uniform step {k + 1}", k + 1)
        if s.epochs and run.over_bound(run.drop(run.validation_score(model))):
            run.fine_tune(model, f"uniform step {k + 1} (recovering)", 100 + k)  # as the steps
    models["uniform"] = model.eval()
    row = run.row("uniform", model, dense_row, step=steps, estimated_fraction=final,
                  predicted_drop=math.nan, uniform_ratio=ratio)
    if run.budget.kind == "latency":
        row["budget_fraction"] = math.nan  # filled by the final timing pass
    return row


def _estimate_measuring(run: Run, dense: nn.Module, graph: Any, scores: Tensor,
                        cost: PlanCost, target_row: Row, sizes: dict[str, int],
                        labels: Sequence[str]) -> float:
    """The largest estimated cost whose uniform plan *measures* at most the chosen step's
    fraction (bisected on pruned copies of ``dense``), so the comparison is at counted cost
    also where the estimate is not exact (see the module docstring)."""
    s, budget = run.settings, run.budget
    whole = budget.measure(dense, run.example)
    wanted = target_row["budget_fraction"]

    def measured(estimate: float) -> float:
        trial = copy.deepcopy(dense)
        _, removed = uniform_removed(graph, scores, cost, estimate,
                                     max_layer_ratio=s.max_layer_ratio, round_to=s.round_to)
        run.prune_to(trial, dict(zip(labels, removed)), sizes)
        return budget.measure(trial, run.example) / whole

    low, high = 0.0, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        low, high = (middle, high) if measured(middle) <= wanted + 1e-12 else (low, middle)
    return max(low, 1e-6)


__all__ = ["Run", "uniform_row"]
