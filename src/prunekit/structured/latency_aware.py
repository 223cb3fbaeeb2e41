"""Latency-aware channel pruning: spend the pruning where it buys time, not only MACs.

Why: at the same MACs, two pruned models can differ widely in latency, because time per MAC
differs by layer and width (see :mod:`.latency_table`). The pruner removes units one step at a
time, the cheapest step first, with each step's saving read from a :class:`LatencyTable`
measured on the real input shapes. A step removes a group's next-least-important units down to
the next multiple of ``round_to`` channels (by default the CPU's vector width in floats, 16 with
AVX-512 and 8 otherwise, so no kept width leaves a vector partly empty: :func:`~.latency_table.group_rounding`,
:attr:`prunekit.machine.CpuInfo.vector_channels`). Scores are the pruner's usual criteria
(:mod:`.importance`), normalised by their group's mean so that groups compare. Two targets:

- ``max_latency`` (a fraction of the dense model's estimated latency), as in HALP (Shen et al.
  2022): the cheapest step is the one losing the least importance per millisecond saved, so
  the model keeps the most importance that fits the time budget;
- ``max_macs`` (a fraction or a count, as in :func:`~.prune.prune_channels`): the budget is
  fixed in MACs, so the cheapest step loses the least importance per unit of *time saved per
  MAC removed*: the MACs go where they are slowest, and the model is as fast as its MACs allow.

On weights whose scores are all alike (a randomly initialised model), nothing but time tells
units apart and the steps pile up on the slowest layers until ``max_layer_ratio`` stops them;
its default here, 0.75, keeps at least a quarter of every group.

The chosen units are cut out by the same code as ``prune_channels`` (twins folded, the model
checked on the example and restored on failure), so every exactness guarantee holds. The greedy
pass takes milliseconds; measuring the table is the opt-in cost.

>>> import torch
>>> from torch import nn
>>> from prunekit.structured.latency_table import measure_latency_table
>>> net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3),
...                     nn.ReLU(), nn.Flatten(), nn.Linear(32 * 12 * 12, 10))
>>> x = torch.randn(4, 3, 16, 16)
>>> table = measure_latency_table(net, x, configs=6, repeats=2)
>>> from prunekit.evaluate import count_macs
>>> dense_macs = count_macs(net, x)
>>> report = prune_for_latency(net, x, table, max_macs=0.5)  # or max_latency=0.7 (of dense)
>>> count_macs(net, x) <= 0.5 * dense_macs, net(x).shape
(True, torch.Size([4, 10]))
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
from torch import Tensor, nn

from prunekit.structured.channels import MacsTerm
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.importance import ScoringData
from prunekit.structured.latency_table import LatencyTable, group_rounding
from prunekit.structured.prune import (
    PruneReport,
    channels_per_unit,
    graph_and_scores,
    layer_macs_budget,
    macs_fraction,
    normalised,
    remove_planned,
    validate_limits,
)


@dataclass(frozen=True)
class LatencyPruneReport(PruneReport):
    """A :class:`PruneReport` plus the table's estimate of the pruned model's latency."""

    estimated_latency_fraction: float


class _Axis:
    """One layer's input or output channels: how many are left when groups lose units.

    ``removed_ids[g][r]`` is how many of the axis's positions belong to the first ``r`` units
    in group ``g``'s removal order (a unit can own several: H·W of them after a flatten).
    """

    def __init__(self, ids: np.ndarray, graph: DependencyGraph, rank: np.ndarray) -> None:
        self.full = len(ids)
        units = graph.unit_of[ids]
        self.removed_ids: dict[int, np.ndarray] = {}
        for g in np.unique(graph.unit_group[units[units >= 0]]):
            group = graph.groups[int(g)]
            positions = rank[units[(units >= 0) & (graph.unit_group[np.maximum(units, 0)] == g)]]
            counts = np.bincount(positions[positions >= 0], minlength=group.size)
            self.removed_ids[int(g)] = np.concatenate([[0], np.cumsum(counts)])

    def kept(self, removed: Sequence[int]) -> int:
        return self.full - int(sum(c[removed[g]] for g, c in self.removed_ids.items()))


@dataclass
class _Layer:
    term: MacsTerm
    out: _Axis
    inp: _Axis | None
    timed: bool


class _Search:
    """The greedy state: units removed per group, and the cost of every layer at that state."""

    def __init__(self, graph: DependencyGraph, scores: np.ndarray, table: LatencyTable,
                 max_layer_ratio: float, round_to: int | None, per_mac: bool) -> None:
        self.graph, self.table, self.per_mac = graph, table, per_mac
        rank = np.full(graph.num_units, -1, dtype=np.int64)
        self.orders, self.importance, self.caps, self.multiples = [], [], [], []
        for group in graph.groups:
            values = scores[group.units]
            valid = np.flatnonzero(~np.isnan(values))
            order = valid[np.argsort(values[valid], kind="stable")]
            rank[group.units[order]] = np.arange(len(order))
            self.orders.append(group.units[order])
            self.importance.append(np.concatenate([[0.0], np.cumsum(normalised(values[order]))]))
            self.caps.append(min(int(max_layer_ratio * group.size), group.size - 1, len(valid)))
            rounding = group_rounding(round_to, group.size)
            self.multiples.append(rounding // math.gcd(rounding, channels_per_unit(graph, group)))
        self.layers = [
            _Layer(t, _Axis(t.out_ids, graph, rank),
                   None if t.in_ids is None else _Axis(t.in_ids, graph, rank),
                   t.module in table.layers)
            for t in graph.macs
        ]
        self.touching: list[list[int]] = [[] for _ in graph.groups]
        for index, layer in enumerate(self.layers):
            for g in _groups_of(layer):
                self.touching[g].append(index)
        self.removed = [0] * len(graph.groups)
        self.costs = [self.layer_cost(layer, self.removed) for layer in self.layers]

    def layer_cost(self, layer: _Layer, removed: Sequence[int]) -> tuple[float, float]:
        """(milliseconds, MACs on the example) of ``layer`` when groups lost ``removed`` units."""
        out = layer.out.kept(removed)
        macs = layer.term.dense_macs * out / layer.out.full
        kept_in = 0
        if layer.inp is not None:
            kept_in = layer.inp.kept(removed)
            macs *= kept_in / layer.inp.full if layer.inp.full else 1.0
        ms = self.table.layer_ms(layer.term.module, kept_in, out) if layer.timed else 0.0
        return ms, macs

    def totals(self) -> tuple[float, float]:
        """Estimated (milliseconds, MACs on the example) of the whole model now."""
        return (self.table.rest_ms + sum(c[0] for c in self.costs),
                sum(c[1] for c in self.costs))

    def take(self, g: int) -> None:
        """Take group ``g``'s next step and update the cost of the layers it touches."""
        self.removed[g] += self.step(g)
        for i in self.touching[g]:
            self.costs[i] = self.layer_cost(self.layers[i], self.removed)

    def step(self, g: int) -> int:
        """How many units group ``g`` loses next: down to the next multiple of its rounding."""
        size, multiple = self.graph.groups[g].size, self.multiples[g]
        kept = size - self.removed[g]
        new_kept = kept - 1
        if multiple > 1 and size > multiple:
            new_kept = (kept - 1) // multiple * multiple
            if new_kept < multiple:
                return 0
        count = kept - new_kept
        return count if self.removed[g] + count <= self.caps[g] else 0

    def priority(self, g: int) -> tuple[int, float] | None:
        """How cheap ``g``'s next step is (lower goes first); ``None`` when it has none left.

        Importance lost per millisecond saved, or, with ``per_mac``, per millisecond saved per
        MAC removed. Steps that save no time come last, least important first.
        """
        count = self.step(g)
        if count == 0:
            return None
        after = list(self.removed)
        after[g] += count
        saved_ms = saved_macs = 0.0
        for i in self.touching[g]:
            (ms, macs), (ms_after, macs_after) = (self.costs[i],
                                                  self.layer_cost(self.layers[i], after))
            saved_ms, saved_macs = saved_ms + ms - ms_after, saved_macs + macs - macs_after
        lost = self.importance[g][after[g]] - self.importance[g][self.removed[g]]
        if saved_ms <= 1e-9:
            return 1, lost
        return 0, (lost * saved_macs if self.per_mac else lost) / saved_ms

    def removal(self) -> np.ndarray:
        remove = np.zeros(self.graph.num_units, dtype=bool)
        for order, count in zip(self.orders, self.removed):
            remove[order[:count]] = True
        return remove


def _greedy(search: _Search, done: Callable[[_Search], bool]) -> None:
    """Take the best step until ``done(search)``; raise if the caps stop it first."""
    heap, version = [], [0] * len(search.removed)
    for g in range(len(search.removed)):
        key = search.priority(g)
        if key is not None:
            heapq.heappush(heap, (key, 0, g))
    while not done(search):
        if not heap:
            ms, macs = search.totals()
            raise ValueError(
                "the target cannot be met within max_layer_ratio: the most pruning allowed "
                f"leaves an estimated {ms:.1f} ms and {macs:,.0f} MACs on the example; raise "
                "max_layer_ratio or ask for less"
            )
        _, seen, g = heapq.heappop(heap)
        if seen != version[g]:
            continue
        search.take(g)
        neighbours = {n for i in search.touching[g] for n in _groups_of(search.layers[i])}
        for n in neighbours | {g}:
            version[n] += 1
            key = search.priority(n)
            if key is not None:
                heapq.heappush(heap, (key, version[n], n))


def _groups_of(layer: _Layer) -> set[int]:
    return {*layer.out.removed_ids, *(layer.inp.removed_ids if layer.inp else ())}


def prune_for_latency(
    model: nn.Module,
    example_input: Tensor | tuple[Tensor, ...],
    table: LatencyTable,
    *,
    max_latency: float | None = None,
    max_macs: float | None = None,
    criterion: str = "l2",
    data: ScoringData | Sequence[tuple[Tensor, Tensor]] | None = None,
    ignore: Iterable[str] = (),
    max_layer_ratio: float = 0.75,
    round_to: int | None = None,
) -> LatencyPruneReport:
    """Remove the units of ``model`` whose removal buys time most cheaply, in place.

    Exactly one of ``max_latency`` and ``max_macs`` is given (see the module docstring);
    ``table`` comes from :func:`~.latency_table.measure_latency_table` on this dense model and
    input shape, with the same ``ignore``. ``criterion``, ``data`` and ``ignore`` mean what they
    mean for :func:`~.prune.prune_channels`; ``max_layer_ratio`` caps what any group loses;
    ``round_to=None`` rounds each group as :func:`~.latency_table.group_rounding` says.
    """
    start = time.perf_counter()
    if (max_latency is None) == (max_macs is None):
        raise ValueError("give exactly one target: max_latency=0.5 (fraction of the dense "
                         "latency) or max_macs=0.5 (fraction) / int")
    if max_latency is not None and not 0.0 < max_latency <= 1.0:
        raise ValueError(f"max_latency is a fraction of the dense latency in (0, 1], got "
                         f"{max_latency}")
    if max_macs is not None:
        macs_fraction(max_macs, 1)
    validate_limits(max_layer_ratio, 1 if round_to is None else round_to)
    inputs, graph, scores = graph_and_scores(model, example_input, criterion, data, ignore)
    table.check(graph, inputs[0])
    search = _Search(graph, scores.scores.double().numpy(), table, max_layer_ratio, round_to,
                     per_mac=max_macs is not None)
    dense_ms = search.totals()[0]
    if max_latency is not None:
        _greedy(search, lambda s: s.totals()[0] <= max_latency * dense_ms)
    else:
        from prunekit.evaluate import count_macs

        measured = count_macs(model, inputs)
        budget = layer_macs_budget(graph, macs_fraction(max_macs, measured), measured)
        _greedy(search, lambda s: s.totals()[1] <= budget)
    remove = search.removal()
    report = remove_planned(graph, scores, remove, inputs,
                            float(remove.sum()) / max(1, len(remove)), start)
    fraction = search.totals()[0] / dense_ms if dense_ms else 1.0
    return LatencyPruneReport(*(getattr(report, f.name) for f in fields(PruneReport)), fraction)


def prune_aimed(
    model: nn.Module,
    example_input: Tensor,
    *,
    ratio: float | None = None,
    max_macs: float | None = None,
    max_latency: float | None = None,
    latency_aware: bool = True,
    table: LatencyTable | None = None,
    threads: int | None = None,
    criterion: str = "l2",
    data: ScoringData | Sequence[tuple[Tensor, Tensor]] | None = None,
    ignore: Iterable[str] = (),
    scope: str = "layer",
    max_layer_ratio: float = 0.9,
    round_to: int | None = None,
) -> tuple[PruneReport, LatencyTable | None]:
    """Prune to one target — ``ratio``, ``max_macs`` or ``max_latency`` — with the channel
    counts chosen from this machine's measured latency table (unless ``latency_aware`` is off).

    Why: the same MACs cost different time in different layers and widths, so the counts a
    uniform ratio gives are rarely the fastest. With ``latency_aware``, a ``ratio`` stands for
    the MACs the uniform ratio would leave, and :func:`prune_for_latency` spends exactly those
    MACs where the table says they are slowest; ``max_latency`` always needs the table. The
    table (measured on ``example_input``, a full batch, at ``threads``, unless given) is
    returned for the report. Without ``latency_aware``, this is :func:`~.prune.prune_channels`.
    ``round_to`` defaults, when the table chooses, to the CPU's vector width in floats per group
    (:func:`~.latency_table.group_rounding`), else to 1.

    >>> import torch
    >>> net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU())
    >>> report, table = prune_aimed(net, torch.randn(2, 3, 12, 12), ratio=0.5)
    >>> net[0].out_channels < 32 and net[0].out_channels % 8 == 0, table is not None
    (True, True)
    """
    from prunekit.evaluate import count_macs
    from prunekit.structured.latency_table import measure_latency_table
    from prunekit.structured.prune import (
        estimate_macs,
        plan_for_target,
        prune_channels,
        validate_target,
    )

    targets = [t for t in (ratio, max_macs, max_latency) if t is not None]
    if len(targets) != 1:
        raise ValueError("give exactly one target: a ratio, a MACs fraction or count, or a "
                         "latency fraction")
    aimed = max_latency is not None or latency_aware
    if not aimed and round_to is None:
        round_to = 1
    if not aimed:
        return prune_channels(model, example_input, ratio=ratio, max_macs=max_macs, scope=scope,
                              max_layer_ratio=max_layer_ratio, criterion=criterion, data=data,
                              ignore=ignore, round_to=round_to), None  # type: ignore[arg-type]
    if ratio is not None:
        # the uniform plan a ratio stands for keeps multiples of 8 whatever the CPU, so that a
        # ratio means the same MACs everywhere
        uniform_round_to = 8 if round_to is None else round_to
        validate_target(ratio, None, scope, max_layer_ratio, uniform_round_to)
        inputs, graph, scores = graph_and_scores(model, example_input, criterion, data, ignore)
        _, remove = plan_for_target(graph, scores.scores, inputs, ratio=ratio, max_macs=None,
                                    scope=scope, max_layer_ratio=max_layer_ratio,  # type: ignore[arg-type]
                                    round_to=uniform_round_to)
        measured = count_macs(model, inputs)
        fixed = measured - estimate_macs(graph, np.zeros_like(remove))
        max_macs = min(1.0, (estimate_macs(graph, remove) + fixed) / measured)
    if table is None:
        table = measure_latency_table(model, example_input, threads=threads, round_to=round_to,
                                      ignore=list(ignore))
    report = prune_for_latency(model, example_input, table, max_latency=max_latency,
                               max_macs=max_macs, criterion=criterion, data=data, ignore=ignore,
                               max_layer_ratio=max_layer_ratio, round_to=round_to)
    return report, table
