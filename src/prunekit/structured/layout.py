"""Where a tensor's prunable dimension goes through reshapes, permutes, indexing and broadcasts.

Pure functions on shapes and id arrays: each returns the new :class:`Channels` or ``None`` when
the prunable dimension cannot be followed. The caller then pins the channels (keeps them all),
which is always correct: a tensor whose size never changes cannot break the model.

Reshapes are the delicate case, because the *code* that gives the new shape runs again after
pruning. A size that fx recorded as a literal int (``x.view(-1, 800)``) will not shrink with the
channels, so the channels behind it must stay; a size computed at run time (``x.size(0)``,
``-1``, ``flatten``) adapts. ``DimArg`` says which kind each output size is.

>>> import numpy as np
>>> ch = Channels(1, np.array([5, 6]))
>>> reshape(ch, (1, 2, 2, 2), (1, 8), ["adaptive", "inferred"]).ids.tolist()
[5, 5, 5, 5, 6, 6, 6, 6]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from prunekit.structured.channels import Channels, Propagation

DimArg = Literal["literal", "inferred", "adaptive"]
"""How an output size is given: a literal int, ``-1``, or computed at run time."""

Adapts = Callable[[int, np.ndarray], bool]
"""``adapts(dim, ids)``: can the literal size at output ``dim`` follow the units ``ids`` (an
attention's ``view(B, T, self.num_heads, D)``, whose ``num_heads`` the rewrite updates)?"""


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


def reshape(
    ch: Channels,
    in_shape: Sequence[int],
    out_shape: Sequence[int],
    dim_args: Sequence[DimArg],
    prop: Propagation | None = None,
    adapts: Adapts | None = None,
) -> Channels | None:
    """Follow the prunable dim through a reshape from ``in_shape`` to ``out_shape``.

    Three patterns are followed: the dim keeps its own output dim; it merges with neighbours
    into one output dim (flatten: each channel owns a block or a stride of positions); it splits
    into a leading dim that is ``-1`` or computed and trailing literal dims (attention heads:
    ``unflatten(-1, (-1, head_dim))``), in which case each block of trailing positions becomes one
    unit (``prop`` records the merge). A literal size where the units land is followed only if
    ``adapts`` says it will change with them. Anything else returns ``None``.
    """
    c, d = len(ch.ids), ch.dim
    inner = _prod(in_shape[d + 1 :])

    def follows(e: int, ids: np.ndarray) -> bool:
        return dim_args[e] != "literal" or (adapts is not None and adapts(e, ids))

    for e in range(len(out_shape)):
        out_inner = _prod(out_shape[e + 1 :])
        size = int(out_shape[e])
        if size == c and out_inner == inner:
            return ch.with_dim(e) if follows(e, ch.ids) else None
        if size > c and inner % out_inner == 0 and (out_inner * size) % (inner * c) == 0:
            ids = ch.ids[np.arange(size) * out_inner // inner % c]
            return Channels(e, ids, ch.fresh) if follows(e, ids) else None
    return _split(ch, inner, out_shape, dim_args, prop, follows)


def _split(
    ch: Channels,
    inner: int,
    out_shape: Sequence[int],
    dim_args: Sequence[DimArg],
    prop: Propagation | None,
    follows: Adapts,
) -> Channels | None:
    c = len(ch.ids)
    for e in range(len(out_shape)):
        for f in range(e + 1, len(out_shape)):
            if _prod(out_shape[e : f + 1]) == c and _prod(out_shape[f + 1 :]) == inner:
                trailing_literal = all(a == "literal" for a in dim_args[e + 1 : f + 1])
                if not trailing_literal or prop is None:
                    return None
                block = _prod(out_shape[e + 1 : f + 1])
                ids = ch.ids.reshape(-1, block)[:, 0]
                if not follows(e, ids):
                    return None
                return Channels(e, prop.union_blocks(ch.ids, block), False)
    return None


def permute(ch: Channels, order: Sequence[int]) -> Channels:
    """``order[i]`` is the input dim that becomes output dim ``i`` (as ``Tensor.permute``)."""
    return ch.with_dim(list(order).index(ch.dim))


def transpose_order(ndim: int, a: int, b: int) -> list[int]:
    order = list(range(ndim))
    order[a % ndim], order[b % ndim] = order[b % ndim], order[a % ndim]
    return order


def reduce_dims(ch: Channels, ndim: int, dims: Sequence[int], keepdim: bool) -> Channels | None:
    """After reducing over ``dims``: ``None`` if the prunable dim is reduced, else its new index."""
    reduced = {d % ndim for d in dims}
    if ch.dim in reduced:
        return None
    if keepdim:
        return ch
    return ch.with_dim(ch.dim - sum(1 for r in reduced if r < ch.dim))


def broadcast_dim(ch: Channels, in_ndim: int, out_shape: Sequence[int]) -> int | None:
    """Output dim that the prunable dim lands on under broadcasting, or ``None`` if size 1."""
    e = ch.dim + len(out_shape) - in_ndim
    return e if int(out_shape[e]) == len(ch.ids) else None


def index(ch: Channels, ndim: int, entries: Sequence[object]) -> Channels | None:
    """Follow ``x[entries]`` for basic indexing (slices, ints, ``None``, ``...``).

    The prunable dim must be indexed by a full slice ``:``; otherwise ``None``.
    """
    if any(e is Ellipsis for e in entries):
        at = next(i for i, e in enumerate(entries) if e is Ellipsis)
        consumed = sum(1 for e in entries if e is not None and e is not Ellipsis)
        fill = [slice(None)] * (ndim - consumed)
        entries = [*entries[:at], *fill, *entries[at + 1 :]]
    out_dim, in_dim = 0, 0
    for entry in entries:
        if entry is None:
            out_dim += 1
            continue
        if in_dim == ch.dim:
            full = isinstance(entry, slice) and entry == slice(None)
            return ch.with_dim(out_dim) if full else None
        if isinstance(entry, slice):
            out_dim += 1
        elif not isinstance(entry, int):
            return None
        in_dim += 1
    return ch.with_dim(out_dim + (ch.dim - in_dim))
