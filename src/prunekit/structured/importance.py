"""Importance of each unit, scored over *all* the slices it owns (the whole coupled group).

A criterion is a function ``(graph, data) -> UnitScores`` with one score per unit of the graph
(higher = more important, ``NaN`` = this criterion has no opinion, never pruned). They are kept in
:data:`IMPORTANCE`, a plain dict, so recipes can name them and users add their own with one line.

- ``l1`` / ``l2``: magnitude of every parameter slice of the unit (filter, its BatchNorm
  channel, the next layer's input column...), as in Torch-Pruning's group magnitude.
- ``bn_scale``: ``|γ|`` of the unit's BatchNorm channels (network slimming, Liu et al. 2017);
  units without a BatchNorm get ``NaN``.
- ``taylor``: first-order Taylor, ``(Σ w·∂L/∂w)²`` over the unit's slices, averaged over a few
  batches (Molchanov et al. 2019).
- ``activation_mean`` / ``apoz``: mean ``|a|`` and ``1 − fraction of zeros`` of the unit's
  activations over a few batches (Hu et al. 2016's APoZ, negated so that higher is kept).
- ``random``: the control every paper needs.
- ``lsh``: redundancy by locality-sensitive hashing, with folding (:mod:`.lsh`).

>>> import torch
>>> from torch import nn
>>> from prunekit.structured.graph import build_graph
>>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
>>> with torch.no_grad():
...     _ = net[0].weight.copy_(torch.tensor([[1.0, 0], [0, 0], [3, 0]]))
>>> g = build_graph(net, torch.zeros(1, 2))
>>> IMPORTANCE["l1"](g, ScoringData()).scores.argmin().item()
1
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from prunekit.modes import eval_mode
from prunekit.structured.channels import Member
from prunekit.structured.graph import DependencyGraph


@dataclass(frozen=True)
class UnitScores:
    """One score per unit; ``folds[j] = (k, s)`` says unit ``j`` ≈ ``s`` × unit ``k``."""

    scores: Tensor
    folds: dict[int, tuple[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringData:
    """What data-driven criteria need: a few ``(x, y)`` batches and the task loss."""

    batches: Sequence[tuple[Tensor, Tensor]] = ()
    loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy
    seed: int = 0

    def require(self, criterion: str) -> None:
        if not self.batches:
            raise ValueError(
                f"criterion {criterion!r} needs data: pass a few (x, y) batches as data=[(x, y)]"
            )


def first_batches(x: Tensor, y: Tensor, *, count: int = 4,
                  size: int = 64) -> list[tuple[Tensor, Tensor]]:
    """The first ``count`` batches of ``size`` samples of ``(x, y)`` — what data-driven
    criteria and BatchNorm re-estimation use everywhere — and no empty one when there are
    fewer samples than that.

    >>> import torch
    >>> [len(xb) for xb, _ in first_batches(torch.zeros(150, 2), torch.zeros(150))]
    [64, 64, 22]
    """
    end = min(count * size, len(x))
    return [(x[i : i + size], y[i : i + size]) for i in range(0, end, size)]


Criterion = Callable[[DependencyGraph, ScoringData], UnitScores]


def _per_position(tensor: Tensor, dim: int, reduce: Callable[[Tensor], Tensor]) -> Tensor:
    """``reduce`` over every dim but ``dim``: one value per position along ``dim``."""
    moved = tensor.detach().movedim(dim, 0).reshape(tensor.shape[dim], -1)
    return reduce(moved)


def _other_dims(tensor: Tensor, dim: int) -> list[int]:
    return [d for d in range(tensor.dim()) if d != dim]


def scatter_members(
    graph: DependencyGraph,
    value: Callable[[Member, Tensor], Tensor | None],
    *,
    members: Sequence[Member] | None = None,
) -> tuple[Tensor, Tensor]:
    """Sum ``value(member, tensor)`` (one number per position) into units; also count them."""
    total = torch.zeros(graph.num_units, dtype=torch.float64)
    count = torch.zeros(graph.num_units, dtype=torch.float64)
    for member in graph.members if members is None else members:
        units = torch.from_numpy(graph.units_of(member.ids))
        tensor = getattr(graph.model.get_submodule(member.module), member.param)
        values = value(member, tensor)
        if values is None:
            continue
        keep = units >= 0
        total.index_add_(0, units[keep], values[keep].double())
        count.index_add_(0, units[keep], torch.ones(int(keep.sum()), dtype=torch.float64))
    return total, count


def _magnitude(power: int) -> Criterion:
    def criterion(graph: DependencyGraph, data: ScoringData) -> UnitScores:
        def value(member: Member, tensor: Tensor) -> Tensor | None:
            if not member.is_param:
                return None
            if tensor.dim() == 1:
                return tensor.detach().abs().pow(power)
            norms = torch.linalg.vector_norm(tensor.detach(), power, dim=_other_dims(tensor, member.dim))
            return norms.pow(power)

        total, _ = scatter_members(graph, value)
        return UnitScores(total.pow(1.0 / power))

    criterion.__doc__ = f"L{power} norm of all the unit's parameter slices."
    return criterion


def bn_scale(graph: DependencyGraph, data: ScoringData) -> UnitScores:
    """Sum of ``|γ|`` over the unit's BatchNorm channels; ``NaN`` where there is none."""
    members = [
        m for m in graph.members
        if m.param == "weight"
        and isinstance(graph.model.get_submodule(m.module), nn.modules.batchnorm._BatchNorm)
    ]
    total, count = scatter_members(graph, lambda m, t: t.detach().abs(), members=members)
    return UnitScores(torch.where(count > 0, total, torch.nan))


def _first_order(member: Member, tensor: Tensor) -> Tensor | None:
    if not member.is_param or tensor.grad is None:
        return None
    return _per_position(tensor * tensor.grad, member.dim, lambda t: t.sum(1))


def taylor(graph: DependencyGraph, data: ScoringData) -> UnitScores:
    """``(Σ w·∂L/∂w)²`` over the unit's slices, averaged over ``data.batches``."""
    data.require("taylor")
    model = graph.model
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    total = torch.zeros(graph.num_units, dtype=torch.float64)
    try:
        with eval_mode(model):
            for x, y in data.batches:
                for p in params:
                    p.grad = None
                with torch.enable_grad():
                    data.loss(model(x), y).backward()
                total += scatter_members(graph, _first_order)[0].pow(2)
    finally:
        for p, grad in zip(params, saved):
            p.grad = grad
    return UnitScores(total / len(data.batches))


class _ActivationRecorder(fx.Interpreter):
    """Runs the traced model and reduces the activations at the graph's points per unit."""

    def __init__(self, graph: DependencyGraph, statistic: Callable[[Tensor], Tensor]) -> None:
        super().__init__(graph.trace.module)
        self.dependencies, self.statistic = graph, statistic
        self.points = {p.node: p for p in graph.points}
        n = graph.num_units
        self.sums = {True: torch.zeros(n, dtype=torch.float64), False: torch.zeros(n, dtype=torch.float64)}
        self.counts = {True: torch.zeros(n, dtype=torch.float64), False: torch.zeros(n, dtype=torch.float64)}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        point = self.points.get(n.name)
        if point is not None and isinstance(result, Tensor):
            values = _per_position(result, point.channels.dim, self.statistic)
            units = torch.from_numpy(self.dependencies.units_of(point.channels.ids))
            keep = units >= 0
            self.sums[point.after_activation].index_add_(0, units[keep], values[keep].double())
            self.counts[point.after_activation].index_add_(
                0, units[keep], torch.ones(int(keep.sum()), dtype=torch.float64)
            )
        return result

    def scores(self) -> Tensor:
        """Mean over post-activation points where a unit has any, else over producer outputs."""
        after = self.sums[True] / self.counts[True].clamp(min=1)
        before = self.sums[False] / self.counts[False].clamp(min=1)
        return torch.where(self.counts[True] > 0, after, before)


def _activation(statistic: Callable[[Tensor], Tensor], name: str) -> Criterion:
    def criterion(graph: DependencyGraph, data: ScoringData) -> UnitScores:
        data.require(name)
        recorder = _ActivationRecorder(graph, statistic)
        with eval_mode(graph.model), torch.no_grad():
            for x, _ in data.batches:
                recorder.run(x)
        return UnitScores(recorder.scores() / len(data.batches))

    return criterion


def random_scores(graph: DependencyGraph, data: ScoringData) -> UnitScores:
    """Uniform random scores from ``data.seed``: the control."""
    generator = torch.Generator().manual_seed(data.seed)
    return UnitScores(torch.rand(graph.num_units, generator=generator, dtype=torch.float64))


def _lsh(graph: DependencyGraph, data: ScoringData) -> UnitScores:
    from prunekit.structured.lsh import redundancy

    return redundancy(graph, data)


IMPORTANCE: dict[str, Criterion] = {
    "l1": _magnitude(1),
    "l2": _magnitude(2),
    "bn_scale": bn_scale,
    "taylor": taylor,
    "activation_mean": _activation(lambda t: t.abs().mean(1), "activation_mean"),
    "apoz": _activation(lambda t: (t != 0).double().mean(1), "apoz"),
    "random": random_scores,
    "lsh": _lsh,
}
"""Criterion name → function; add your own with ``IMPORTANCE["mine"] = fn``."""


def score_units(graph: DependencyGraph, criterion: str, data: ScoringData) -> UnitScores:
    """Run the named criterion; an unknown name fails with the list of known ones."""
    if criterion not in IMPORTANCE:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(IMPORTANCE)}")
    return IMPORTANCE[criterion](graph, data)
