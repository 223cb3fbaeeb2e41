"""SparseGPT against a reference: plain OBS, one column at a time, no lazy batching."""

from __future__ import annotations

import torch

from prunekit.hf.row_pruning import Target, row_keep_mask
from prunekit.hf.sparsegpt import hessian_from_inputs, reconstruction_error, sparsegpt_prune
from prunekit.sparse.nm import is_nm_sparse


def _reference_obs(weight, hessian, prune_mask, damping=0.01):
    """Prune the fixed ``prune_mask`` column by column; after each column, update every later
    column through the exact inverse of the Hessian restricted to the columns still to come."""
    w = weight.double().clone()
    h = hessian.double().clone()
    h += damping * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    columns = w.shape[1]
    for i in range(columns):
        hinv = torch.linalg.inv(h[i:, i:])  # inverse Hessian of the columns not yet fixed
        q = torch.where(prune_mask[:, i], torch.zeros_like(w[:, i]), w[:, i])
        error = (w[:, i] - q) / hinv[0, 0]
        w[:, i:] -= error.unsqueeze(1) * hinv[0].unsqueeze(0)
        w[:, i] = q
    return w


def _data(rows=6, columns=24, tokens=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, columns, generator=g) @ torch.randn(columns, columns, generator=g)
    return torch.randn(rows, columns, generator=g), x


def test_lazy_blocked_updates_equal_plain_obs_for_nm():
    """N:M masks depend only on the current columns, so a fixed-mask reference is exact."""
    weight, x = _data()
    hessian = hessian_from_inputs(x)
    pruned = sparsegpt_prune(weight, hessian, Target(n=2, m=4), block_size=8)
    mask = pruned == 0
    reference = _reference_obs(weight, hessian, mask)
    torch.testing.assert_close(pruned.double(), reference, rtol=1e-4, atol=1e-5)
    assert is_nm_sparse(pruned, 2, 4)


def test_block_size_does_not_change_an_nm_result():
    weight, x = _data(seed=1)
    hessian = hessian_from_inputs(x)
    one = sparsegpt_prune(weight, hessian, Target(n=2, m=4), block_size=4)
    whole = sparsegpt_prune(weight, hessian, Target(n=2, m=4), block_size=24)
    torch.testing.assert_close(one, whole, rtol=1e-4, atol=1e-5)


def test_unstructured_counts_are_exact_per_block():
    weight, x = _data(rows=8, columns=32, seed=2)
    pruned = sparsegpt_prune(weight, hessian_from_inputs(x), Target(sparsity=0.5), block_size=16)
    for start in (0, 16):
        assert int((pruned[:, start : start + 16] == 0).sum()) == 64


def test_reconstruction_beats_magnitude_and_wanda_on_the_same_layer():
    weight, x = _data(rows=16, columns=32, tokens=400, seed=3)
    hessian = hessian_from_inputs(x)
    target = Target(sparsity=0.5)
    sparse = sparsegpt_prune(weight, hessian, target, block_size=16)
    magnitude = weight * row_keep_mask(weight.abs(), target)
    norms = x.square().sum(0).sqrt()
    wanda = weight * row_keep_mask(weight.abs() * norms, target)
    errors = {name: reconstruction_error(weight, w, x)
              for name, w in (("sparsegpt", sparse), ("wanda", wanda), ("magnitude", magnitude))}
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors


def test_dead_inputs_are_zeroed():
    weight, x = _data(seed=4)
    x[:, 5] = 0  # an input never seen carries nothing
    pruned = sparsegpt_prune(weight, hessian_from_inputs(x), Target(sparsity=0.25), block_size=8)
    assert (pruned[:, 5] == 0).all()
    assert torch.isfinite(pruned).all()
