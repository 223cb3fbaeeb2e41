"""Sparse activations — sparsemax and 1.5-entmax — and how sparse a model's activations are.

Softmax never outputs an exact zero; sparsemax (Martins & Astudillo 2016) and 1.5-entmax
(Peters et al. 2019) are probability maps that do, so downstream work on the zeros can be
skipped and the output names only the classes that matter. Both are computed exactly by sorting
(no iterative approximation), with hand-written backward passes checked by ``gradcheck``.

:func:`activation_sparsity` measures the fraction of exact zeros each activation layer emits —
for these two and for the ReLU family — which is what a sparse-activation kernel would skip.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function

from prunekit.modes import eval_mode


def _move_last(x: Tensor, dim: int) -> Tensor:
    return x.transpose(dim, -1) if dim not in (-1, x.dim() - 1) else x


def _sorted_cumsum(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Descending sort of ``z`` along the last dim, its running sums, and the ranks 1..K."""
    z_sorted, _ = torch.sort(z, dim=-1, descending=True)
    ranks = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    return z_sorted, z_sorted.cumsum(dim=-1), ranks


def sparsemax_threshold(z: Tensor) -> Tensor:
    """τ(z) along the last dim, so that ``sparsemax(z) = max(z − τ, 0)`` sums to one."""
    z_sorted, cumsum, ranks = _sorted_cumsum(z)
    support = (1 + ranks * z_sorted) > cumsum
    k = support.sum(dim=-1, keepdim=True)
    return (cumsum.gather(-1, k - 1) - 1) / k.to(z.dtype)


class _SparsemaxFunction(Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:
        z = z - z.max(dim=-1, keepdim=True).values
        p = (z - sparsemax_threshold(z)).clamp(min=0)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (p,) = ctx.saved_tensors
        support = (p > 0).to(grad.dtype)
        mean = (grad * support).sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
        return support * (grad - mean)


class _Entmax15Function(Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:
        x = (z - z.max(dim=-1, keepdim=True).values) / 2
        x_sorted, cumsum, ranks = _sorted_cumsum(x)
        mean = cumsum / ranks
        mean_sq = (x_sorted**2).cumsum(dim=-1) / ranks
        delta = (1 - ranks * (mean_sq - mean**2)) / ranks
        tau = mean - delta.clamp(min=0).sqrt()
        k = (tau <= x_sorted).sum(dim=-1, keepdim=True)
        p = (x - tau.gather(-1, k - 1)).clamp(min=0) ** 2
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (p,) = ctx.saved_tensors
        root = p.sqrt()
        scaled = grad * root
        return scaled - root * scaled.sum(-1, keepdim=True) / root.sum(-1, keepdim=True)


def sparsemax(z: Tensor, dim: int = -1) -> Tensor:
    """Euclidean projection of ``z`` onto the probability simplex: sums to 1, exact zeros.

    >>> sparsemax(torch.tensor([1.0, 0.8, -1.0])).tolist()
    [0.6000000238418579, 0.40000003576278687, 0.0]
    """
    return _move_last(_SparsemaxFunction.apply(_move_last(z, dim)), dim)


def entmax15(z: Tensor, dim: int = -1) -> Tensor:
    """1.5-entmax: between softmax (dense) and sparsemax (sparsest); sums to 1, exact zeros.

    >>> [round(v, 4) for v in entmax15(torch.tensor([2.0, 0.0, -2.0])).tolist()]
    [1.0, 0.0, 0.0]
    """
    return _move_last(_Entmax15Function.apply(_move_last(z, dim)), dim)


class Sparsemax(nn.Module):
    """Module form of :func:`sparsemax`, a drop-in replacement for ``nn.Softmax(dim)``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, z: Tensor) -> Tensor:
        return sparsemax(z, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Entmax15(nn.Module):
    """Module form of :func:`entmax15`, a drop-in replacement for ``nn.Softmax(dim)``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, z: Tensor) -> Tensor:
        return entmax15(z, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class SparsemaxLoss(nn.Module):
    """The sparsemax loss (Martins & Astudillo 2016): sparsemax's counterpart of cross-entropy.

    ``L(z, y) = −z_y + ½·Σ_{j∈S(z)} (z_j² − τ²) + ½``; its gradient is ``sparsemax(z) − onehot(y)``,
    so training with it makes the model's sparsemax outputs right. Mean over the batch.

    >>> z = torch.tensor([[10.0, 0.0, 0.0]])
    >>> float(SparsemaxLoss()(z, torch.tensor([0])))
    0.0
    """

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        z = logits - logits.max(dim=-1, keepdim=True).values.detach()
        tau = sparsemax_threshold(z)  # differentiable: its gradient supplies the −τ term
        support = (z.detach() > tau.detach()).to(z.dtype)
        squares = (support * (z**2 - tau**2)).sum(dim=-1)
        z_target = z.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return (squares / 2 - z_target + 0.5).mean()


ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink, nn.Threshold,
    nn.Softmax, Sparsemax, Entmax15,
)


@torch.no_grad()
def activation_sparsity(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Fraction of exact zeros in each activation layer's output on input ``x``.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), Sparsemax())
    >>> sorted(activation_sparsity(net, torch.randn(16, 4)))
    ['1', '3']
    """
    zeros: dict[str, float] = {}

    def record(name: str) -> Any:
        def hook(_: nn.Module, __: Any, out: Tensor) -> None:
            zeros[name] = 1.0 - int(torch.count_nonzero(out)) / out.numel()

        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, ACTIVATION_TYPES)
    ]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return zeros


def output_sparsity(logits: Tensor, mapping: str = "sparsemax") -> float:
    """Fraction of exact zeros in the probabilities a model's logits map to.

    >>> output_sparsity(torch.tensor([[5.0, 0.0, 0.0, 0.0]]))
    0.75
    """
    maps = {"sparsemax": sparsemax, "entmax15": entmax15, "softmax": lambda z: F.softmax(z, -1)}
    if mapping not in maps:
        raise ValueError(f"unknown mapping {mapping!r}; choose one of {sorted(maps)}")
    probs = maps[mapping](logits)
    return 1.0 - int(torch.count_nonzero(probs)) / probs.numel()
