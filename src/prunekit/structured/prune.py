"""The pruner: decide how many units each group loses, then cut them out.

``prune_channels`` is the one call most users need::

    report = prune_channels(model, example_input, ratio=0.5, criterion="l2")

Targets:

- ``ratio`` with ``scope="layer"``: every group loses that fraction of its units;
- ``ratio`` with ``scope="global"``: that fraction of all units, lowest scores first, scores
  normalised by their group's mean so layers of different scale compare, and no group losing
  more than ``max_layer_ratio``;
- ``max_macs``: the smallest ratio (of the chosen scope) whose model has at most that many
  multiply-accumulates (an int, counted on ``example_input`` as
  :func:`prunekit.evaluate.count_macs` does) or that fraction of the dense model's (a float).

``round_to=8`` keeps a multiple of 8 channels per group, what blocked oneDNN/MKL kernels run
fastest. Units that reach the model's output are never removed, so the classifier keeps its
classes; ``ignore`` keeps the output channels of the named modules.

The report says what was kept and why (``pinned``), and ``warnings`` (also logged) name every
layer kept whole for a reason you can change, a submodule fx could not trace, and a prune that
removed nothing. A ``max_macs`` target out of reach fails naming what cannot shrink.
:func:`~.explain.explain` shows the same before anything is cut.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
...                     nn.Flatten(), nn.Linear(16 * 6 * 6, 10))
>>> report = prune_channels(net, torch.zeros(1, 3, 8, 8), ratio=0.5)
>>> net[0].out_channels, net[4].in_features, report.removed
(8, 288, 8)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import Tensor, nn

from prunekit.structured.diagnosis import kept_layer_warnings, nothing_removed, unreachable_macs
from prunekit.structured.graph import DependencyGraph, Group, Pinned, build_graph
from prunekit.structured.importance import ScoringData, UnitScores, score_units
from prunekit.structured.lsh import apply_folds
from prunekit.structured.rewrite import remove_units
from prunekit.structured.trace import single_thread

log = logging.getLogger(__name__)

Scope = Literal["layer", "global"]


@dataclass(frozen=True)
class GroupReport:
    """What happened to one group."""

    modules: tuple[str, ...]
    units: int
    removed: int


@dataclass(frozen=True)
class PruneReport:
    """What ``prune_channels`` did; ``ratio`` is the one used (found by search for ``max_macs``).

    ``pinned`` lists every layer some of whose units were kept whatever the target, with why;
    ``warnings`` are the lines that were also logged (see the module docstring).
    """

    ratio: float
    units: int
    removed: int
    folded: int
    estimated_macs_fraction: float
    seconds: float
    groups: list[GroupReport]
    pinned: list[Pinned]
    warnings: list[str]


def channels_per_unit(graph: DependencyGraph, group: Group) -> int:
    """How many positions of a layer's output one unit of ``group`` owns (H·W after flatten)."""
    first = group.units[0]
    for member in graph.members:
        if member.role == "out":
            count = int((graph.units_of(member.ids) == first).sum())
            if count:
                return count
    return 1


def _removal_count(n: int, wanted: int, cap: int, multiple: int) -> int:
    """``wanted`` adjusted so that the kept count is a multiple of ``multiple``, within ``cap``."""
    if multiple > 1 and n > multiple:
        kept = max(multiple, multiple * math.floor((n - wanted) / multiple + 0.5))
        wanted = n - min(kept, n)
    return max(0, min(wanted, cap))


def plan_removal(
    graph: DependencyGraph,
    scores: Tensor,
    ratio: float,
    *,
    scope: Scope = "layer",
    max_layer_ratio: float = 0.9,
    round_to: int = 1,
) -> np.ndarray:
    """Boolean array over units: which to remove for ``ratio`` (see the module docstring)."""
    values = scores.double().numpy()
    remove = np.zeros(graph.num_units, dtype=bool)
    caps, orders, wanted = [], [], []
    for group in graph.groups:
        s = values[group.units]
        valid = np.flatnonzero(~np.isnan(s))
        orders.append(valid[np.argsort(s[valid], kind="stable")])
        caps.append(min(int(max_layer_ratio * group.size), group.size - 1, len(valid)))
        wanted.append(group.size - int((1.0 - ratio) * group.size + 1e-9))  # keep ⌊(1-r)·n⌋
    if scope == "global":
        wanted = _global_counts(graph, values, orders, caps, ratio)
    for group, order, cap, want in zip(graph.groups, orders, caps, wanted):
        multiple = round_to // math.gcd(round_to, channels_per_unit(graph, group))
        count = _removal_count(group.size, want, cap, multiple)
        remove[group.units[order[:count]]] = True
    return remove


def _global_counts(
    graph: DependencyGraph, values: np.ndarray, orders: list[np.ndarray], caps: list[int],
    ratio: float,
) -> list[int]:
    """How many units each group loses when the lowest normalised scores go first."""
    entries = []
    for group, order in zip(graph.groups, orders):
        entries += [(float(v), group.index) for v in normalised(values[group.units[order]])]
    entries.sort()
    budget = int(ratio * sum(len(o) for o in orders) + 1e-9)
    counts = [0] * len(graph.groups)
    for _, g in entries:
        if budget == 0:
            break
        if counts[g] < caps[g]:
            counts[g] += 1
            budget -= 1
    return counts


def normalised(scores: np.ndarray) -> np.ndarray:
    """A group's scores divided by their mean, so that groups of different scale compare."""
    mean = float(scores.mean()) if len(scores) else 0.0
    return scores / mean if mean > 0 else scores


def term_macs(graph: DependencyGraph, remove: np.ndarray) -> np.ndarray:
    """MACs of each of ``graph.macs``'s terms after removing ``remove`` (the traced example's
    shapes): each term shrinks by the kept fraction of every axis it scales with."""
    keep = np.append(~remove, True)
    left = np.zeros(len(graph.macs))
    for i, term in enumerate(graph.macs):
        fraction = keep[graph.unit_of[term.out_ids]].mean()
        if term.in_ids is not None and len(term.in_ids):
            fraction *= keep[graph.unit_of[term.in_ids]].mean()
        left[i] = term.dense_macs * fraction
    return left


def estimate_macs(graph: DependencyGraph, remove: np.ndarray) -> float:
    """MACs of every layer and product a rule describes (Conv, Linear, RNN, attention...) after
    removing ``remove``, on the traced example's shapes."""
    return float(term_macs(graph, remove).sum())


def layer_macs_budget(graph: DependencyGraph, fraction: float, measured: int) -> float:
    """MACs (as :func:`estimate_macs` counts them, on the example) that leave at most
    ``fraction`` of the ``measured`` total; whatever else the counter measured (layers no rule
    describes) is taken as fixed."""
    dense = estimate_macs(graph, np.zeros(graph.num_units, dtype=bool))
    fixed = max(0.0, measured - dense)
    return fraction * measured - fixed


def _ratio_for_macs(
    graph: DependencyGraph, scores: Tensor, fraction: float, measured: int,
    scope: Scope, max_layer_ratio: float, round_to: int,
) -> float:
    """Bisect the ratio whose estimated MACs fall under ``fraction`` of the dense ``measured``.

    The estimate covers every layer and product a rule describes; whatever else the counter
    measured is taken as fixed, which can only over-estimate what is left. A target that even
    removing every unit cannot reach fails naming what cannot shrink; one that the caps stop
    says to raise ``max_layer_ratio``.
    """
    target = layer_macs_budget(graph, fraction, measured)
    fixed = fraction * measured - target

    def macs(ratio: float) -> float:
        plan = plan_removal(graph, scores, ratio, scope=scope, max_layer_ratio=max_layer_ratio,
                            round_to=round_to)
        return estimate_macs(graph, plan)

    low, high = 0.0, 1.0
    if macs(high) > target:
        left = term_macs(graph, np.ones(graph.num_units, dtype=bool))
        if left.sum() > target:
            raise ValueError(unreachable_macs(graph, left, max(0.0, fixed), fraction * measured))
        raise ValueError(
            f"max_macs: even the largest pruning allowed leaves {macs(high) + fixed:,.0f} MACs, "
            f"above the target {fraction * measured:,.0f}; raise max_layer_ratio (now "
            f"{max_layer_ratio}) or ask for fewer savings"
        )
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (low, middle) if macs(middle) <= target else (middle, high)
    return high


def prune_channels(
    model: nn.Module,
    example_input: Tensor | tuple[Tensor, ...],
    *,
    ratio: float | None = None,
    max_macs: float | None = None,
    scope: Scope = "layer",
    max_layer_ratio: float = 0.9,
    criterion: str = "l2",
    data: ScoringData | Sequence[tuple[Tensor, Tensor]] | None = None,
    ignore: Iterable[str] = (),
    round_to: int = 1,
) -> PruneReport:
    """Remove the least important channels/neurons/heads/hidden units of ``model`` in place.

    Exactly one of ``ratio`` and ``max_macs`` is given. ``data`` (a few ``(x, y)`` batches)
    feeds the data-driven criteria (``taylor``, ``activation_mean``, ``apoz``).
    """
    start = time.perf_counter()
    validate_target(ratio, max_macs, scope, max_layer_ratio, round_to)
    inputs, graph, scores = graph_and_scores(model, example_input, criterion, data, ignore)
    ratio, remove = plan_for_target(graph, scores.scores, inputs, ratio=ratio, max_macs=max_macs,
                                    scope=scope, max_layer_ratio=max_layer_ratio,
                                    round_to=round_to)
    return remove_planned(graph, scores, remove, inputs, ratio, start)


def validate_target(
    ratio: float | None, max_macs: float | None, scope: str, max_layer_ratio: float,
    round_to: int,
) -> None:
    """Every check of a ``prune_channels`` target, raised before any work."""
    if (ratio is None) == (max_macs is None):
        raise ValueError("give exactly one target: ratio=0.5 or max_macs=0.5 (fraction) / int")
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    validate_limits(max_layer_ratio, round_to)
    if max_macs is not None:
        macs_fraction(max_macs, 1)


def plan_for_target(
    graph: DependencyGraph,
    scores: Tensor,
    inputs: tuple[Tensor, ...],
    *,
    ratio: float | None,
    max_macs: float | None,
    scope: Scope,
    max_layer_ratio: float,
    round_to: int,
) -> tuple[float, np.ndarray]:
    """The ratio (given, or found for ``max_macs`` on MACs counted over ``inputs``) and the
    boolean array of units it removes."""
    validate_target(ratio, max_macs, scope, max_layer_ratio, round_to)
    if max_macs is not None:
        from prunekit.evaluate import count_macs

        measured = count_macs(graph.model, inputs)
        ratio = _ratio_for_macs(graph, scores, macs_fraction(max_macs, measured), measured,
                                scope, max_layer_ratio, round_to)
    assert ratio is not None
    remove = plan_removal(graph, scores, ratio, scope=scope, max_layer_ratio=max_layer_ratio,
                          round_to=round_to)
    return ratio, remove


def validate_limits(max_layer_ratio: float, round_to: int) -> None:
    """The checks every pruner shares, raised before any work."""
    if not 0.0 < max_layer_ratio < 1.0:
        raise ValueError(f"max_layer_ratio must be in (0, 1), got {max_layer_ratio}")
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}")


def graph_and_scores(
    model: nn.Module,
    example_input: Tensor | tuple[Tensor, ...],
    criterion: str,
    data: ScoringData | Sequence[tuple[Tensor, Tensor]] | None,
    ignore: Iterable[str],
) -> tuple[tuple[Tensor, ...], DependencyGraph, UnitScores]:
    """The inputs as a tuple, the dependency graph and every unit's score (on one thread)."""
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    if data is not None and not isinstance(data, (ScoringData, Sequence)):
        raise TypeError(f"data is the scoring batches (ScoringData or a list of (x, y)), not a "
                        f"{type(data).__name__}; for a Dataset pass its batches")
    scoring = data if isinstance(data, ScoringData) else ScoringData(tuple(data or ()))
    with single_thread():
        graph = build_graph(model, inputs, ignore=ignore)
        scores = score_units(graph, criterion, scoring)
    return inputs, graph, scores


def remove_planned(
    graph: DependencyGraph, scores: UnitScores, remove: np.ndarray,
    inputs: tuple[Tensor, ...], ratio: float, start: float,
) -> PruneReport:
    """Fold twins, cut the ``remove`` units out of the model (checked, rolled back on failure)
    and report; ``start`` is when the pruning call began (``time.perf_counter()``)."""
    dense = estimate_macs(graph, np.zeros_like(remove))
    fraction_left = estimate_macs(graph, remove) / dense if dense else 1.0
    with single_thread():
        folded = apply_folds(graph, scores.folds, remove)
        remove_units(graph, remove, inputs)
    groups = [GroupReport(g.modules, g.size, int(remove[g.units].sum())) for g in graph.groups]
    warnings = kept_layer_warnings(graph)
    if not remove.any() and ratio > 0:
        warnings.insert(0, nothing_removed(graph))
    for line in warnings:
        log.warning("%s", line)
    return PruneReport(ratio, graph.num_units, int(remove.sum()), folded, fraction_left,
                       time.perf_counter() - start, groups, graph.pinned, warnings)


def macs_fraction(max_macs: float, measured: int) -> float:
    """``max_macs`` as a fraction of ``measured`` (a float is one already), validated."""
    if isinstance(max_macs, bool) or max_macs <= 0:
        raise ValueError(f"max_macs must be a positive int or a fraction in (0, 1], got {max_macs}")
    if isinstance(max_macs, float):
        if max_macs > 1.0:
            raise ValueError(f"max_macs as a float is a fraction in (0, 1], got {max_macs}")
        return max_macs
    return max_macs / measured
