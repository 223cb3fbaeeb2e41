"""nn.MultiheadAttention: heads removed exactly (the module rewritten to fewer heads), kept with
the reason when the call needs them all, MACs counted by hand where the flop counter is blind."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.evaluate import count_macs, prunable_sparsity
from prunekit.layers.multihead import PrunedMultiheadAttention
from prunekit.structured.graph import build_graph
from prunekit.unstructured import prune_by_ratio


class CrossAttention(nn.Module):
    """Queries from one sequence, keys and values from another of its own width (kdim/vdim)."""

    def __init__(self, batch_first: bool = True, **options) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.q_in, self.kv_in = nn.Linear(6, 16), nn.Linear(5, 12)
        self.attn = nn.MultiheadAttention(16, 4, kdim=12, vdim=12, batch_first=batch_first,
                                          **options)
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor, memory: Tensor, padding: Tensor) -> Tensor:
        q, kv = F.relu(self.q_in(x)), F.relu(self.kv_in(memory))
        if not self.batch_first:
            q, kv = q.transpose(0, 1), kv.transpose(0, 1)
        out = self.attn(q, kv, kv, key_padding_mask=padding, need_weights=False)[0]
        return self.head(F.relu(out).sum(dim=1 if self.batch_first else 0))


def _inputs() -> tuple[Tensor, Tensor, Tensor]:
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 4:] = True
    return torch.randn(2, 5, 6), torch.randn(2, 7, 5), padding


@pytest.mark.parametrize("options", [
    {"batch_first": True}, {"batch_first": False, "add_bias_kv": True},
    {"batch_first": True, "add_zero_attn": True, "bias": False},
])
def test_heads_and_widths_are_removed_exactly(options: dict, exact_removal) -> None:
    before, after, graph = exact_removal(CrossAttention(**options), _inputs(), 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    attn = graph.model.attn
    assert isinstance(attn, PrunedMultiheadAttention)
    assert attn.num_heads == 2 and attn.head_dim == 4
    assert (attn.embed_dim, attn.kdim, attn.out_features) == (8, 6, 8)


class SelfAttention(nn.Module):
    def __init__(self, use_weights: bool = False) -> None:
        super().__init__()
        self.use_weights = use_weights
        self.inp, self.attn, self.head = nn.Linear(6, 16), nn.MultiheadAttention(16, 4), nn.Linear(16, 3)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.inp(x)
        out, weights = self.attn(h, h, h, attn_mask=mask)
        pooled = out.mean(dim=0)
        return self.head(pooled) + weights.sum() if self.use_weights else self.head(pooled)


def _heads_pinned_because(model: nn.Module, mask: Tensor) -> tuple[str, ...]:
    graph = build_graph(model, (torch.randn(5, 2, 6), mask))
    return next(p.reasons for p in graph.pinned if p.module == "attn")


def test_heads_are_kept_when_the_call_needs_them_all() -> None:
    per_head = torch.zeros(2 * 4, 5, 5, dtype=torch.bool)
    assert any("one slice per head" in r for r in _heads_pinned_because(SelfAttention(), per_head))
    shared = torch.zeros(5, 5, dtype=torch.bool)
    assert any("weights it returns" in r
               for r in _heads_pinned_because(SelfAttention(use_weights=True), shared))
    graph = build_graph(SelfAttention(), (torch.randn(5, 2, 6), shared))
    assert graph.group_of("attn") is not None and graph.group_of("attn").size == 4


def test_macs_are_counted_on_the_fused_path_too() -> None:
    model = CrossAttention(add_bias_kv=True).eval()
    x, memory, padding = _inputs()
    projections = 2 * 5 * 16 * 16 * 2 + 2 * 7 * 12 * 16 * 2  # q and out, k and v
    products = 2 * 2 * 5 * (7 + 1) * 16  # q·kᵀ and weights·v over 7 keys + bias_k
    linears = 2 * 5 * 6 * 16 + 2 * 7 * 5 * 12 + 2 * 16 * 3
    assert count_macs(model, (x, memory, padding)) == projections + products + linears


def test_unstructured_pruning_covers_the_projections() -> None:
    model = CrossAttention()
    prune_by_ratio(model, 0.8)
    for weight in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
        tensor = getattr(model.attn, weight)
        assert 0.5 < float((tensor == 0).float().mean()) < 1.0
    assert float((model.attn.out_proj.weight == 0).float().mean()) > 0.5
    assert prunable_sparsity(model) == pytest.approx(0.8, abs=1e-3)
