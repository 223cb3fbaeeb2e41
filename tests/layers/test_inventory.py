"""What pruning covers and what it leaves: every weight matrix is either pruned or named."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from prunekit.evaluate import prunable_sparsity
from prunekit.layers import prunable_weights, skipped_weights
from prunekit.unstructured import prune_by_ratio


class Tagger(nn.Module):
    """Embedding → LSTM → a tied output projection, plus a raw positional table."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.position = nn.Parameter(torch.zeros(1, 6, 8))
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.out = nn.Linear(8, 20, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return self.out(self.lstm(self.embed(tokens) + self.position)[0])


def test_every_weight_matrix_is_pruned_or_named_with_a_reason() -> None:
    model = Tagger()
    names = [w.name for w in prunable_weights(model)]
    assert names == ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "out.weight"]  # tied: once
    skipped = skipped_weights(model)
    assert set(skipped) == {"position"}  # the tied table is pruned through out.weight
    assert "no layer description" in skipped["position"]


def test_embeddings_are_opt_in_and_ignore_names_modules_or_tensors() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    assert "embedding table" in skipped_weights(model)["0.weight"]
    assert next(w.name for w in prunable_weights(model, embeddings=True)) == "0.weight"
    assert [w.name for w in prunable_weights(model, ["1", "2.weight"])] == []
    assert skipped_weights(model, ["1"])["1.weight"] == "ignored (named in ignore)"
    with pytest.raises(ValueError, match="not modules or parameters"):
        prunable_weights(model, ["3"])


def test_the_reported_sparsity_is_over_exactly_the_pruned_weights() -> None:
    model = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 16))
    prune_by_ratio(model, 0.5, embeddings=True)
    zeros = sum(int((p == 0).sum()) for p in (model[0].weight, model[1].weight))
    assert prunable_sparsity(model, embeddings=True) == pytest.approx(zeros / (800 + 256))
    assert prunable_sparsity(model, embeddings=True) == pytest.approx(0.5, abs=1e-3)
