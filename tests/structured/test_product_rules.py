"""Attention heads however attention is written: q, k and v always lose the same heads, and
removing zeroed heads leaves the outputs unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.structured.graph import build_graph

D, HEADS, HEAD_DIM = 16, 4, 4


def _units(graph, module: str, dim: int = 0) -> np.ndarray:
    member = next(m for m in graph.members if (m.module, m.param, m.dim) == (module, "weight", dim))
    return graph.units_of(member.ids)


class Attention(nn.Module):
    """One module, several ways of writing the same attention (``style``)."""

    def __init__(self, style: str, kv_heads: int = HEADS) -> None:
        super().__init__()
        self.style, self.num_heads, self.num_kv_heads, self.head_dim = style, HEADS, kv_heads, 4
        self.q = nn.Linear(D, D)
        self.k, self.v = nn.Linear(D, kv_heads * 4), nn.Linear(D, kv_heads * 4)
        self.o = nn.Linear(D, D)

    def _split(self, t: Tensor, heads: int) -> Tensor:
        b, n, _ = t.shape
        if self.style == "unflatten":
            return t.unflatten(-1, (-1, self.head_dim)).transpose(1, 2)
        return t.view(b, n, heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, _ = x.shape
        q = self._split(self.q(x), self.num_heads)
        k, v = self._split(self.k(x), self.num_kv_heads), self._split(self.v(x), self.num_kv_heads)
        if self.style == "matmul":
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            out = torch.softmax(scores.masked_fill(~mask, -1e9) if mask is not None else scores,
                                dim=-1) @ v
        elif self.style == "repeat_interleave":
            group = self.num_heads // self.num_kv_heads
            out = F.scaled_dot_product_attention(q, k.repeat_interleave(group, dim=1),
                                                 v.repeat_interleave(group, dim=1))
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=self.style == "causal",
                enable_gqa=self.num_kv_heads != self.num_heads)
        out = out.transpose(1, 2)
        if self.style == "unflatten":  # sizes all inferred: no attribute to follow
            return self.o(out.flatten(2))
        return self.o(out.reshape(b, n, self.num_heads * self.head_dim))


class Wrapped(nn.Module):
    def __init__(self, attention: Attention) -> None:
        super().__init__()
        self.embed, self.attn, self.head = nn.Linear(6, D), attention, nn.Linear(D, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.attn(F.relu(self.embed(x)))).mean(dim=1))


class WrappedMasked(Wrapped):
    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.head(F.relu(self.attn(F.relu(self.embed(x)), mask)).mean(dim=1))


def _inputs(masked: bool) -> tuple[Tensor, ...]:
    x = torch.randn(2, 5, 6)
    if not masked:
        return (x,)
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    keep[0, ..., 3:] = False
    return x, keep


@pytest.mark.parametrize(("style", "kv_heads", "masked"), [
    ("view", HEADS, False), ("unflatten", HEADS, False), ("matmul", HEADS, False),
    ("matmul", HEADS, True), ("sdpa", HEADS, True), ("causal", HEADS, False),
    ("view", 2, False), ("repeat_interleave", 2, False),
])
def test_heads_are_one_unit_in_q_k_v_and_removal_is_exact(
    style: str, kv_heads: int, masked: bool, exact_removal
) -> None:
    wrapper = WrappedMasked if masked else Wrapped
    inputs = _inputs(masked)
    graph = build_graph(wrapper(Attention(style, kv_heads)), inputs)
    q, k, v = (_units(graph, f"attn.{n}") for n in "qkv")
    group = HEADS // kv_heads
    assert (q >= 0).all() and len(np.unique(q)) == kv_heads  # a unit per key/value head
    np.testing.assert_array_equal(q, np.repeat(k[::HEAD_DIM], group * HEAD_DIM))
    np.testing.assert_array_equal(k, v)
    np.testing.assert_array_equal(_units(graph, "attn.o", dim=1), q)
    before, after, graph = exact_removal(wrapper(Attention(style, kv_heads)), inputs, 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    attn = graph.model.attn
    assert attn.q.out_features == group * attn.k.out_features < D
    if style != "unflatten":  # the head counts the forward reads were set to what is left
        assert attn.q.out_features == attn.num_heads * HEAD_DIM
        assert attn.k.out_features == attn.num_kv_heads * HEAD_DIM


def test_a_per_head_mask_of_fixed_size_pins_the_heads_and_says_why() -> None:
    model = WrappedMasked(Attention("sdpa"))
    x = torch.randn(2, 5, 6)
    per_head = torch.ones(2, HEADS, 5, 5, dtype=torch.bool)
    graph = build_graph(model, (x, per_head))
    assert (_units(graph, "attn.q") == -1).all()
    reasons = next(p.reasons for p in graph.pinned if p.module == "attn.q")
    assert any("one slice per head" in r for r in reasons)


def test_explicit_matmul_attention_keeps_q_and_k_in_one_group() -> None:
    """The corruption this guards against: q and k as separate groups lose different heads."""
    graph = build_graph(Wrapped(Attention("matmul")), _inputs(False))
    group = graph.group_of("attn.q")
    assert group is not None and {"attn.q", "attn.k", "attn.v"} <= set(group.modules)
