"""Masks that compare weights within each output row: magnitude and Wanda.

Why per row: in an LLM's Linear layers a few input features carry activations 100x larger than
the rest (Dettmers et al. 2022), so weights are only comparable among those that feed the same
output. Wanda (Sun et al. 2023) scores ``|W_ij| · ‖X_j‖₂`` — a weight matters as much as it is
large *and* its input is — and keeps the best of each row; ``magnitude`` is the same comparison
without the activations. Either gives unstructured sparsity (``round(sparsity · in)`` weights
pruned in every row, exactly) or N:M (``n`` kept of every ``m`` consecutive inputs).

>>> import torch
>>> w = torch.tensor([[1.0, -4.0, 2.0, 3.0]])
>>> row_keep_mask(w.abs(), sparsity=0.5).tolist()
[[False, True, False, True]]
>>> row_keep_mask(wanda_scores(w, torch.tensor([10.0, 0.1, 1.0, 1.0])), sparsity=0.5).tolist()
[[True, False, False, True]]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.sparse.nm import nm_mask


@dataclass(frozen=True)
class Target:
    """How much to prune one layer: unstructured ``sparsity``, or ``n`` kept of every ``m``."""

    sparsity: float | None = None
    n: int | None = None
    m: int | None = None

    def __post_init__(self) -> None:
        if (self.sparsity is None) == (self.n is None):
            raise ValueError("give either sparsity=S or n, m for N:M sparsity, not both")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.n is not None and (self.m is None or not 0 < self.n <= self.m):
            raise ValueError(f"N:M needs 0 < N <= M, got {self.n}:{self.m}")

    @property
    def is_nm(self) -> bool:
        return self.n is not None

    @property
    def fraction(self) -> float:
        """The fraction of weights this target removes."""
        return 1.0 - self.n / self.m if self.is_nm else float(self.sparsity)

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.sparsity:.0%}"


def parse_nm(text: str) -> Target:
    """``"2:4"`` → ``Target(n=2, m=4)``, with an error naming the expected form.

    >>> parse_nm("2:4").fraction
    0.5
    """
    try:
        n, m = (int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"N:M must look like 2:4, got {text!r}") from None
    return Target(n=n, m=m)


def row_keep_mask(
    scores: Tensor,
    target: Target | None = None,
    *,
    sparsity: float | None = None,
) -> Tensor:
    """Boolean mask keeping, in every row of ``scores``, the highest-scoring entries.

    Unstructured: exactly ``round(sparsity · columns)`` entries of each row are dropped.
    N:M: within every block of ``m`` consecutive columns the ``n`` best are kept.
    """
    target = target or Target(sparsity=sparsity)
    if target.is_nm:
        return nm_mask(scores, target.n, target.m)
    drop = round(target.sparsity * scores.shape[1])
    keep = torch.ones_like(scores, dtype=torch.bool)
    if drop:
        keep.scatter_(1, scores.topk(drop, dim=1, largest=False).indices, False)
    return keep


def wanda_scores(weight: Tensor, input_norms: Tensor) -> Tensor:
    """``|W_ij| · ‖X_j‖₂``: ``input_norms[j]`` is the L2 norm of input feature ``j`` over the
    calibration tokens."""
    return weight.abs() * input_norms.to(weight.dtype).unsqueeze(0)
