"""Propagation rules for functions and tensor methods (``torch.cat``, ``x.view``, ``a + b``...).

fx records ``F.relu(x)``, ``torch.relu(x)``, ``x.relu()`` and ``x.relu_()`` as different targets;
:func:`op_name` reduces them all to ``"relu"`` so one rule serves each family. Rules return the
output's channels; an op that needs its input's size unchanged pins the input instead. An op
with no rule raises :class:`UnsupportedOpError` from the graph builder, never a guess.

>>> from prunekit.structured.op_rules import OP_RULES
>>> all(name in OP_RULES for name in ("add", "cat", "view", "flatten", "mean", "getitem"))
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import fx

from prunekit.structured import layout
from prunekit.structured.channels import Channels
from prunekit.structured.layout import DimArg
from prunekit.structured.product_rules import attention, matmul
from prunekit.structured.site import Site, flat_nodes

OpRule = Callable[[Site], Any]

_ALIASES = {
    "iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "truediv", "truediv": "div",
    "true_divide": "div", "floordiv": "floor_divide", "concat": "cat", "concatenate": "cat",
    "swapaxes": "transpose", "swapdims": "transpose", "__matmul__": "matmul",
}


def op_name(node: fx.Node) -> str:
    """A canonical name for a call_function / call_method node: ``F.relu_`` → ``relu``."""
    raw = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    name = str(raw)
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return _ALIASES.get(name, name)


def _is_tensor_shape(shape: Any) -> bool:
    return isinstance(shape, torch.Size)


def _first_channels(site: Site) -> tuple[Channels | None, Any]:
    x = site.node.args[0]
    info = site.info(x)
    return (info if isinstance(info, Channels) else None), site.shape(x)


def _pinned(site: Site, why: str | None = None) -> None:
    """Keep every channel entering this op; ``why`` defaults to 'op X needs their count'."""
    site.pin_inputs(why or f"{op_name(site.node)}() needs their count unchanged")


def unary(site: Site) -> Channels | None:
    """Elementwise on its first input: the layout is unchanged."""
    ch, _ = _first_channels(site)
    if ch is None or not _is_tensor_shape(site.out_shape):
        return None
    return Channels(ch.dim, ch.ids, False)


def broadcast(site: Site) -> Channels | None:
    """Elementwise over several tensors: positions that meet in the output become one unit."""
    out = site.out_shape
    tensors = [
        n for n in flat_nodes((site.node.args, site.node.kwargs)) if _is_tensor_shape(site.shape(n))
    ]
    dim, base = None, None
    for n in tensors:
        ch = site.info(n)
        if not isinstance(ch, Channels):
            continue
        e = layout.broadcast_dim(ch, len(site.shape(n)), out)
        if e is None or (dim is not None and e != dim):
            site.pin(ch.ids, f"{op_name(site.node)}() mixes them with another tensor's dims")
        elif dim is None:
            dim, base = e, ch.ids
        else:
            site.prop.union(base, ch.ids)
    if dim is None or base is None:
        return None
    for n in tensors:
        ch, shape = site.info(n), site.shape(n)
        at = dim - (len(out) - len(shape))
        tracked_here = isinstance(ch, Channels) and ch.dim == at
        if at >= 0 and int(shape[at]) == len(base) and len(base) > 1 and not tracked_here:
            site.pin(base, f"{op_name(site.node)}() combines them with a tensor of the same "
                           "size that no layer prunes (a constant or buffer)")
    return Channels(dim, base, False)


def channelwise(site: Site) -> Channels | None:
    """Pooling, interpolation: each channel is processed on its own along dims 2 and up."""
    ch, _ = _first_channels(site)
    if ch is None:
        return None
    if ch.dim != 1:
        return _pinned(site, f"{op_name(site.node)}() needs the channels on dim 1")
    return ch


def pad(site: Site) -> Channels | None:
    ch, shape = _first_channels(site)
    padded = len(site.arg(1, "pad", ())) // 2
    if ch is None or ch.dim >= len(shape) - padded:
        return _pinned(site, "pad() pads the channels' own dim")
    return ch


def _classify(size: Any) -> DimArg:
    if isinstance(size, fx.Node):
        return "adaptive"
    return "inferred" if size == -1 else "literal"


def _view_sizes(site: Site) -> list[Any]:
    sizes = list(site.node.args[1:]) or [site.node.kwargs.get("shape", ())]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
        sizes = list(sizes[0])
    return sizes


def _reshaped(site: Site, dim_args: list[DimArg]) -> Channels | None:
    ch, shape = _first_channels(site)
    if ch is None:
        return None
    out = site.out_shape
    if len(dim_args) != len(out):
        dim_args = ["literal"] * len(out)
    result = layout.reshape(ch, shape, out, dim_args, site.prop, lambda e, ids: _follows(site, ids))
    if result is None:
        return _pinned(site, f"{op_name(site.node)}() to {_sizes_text(site, dim_args)} gives the "
                             "channels a literal size, which will not shrink with them: compute "
                             "it (x.size(0), -1) or flatten")
    return result


def _follows(site: Site, ids: np.ndarray) -> bool:
    """Can a literal size of ``len(ids)`` in this reshape follow the units ``ids``?

    Yes if the module that wrote it holds that count in an attribute (``self.num_heads``),
    which the rewrite then sets to the kept count; or if the units' count is already held by
    such an attribute (``self.num_heads * self.head_dim``, computed from it at run time). If
    the size is a plain literal after all, the rewrite's check fails and restores the model.
    """
    names = site.count_attributes(len(ids))
    for name in names:
        site.prop.attribute(site.scope(), name, ids)
    if names:
        return True
    held = [a for a in site.prop.attributes.values()]
    return bool(held) and bool(np.isin(ids, np.concatenate(held)).all())


def _sizes_text(site: Site, dim_args: list[DimArg]) -> str:
    shape = site.out_shape
    return "(" + ", ".join(str(int(n)) if a == "literal" else "·" for n, a in zip(shape, dim_args)) + ")"


def view(site: Site) -> Channels | None:
    """``view`` / ``reshape`` with sizes given in the call (literal ints cannot shrink)."""
    return _reshaped(site, [_classify(s) for s in _view_sizes(site)])


def adaptive_reshape(site: Site) -> Channels | None:
    """``flatten``, ``squeeze``, ``unsqueeze``, ``view_as``: sizes come from run-time shapes."""
    return _reshaped(site, ["adaptive"] * len(site.out_shape))


def unflatten(site: Site) -> Channels | None:
    return unflatten_to(site, int(site.arg(1, "dim")), list(site.arg(2, "sizes")))


def unflatten_to(site: Site, dim: int, sizes: list[Any]) -> Channels | None:
    """Split ``dim`` into ``sizes`` (``Tensor.unflatten`` and ``nn.Unflatten``)."""
    _, shape = _first_channels(site)
    dim %= len(shape)
    args: list[DimArg] = ["adaptive"] * dim + [_classify(s) for s in sizes]
    return _reshaped(site, args + ["adaptive"] * (len(shape) - dim - 1))


def permute(site: Site) -> Channels | None:
    ch, shape = _first_channels(site)
    if ch is None:
        return None
    name, ndim = op_name(site.node), len(shape)
    if name == "permute":
        order = _view_sizes(site)
    elif name == "t":
        order = [1, 0] if ndim == 2 else [0]
    elif name == "movedim":
        source, destination = site.arg(1, "source"), site.arg(2, "destination")
        if not (isinstance(source, int) and isinstance(destination, int)):
            return _pinned(site, "movedim() with computed dims")
        order = list(range(ndim))
        order.insert(destination % ndim, order.pop(source % ndim))
    else:
        order = layout.transpose_order(ndim, int(site.arg(1, "dim0")), int(site.arg(2, "dim1")))
    return layout.permute(ch, [int(o) % ndim for o in order])


def cat(site: Site) -> Channels | None:
    """Concatenation along the prunable dim lays the inputs' ids end to end (offsets)."""
    tensors = list(site.arg(0, "tensors"))
    ndim = len(site.out_shape)
    dim = int(site.arg(1, "dim", 0)) % ndim
    infos = [site.info(t) if isinstance(site.info(t), Channels) else None for t in tensors]
    tracked = {ch.dim for ch in infos if ch is not None}
    if tracked == {dim}:
        parts = [
            ch.ids if ch is not None else np.zeros(int(site.shape(t)[dim]), dtype=np.int64)
            for t, ch in zip(tensors, infos)
        ]
        return Channels(dim, np.concatenate(parts), all(ch is not None and ch.fresh for ch in infos))
    if len(tracked) == 1:
        return _coupled_positions(site, tensors, infos, tracked.pop(), tracked_out=None)
    return _pinned(site, "cat() of tensors whose channels lie on different dims")


def stack(site: Site) -> Channels | None:
    tensors = list(site.arg(0, "tensors"))
    dim = int(site.arg(1, "dim", 0)) % len(site.out_shape)
    infos = [site.info(t) if isinstance(site.info(t), Channels) else None for t in tensors]
    tracked = {ch.dim for ch in infos if ch is not None}
    if len(tracked) != 1:
        return _pinned(site, "stack() of tensors whose channels lie on different dims")
    d = tracked.pop()
    return _coupled_positions(site, tensors, infos, d, tracked_out=d if d < dim else d + 1)


def _coupled_positions(
    site: Site, tensors: list[Any], infos: list[Channels | None], d: int, tracked_out: int | None
) -> Channels:
    """Inputs joined along another dim: their position ``i`` on dim ``d`` is one unit."""
    base = next(ch for ch in infos if ch is not None)
    for ch in infos:
        if ch is None:
            site.pin(base.ids, f"{op_name(site.node)}() joins them with a tensor no layer prunes")
        elif ch is not base:
            site.prop.union(base.ids, ch.ids)
    return Channels(d if tracked_out is None else tracked_out, base.ids, False)


def split(site: Site) -> Any:
    """``split`` / ``chunk`` / ``unbind``: equal chunks of the prunable dim are coupled."""
    ch, shape = _first_channels(site)
    pieces = site.out_shape
    name = op_name(site.node)
    dim_position = 1 if name == "unbind" else 2
    dim = int(site.arg(dim_position, "dim", 0)) % len(shape)
    if ch is None:
        return None
    if ch.dim != dim:
        moved = ch.with_dim(ch.dim - 1) if name == "unbind" and ch.dim > dim else ch
        return tuple(moved for _ in pieces)
    sizes = {int(p[dim]) for p in pieces}
    if name != "chunk" or len(sizes) != 1:
        _pinned(site, f"{name}() into pieces of literal sizes")
        return tuple(None for _ in pieces)
    runs = ch.ids.reshape(len(pieces), -1)
    for run in runs[1:]:
        site.prop.union(runs[0], run)
    return tuple(Channels(dim, runs[0], False) for _ in pieces)


def getitem(site: Site) -> Any:
    source, key = site.node.args[0], site.node.args[1]
    info, shape = site.info(source), site.shape(source)
    if not _is_tensor_shape(shape):
        if isinstance(info, tuple) and isinstance(key, (int, slice)):
            return info[key]
        return None
    if not isinstance(info, Channels):
        return None
    entries = key if isinstance(key, tuple) else (key,)
    result = layout.index(info, len(shape), entries)
    return result if result is not None else _pinned(site, "indexing selects some channels")


def reduction(site: Site) -> Any:
    """``mean`` / ``sum`` / ``amax``...: reducing over the prunable dim pins it."""
    second = site.arg(1, "dim")
    if isinstance(second, fx.Node) and _is_tensor_shape(site.shape(second)):
        return broadcast(site)
    ch, shape = _first_channels(site)
    if ch is None:
        return None
    dim_at = 2 if op_name(site.node) == "norm" else 1
    dim = site.arg(dim_at, "dim")
    keepdim = bool(site.arg(dim_at + 1, "keepdim", False))
    dims = list(dim) if isinstance(dim, (tuple, list)) else [dim]
    if not all(isinstance(d, int) for d in dims):
        return _pinned(site, f"{op_name(site.node)}() over computed dims")
    result = layout.reduce_dims(ch, len(shape), dims, keepdim)
    if result is None:
        _pinned(site, f"{op_name(site.node)}() reduces over them")
    if isinstance(site.out_shape, tuple) and not _is_tensor_shape(site.out_shape):
        return tuple(result for _ in site.out_shape)
    return result


def softmax(site: Site) -> Channels | None:
    ch, shape = _first_channels(site)
    if ch is None:
        return None
    dim = site.arg(1, "dim")
    if dim is None or int(dim) % len(shape) == ch.dim:
        return _pinned(site, f"{op_name(site.node)}() normalises over them")
    return Channels(ch.dim, ch.ids, False)


def expand(site: Site) -> Channels | None:
    ch, shape = _first_channels(site)
    if ch is None:
        return None
    sizes = _view_sizes(site)
    at = ch.dim + len(sizes) - len(shape)
    name = op_name(site.node)
    keeps = sizes[at] == 1 if name == "repeat" else _classify(sizes[at]) != "literal"
    return ch.with_dim(at) if keeps else _pinned(site, f"{name}() to a literal size")


def repeat_interleave(site: Site) -> Channels | None:
    """``repeat_interleave(r, dim)`` over the units' dim repeats each unit ``r`` times in place
    (grouped-query attention's key/value heads, each serving ``r`` query heads)."""
    ch, shape = _first_channels(site)
    if ch is None:
        return None
    repeats, dim = site.arg(1, "repeats"), site.arg(2, "dim")
    if dim is None or not isinstance(repeats, int):
        return _pinned(site, "repeat_interleave() without a dim, or with per-entry repeats")
    if int(dim) % len(shape) != ch.dim:
        return Channels(ch.dim, ch.ids, False)
    return Channels(ch.dim, np.repeat(ch.ids, repeats), False)


_UNARY = (
    "relu relu6 leaky_relu elu selu celu gelu silu mish sigmoid tanh hardswish hardsigmoid "
    "hardtanh softplus softsign logsigmoid exp log abs neg sqrt rsqrt square sin cos clamp clip "
    "sign erf dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout "
    "contiguous clone detach to float half double bfloat16 type type_as pos reciprocal"
)
_BROADCAST = (
    "add sub rsub mul div floor_divide remainder fmod maximum minimum where masked_fill pow "
    "eq ne lt le gt ge logical_and logical_or bitwise_and bitwise_or expand_as lerp atan2"
)
_CHANNELWISE = (
    "max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d "
    "adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d "
    "adaptive_max_pool3d lp_pool1d lp_pool2d interpolate upsample upsample_nearest "
    "upsample_bilinear"
)
_REDUCTIONS = (
    "mean sum amax amin prod std var logsumexp norm all any max min argmax argmin median nansum "
    "nanmean count_nonzero"
)
_PINNING = (
    "layer_norm group_norm batch_norm instance_norm linear conv1d conv2d conv3d conv_transpose1d "
    "conv_transpose2d conv_transpose3d embedding normalize cosine_similarity pixel_shuffle "
    "pixel_unshuffle channel_shuffle cumsum cumprod flip roll gather index_select scatter "
    "masked_select nonzero topk sort argsort cross_entropy mse_loss nll_loss"
)

OP_RULES: dict[str, OpRule] = {
    **dict.fromkeys(_UNARY.split(), unary),
    **dict.fromkeys(_BROADCAST.split(), broadcast),
    **dict.fromkeys(_CHANNELWISE.split(), channelwise),
    **dict.fromkeys(_REDUCTIONS.split(), reduction),
    **dict.fromkeys(_PINNING.split(), _pinned),
    **dict.fromkeys(["view", "reshape"], view),
    **dict.fromkeys(["flatten", "squeeze", "unsqueeze", "view_as", "reshape_as"], adaptive_reshape),
    **dict.fromkeys(["permute", "transpose", "t", "movedim"], permute),
    **dict.fromkeys(["split", "chunk", "unbind"], split),
    **dict.fromkeys(["expand", "repeat"], expand),
    **dict.fromkeys(["matmul", "bmm", "mm"], matmul),
    "unflatten": unflatten,
    "repeat_interleave": repeat_interleave,
    "pad": pad,
    "cat": cat,
    "stack": stack,
    "getitem": getitem,
    "softmax": softmax,
    "log_softmax": softmax,
    "scaled_dot_product_attention": attention,
}
"""Canonical op name → rule. Add your own with one line: ``OP_RULES["my_op"] = unary``."""

HOMOGENEOUS_OPS = frozenset(
    ["relu", "leaky_relu", "dropout", "dropout1d", "dropout2d", "dropout3d", "contiguous", "clone", "detach", "to", "float", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate", "view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "cat", "getitem"]
)
"""Ops ``f`` with ``f(s·x) = s·f(x)`` for ``s > 0``: along them a duplicate unit can be folded."""
