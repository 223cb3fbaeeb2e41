"""Redundant units found by locality-sensitive hashing, removed by folding them into a twin.

Two units whose weight vectors point the same way compute (almost) the same feature, up to a
scale: ``h_j ≈ s · h_k``. Magnitude criteria miss this (both may be large). SimHash finds such
pairs without comparing all of them: each unit's vector is hashed by the signs of its
projections on random hyperplanes; vectors at a small angle collide in most hash tables. Pairs
that collide in at least ``min_tables`` tables and whose cosine is at least ``threshold`` are
near-duplicates: one is kept, the other gets score 0 (removed first).

Removing ``j`` then barely changes the model if its outgoing weights are *folded* into ``k``:
``W_next[:, k] += s · W_next[:, j]``. That is exact when ``h_j = s·h_k`` with ``s > 0`` and
everything between the producer and the next layer is positively homogeneous (ReLU, max/avg
pooling, flatten, dropout). A BatchNorm right after the producer is folded into the unit's
effective vector (``a·w``, ``a·(b − μ) + β`` with ``a = γ/σ``) before hashing. Groups for which
this does not hold (residual sums, depthwise chains, GELU, LayerNorm) still have their
duplicates scored 0, but nothing is folded.

>>> import torch
>>> from torch import nn
>>> from prunekit.structured.graph import build_graph
>>> from prunekit.structured.importance import ScoringData
>>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
>>> with torch.no_grad():
...     net[0].weight[3] = 2 * net[0].weight[0]; net[0].bias[3] = 2 * net[0].bias[0]
>>> r = redundancy(build_graph(net, torch.zeros(1, 3)), ScoringData())
>>> {j: (k, round(s, 6)) for j, (k, s) in r.folds.items()}  # unit 0 = 0.5 × unit 3
{0: (3, 0.5)}
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.structured.channels import Member
from prunekit.structured.graph import DependencyGraph, Group
from prunekit.structured.importance import IMPORTANCE, ScoringData, UnitScores

_LINEAR_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _members_by_group(graph: DependencyGraph) -> dict[int, list[Member]]:
    by_group: dict[int, list[Member]] = defaultdict(list)
    for member in graph.members:
        units = graph.units_of(member.ids)
        for g in np.unique(graph.unit_group[units[units >= 0]]):
            by_group[int(g)].append(member)
    return by_group


def _rows(graph: DependencyGraph, member: Member, local: np.ndarray, n: int) -> Tensor:
    """The member's slice of each unit in the group (first position), one row per unit."""
    tensor = getattr(graph.model.get_submodule(member.module), member.param).detach()
    global_units = graph.units_of(member.ids)
    units = np.where(global_units >= 0, local[global_units], -1)
    rows = torch.zeros(n, tensor.numel() // tensor.shape[member.dim], dtype=torch.float64)
    present, first = np.unique(units, return_index=True)
    chosen = present >= 0
    flat = tensor.movedim(member.dim, 0).reshape(tensor.shape[member.dim], -1).double()
    rows[torch.from_numpy(present[chosen])] = flat[torch.from_numpy(first[chosen])]
    return rows


def _foldable(graph: DependencyGraph, group: Group, members: list[Member]) -> bool:
    """One plain Conv/Linear producer, plain consumers, only positively homogeneous ops."""
    if not graph.foldable[group.units].all():
        return False
    producers = {m.module for m in members if m.role == "out"}
    consumers = {m.module for m in members if m.role == "in"}
    layers = [graph.model.get_submodule(name) for name in producers | consumers]
    plain = all(isinstance(m, _LINEAR_LAYERS) and getattr(m, "groups", 1) == 1 for m in layers)
    norms = {m.module for m in members if m.role == "norm"}
    batch_norm_only = all(
        isinstance(graph.model.get_submodule(n), nn.modules.batchnorm._BatchNorm) for n in norms
    )
    coupled = any(m.role == "coupled" for m in members)
    return len(producers) == 1 and plain and len(norms) <= 1 and batch_norm_only and not coupled


def _vectors(graph: DependencyGraph, group: Group, members: list[Member], fold: bool) -> Tensor:
    """Unit vectors: the producer's rows (and bias), with a following BatchNorm folded in."""
    local = np.full(graph.num_units, -1, dtype=np.int64)
    local[group.units] = np.arange(group.size)
    n = group.size
    if not fold:
        outs = [m for m in members if m.role in ("out", "coupled") and m.is_param]
        return torch.cat([_rows(graph, m, local, n) for m in outs], dim=1)
    weight = next(m for m in members if m.role == "out" and m.param == "weight")
    rows = _rows(graph, weight, local, n)
    bias_member = next((m for m in members if m.role == "out" and m.param == "bias"), None)
    bias = _rows(graph, bias_member, local, n)[:, 0] if bias_member else torch.zeros(n).double()
    norm = next((m for m in members if m.role == "norm"), None)
    if norm is not None:
        bn = graph.model.get_submodule(norm.module)
        stats = {m.param: _rows(graph, m, local, n)[:, 0] for m in members if m.role == "norm"}
        scale = stats["weight"] / torch.sqrt(stats["running_var"] + bn.eps)
        rows = rows * scale[:, None]
        bias = scale * (bias - stats["running_mean"]) + stats["bias"]
    return torch.cat([rows, bias[:, None]], dim=1)


def _near_duplicates(
    vectors: Tensor, tables: int, bits: int, min_tables: int, threshold: float, seed: int
) -> dict[int, tuple[int, float]]:
    """Greedy: strongest units first; a unit close to a kept one is folded into it."""
    d = vectors.shape[1]
    norms = vectors.norm(dim=1)
    unit = vectors / norms.clamp(min=1e-12)[:, None]
    generator = torch.Generator().manual_seed(seed)
    collisions: dict[tuple[int, int], int] = defaultdict(int)
    weights = 2 ** torch.arange(bits, dtype=torch.int64)
    for _ in range(tables):
        planes = torch.randn(d, bits, generator=generator, dtype=torch.float64)
        keys = (((unit @ planes) > 0).long() * weights).sum(1).tolist()
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            buckets[key].append(i)
        for members in buckets.values():
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    collisions[(members[a], members[b])] += 1
    partners: dict[int, list[int]] = defaultdict(list)
    for (a, b), count in collisions.items():
        if count >= min_tables:
            partners[a].append(b)
            partners[b].append(a)
    kept: set[int] = set()
    folds: dict[int, tuple[int, float]] = {}
    for j in torch.argsort(norms, descending=True).tolist():
        candidates = [k for k in partners.get(j, ()) if k in kept]
        if candidates and norms[j] > 0:
            cosines = unit[candidates] @ unit[j]
            best = int(torch.argmax(cosines))
            if float(cosines[best]) >= threshold:
                k = candidates[best]
                folds[j] = (k, float(vectors[j] @ vectors[k] / (norms[k] ** 2)))
                continue
        kept.add(j)
    return folds


def redundancy(
    graph: DependencyGraph,
    data: ScoringData,
    *,
    tables: int = 8,
    bits: int = 8,
    min_tables: int = 2,
    threshold: float = 0.97,
) -> UnitScores:
    """L2 scores with near-duplicate units set to 0, and the folds that make removing them safe."""
    scores = IMPORTANCE["l2"](graph, data).scores.clone()
    folds: dict[int, tuple[int, float]] = {}
    by_group = _members_by_group(graph)
    for group in graph.groups:
        members = by_group.get(group.index, [])
        if group.size < 2 or not any(m.role in ("out", "coupled") for m in members):
            continue
        fold = _foldable(graph, group, members)
        vectors = _vectors(graph, group, members, fold)
        local = _near_duplicates(vectors, tables, bits, min_tables, threshold, data.seed)
        for j, (k, scale) in local.items():
            scores[int(group.units[j])] = 0.0
            if fold:
                folds[int(group.units[j])] = (int(group.units[k]), scale)
    return UnitScores(scores, folds)


@torch.no_grad()
def apply_folds(
    graph: DependencyGraph, folds: dict[int, tuple[int, float]], remove: np.ndarray
) -> int:
    """Add each removed unit's outgoing weights, scaled, to its kept twin; return how many."""
    pairs = [(j, k, s) for j, (k, s) in folds.items() if remove[j] and not remove[k]]
    if not pairs:
        return 0
    for member in graph.members:
        if member.role != "in":
            continue
        units = graph.units_of(member.ids)
        sources, targets, scales = [], [], []
        for j, k, s in pairs:
            pj, pk = np.flatnonzero(units == j), np.flatnonzero(units == k)
            if len(pj) and len(pj) == len(pk):
                sources.append(pj)
                targets.append(pk)
                scales.append(np.full(len(pj), s))
        if not sources:
            continue
        tensor = getattr(graph.model.get_submodule(member.module), member.param)
        source = torch.from_numpy(np.concatenate(sources))
        shape = [1] * tensor.dim()
        shape[member.dim] = len(source)
        scale = torch.from_numpy(np.concatenate(scales)).to(tensor.dtype).reshape(shape)
        moved = tensor.index_select(member.dim, source) * scale
        tensor.index_add_(member.dim, torch.from_numpy(np.concatenate(targets)), moved)
    return len(pairs)
