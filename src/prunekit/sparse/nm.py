"""N:M semi-structured sparsity: at most N non-zeros in every block of M consecutive inputs.

Why: unstructured zeros are scattered, so hardware cannot exploit them without indices; N:M
sparsity (2:4 on NVIDIA Ampere and later, 4:8, ...) fixes the pattern per block of the
*reduction* dimension, which sparse tensor cores and compact formats turn into real speed.
Blocks run along the dim each weight's layer description names (:mod:`prunekit.layers`): the
input dim of a Linear ``(out, in)``, of every RNN/LSTM/GRU matrix and of attention's
projections; a Conv weight ``(out, in, kh, kw)`` is grouped along its input channels at each
kernel position (as NVIDIA's ASP does); a ConvTranspose weight ``(in, out, kh, kw)`` along its
dim 0. That dim must be a multiple of ``M``: weights whose dim is not (the RGB stem of a CNN,
a depthwise conv) and embedding tables (nothing is summed) are skipped with a logged warning
naming each, so the report never claims more than was done.

Masks go through :func:`prunekit.masks.set_mask`, so N:M pruned models train, strip and save
like any other pruned model. With a schedule, :class:`GradualNM` ramps the number of weights
kept per block from M down to N.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
>>> prune_nm(net, 2, 4)
{'0.weight': 0.5, '2.weight': 0.5}
>>> is_nm_sparse(net[0].weight, 2, 4)
True
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch
from torch import Tensor, nn

from prunekit.criteria import CRITERIA
from prunekit.layers import PrunableWeight
from prunekit.masks import MaskEnforcement, get_mask, set_mask, zero_pruned_state
from prunekit.schedules import Schedule
from prunekit.unstructured import targets, warn_skipped


def _check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int)) or m < 1 or not 0 <= n <= m:
        raise ValueError(f"N:M needs integers with 0 <= N <= M and M >= 1, got N={n}, M={m}")


def _blocks(tensor: Tensor, m: int, dim: int) -> Tensor:
    """View ``tensor`` as rows of ``m`` consecutive entries along ``dim`` (its reduction dim)."""
    if tensor.dim() < 2 or tensor.shape[dim] % m:
        raise ValueError(
            f"a weight of shape {tuple(tensor.shape)} cannot be cut into blocks of {m} along "
            f"its reduction dimension (dim {dim}): it must be a multiple of M"
        )
    return tensor.movedim(dim, -1).reshape(-1, m)


def _unblock(blocks: Tensor, shape: torch.Size, dim: int) -> Tensor:
    moved = torch.empty(shape, device="meta").movedim(dim, -1).shape
    return blocks.reshape(moved).movedim(-1, dim)


def nm_mask(scores: Tensor, n: int, m: int, dim: int = 1) -> Tensor:
    """Boolean mask keeping the ``n`` highest scores of every block of ``m`` entries along
    ``dim`` (the inputs a weight sums over).

    >>> nm_mask(torch.tensor([[0.1, 0.9, 0.3, 0.2]]), 2, 4).tolist()
    [[False, True, True, False]]
    """
    _check_nm(n, m)
    blocks = _blocks(scores, m, dim)
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    keep.scatter_(1, blocks.topk(n, dim=1).indices, True)
    return _unblock(keep, scores.shape, dim)


def nm_violations(weight: Tensor, n: int, m: int, dim: int = 1) -> int:
    """How many blocks of ``m`` entries along ``dim`` hold more than ``n`` non-zeros (0 for a
    valid N:M weight).

    >>> nm_violations(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), 2, 4)
    1
    """
    _check_nm(n, m)
    return int(((_blocks(weight.detach(), m, dim) != 0).sum(dim=1) > n).sum())


def is_nm_sparse(weight: Tensor, n: int, m: int, dim: int = 1) -> bool:
    """True when every block of ``m`` consecutive entries along ``dim`` of ``weight`` has at
    most ``n`` non-zeros.

    >>> is_nm_sparse(torch.tensor([[0.0, 3.0, 0.0, 1.0]]), 2, 4)
    True
    """
    return nm_violations(weight, n, m, dim) == 0


def nm_targets(model: nn.Module, m: int, ignore: Collection[str] = ()) -> list[PrunableWeight]:
    """The prunable weights N:M applies to; each one it cannot is logged with the reason.

    >>> from torch import nn
    >>> [w.name for w in nm_targets(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)), 4)]
    ['1.weight']
    """
    fitting, skipped = [], {}
    for target in targets(model, ignore):
        dim = target.weight.reduction_dim
        if dim is None:
            skipped[target.name] = "nothing is summed along any of its dims"
        elif target.tensor.shape[dim] % m:
            skipped[target.name] = (f"its reduction dimension (dim {dim}, size "
                                    f"{target.tensor.shape[dim]}) is not a multiple of M={m}")
        else:
            fitting.append(target)
    warn_skipped(model, f"N:M (M={m})", skipped)
    if not fitting:
        raise ValueError(
            f"no prunable weight of the model has a reduction dimension divisible by M={m}; "
            "choose an M that divides the layers' input sizes"
        )
    return fitting


@torch.no_grad()
def prune_nm(
    model: nn.Module,
    n: int,
    m: int,
    *,
    criterion: str = "magnitude",
    ignore: Collection[str] = (),
) -> dict[str, float]:
    """Keep the ``n`` most important of every ``m`` consecutive input weights, layer by layer.

    Earlier masks are kept (pruning only grows); returns each pruned tensor's sparsity, keyed
    by its state-dict name.

    >>> net = nn.Linear(16, 3)
    >>> prune_nm(net, 1, 4)
    {'weight': 0.75}
    """
    _check_nm(n, m)
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    achieved = {}
    for target in nm_targets(model, m, ignore):
        module, name = target.module, target.weight.name
        scores = CRITERIA[criterion](target.tensor).float()
        previous = get_mask(module, name)
        if previous is not None:
            scores = scores.masked_fill(~previous, -math.inf)
        keep = nm_mask(scores, n, m, target.weight.reduction_dim)
        if previous is not None:
            keep &= previous
        set_mask(module, name, keep)
        achieved[target.name] = 1.0 - float(keep.float().mean())
    return achieved


class GradualNM(MaskEnforcement):
    """A ``fit`` callback that ramps N:M pruning along a sparsity schedule, from M kept down to N.

    At each pruning step of ``schedule`` the sparsity ``s`` becomes ``ceil(M·(1 − s))`` weights
    kept per block, never fewer than ``n``: with ``PolynomialDecay(0.0, 0.5, ...)`` and 2:4 the
    blocks go 4 → 3 → 2 kept, so the network adapts to each cut before the next.

    >>> from prunekit.schedules import PolynomialDecay
    >>> from prunekit.train import fit
    >>> net = nn.Linear(8, 4)
    >>> ramp = GradualNM(2, 4, PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=2))
    >>> _ = fit(net, torch.randn(64, 8), torch.zeros(64, dtype=torch.long), batch_size=8,
    ...         callbacks=[ramp], progress=False)
    >>> is_nm_sparse(net.weight, 2, 4)
    True
    """

    def __init__(
        self,
        n: int,
        m: int,
        schedule: Schedule,
        *,
        criterion: str = "magnitude",
        ignore: Collection[str] = (),
    ) -> None:
        super().__init__()
        _check_nm(n, m)
        self.n, self.m = n, m
        self.schedule = schedule
        self.criterion = criterion
        self.ignore = tuple(ignore)

    def kept_per_block(self, sparsity: float) -> int:
        """Weights kept per block at ``sparsity`` (clamped to ``[n, m]``)."""
        return min(self.m, max(self.n, math.ceil(self.m * (1.0 - sparsity) - 1e-9)))

    def on_step_begin(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        prune, sparsity = self.schedule(step)
        if not prune:
            return
        prune_nm(
            model,
            self.kept_per_block(sparsity),
            self.m,
            criterion=self.criterion,
            ignore=self.ignore,
        )
        zero_pruned_state(optimizer, model)
