"""Magnitude and Wanda masks: exact counts per row, valid N:M, and Wanda's |W|·‖X‖ by hand."""

from __future__ import annotations

import pytest
import torch

from prunekit.hf.row_pruning import Target, parse_nm, row_keep_mask, wanda_scores
from prunekit.sparse.nm import is_nm_sparse


def test_every_row_loses_exactly_its_share():
    scores = torch.rand(7, 30, generator=torch.Generator().manual_seed(0))
    keep = row_keep_mask(scores, Target(sparsity=0.3))
    assert keep.sum(dim=1).tolist() == [21] * 7
    # what is dropped in a row is never better than what is kept in that row
    for row, k in zip(scores, keep):
        assert row[~k].max() < row[k].min()


def test_nm_mask_is_valid_and_keeps_the_best_of_each_block():
    scores = torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    keep = row_keep_mask(scores, Target(n=2, m=4))
    assert is_nm_sparse(keep.float(), 2, 4)
    assert int(keep.sum()) == 4 * 16 // 2
    blocks, kept = scores.view(-1, 4), keep.view(-1, 4)
    assert torch.equal(kept, blocks >= blocks.topk(2, dim=1).values[:, -1:])


def test_wanda_matches_a_direct_computation():
    torch.manual_seed(2)
    x = torch.randn(50, 6) * torch.tensor([10.0, 0.1, 1.0, 1.0, 5.0, 0.5])
    weight = torch.randn(3, 6)
    reference = torch.empty_like(weight)
    for i in range(3):
        for j in range(6):
            reference[i, j] = abs(weight[i, j]) * torch.sqrt(sum(x[t, j] ** 2 for t in range(50)))
    norms = x.square().sum(0).sqrt()
    torch.testing.assert_close(wanda_scores(weight, norms), reference)
    # the loud input feature 0 survives in every row even where its weight is the smallest
    weight[:, 0] = 0.05
    assert row_keep_mask(wanda_scores(weight, norms), Target(sparsity=0.5))[:, 0].all()


@pytest.mark.parametrize("bad", [{}, {"sparsity": 0.5, "n": 2, "m": 4}, {"sparsity": 1.0},
                                 {"n": 5, "m": 4}])
def test_bad_targets_are_refused(bad):
    with pytest.raises(ValueError):
        Target(**bad)


def test_parse_nm():
    assert (parse_nm("2:4").n, parse_nm("2:4").m) == (2, 4)
    with pytest.raises(ValueError, match="2:4"):
        parse_nm("half")
