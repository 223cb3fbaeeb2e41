"""Re-estimate BatchNorm statistics after pruning, so a pruned candidate is judged fairly.

Why: removing channels changes the distribution every later BatchNorm sees, but its running
mean and variance still describe the dense network; a one-shot-pruned ResNet then looks broken
(tens of points lost) although a little fine-tuning recovers almost all of it, and a budget
search that trusts those numbers ranks layers by how badly their statistics went stale rather
than by what they carry. Recomputing the statistics on a few training batches — no gradient, no
weight changes — makes one-shot scores track post-fine-tuning accuracy far better ("adaptive
BatchNorm", Li et al., EagleEye, 2020).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)).eval()
>>> reestimate_batchnorm(net, [torch.randn(64, 4) * 3 + 1])
True
>>> bool(net[1].running_var.mean() > 1.5), net.training
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from prunekit.modes import eval_mode

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _NORMS) and m.track_running_stats]


def has_batchnorm(model: nn.Module) -> bool:
    """Does ``model`` hold a BatchNorm with running statistics (what pruning makes stale)?"""
    return bool(_norms(model))


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, inputs: Sequence[Tensor]) -> bool:
    """Replace every BatchNorm's running statistics by those of ``model`` on ``inputs``.

    Only the BatchNorm layers run in training mode (dropout and the rest stay in eval mode,
    so they do not distort the statistics); the average is cumulative over all batches, not an
    exponential one. Returns False, changing nothing, when the model has no BatchNorm with
    running statistics or no inputs are given.
    """
    norms = _norms(model)
    if not norms or not inputs:
        return False
    momenta = [m.momentum for m in norms]
    with eval_mode(model):
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative moving average
            norm.train()
        try:
            for batch in inputs:
                model(batch)
        finally:
            for norm, momentum in zip(norms, momenta, strict=True):
                norm.momentum = momentum
                norm.eval()
    return True
