"""Layers without weights that units pass through: activations, dropout, pooling, padding,
resampling, reshapes and softmax-like maps.

None of them is pruned, but each must say how units flow through it: an activation keeps the
layout (and, unless it is positively homogeneous like ReLU, stops the LSH criterion folding a
unit into its twin); pooling and padding act on each channel alone (channels on dim 1);
``Flatten`` gives each channel its block of the flattened features; a softmax over the units'
own dim couples them all, so they are kept. Each is saved by its constructor arguments.

>>> from torch import nn
>>> from prunekit.layers import kind_of
>>> kind_of(nn.ReLU()).rebuild.fields, kind_of(nn.MaxPool2d(2)).prunable(nn.MaxPool2d(2))
(('inplace',), [])
"""

from __future__ import annotations

from torch import nn

from prunekit.activations import Entmax15, Sparsemax
from prunekit.layers.kind import LAYER_KINDS, LayerKind, PropagationRule, Rebuild
from prunekit.structured.channels import Channels
from prunekit.structured.op_rules import adaptive_reshape, unflatten_to
from prunekit.structured.site import Site


def _elementwise(homogeneous: bool) -> PropagationRule:
    def rule(site: Site, name: str, m: nn.Module) -> Channels | None:
        ch = site.info(site.node.args[0])
        if not isinstance(ch, Channels):
            return None
        if not homogeneous:
            site.prop.mark_unfoldable(ch.ids)
        return Channels(ch.dim, ch.ids, False)

    return rule


def channelwise(site: Site, name: str, m: nn.Module) -> Channels | None:
    """Pooling, padding, resampling: each channel (dim 1) is processed on its own."""
    return site.channels_at(site.node.args[0], 1, f"{type(m).__name__} needs the channels on "
                                                  "dim 1")


def softmax_like(site: Site, name: str, m: nn.Module) -> Channels | None:
    """Softmax, log-softmax, sparsemax, entmax: over the units' own dim they are all kept."""
    ch, shape = site.info(site.node.args[0]), site.shape(site.node.args[0])
    if not isinstance(ch, Channels):
        return None
    if m.dim is None or m.dim % len(shape) == ch.dim:
        site.pin(ch.ids, f"{type(m).__name__} normalises over these units")
        return None
    site.prop.mark_unfoldable(ch.ids)
    return Channels(ch.dim, ch.ids, False)


def _flatten(site: Site, name: str, m: nn.Module) -> Channels | None:
    return adaptive_reshape(site)


def _unflatten(site: Site, name: str, m: nn.Unflatten) -> Channels | None:
    return unflatten_to(site, m.dim, list(m.unflattened_size))


def _pixel_shuffle(site: Site, name: str, m: nn.PixelShuffle) -> Channels | None:
    """Each output channel gathers ``r²`` consecutive input channels: they are one unit."""
    ch = channelwise(site, name, m)
    if ch is None:
        return None
    return Channels(1, site.prop.union_blocks(ch.ids, m.upscale_factor**2), False)


def _pixel_unshuffle(site: Site, name: str, m: nn.PixelUnshuffle) -> Channels | None:
    ch = channelwise(site, name, m)
    return None if ch is None else Channels(1, ch.ids.repeat(m.downscale_factor**2), False)


def _add(rule: PropagationRule, layers: dict[type[nn.Module], tuple[str, ...]]) -> None:
    for cls, fields in layers.items():
        LAYER_KINDS[cls] = LayerKind(propagate=rule, rebuild=Rebuild(fields))


_INPLACE = ("inplace",)
_MAX_POOL = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
_AVG_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_LP_POOL = ("norm_type", "kernel_size", "stride", "ceil_mode")
_PAD, _CONSTANT_PAD = ("padding",), ("padding", "value")

_add(_elementwise(homogeneous=True), {
    nn.ReLU: _INPLACE, nn.LeakyReLU: ("negative_slope", "inplace"), nn.Identity: (),
    **dict.fromkeys((nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout),
                    ("p", "inplace")),
})
_add(_elementwise(homogeneous=False), {
    nn.ReLU6: _INPLACE, nn.SiLU: _INPLACE, nn.Mish: _INPLACE, nn.Hardswish: _INPLACE,
    nn.Hardsigmoid: _INPLACE, nn.SELU: _INPLACE, nn.ELU: ("alpha", "inplace"),
    nn.CELU: ("alpha", "inplace"), nn.GELU: ("approximate",),
    nn.Hardtanh: ("min_val", "max_val", "inplace"), nn.Softplus: ("beta", "threshold"),
    nn.Sigmoid: (), nn.Tanh: (), nn.Softsign: (), nn.Tanhshrink: (), nn.LogSigmoid: (),
})
_add(channelwise, {
    nn.MaxPool1d: _MAX_POOL, nn.MaxPool2d: _MAX_POOL, nn.MaxPool3d: _MAX_POOL,
    nn.AvgPool1d: _AVG_POOL, nn.AvgPool2d: (*_AVG_POOL, "divisor_override"),
    nn.AvgPool3d: (*_AVG_POOL, "divisor_override"),
    nn.LPPool1d: _LP_POOL, nn.LPPool2d: _LP_POOL,
    **dict.fromkeys((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
                    ("output_size",)),
    **dict.fromkeys((nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d),
                    ("output_size", "return_indices")),
    nn.Upsample: ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"),
    **dict.fromkeys((nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ReflectionPad1d,
                     nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d,
                     nn.ReplicationPad2d, nn.ReplicationPad3d), _PAD),
    **dict.fromkeys((nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d), _CONSTANT_PAD),
})
_add(softmax_like, dict.fromkeys((nn.Softmax, nn.LogSoftmax, Sparsemax, Entmax15), ("dim",)))
_add(_flatten, {nn.Flatten: ("start_dim", "end_dim")})
_add(_unflatten, {nn.Unflatten: ("dim", "unflattened_size")})
_add(_pixel_shuffle, {nn.PixelShuffle: ("upscale_factor",)})
_add(_pixel_unshuffle, {nn.PixelUnshuffle: ("downscale_factor",)})
