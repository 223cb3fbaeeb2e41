"""PrunedMultiheadAttention computes what nn.MultiheadAttention does, in every mode it offers."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit
from prunekit.layers.multihead import PrunedMultiheadAttention


@pytest.mark.parametrize(("batch_first", "bias_kv", "zero_attn", "kdim"),
                         list(itertools.product([True, False], [True, False], [True, False],
                                                [None, 6]))[::3])
def test_same_outputs_and_weights_as_the_module_it_replaces(
    batch_first: bool, bias_kv: bool, zero_attn: bool, kdim: int | None
) -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, add_bias_kv=bias_kv, add_zero_attn=zero_attn, kdim=kdim,
                                vdim=kdim, batch_first=batch_first).eval()
    pruned = PrunedMultiheadAttention.from_module(mha).eval()
    width = kdim or 8
    q = torch.randn(3, 4, 8) if batch_first else torch.randn(4, 3, 8)
    kv = torch.randn(3, 5, width) if batch_first else torch.randn(5, 3, width)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[0, 3:] = True
    causal = torch.triu(torch.ones(4, 5, dtype=torch.bool), diagonal=1)
    for kwargs in ({}, {"key_padding_mask": padding}, {"attn_mask": causal},
                   {"need_weights": False, "key_padding_mask": padding},
                   {"average_attn_weights": False, "attn_mask": causal.float() * -1e4}):
        with torch.no_grad():
            expected, got = mha(q, kv, kv, **kwargs), pruned(q, kv, kv, **kwargs)
        torch.testing.assert_close(got[0], expected[0], atol=1e-6, rtol=1e-5)
        if expected[1] is None:
            assert got[1] is None
        else:
            torch.testing.assert_close(got[1], expected[1], atol=1e-6, rtol=1e-5)


def test_unbatched_inputs_and_saving(tmp_path: Path) -> None:
    mha = nn.MultiheadAttention(8, 4).eval()
    pruned = PrunedMultiheadAttention.from_module(mha).eval()
    x = torch.randn(5, 8)
    torch.testing.assert_close(pruned(x, x, x)[0], mha(x, x, x)[0], atol=1e-6, rtol=1e-5)

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = pruned

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.attn(t, t, t, need_weights=False)[0]

    holder = Holder().eval()
    loaded = prunekit.load(prunekit.save(holder, tmp_path / "attn.safetensors"))
    batch = torch.randn(5, 2, 8)
    torch.testing.assert_close(loaded(batch), holder(batch), atol=0, rtol=0)
