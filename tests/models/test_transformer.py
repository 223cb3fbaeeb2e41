from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.models.transformer import SelfAttention, TinyTransformer


def test_attention_matches_torch_multihead_attention() -> None:
    ours = SelfAttention(d_model=8, num_heads=2).eval()
    reference = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(
            torch.cat([ours.query.weight, ours.key.weight, ours.value.weight])
        )
        reference.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
        reference.out_proj.weight.copy_(ours.out.weight)
        reference.out_proj.bias.copy_(ours.out.bias)
    x = torch.randn(3, 5, 8)
    expected = reference(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(ours(x), expected, atol=1e-6, rtol=1e-5)


def _keep_rows(layer: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    smaller = nn.Linear(layer.in_features, len(rows))
    with torch.no_grad():
        smaller.weight.copy_(layer.weight[rows])
        smaller.bias.copy_(layer.bias[rows])
    return smaller


def test_removing_a_head_needs_no_change_to_forward() -> None:
    """Zeroing head 0's value rows, then deleting head 0 from q/k/v/out, keeps the output."""
    attention = SelfAttention(d_model=8, num_heads=4).eval()
    with torch.no_grad():
        attention.value.weight[:2] = 0
        attention.value.bias[:2] = 0
    x = torch.randn(2, 5, 8)
    expected = attention(x)
    keep = torch.arange(2, 8)
    attention.query = _keep_rows(attention.query, keep)
    attention.key = _keep_rows(attention.key, keep)
    attention.value = _keep_rows(attention.value, keep)
    out = nn.Linear(6, 8)
    with torch.no_grad():
        out.weight.copy_(attention.out.weight[:, keep])
        out.bias.copy_(attention.out.bias)
    attention.out = out
    torch.testing.assert_close(attention(x), expected, atol=1e-6, rtol=1e-5)


def test_images_are_row_sequences_and_shorter_sequences_work() -> None:
    model = TinyTransformer(input_size=28, max_len=28).eval()
    images = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(images), model(images[:, 0]))
    assert model(torch.rand(2, 10, 28)).shape == (2, 10)


def test_bad_head_count_is_explained() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention(d_model=10, num_heads=4)
