"""Importance of individual weights, for unstructured pruning: the lowest scores go first.

A criterion maps a tensor to a same-shaped tensor of scores. The registry is a plain dict, so a
recipe names a criterion and a user adds one with one line::

    CRITERIA["squared"] = lambda w: w.detach() ** 2

Structured pruning scores whole groups of coupled units instead; its criteria live in
:mod:`prunekit.structured`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Criterion = Callable[[Tensor], Tensor]


def magnitude(weight: Tensor) -> Tensor:
    """|w|: small weights contribute little (Han et al. 2015; the default).

    >>> magnitude(torch.tensor([-2.0, 0.5])).tolist()
    [2.0, 0.5]
    """
    return weight.detach().abs()


def random(weight: Tensor) -> Tensor:
    """Uniform noise: the control every pruning comparison needs (seeded by torch's global RNG).

    >>> random(torch.zeros(3)).shape
    torch.Size([3])
    """
    return torch.rand(weight.shape, device=weight.device)


def taylor(weight: Tensor) -> Tensor:
    """|w · ∂L/∂w|: first-order estimate of the loss change from zeroing a weight (Molchanov et
    al. 2017). Needs a populated ``.grad``: call it after a backward pass (inside ``fit`` the
    gradient of the latest batch is there).

    >>> w = torch.tensor([1.0, -3.0], requires_grad=True)
    >>> (w * torch.tensor([2.0, 0.1])).sum().backward()
    >>> [round(v, 3) for v in taylor(w).tolist()]
    [2.0, 0.3]
    """
    if weight.grad is None:
        raise ValueError(
            "criterion 'taylor' needs gradients: run a backward pass on a few batches before "
            "pruning (inside fit they are there), or use criterion 'magnitude'"
        )
    return (weight.detach() * weight.grad.detach()).abs()


CRITERIA: dict[str, Criterion] = {
    "magnitude": magnitude,
    "random": random,
    "taylor": taylor,
}
