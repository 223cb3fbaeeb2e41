"""Unstructured pruning: zero individual weights, by ratio or by magnitude threshold.

- **by ratio**, layer-wise (every layer reaches the target) or global (one ranking across all
  layers, so layers with many unimportant weights give up more, as in Han et al. 2015). Global
  pruning keeps a per-layer floor (``min_density``) so no layer is ever emptied. Counts are exact:
  ``round(sparsity × weights)`` entries are pruned, ties broken by position.
- **by threshold**: ``|w| < θ → 0``.

Pruning only ever grows: entries already masked rank below everything else, so a schedule that
raises sparsity step by step keeps earlier decisions. Masks are stored with
:func:`prunekit.masks.set_mask`; call :func:`prunekit.masks.strip` when done.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Literal

import torch
from torch import Tensor, nn

from prunekit.criteria import CRITERIA
from prunekit.masks import get_mask, set_mask

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

Scope = Literal["layer", "global"]


def prunable_layers(
    model: nn.Module, ignore: Collection[str] = ()
) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs whose ``weight`` pruning targets: Linear and Conv layers.

    >>> from prunekit.models import build_model
    >>> [name for name, _ in prunable_layers(build_model("lenet300"))]
    ['net.1', 'net.3', 'net.5']
    """
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES) and name not in ignore
    ]
    unknown = set(ignore) - {name for name, _ in model.named_modules()}
    if unknown:
        raise ValueError(f"ignore names {sorted(unknown)} are not modules of the model")
    return layers


def _scores(module: nn.Module, criterion: str) -> Tensor:
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    scores = CRITERIA[criterion](module.weight).float()
    mask = get_mask(module)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    return scores


def _lowest(scores: Tensor, k: int) -> Tensor:
    """Boolean tensor marking exactly the ``k`` lowest scores (ties broken by position)."""
    flat = scores.flatten()
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    if k <= 0:
        return chosen.view_as(scores)
    threshold = flat.kthvalue(k).values
    below = flat < threshold
    chosen |= below
    ties = torch.nonzero(flat == threshold).flatten()[: k - int(below.sum())]
    chosen[ties] = True
    return chosen.view_as(scores)


def _install(layers: list[tuple[str, nn.Module]], pruned: list[Tensor]) -> dict[str, float]:
    achieved = {}
    for (name, module), drop in zip(layers, pruned):
        mask = get_mask(module)
        if mask is not None:
            drop = drop | ~mask
        set_mask(module, "weight", ~drop)
        achieved[name] = float(drop.float().mean())
    return achieved


@torch.no_grad()
def prune_by_ratio(
    model: nn.Module,
    sparsity: float,
    *,
    scope: Scope = "global",
    criterion: str = "magnitude",
    min_density: float = 0.01,
    ignore: Collection[str] = (),
) -> dict[str, float]:
    """Mask the least important ``sparsity`` fraction of weights; returns each layer's sparsity.

    >>> from prunekit.models import build_model
    >>> net = build_model("lenet300")
    >>> per_layer = prune_by_ratio(net, 0.9)
    >>> from prunekit.evaluate import prunable_sparsity
    >>> round(prunable_sparsity(net), 4)
    0.9
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    layers = prunable_layers(model, ignore)
    if not layers:
        raise ValueError("the model has no Linear or Conv layers to prune")
    scores = [_scores(module, criterion) for _, module in layers]
    if scope == "layer":
        return _install(layers, [_lowest(s, round(sparsity * s.numel())) for s in scores])
    # the floor protects the best weights still alive; never revive an already masked one
    floors = [
        min(max(1, math.ceil(min_density * s.numel())), int(torch.isfinite(s).sum()))
        for s in scores
    ]
    total = sum(s.numel() for s in scores)
    k = round(sparsity * total)
    if k > total - sum(floors):
        raise ValueError(
            f"global sparsity {sparsity} leaves fewer weights than the per-layer floor "
            f"(min_density={min_density}) needs; lower the sparsity or min_density"
        )
    ranked = []
    for s, floor in zip(scores, floors):
        protected = s.flatten().clone()
        protected[protected.topk(floor).indices] = math.inf
        ranked.append(protected)
    drop = _lowest(torch.cat(ranked), k).split([s.numel() for s in scores])
    return _install(layers, [d.view_as(s) for d, s in zip(drop, scores)])


@torch.no_grad()
def prune_by_threshold(
    model: nn.Module, threshold: float, *, ignore: Collection[str] = ()
) -> dict[str, float]:
    """Mask every weight with ``|w| < threshold``; returns each layer's sparsity.

    >>> net = nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[0.005, 0.5]]))
    >>> prune_by_threshold(net, 0.01)
    {'': 0.5}
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    layers = prunable_layers(model, ignore)
    return _install(layers, [module.weight.abs() < threshold for _, module in layers])
