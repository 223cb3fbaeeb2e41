"""``nn.MultiheadAttention`` (and :class:`~.multihead.PrunedMultiheadAttention`): heads as units.

Element-wise pruning covers the packed ``in_proj_weight`` (or ``q/k/v_proj_weight`` when key and
value have their own widths); ``out_proj`` is an ``nn.Linear`` and pruned as one. In eval mode
without gradients PyTorch runs the module as one fused op that ``torch.utils.flop_counter`` does
not count, so MACs are counted by hand: the three projections, ``q·kᵀ`` and ``attention·v`` for
every head, and the output projection.

Structured units: each head (its ``head_dim`` rows of q, k and v, of their biases and of
``bias_k``/``bias_v``, and its columns of ``out_proj``) is born here; the input features are the
previous units' columns of the projections (one column of the packed weight serves q, k and v,
so query, key and value inputs are coupled), and ``out_proj``'s rows are units too. A pruned
module cannot stay an ``nn.MultiheadAttention`` (it ties every width to ``embed_dim``), so the
rewrite turns it into a :class:`~.multihead.PrunedMultiheadAttention` that computes the same.
Heads stay whole when the call passes a per-head ``attn_mask`` of shape ``(batch·heads, L, S)``
or uses the returned attention weights (averaged over the heads, they change with the count).

>>> import torch
>>> from torch import nn
>>> from prunekit.layers import kind_of
>>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
>>> x = torch.zeros(1, 5, 8)
>>> kind_of(mha).macs(mha, (x, x, x), None) == 5 * 8 * 8 * 4 + 2 * 5 * 5 * 8
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn

from prunekit.layers.kind import LAYER_KINDS, LayerKind, Rebuild, Weight
from prunekit.layers.multihead import PrunedMultiheadAttention
from prunekit.structured.channels import Channels, MacsTerm
from prunekit.structured.site import Site

_PROJECTIONS = tuple(Weight(name) for name in
                     ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"))


def _lengths(m: nn.Module, query: Any, key: Any) -> tuple[int, int, int]:
    """(batch, query length, key length) of a call on tensors (or shapes) ``query``, ``key``."""
    query, key = getattr(query, "shape", query), getattr(key, "shape", key)
    if len(query) == 2:
        return 1, int(query[0]), int(key[0])
    seq = 1 if m.batch_first else 0
    return int(query[1 - seq]), int(query[seq]), int(key[seq])


def _macs(m: nn.MultiheadAttention, inputs: tuple[Any, ...], output: Any) -> int:
    query, key = inputs[0], inputs[1]
    batch, target, source = _lengths(m, query, key)
    e = m.embed_dim
    projections = target * e * e + source * (m.kdim + m.vdim) * e + target * e * e
    attended = source + (m.bias_k is not None) + bool(m.add_zero_attn)
    return batch * (projections + 2 * target * attended * e)


def _weights_used(site: Site) -> bool:
    """Whether the call returns attention weights that the model goes on to use."""
    if not site.arg(4, "need_weights", True):
        return False
    return any(user.args[1:2] == (1,) and user.users for user in site.node.users)


def multihead(site: Site, name: str, m: nn.Module) -> tuple[Channels, None]:
    """Heads and input features of the projections, and ``out_proj``'s rows."""
    prop = site.prop
    inputs = [site.arg(i, key) for i, key in enumerate(("query", "key", "value"))]
    widths = (m.embed_dim, m.kdim, m.vdim)
    cols = [site.ids_at(x, len(site.shape(x)) - 1, w) for x, w in zip(inputs, widths)]
    packed = getattr(m, "in_proj_weight", None) is not None
    if packed:
        prop.union(cols[0], cols[1])
        prop.union(cols[0], cols[2])
    heads = prop.new_space(m.num_heads, name)
    rows = np.repeat(heads, m.head_dim)
    if packed:
        site.member(name, m, "in_proj_weight", 0, np.tile(rows, 3), "coupled")
        site.member(name, m, "in_proj_weight", 1, cols[0], "in")
    for weight, ids in zip(("q_proj_weight", "k_proj_weight", "v_proj_weight"), cols):
        site.member(name, m, weight, 0, rows, "coupled")
        site.member(name, m, weight, 1, ids, "in")
    site.member(name, m, "in_proj_bias", 0, np.tile(rows, 3), "coupled")
    for bias in ("bias_k", "bias_v"):
        site.member(name, m, bias, 2, rows, "coupled")
    out_name = f"{name}.out_proj"
    out = prop.new_space(m.out_proj.out_features, out_name)
    site.member(out_name, m.out_proj, "weight", 0, out, "out")
    site.member(out_name, m.out_proj, "weight", 1, rows, "in")
    site.member(out_name, m.out_proj, "bias", 0, out, "out")
    for axis, ids in zip(("in", "kdim", "vdim"), cols):
        prop.axis(name, axis, ids)
    prop.axis(name, "heads", heads)
    prop.axis(out_name, "in", rows)
    prop.axis(out_name, "out", out)
    mask = site.shape(site.arg(5, "attn_mask"))
    if mask is not None and len(mask) == 3:
        site.pin(heads, "its attn_mask has one slice per head (batch·heads, L, S), of fixed "
                        "size: pass a (L, S) mask")
    if _weights_used(site):
        site.pin(heads, "the attention weights it returns (averaged over the heads) are used: "
                        "pass need_weights=False")
    prop.mark_unfoldable(heads)
    _record_macs(site, name, m, cols, rows, heads, out)
    return Channels(len(site.shape(inputs[0])) - 1, out, True), None


def _record_macs(site: Site, name: str, m: nn.Module, cols: list[np.ndarray], rows: np.ndarray,
                 heads: np.ndarray, out: np.ndarray) -> None:
    shapes = [site.shape(site.arg(i, key)) for i, key in enumerate(("query", "key", "value"))]
    tokens = [math.prod(int(d) for d in s[:-1]) for s in shapes]
    inner = len(rows)
    batch, target, source = _lengths(m, *shapes[:2])
    attended = source + (m.bias_k is not None) + bool(m.add_zero_attn)
    for count, ids, width in zip(tokens, cols, (m.embed_dim, m.kdim, m.vdim)):
        site.prop.macs.append(MacsTerm(name, count * width * inner, rows, ids))
    site.prop.macs.append(MacsTerm(name, 2 * batch * target * attended * inner, heads, None))
    site.prop.macs.append(MacsTerm(f"{name}.out_proj", tokens[0] * inner * len(out), out, rows))


def _to_pruned(m: nn.MultiheadAttention, kept: dict[str, int]) -> PrunedMultiheadAttention:
    return PrunedMultiheadAttention.from_module(m)


_REBUILD_FLAGS = {"bias": "in_proj_bias", "add_bias_kv": "bias_k"}

LAYER_KINDS[nn.MultiheadAttention] = LayerKind(
    weights=_PROJECTIONS, propagate=multihead, resize=_to_pruned, macs=_macs,
    rebuild=Rebuild(
        ("embed_dim", "num_heads", "dropout", "add_zero_attn", "kdim", "vdim", "batch_first"),
        _REBUILD_FLAGS,
    ),
)
LAYER_KINDS[PrunedMultiheadAttention] = LayerKind(
    weights=_PROJECTIONS, propagate=multihead,
    rebuild=Rebuild(
        ("embed_dim", "num_heads", "head_dim", "kdim", "vdim", "out_features", "dropout",
         "add_zero_attn", "batch_first"),
        _REBUILD_FLAGS,
    ),
)
