"""SparseGPT: prune a layer and update the weights that stay so its outputs change least.

Why: zeroing weights alone (magnitude, Wanda) leaves the error it causes where it falls.
SparseGPT (Frantar & Alistarh 2023) treats each row's reconstruction ``‖W X − Ŵ X‖²`` as the
Optimal Brain Surgeon problem with the layer Hessian ``H = X Xᵀ`` (shared by all rows): going
through the columns left to right, each pruned weight's error is pushed onto the columns not
yet visited through the inverse Hessian's Cholesky factor. Columns are handled in blocks of
``block_size`` with *lazy batch updates* (the error of a whole block reaches the columns after it
in one matrix product), masks are chosen per block from ``w² / [H⁻¹]ᵢᵢ²`` (adaptive selection:
a weight is cheap to prune when its inverse-Hessian diagonal is large), and ``H`` is dampened by
``damping · mean(diag H)`` so it can be inverted.

>>> import torch
>>> torch.manual_seed(0) and None
>>> x = torch.randn(256, 16)
>>> w = torch.randn(8, 16)
>>> pruned = sparsegpt_prune(w, hessian_from_inputs(x), Target(sparsity=0.5))
>>> int((pruned == 0).sum())
64
>>> bool(reconstruction_error(w, pruned, x) < reconstruction_error(w, w * (w.abs() >
...     w.abs().median()), x))
True
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.hf.row_pruning import Target


def hessian_from_inputs(inputs: Tensor) -> Tensor:
    """``2/n · Xᵀ X`` for inputs of shape ``(n, features)`` (what a layer's pre-hook adds up)."""
    x = inputs.reshape(-1, inputs.shape[-1]).double()
    return (2.0 / x.shape[0]) * x.T @ x


def reconstruction_error(weight: Tensor, pruned: Tensor, inputs: Tensor) -> float:
    """``‖(W − Ŵ) Xᵀ‖²_F / n``: how much the layer's outputs moved, per calibration token."""
    x = inputs.reshape(-1, inputs.shape[-1]).double()
    diff = (weight.double() - pruned.double()) @ x.T
    return float(diff.square().sum() / x.shape[0])


@torch.no_grad()
def sparsegpt_prune(
    weight: Tensor,
    hessian: Tensor,
    target: Target,
    *,
    block_size: int = 128,
    damping: float = 0.01,
) -> Tensor:
    """The pruned (and compensated) copy of ``weight`` ``(out, in)``; ``hessian`` is ``(in, in)``.

    Unstructured: each block of ``block_size`` columns loses exactly
    ``round(sparsity · out · width)`` weights. N:M: every ``m`` consecutive inputs keep ``n``.
    Input features never seen (zero Hessian diagonal) carry no information: their weights
    are set to zero, as they cannot change the outputs on the calibration data.
    """
    if target.is_nm and block_size % target.m:
        raise ValueError(f"block_size {block_size} must be a multiple of M={target.m}")
    w = weight.detach().double().clone()
    h = hessian.detach().double().clone()
    columns = w.shape[1]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h.diagonal().add_(damping * torch.diag(h).mean())
    hinv = _upper_inverse_cholesky(h)
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        w[:, start:end], errors = _prune_block(w[:, start:end], hinv[start:end, start:end], target)
        w[:, end:] -= errors @ hinv[start:end, end:]
    return w.to(weight.dtype)


def _upper_inverse_cholesky(h: Tensor) -> Tensor:
    """Upper Cholesky factor of ``H⁻¹``; retries with more damping if ``H`` is not positive
    definite in floating point."""
    scale = torch.diag(h).mean()
    for extra in (0.0, 1e-6, 1e-4, 1e-2, 1e-1):
        damped = h + extra * scale * torch.eye(h.shape[0], dtype=h.dtype)
        factor, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(factor)
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if int(info) == 0:
                return upper
    raise RuntimeError("the layer Hessian is not positive definite even after extra damping")


def _prune_block(w: Tensor, hinv: Tensor, target: Target) -> tuple[Tensor, Tensor]:
    """OBS over one block of columns; returns the pruned block and the scaled errors."""
    w = w.clone()
    _rows, width = w.shape
    errors = torch.zeros_like(w)
    diag = torch.diag(hinv)
    prune = torch.zeros_like(w, dtype=torch.bool)
    if not target.is_nm:
        saliency = (w.square() / diag.square()).flatten()
        k = round(target.sparsity * saliency.numel())
        if k:
            prune.view(-1)[saliency.topk(k, largest=False).indices] = True
    for i in range(width):
        if target.is_nm and i % target.m == 0:
            group = w[:, i : i + target.m].square() / diag[i : i + target.m].square()
            drop = group.topk(target.m - target.n, dim=1, largest=False).indices
            prune[:, i : i + target.m].scatter_(1, drop, True)
        column = w[:, i]
        kept = torch.where(prune[:, i], torch.zeros_like(column), column)
        error = (column - kept) / hinv[i, i]
        w[:, i:] -= error.unsqueeze(1) @ hinv[i, i:].unsqueeze(0)
        w[:, i] = kept
        errors[:, i] = error
    return w, errors
