"""Unstructured pruning: zero individual weights, by ratio or by magnitude threshold.

- **by ratio**, layer-wise (every weight tensor reaches the target) or global (one ranking
  across all of them, so layers with many unimportant weights give up more, as in Han et al.
  2015). Global pruning keeps a per-tensor floor (``min_density``) so no layer is ever emptied.
  Counts are exact: ``round(sparsity × weights)`` entries are pruned, ties broken by position.
- **by threshold**: ``|w| < θ → 0``.

The weights are every tensor the layer descriptions call prunable
(:func:`prunekit.layers.prunable_weights`): Linear, Bilinear, Conv and ConvTranspose 1-3d, every
layer and direction of RNN/LSTM/GRU, ``nn.MultiheadAttention``'s projections, embedding tables
with ``embeddings=True``, and any layer a user describes. Weight matrices left out are logged
with the reason (:func:`prunekit.layers.skipped_weights`). Results are keyed by the tensor's
state-dict name (``"lstm.weight_hh_l0"``).

Pruning only ever grows: entries already masked rank below everything else, so a schedule that
raises sparsity step by step keeps earlier decisions. Masks are stored with
:func:`prunekit.masks.set_mask`; call :func:`prunekit.masks.strip` when done.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Collection
from typing import Literal

import torch
from torch import Tensor, nn

from prunekit.criteria import CRITERIA
from prunekit.layers import PrunableWeight, prunable_weights, skipped_weights
from prunekit.masks import get_mask, set_mask

log = logging.getLogger(__name__)

Scope = Literal["layer", "global"]

_warned: weakref.WeakKeyDictionary[nn.Module, dict[str, dict[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def warn_skipped(model: nn.Module, what: str, skipped: dict[str, str]) -> None:
    """Log the weights ``what`` leaves (name → why), once per model until the list changes:
    a schedule prunes many times, and one warning says it all."""
    seen = _warned.setdefault(model, {})
    if skipped and seen.get(what) != skipped:
        seen[what] = skipped
        log.warning("%s leaves %d weight matrices: %s", what, len(skipped),
                    "; ".join(f"{name} ({why})" for name, why in skipped.items()))


def targets(
    model: nn.Module, ignore: Collection[str] = (), *, embeddings: bool = False
) -> list[PrunableWeight]:
    """The weights pruning acts on; warns (once per model) about weight matrices it leaves.

    >>> from prunekit.models import build_model
    >>> [w.name for w in targets(build_model("lenet300"))]
    ['net.1.weight', 'net.3.weight', 'net.5.weight']
    """
    warn_skipped(model, "pruning", skipped_weights(model, ignore, embeddings=embeddings))
    weights = prunable_weights(model, ignore, embeddings=embeddings)
    if not weights:
        raise ValueError(
            "the model has no weights prunekit can prune (no Linear, Conv, RNN or attention "
            "layer, and no described custom layer); describe yours: docs/layers.md"
        )
    return weights


def _scores(target: PrunableWeight, criterion: str) -> Tensor:
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    scores = CRITERIA[criterion](target.tensor).float()
    mask = get_mask(target.module, target.weight.name)
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


def _install(weights: list[PrunableWeight], pruned: list[Tensor]) -> dict[str, float]:
    achieved = {}
    for target, drop in zip(weights, pruned):
        mask = get_mask(target.module, target.weight.name)
        if mask is not None:
            drop = drop | ~mask
        set_mask(target.module, target.weight.name, ~drop)
        achieved[target.name] = float(drop.float().mean())
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
    embeddings: bool = False,
) -> dict[str, float]:
    """Mask the least important ``sparsity`` fraction of weights; returns each tensor's sparsity.

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
    weights = targets(model, ignore, embeddings=embeddings)
    scores = [_scores(target, criterion) for target in weights]
    if scope == "layer":
        return _install(weights, [_lowest(s, round(sparsity * s.numel())) for s in scores])
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
    return _install(weights, [d.view_as(s) for d, s in zip(drop, scores)])


@torch.no_grad()
def prune_by_threshold(
    model: nn.Module, threshold: float, *, ignore: Collection[str] = (), embeddings: bool = False
) -> dict[str, float]:
    """Mask every weight with ``|w| < threshold``; returns each tensor's sparsity.

    >>> net = nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[0.005, 0.5]]))
    >>> prune_by_threshold(net, 0.01)
    {'weight': 0.5}
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    weights = targets(model, ignore, embeddings=embeddings)
    return _install(weights, [target.tensor.abs() < threshold for target in weights])
