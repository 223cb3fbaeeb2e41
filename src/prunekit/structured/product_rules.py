"""Propagation rules for products of tensors: ``a @ b`` and scaled dot-product attention.

In ``q @ k.transpose(-2, -1)`` the contracted dims of both operands must shrink together (a
zeroed unit contributes nothing to the sum, so removing it is exact), batch dims broadcast like
an elementwise op, and rows and columns carry their ids into the result. Attention heads are a
batch dim of ``scaled_dot_product_attention``: the same head is one unit in q, k and v.

>>> from prunekit.structured.product_rules import matmul, attention
>>> callable(matmul) and callable(attention)
True
"""

from __future__ import annotations

from prunekit.structured.channels import Channels
from prunekit.structured.site import Site


def matmul(site: Site) -> Channels | None:
    """``a @ b``: the contracted dims are coupled; batch dims broadcast; rows and cols carry over."""
    a, b = site.node.args[0], site.node.args[1]
    sa, sb, out = site.shape(a), site.shape(b), site.out_shape
    if len(sa) < 2 or len(sb) < 2:
        site.pin_inputs()
        return None
    roles = {}
    for name, n, shape, contract, keep in (("a", a, sa, -1, -2), ("b", b, sb, -2, -1)):
        ch = site.info(n)
        if not isinstance(ch, Channels):
            continue
        if ch.dim == len(shape) + contract:
            roles[f"contract_{name}"] = ch
        elif ch.dim == len(shape) + keep:
            roles[f"out_{len(out) + keep}"] = ch
        else:
            roles[f"out_{ch.dim + len(out) - len(shape)}"] = ch
    contracted = [roles.pop(k) for k in ("contract_a", "contract_b") if k in roles]
    if len(contracted) == 2:
        site.prop.union(contracted[0].ids, contracted[1].ids)
    elif contracted:
        site.prop.pin(contracted[0].ids)
    outs = sorted(roles.items())
    if not outs:
        return None
    (key, first), rest = outs[0], outs[1:]
    for other_key, other in rest:
        if other_key == key:
            site.prop.union(first.ids, other.ids)
        else:
            site.prop.pin(other.ids)
    dim = int(key.removeprefix("out_"))
    batch_dim = dim < len(out) - 2
    partner = b if first is site.info(a) else a
    partner_shape = site.shape(partner)
    at = dim - (len(out) - len(partner_shape))
    partner_tracked = isinstance(site.info(partner), Channels) and site.info(partner).dim == at
    if batch_dim and at >= 0 and int(partner_shape[at]) > 1 and not partner_tracked:
        site.prop.pin(first.ids)
    return Channels(dim, first.ids, False)


def attention(site: Site) -> Channels | None:
    """``scaled_dot_product_attention(q, k, v)``: heads (dim -3) of q, k, v are one unit each."""
    q, k, v = (site.arg(i, name) for i, name in enumerate(("query", "key", "value")))
    infos = [site.info(n) for n in (q, k, v)]
    head = len(site.shape(q)) - 3
    mask = site.arg(3, "attn_mask")
    if mask is not None or any(not isinstance(ch, Channels) or ch.dim != head for ch in infos):
        site.pin_inputs()
        return None
    for ch in infos[1:]:
        site.prop.union(infos[0].ids, ch.ids)
    return Channels(head, infos[0].ids, False)
