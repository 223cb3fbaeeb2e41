"""See what structured pruning would do, and why, before anything is cut.

``explain(model, example_input)`` builds the dependency graph and scores every unit, exactly as
:func:`~.prune.prune_channels` does, and returns every group (its layers, its units, how many
channels each owns, their scores and, given a target, how many would go), every layer with
units that are kept whatever the target (and why: the op or module responsible), and the
submodules kept whole. The model is not changed. ``prunekit explain`` prints the same.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
>>> view = explain(net, torch.zeros(1, 3, 8, 8), ratio=0.5)
>>> [(g.modules, g.units, g.channels_per_unit, g.removed) for g in view.groups]
[(('0',), 8, 1, 4)]
>>> view.pinned[0].module, view.pinned[0].reasons[0][:29]
('3', "they reach the model's output")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from prunekit.structured.diagnosis import kept_layer_warnings
from prunekit.structured.graph import DependencyGraph, Pinned
from prunekit.structured.importance import ScoringData
from prunekit.structured.prune import (
    Scope,
    channels_per_unit,
    estimate_macs,
    graph_and_scores,
    plan_for_target,
)


@dataclass(frozen=True)
class GroupView:
    """One group: the layers whose units it holds, and each unit's score (``NaN``: unscored)."""

    index: int
    modules: tuple[str, ...]
    units: int
    channels_per_unit: int
    scores: np.ndarray
    removed: int


@dataclass(frozen=True)
class Explanation:
    """Everything :func:`explain` found; ``remove`` is the planned removal (all False without a
    target) over ``graph``'s units, and ``ratio`` the ratio used (``None`` without a target)."""

    groups: list[GroupView]
    pinned: list[Pinned]
    opaque: dict[str, str]
    warnings: list[str]
    dense_macs: float
    planned_macs: float
    ratio: float | None
    graph: DependencyGraph
    remove: np.ndarray


def explain(
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
) -> Explanation:
    """The groups, scores, pins and (with ``ratio`` or ``max_macs``) the plan ``prune_channels``
    would follow with the same arguments; the model is left as it is. ``*_macs`` are for the
    example input, over the layers and products a rule describes."""
    inputs, graph, scores = graph_and_scores(model, example_input, criterion, data, ignore)
    values = scores.scores.double().numpy()
    used, remove = None, np.zeros(graph.num_units, dtype=bool)
    if ratio is not None or max_macs is not None:
        used, remove = plan_for_target(graph, scores.scores, inputs, ratio=ratio,
                                       max_macs=max_macs, scope=scope,
                                       max_layer_ratio=max_layer_ratio, round_to=round_to)
    groups = [GroupView(g.index, g.modules, g.size, channels_per_unit(graph, g), values[g.units],
                        int(remove[g.units].sum())) for g in graph.groups]
    return Explanation(groups, graph.pinned, dict(graph.trace.opaque), kept_layer_warnings(graph),
                       estimate_macs(graph, np.zeros_like(remove)), estimate_macs(graph, remove),
                       used, graph, remove)
