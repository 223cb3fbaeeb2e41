"""``PrunedMultiheadAttention``: ``nn.MultiheadAttention`` with fewer heads than its width holds.

Why a class of its own: ``nn.MultiheadAttention`` ties the width of its input, of its heads
together and of its output to one ``embed_dim``, so removing a head (``head_dim`` of that width)
cannot be expressed in it. Structured pruning therefore rewrites a pruned one into this module:
the same computation (the same arguments, masks, dropout, ``batch_first``, returned attention
weights), with separate ``q/k/v`` projections of width ``num_heads × head_dim`` and an output
projection back to any width. Its sizes are read off its tensors, so pruning it further only
cuts tensors.

>>> import torch
>>> from torch import nn
>>> mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
>>> pruned = PrunedMultiheadAttention.from_module(mha).eval()
>>> x = torch.randn(3, 5, 8)
>>> torch.allclose(pruned(x, x, x)[0], mha(x, x, x)[0], atol=1e-6)
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PrunedMultiheadAttention(nn.Module):
    """Multi-head attention with ``num_heads × head_dim`` inner width and any in/out widths.

    The forward signature and results are ``nn.MultiheadAttention``'s.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        head_dim: int,
        kdim: int | None = None,
        vdim: int | None = None,
        out_features: int | None = None,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        dropout: float = 0.0,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.head_dim, self.dropout = head_dim, dropout
        self.add_zero_attn, self.batch_first = add_zero_attn, batch_first
        self.q_proj_weight = nn.Parameter(torch.empty(inner, embed_dim))
        self.k_proj_weight = nn.Parameter(torch.empty(inner, kdim or embed_dim))
        self.v_proj_weight = nn.Parameter(torch.empty(inner, vdim or embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner)) if bias else None
        self.bias_k = nn.Parameter(torch.zeros(1, 1, inner)) if add_bias_kv else None
        self.bias_v = nn.Parameter(torch.zeros(1, 1, inner)) if add_bias_kv else None
        self.out_proj = nn.Linear(inner, out_features or embed_dim, bias=bias)
        for weight in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            nn.init.xavier_uniform_(weight)

    @property
    def num_heads(self) -> int:
        return self.q_proj_weight.shape[0] // self.head_dim

    @property
    def embed_dim(self) -> int:
        return self.q_proj_weight.shape[1]

    @property
    def kdim(self) -> int:
        return self.k_proj_weight.shape[1]

    @property
    def vdim(self) -> int:
        return self.v_proj_weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.out_proj.out_features

    @classmethod
    def from_module(cls, mha: nn.MultiheadAttention) -> PrunedMultiheadAttention:
        """The same attention, holding ``mha``'s tensors (whatever slices of them are left) and
        its ``out_proj`` module itself."""
        if mha.in_proj_weight is not None:
            q, k, v = mha.in_proj_weight.detach().chunk(3)
        else:
            q, k, v = (w.detach() for w in (mha.q_proj_weight, mha.k_proj_weight,
                                              mha.v_proj_weight))
        with torch.device("meta"):
            new = cls(q.shape[1], q.shape[0] // mha.head_dim, mha.head_dim, k.shape[1],
                      v.shape[1], bias=mha.in_proj_bias is not None,
                      add_bias_kv=mha.bias_k is not None, add_zero_attn=mha.add_zero_attn,
                      dropout=mha.dropout, batch_first=mha.batch_first)
        grad = next(mha.parameters()).requires_grad
        new.q_proj_weight, new.k_proj_weight, new.v_proj_weight = (
            nn.Parameter(t.clone(), requires_grad=grad) for t in (q, k, v))
        for name in ("in_proj_bias", "bias_k", "bias_v"):
            tensor = getattr(mha, name)
            setattr(new, name, None if tensor is None else nn.Parameter(
                tensor.detach().clone(), requires_grad=tensor.requires_grad))
        new.out_proj = mha.out_proj
        return new.train(mha.training)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if is_causal and attn_mask is None:
            raise RuntimeError("is_causal is a hint: give the causal mask as attn_mask too, as "
                               "nn.MultiheadAttention needs")
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        target, batch, heads, dim = query.shape[0], query.shape[1], self.num_heads, self.head_dim
        biases = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
        q = F.linear(query, self.q_proj_weight, biases[0])
        k = F.linear(key, self.k_proj_weight, biases[1])
        v = F.linear(value, self.v_proj_weight, biases[2])
        mask = _float_mask(attn_mask, q.dtype)
        padding = _float_mask(key_padding_mask, q.dtype)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.repeat(1, batch, 1)])
            v = torch.cat([v, self.bias_v.repeat(1, batch, 1)])
            mask = None if mask is None else F.pad(mask, (0, 1))
            padding = None if padding is None else F.pad(padding, (0, 1))
        q = q.view(target, batch * heads, dim).transpose(0, 1)
        k = k.reshape(k.shape[0], batch * heads, dim).transpose(0, 1)
        v = v.reshape(v.shape[0], batch * heads, dim).transpose(0, 1)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(batch * heads, 1, dim)], dim=1)
            v = torch.cat([v, v.new_zeros(batch * heads, 1, dim)], dim=1)
            mask = None if mask is None else F.pad(mask, (0, 1))
            padding = None if padding is None else F.pad(padding, (0, 1))
        source = k.shape[1]
        if mask is not None and mask.dim() == 2:
            mask = mask.unsqueeze(0)
        if padding is not None:
            padding = padding.view(batch, 1, 1, source).expand(-1, heads, -1, -1)
            padding = padding.reshape(batch * heads, 1, source)
            mask = padding if mask is None else mask + padding
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            scores = torch.bmm(q * (1.0 / math.sqrt(dim)), k.transpose(-2, -1))
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            if dropout > 0.0:
                weights = F.dropout(weights, p=dropout)
            attended = torch.bmm(weights, v).transpose(0, 1).reshape(target * batch, -1)
            weights = weights.view(batch, heads, target, source)
            returned: Tensor | None = weights.mean(dim=1) if average_attn_weights else weights
        else:
            if mask is not None:
                mask = mask.unsqueeze(0) if mask.shape[0] == 1 else mask.view(
                    batch, heads, -1, source)
            attended = F.scaled_dot_product_attention(
                q.view(batch, heads, target, dim), k.view(batch, heads, source, dim),
                v.view(batch, heads, source, dim), attn_mask=mask, dropout_p=dropout)
            attended = attended.permute(2, 0, 1, 3).reshape(target * batch, -1)
            returned = None
        out = self.out_proj(attended).view(target, batch, -1)
        if not batched:
            return out.squeeze(1), None if returned is None else returned.squeeze(0)
        return (out.transpose(0, 1) if self.batch_first else out), returned


def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask (True = do not attend) as the additive float mask attention adds."""
    if mask is None or mask.is_floating_point():
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)
