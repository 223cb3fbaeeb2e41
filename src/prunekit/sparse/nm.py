"""N:M semi-structured sparsity: at most N non-zeros in every block of M consecutive inputs.

Why: unstructured zeros are scattered, so hardware cannot exploit them without indices; N:M
sparsity (2:4 on NVIDIA Ampere and later, 4:8, ...) fixes the pattern per block of the
*reduction* dimension, which sparse tensor cores and compact formats turn into real speed.
Blocks run along the input dimension: a Linear weight ``(out, in)`` is cut into rows of
``in / M`` blocks; a Conv weight ``(out, in, kh, kw)`` is grouped along its input channels at
each kernel position (as NVIDIA's ASP does), so ``in`` must be a multiple of ``M``. Layers whose
input dimension is not (the RGB stem of a CNN, say) are skipped with a logged warning.

Masks go through :func:`prunekit.masks.set_mask`, so N:M pruned models train, strip and save
like any other pruned model. With a schedule, :class:`GradualNM` ramps the number of weights
kept per block from M down to N.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
>>> prune_nm(net, 2, 4)
{'0': 0.5, '2': 0.5}
>>> is_nm_sparse(net[0].weight, 2, 4)
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection

import torch
from torch import Tensor, nn

from prunekit.criteria import CRITERIA
from prunekit.masks import MaskEnforcement, get_mask, set_mask, zero_pruned_state
from prunekit.schedules import Schedule
from prunekit.unstructured import prunable_layers

log = logging.getLogger(__name__)


def _check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int)) or m < 1 or not 0 <= n <= m:
        raise ValueError(f"N:M needs integers with 0 <= N <= M and M >= 1, got N={n}, M={m}")


def _blocks(tensor: Tensor, m: int) -> Tensor:
    """View ``tensor`` as rows of ``m`` consecutive entries along its input dimension (dim 1)."""
    if tensor.dim() < 2 or tensor.shape[1] % m:
        raise ValueError(
            f"a weight of shape {tuple(tensor.shape)} cannot be cut into blocks of {m} along "
            "its input dimension (dim 1): it must be a multiple of M"
        )
    return tensor.movedim(1, -1).reshape(-1, m)


def _unblock(blocks: Tensor, shape: torch.Size) -> Tensor:
    moved = (shape[0], *shape[2:], shape[1])
    return blocks.reshape(moved).movedim(-1, 1)


def nm_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """Boolean mask keeping the ``n`` highest scores of every block of ``m`` inputs.

    >>> nm_mask(torch.tensor([[0.1, 0.9, 0.3, 0.2]]), 2, 4).tolist()
    [[False, True, True, False]]
    """
    _check_nm(n, m)
    blocks = _blocks(scores, m)
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    keep.scatter_(1, blocks.topk(n, dim=1).indices, True)
    return _unblock(keep, scores.shape)


def nm_violations(weight: Tensor, n: int, m: int) -> int:
    """How many blocks of ``m`` inputs hold more than ``n`` non-zeros (0 for a valid N:M weight).

    >>> nm_violations(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), 2, 4)
    1
    """
    _check_nm(n, m)
    return int(((_blocks(weight.detach(), m) != 0).sum(dim=1) > n).sum())


def is_nm_sparse(weight: Tensor, n: int, m: int) -> bool:
    """True when every block of ``m`` consecutive inputs of ``weight`` has at most ``n`` non-zeros.

    >>> is_nm_sparse(torch.tensor([[0.0, 3.0, 0.0, 1.0]]), 2, 4)
    True
    """
    return nm_violations(weight, n, m) == 0


def _layers_with_blocks(
    model: nn.Module, m: int, ignore: Collection[str]
) -> list[tuple[str, nn.Module]]:
    layers = []
    for name, module in prunable_layers(model, ignore):
        if module.weight.shape[1] % m:
            log.warning(
                "N:M skips layer %r: its input dimension %d is not a multiple of M=%d",
                name,
                module.weight.shape[1],
                m,
            )
            continue
        layers.append((name, module))
    if not layers:
        raise ValueError(
            f"no Linear/Conv layer of the model has an input dimension divisible by M={m}; "
            "choose an M that divides the layers' input sizes"
        )
    return layers


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

    Earlier masks are kept (pruning only grows); returns each pruned layer's sparsity.

    >>> net = nn.Linear(16, 3)
    >>> prune_nm(net, 1, 4)
    {'': 0.75}
    """
    _check_nm(n, m)
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    achieved = {}
    for name, module in _layers_with_blocks(model, m, ignore):
        scores = CRITERIA[criterion](module.weight).float()
        previous = get_mask(module)
        if previous is not None:
            scores = scores.masked_fill(~previous, -math.inf)
        keep = nm_mask(scores, n, m)
        if previous is not None:
            keep &= previous
        set_mask(module, "weight", keep)
        achieved[name] = 1.0 - float(keep.float().mean())
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
