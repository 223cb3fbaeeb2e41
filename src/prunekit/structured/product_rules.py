"""Propagation rules for products of tensors: ``a @ b`` and scaled dot-product attention.

In ``q @ k.transpose(-2, -1)`` the contracted dims of both operands must shrink together (a
zeroed unit contributes nothing to the sum, so removing it is exact), batch dims are the same
units in both operands (head *h* of ``q`` meets head *h* of ``k``: they are coupled, as in an
elementwise op), and rows and columns carry their ids into the result. Attention heads are a
batch dim of ``scaled_dot_product_attention``: the same head is one unit in q, k and v; with
``enable_gqa`` (fewer key/value heads) each key/value head is one unit with the query heads it
serves, so grouped-query attention keeps its groups. A mask broadcast over the heads leaves them
prunable; a per-head mask of fixed size pins them. Each product records its MACs, which scale
with the units it carries.

>>> import torch
>>> from torch import nn
>>> from prunekit.structured.graph import build_graph
>>> class Scores(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.q, self.k = nn.Linear(4, 6), nn.Linear(4, 6)
...     def forward(self, x):
...         return (self.q(x) @ self.k(x).transpose(-2, -1)).sum(-1)
>>> g = build_graph(Scores(), torch.zeros(1, 3, 4))
>>> g.num_units, [grp.modules for grp in g.groups]
(6, [('q', 'k')])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from prunekit.structured.channels import Channels, MacsTerm
from prunekit.structured.site import Site


def _slot(ch: Channels, ndim: int, out_ndim: int, contract: int, keep: int) -> str:
    """Where an operand's tracked dim goes: ``contract``, or ``out_<dim of the result>``."""
    if ch.dim == ndim + contract:
        return "contract"
    if ch.dim == ndim + keep:
        return f"out_{out_ndim + keep}"
    return f"out_{ch.dim + out_ndim - ndim}"


def matmul(site: Site) -> Channels | None:
    """``a @ b``: contracted dims coupled, batch dims coupled, rows and columns carried over."""
    a, b = site.node.args[0], site.node.args[1]
    sa, sb, out = site.shape(a), site.shape(b), site.out_shape
    if len(sa) < 2 or len(sb) < 2:
        site.pin_inputs("a product with a vector")
        return None
    slots: dict[str, list[tuple[Any, Channels]]] = {}
    for n, shape, contract, keep in ((a, sa, -1, -2), (b, sb, -2, -1)):
        ch = site.info(n)
        if isinstance(ch, Channels):
            slots.setdefault(_slot(ch, len(shape), len(out), contract, keep), []).append((n, ch))
    contracted = slots.pop("contract", [])
    if len(contracted) == 2:
        site.prop.union(contracted[0][1].ids, contracted[1][1].ids)
    elif contracted:
        site.pin(contracted[0][1].ids, "matmul() sums them against a tensor no layer prunes")
    kept: list[np.ndarray] = [contracted[0][1].ids] if len(contracted) == 2 else []
    result = None
    for key in sorted(slots):
        (node, first), *others = slots[key]
        for _, other in others:
            site.prop.union(first.ids, other.ids)
        dim = int(key.removeprefix("out_"))
        if result is not None:
            site.pin(first.ids, "matmul() output already carries other units")
            continue
        if dim < len(out) - 2 and not others and _broadcast_partner_is_wide(site, node, dim):
            site.pin(first.ids, "matmul() meets them with a batch dim no layer prunes")
            continue
        result = Channels(dim, first.ids, False)
        kept.append(first.ids)
    if kept:  # a product of fixed size is in the measured MACs, taken as fixed by the pruner
        dense = math.prod(int(d) for d in out) * int(sa[-1])
        site.prop.macs.append(MacsTerm(site.scope(), dense, kept[0],
                                       kept[1] if len(kept) > 1 else None))
    return result


def _broadcast_partner_is_wide(site: Site, node: Any, dim: int) -> bool:
    """True if the other operand of a matmul has size > 1 at output batch dim ``dim``."""
    a, b = site.node.args[0], site.node.args[1]
    partner = b if node is a else a
    shape, out = site.shape(partner), site.out_shape
    at = dim - (len(out) - len(shape))
    return at >= 0 and int(shape[at]) > 1


def attention(site: Site) -> Channels | None:
    """``scaled_dot_product_attention(q, k, v, attn_mask, ..., enable_gqa)``.

    Heads (dim -3) of q, k and v are coupled (grouped as GQA needs); or, with heads untouched,
    the features of q and k (contracted) are coupled and v's features carry into the output.
    """
    q, k, v = (site.arg(i, name) for i, name in enumerate(("query", "key", "value")))
    infos = [site.info(n) for n in (q, k, v)]
    shapes = [site.shape(n) for n in (q, k, v)]
    head = len(shapes[0]) - 3
    heads = [ch.dim == head if isinstance(ch, Channels) else None for ch in infos]
    dense_qk = math.prod(int(d) for d in shapes[0]) * int(shapes[1][-2])
    dense_av = math.prod(int(d) for d in shapes[0][:-1]) * int(shapes[1][-2]) * int(shapes[2][-1])
    name = site.scope()
    if all(heads) and len(shapes[0]) >= 3:
        q_ids, k_ids, v_ids = (ch.ids for ch in infos)
        site.prop.union(k_ids, v_ids)
        groups = len(q_ids) // len(k_ids)
        if len(q_ids) != groups * len(k_ids):
            site.pin_inputs("query heads are not a multiple of key/value heads")
            return None
        site.prop.union(q_ids, np.repeat(k_ids, groups))
        if not _mask_allows(site, head, q_ids):
            return None
        site.prop.macs.append(MacsTerm(name, dense_qk + dense_av, q_ids, None))
        return Channels(head, q_ids, False)
    features = [isinstance(ch, Channels) and ch.dim == len(s) - 1 for ch, s in zip(infos, shapes)]
    if not any(heads) and any(features):
        if features[0] and features[1]:
            site.prop.union(infos[0].ids, infos[1].ids)
            site.prop.macs.append(MacsTerm(name, dense_qk, infos[0].ids, None))
        elif features[0] or features[1]:
            ch = infos[0] if features[0] else infos[1]
            site.pin(ch.ids, "attention sums them against a query or key no layer prunes")
        if features[2]:
            site.prop.macs.append(MacsTerm(name, dense_av, infos[2].ids, None))
            return Channels(len(shapes[0]) - 1, infos[2].ids, False)
        return None
    site.pin_inputs("scaled_dot_product_attention() gets q, k and v with units on different "
                    "dims (give each (batch, heads, tokens, head_dim))")
    return None


def _mask_allows(site: Site, head: int, q_ids: np.ndarray) -> bool:
    """An attention mask broadcast over the heads (size 1 or absent there) keeps them free."""
    mask = site.arg(3, "attn_mask")
    shape = site.shape(mask)
    if shape is None:
        return True
    at = head - (len(site.shape(site.arg(0, "query"))) - len(shape))
    info = site.info(mask)
    if isinstance(info, Channels) and info.dim == at:
        site.prop.union(q_ids, info.ids)
        return True
    if at >= 0 and int(shape[at]) > 1:
        site.pin(q_ids, "the attention mask has one slice per head, of fixed size (broadcast it "
                        "over the heads: shape (batch, 1, tokens, tokens))")
        return False
    return True
