"""A tiny pre-norm Transformer encoder classifier over sequences of row vectors.

Why: attention-head and FFN-neuron pruning need a transformer small enough to train on MNIST-5k
in seconds. Attention uses explicit ``query``/``key``/``value``/``out`` Linear layers, not
``nn.MultiheadAttention`` (whose packed ``in_proj_weight`` hides the heads): a head is then a
contiguous block of ``head_dim`` rows of q, k, v and columns of ``out``, and the number of heads
is inferred from the layer widths in ``forward`` (``unflatten(-1, (-1, head_dim))``), so removing
heads needs no change to the code. Images ``N×C×H×W`` are read as ``C·H`` tokens of ``W`` features.

>>> import torch
>>> TinyTransformer()(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prunekit.models.registry import register


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        self.head_dim = d_model // num_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (-1, self.head_dim)).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        attended = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(attended.transpose(1, 2).flatten(2))


class EncoderBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, num_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


@register("tiny_transformer")
class TinyTransformer(nn.Module):
    """Linear token embedding + learned positions, encoder blocks, mean pool, Linear head."""

    def __init__(
        self,
        input_size: int = 28,
        max_len: int = 28,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        ffn_dim: int = 128,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(input_size, d_model)
        self.position = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(
            *[EncoderBlock(d_model, num_heads, ffn_dim) for _ in range(num_layers)]
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.flatten(1, -2)
        x = self.embed(tokens) + self.position[:, : tokens.size(1)]
        return self.head(self.norm(self.blocks(x)).mean(dim=1))
