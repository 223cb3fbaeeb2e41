"""Propagation rules for layers (``call_module`` nodes): who produces units, who consumes them.

A producer (Conv, Linear, Embedding, RNN hidden units) allocates fresh elements for its output
channels; consumers (the next layer's input, BatchNorm, LayerNorm, PReLU) record *members*: the
slices of their parameters that belong to each unit. Depthwise and grouped convs pass their
input's units through (a group of channels is one unit), so the whole chain shrinks together.

The table is keyed by class and looked up along the MRO, so subclasses of ``nn.Conv2d`` work;
users register their own layers with one line: ``MODULE_RULES[MyLayer] = my_rule``.

>>> from torch import nn
>>> module_rule(nn.Conv2d(1, 1, 1)) is conv
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from prunekit.structured.channels import Channels, MacsTerm, Propagation, Role
from prunekit.structured.op_rules import adaptive_reshape, unflatten_to
from prunekit.structured.site import Site

ModuleRule = Callable[[Site, str, nn.Module], Any]


def _record(
    prop: Propagation, name: str, module: nn.Module, param: str, dim: int, ids: np.ndarray,
    role: Role,
) -> None:
    tensor = getattr(module, param, None)
    if tensor is not None:
        is_param = param in module._parameters
        prop.member(name, param, dim, ids, role, is_param=is_param)


def conv(site: Site, name: str, m: nn.Module) -> Channels | None:
    """Conv{1,2,3}d and ConvTranspose: plain, depthwise (×multiplier) and grouped."""
    prop, x = site.prop, site.node.args[0]
    transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
    in_ids = site.ids_at(x, 1, m.in_channels)
    kernel = math.prod(m.kernel_size)
    if m.groups == 1:
        out = prop.new_space(m.out_channels, name)
        w_out, w_in = (1, 0) if transposed else (0, 1)
        _record(prop, name, m, "weight", w_out, out, "out")
        _record(prop, name, m, "weight", w_in, in_ids, "in")
        _record(prop, name, m, "bias", 0, out, "out")
        in_terms: np.ndarray | None = in_ids
        fresh = True
    elif transposed:
        prop.pin(in_ids)
        return None
    else:
        per_group_in, per_group_out = m.in_channels // m.groups, m.out_channels // m.groups
        out = np.repeat(prop.union_blocks(in_ids, per_group_in), per_group_out)
        _record(prop, name, m, "weight", 0, out, "coupled")
        _record(prop, name, m, "bias", 0, out, "coupled")
        prop.mark_unfoldable(out)
        in_terms, fresh = None, False
    prop.axis(name, "in", in_ids)
    prop.axis(name, "out", out)
    numel = math.prod(site.shape(x) if transposed else site.out_shape)
    per_output = (m.out_channels if transposed else m.in_channels) // m.groups
    prop.macs.append(MacsTerm(name, numel * per_output * kernel, out, in_terms))
    return Channels(1, out, fresh)


def linear(site: Site, name: str, m: nn.Linear) -> Channels:
    prop, x = site.prop, site.node.args[0]
    last = len(site.shape(x)) - 1
    in_ids = site.ids_at(x, last, m.in_features)
    out = prop.new_space(m.out_features, name)
    _record(prop, name, m, "weight", 0, out, "out")
    _record(prop, name, m, "weight", 1, in_ids, "in")
    _record(prop, name, m, "bias", 0, out, "out")
    prop.axis(name, "in", in_ids)
    prop.axis(name, "out", out)
    prop.macs.append(MacsTerm(name, math.prod(site.out_shape) * m.in_features, out, in_ids))
    return Channels(len(site.out_shape) - 1, out, True)


def _channels_at_1(site: Site) -> Channels | None:
    """The input's channels if they are on dim 1 (N×C×...); pinned and ``None`` otherwise."""
    ch = site.info(site.node.args[0])
    if not isinstance(ch, Channels):
        return None
    if ch.dim != 1:
        site.prop.pin(ch.ids)
        return None
    return ch


def batch_norm(site: Site, name: str, m: nn.Module) -> Channels | None:
    """BatchNorm / InstanceNorm: per-channel affine and running statistics."""
    ch = _channels_at_1(site)
    if ch is None:
        return None
    for param in ("weight", "bias", "running_mean", "running_var"):
        _record(site.prop, name, m, param, 0, ch.ids, "norm")
    site.prop.axis(name, "channels", ch.ids)
    if not ch.fresh:
        site.prop.mark_unfoldable(ch.ids)
    return ch


def layer_norm(site: Site, name: str, m: nn.LayerNorm) -> Channels | None:
    """LayerNorm over the last dim prunes with it (the statistics then cover fewer channels)."""
    ch, shape = site.info(site.node.args[0]), site.shape(site.node.args[0])
    if not isinstance(ch, Channels):
        return None
    normalized = len(m.normalized_shape)
    if ch.dim < len(shape) - normalized:
        return Channels(ch.dim, ch.ids, False)
    if normalized != 1:
        site.prop.pin(ch.ids)
        return None
    for param in ("weight", "bias"):
        _record(site.prop, name, m, param, 0, ch.ids, "norm")
    site.prop.axis(name, "channels", ch.ids)
    site.prop.mark_unfoldable(ch.ids)
    return Channels(ch.dim, ch.ids, False)


def group_norm(site: Site, name: str, m: nn.GroupNorm) -> Channels | None:
    """GroupNorm: a whole group of channels is one unit, so the groups stay equal."""
    ch = _channels_at_1(site)
    if ch is None:
        return None
    per_group = m.num_channels // m.num_groups
    ids = np.repeat(site.prop.union_blocks(ch.ids, per_group), per_group)
    for param in ("weight", "bias"):
        _record(site.prop, name, m, param, 0, ids, "norm")
    site.prop.axis(name, "channels", ids)
    site.prop.mark_unfoldable(ids)
    return Channels(1, ids, False)


def prelu(site: Site, name: str, m: nn.PReLU) -> Channels | None:
    if m.num_parameters == 1:
        return _elementwise(homogeneous=True)(site, name, m)
    ch = _channels_at_1(site)
    if ch is None:
        return None
    _record(site.prop, name, m, "weight", 0, ch.ids, "coupled")
    site.prop.axis(name, "channels", ch.ids)
    return Channels(1, ch.ids, False)


def embedding(site: Site, name: str, m: nn.Embedding) -> Channels:
    out = site.prop.new_space(m.embedding_dim, name)
    _record(site.prop, name, m, "weight", 1, out, "out")
    site.prop.axis(name, "out", out)
    site.prop.mark_unfoldable(out)
    return Channels(len(site.out_shape) - 1, out, False)


_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def recurrent(site: Site, name: str, m: nn.RNNBase) -> Any:
    """LSTM/GRU/RNN hidden units: each owns one row per gate in every layer and direction.

    All layers share ``hidden_size``, so a unit is the same index in every layer and direction.
    """
    prop, x = site.prop, site.node.args[0]
    in_ids = site.ids_at(x, len(site.shape(x)) - 1, m.input_size)
    if m.proj_size:
        prop.pin(in_ids)
        return None
    gates = _GATES[type(m)]
    directions = 2 if m.bidirectional else 1
    hidden = prop.new_space(m.hidden_size, name)
    rows = np.tile(hidden, gates)
    for layer in range(m.num_layers):
        layer_in = in_ids if layer == 0 else np.tile(hidden, directions)
        for suffix in ("", "_reverse")[:directions]:
            tag = f"_l{layer}{suffix}"
            _record(prop, name, m, f"weight_ih{tag}", 0, rows, "coupled")
            _record(prop, name, m, f"weight_ih{tag}", 1, layer_in, "in")
            _record(prop, name, m, f"weight_hh{tag}", 0, rows, "coupled")
            _record(prop, name, m, f"weight_hh{tag}", 1, hidden, "coupled")
            _record(prop, name, m, f"bias_ih{tag}", 0, rows, "coupled")
            _record(prop, name, m, f"bias_hh{tag}", 0, rows, "coupled")
    for state in site.node.args[1:]:
        for s in state if isinstance(state, (tuple, list)) else (state,):
            if site.shape(s) is not None:
                prop.union(site.ids_at(s, len(site.shape(s)) - 1, m.hidden_size), hidden)
    prop.axis(name, "in", in_ids)
    prop.axis(name, "hidden", hidden)
    prop.mark_unfoldable(hidden)
    out = Channels(len(site.out_shape[0]) - 1, np.tile(hidden, directions), False)
    state_ch = Channels(len(site.out_shape[0]) - 1, hidden, False)
    states = (state_ch, state_ch) if isinstance(m, nn.LSTM) else state_ch
    return (out, states)


def _elementwise(homogeneous: bool) -> ModuleRule:
    def rule(site: Site, name: str, m: nn.Module) -> Channels | None:
        ch = site.info(site.node.args[0])
        if not isinstance(ch, Channels):
            return None
        if not homogeneous:
            site.prop.mark_unfoldable(ch.ids)
        return Channels(ch.dim, ch.ids, False)

    return rule


def _channelwise(site: Site, name: str, m: nn.Module) -> Channels | None:
    return _channels_at_1(site)


def _softmax(site: Site, name: str, m: nn.Module) -> Channels | None:
    ch, shape = site.info(site.node.args[0]), site.shape(site.node.args[0])
    if not isinstance(ch, Channels):
        return None
    if m.dim is None or m.dim % len(shape) == ch.dim:
        site.prop.pin(ch.ids)
        return None
    site.prop.mark_unfoldable(ch.ids)
    return Channels(ch.dim, ch.ids, False)


def _pin_all(site: Site, name: str, m: nn.Module) -> None:
    """Layers whose channel count is fixed inside them (``nn.MultiheadAttention``)."""
    site.pin_inputs()


def _flatten(site: Site, name: str, m: nn.Module) -> Channels | None:
    return adaptive_reshape(site)


def _unflatten(site: Site, name: str, m: nn.Unflatten) -> Channels | None:
    return unflatten_to(site, m.dim, list(m.unflattened_size))


_HOMOGENEOUS = (
    nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout,
)
_NONHOMOGENEOUS = (
    nn.ReLU6, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign, nn.LogSigmoid,
    nn.Tanhshrink,
)
_POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Upsample,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d,
    nn.ReplicationPad2d,
)

MODULE_RULES: dict[type, ModuleRule] = {
    nn.modules.conv._ConvNd: conv,
    nn.Linear: linear,
    nn.modules.batchnorm._BatchNorm: batch_norm,
    nn.modules.instancenorm._InstanceNorm: batch_norm,
    nn.LayerNorm: layer_norm,
    nn.GroupNorm: group_norm,
    nn.PReLU: prelu,
    nn.Embedding: embedding,
    nn.LSTM: recurrent,
    nn.GRU: recurrent,
    nn.RNN: recurrent,
    nn.Flatten: _flatten,
    nn.Unflatten: _unflatten,
    nn.Softmax: _softmax,
    nn.LogSoftmax: _softmax,
    nn.MultiheadAttention: _pin_all,
    **dict.fromkeys(_HOMOGENEOUS, _elementwise(homogeneous=True)),
    **dict.fromkeys(_NONHOMOGENEOUS, _elementwise(homogeneous=False)),
    **dict.fromkeys(_POOLS, _channelwise),
}
"""Layer class → rule; looked up along the class's MRO."""


def module_rule(module: nn.Module) -> ModuleRule | None:
    """The rule for ``module``'s class or its nearest registered base class."""
    for cls in type(module).__mro__:
        if cls in MODULE_RULES:
            return MODULE_RULES[cls]
    return None
