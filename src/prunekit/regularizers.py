"""Sparsity-inducing regularization: terms added to the training *loss*, and a proximal step.

A penalty belongs in the loss, where backpropagation turns it into a gradient; adding λ|w| to
the weights themselves (as some tutorials do) shrinks nothing towards zero and only shifts them.
Each term is a callable ``term(model) -> scalar tensor`` that :func:`prunekit.train.fit` adds
to the task loss. By default they act on the weights of Linear and Conv layers only — biases
and normalization parameters are not what pruning removes, and penalising them costs accuracy.

- :class:`L1` — λ·Σ|w|: pushes weights to (near) zero; with a threshold afterwards, prunes.
- :class:`L2` — λ/2·Σw²: shrinks weights evenly (its gradient is λ·w, like weight decay); few
  become small enough to prune.
- :class:`ElasticNet` — both, as in Zou & Hastie 2005.
- :class:`BNScaleL1` — λ·Σ|γ| over BatchNorm scales: network slimming (Liu et al. 2017), the
  channels whose scale reaches zero are then removed by structured pruning.
- :class:`ProximalL1` — a ``fit`` callback: after each optimizer step, soft-threshold the
  weights by ``lr·λ``. Unlike the subgradient of L1 (which oscillates around zero), the proximal
  step lands on *exact* zeros.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.layers import prunable_weights

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def regularized_weights(model: nn.Module, ignore: Collection[str] = ()) -> list[Tensor]:
    """The tensors the penalties act on: the weights pruning acts on (Linear, Conv, RNN,
    attention projections...; :func:`prunekit.layers.prunable_weights`)."""
    return [w.tensor for w in prunable_weights(model, ignore)]


def _check_lambda(lam: float, name: str = "lam") -> None:
    if lam < 0:
        raise ValueError(f"{name} must be >= 0, got {lam}")


@dataclass(frozen=True)
class L1:
    """λ·Σ|w| over Linear and Conv weights.

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -2.0]]))
    >>> round(L1(0.1)(net).item(), 4)
    0.3
    """

    lam: float

    def __post_init__(self) -> None:
        _check_lambda(self.lam)

    def __call__(self, model: nn.Module) -> Tensor:
        return self.lam * sum(w.abs().sum() for w in regularized_weights(model))


@dataclass(frozen=True)
class L2:
    """λ/2·Σw² over Linear and Conv weights.

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -2.0]]))
    >>> L2(0.1)(net).item()
    0.25
    """

    lam: float

    def __post_init__(self) -> None:
        _check_lambda(self.lam)

    def __call__(self, model: nn.Module) -> Tensor:
        return 0.5 * self.lam * sum(w.pow(2).sum() for w in regularized_weights(model))


@dataclass(frozen=True)
class ElasticNet:
    """l1·Σ|w| + l2/2·Σw²: L1's zeros with L2's stability among correlated weights.

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -2.0]]))
    >>> round(ElasticNet(0.1, 0.1)(net).item(), 4)
    0.55
    """

    l1: float
    l2: float

    def __post_init__(self) -> None:
        _check_lambda(self.l1, "l1")
        _check_lambda(self.l2, "l2")

    def __call__(self, model: nn.Module) -> Tensor:
        return L1(self.l1)(model) + L2(self.l2)(model)


@dataclass(frozen=True)
class BNScaleL1:
    """λ·Σ|γ| over BatchNorm scales (network slimming).

    >>> bn = nn.BatchNorm2d(3)
    >>> BNScaleL1(0.5)(bn).item()
    1.5
    """

    lam: float

    def __post_init__(self) -> None:
        _check_lambda(self.lam)

    def __call__(self, model: nn.Module) -> Tensor:
        scales = [m.weight for m in model.modules() if isinstance(m, _NORM_TYPES) and m.affine]
        if not scales:
            raise ValueError(
                "bn_scale_l1 needs BatchNorm layers with affine scales; this model has none"
            )
        return self.lam * sum(g.abs().sum() for g in scales)


class ProximalL1:
    """Soft-threshold weights by ``lr·λ`` after every optimizer step: exact zeros from L1.

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[0.05, -2.0]]))
    >>> opt = torch.optim.SGD(net.parameters(), lr=1.0)
    >>> ProximalL1(0.1).on_step_end(0, net, opt)
    >>> net.weight.tolist()
    [[0.0, -1.899999976158142]]
    """

    def __init__(self, lam: float, ignore: Collection[str] = ()) -> None:
        _check_lambda(lam)
        self.lam = lam
        self.ignore = tuple(ignore)

    @torch.no_grad()
    def on_step_end(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        for weight in regularized_weights(model, self.ignore):
            shrink = lr_of.get(id(weight), 0.0) * self.lam
            weight.copy_(weight.sign() * (weight.abs() - shrink).clamp_(min=0.0))
