"""Convolutions, 1-3d, plain, grouped, depthwise and transposed.

Structured units: a plain conv's filters are born here (fresh units) and its input channels are
the previous units' slices. A grouped or depthwise conv passes its input's units through: a
whole group of channels is one unit, so every group keeps the same width (a depthwise conv with
multiplier k repeats each input unit k times). A transposed conv's weight is ``(in, out/groups,
*kernel)``, so its filters sit on dim 1 and N:M blocks run along dim 0 (the inputs summed).

>>> import torch
>>> from torch import nn
>>> from prunekit.layers import kind_of
>>> [w.reduction_dim for w in kind_of(nn.ConvTranspose2d(4, 2, 3)).prunable(nn.ConvTranspose2d(4, 2, 3))]
[0]
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from prunekit.layers.kind import LAYER_KINDS, LayerKind, Rebuild, Weight
from prunekit.structured.channels import Channels, MacsTerm
from prunekit.structured.site import Site


def conv(site: Site, name: str, m: nn.Module) -> Channels:
    """Conv{1,2,3}d and ConvTranspose{1,2,3}d: plain, depthwise (×multiplier) and grouped."""
    prop, x = site.prop, site.node.args[0]
    transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
    in_ids = site.ids_at(x, 1, m.in_channels)
    if m.groups == 1:
        out = prop.new_space(m.out_channels, name)
        w_out, w_in = (1, 0) if transposed else (0, 1)
        site.member(name, m, "weight", w_out, out, "out")
        site.member(name, m, "weight", w_in, in_ids, "in")
        site.member(name, m, "bias", 0, out, "out")
        in_terms: np.ndarray | None = in_ids
        fresh = True
    else:
        per_group_in, per_group_out = m.in_channels // m.groups, m.out_channels // m.groups
        out = np.repeat(prop.union_blocks(in_ids, per_group_in), per_group_out)
        site.member(name, m, "weight", 0, in_ids if transposed else out, "coupled")
        site.member(name, m, "bias", 0, out, "coupled")
        prop.mark_unfoldable(out)
        in_terms, fresh = None, False
    prop.axis(name, "in", in_ids)
    prop.axis(name, "out", out)
    numel = math.prod(site.shape(x) if transposed else site.out_shape)
    per_output = (m.out_channels if transposed else m.in_channels) // m.groups
    prop.macs.append(MacsTerm(name, numel * per_output * math.prod(m.kernel_size), out, in_terms))
    return Channels(1, out, fresh)


def _resize(m: nn.Module, kept: dict[str, int]) -> None:
    if m.groups > 1:
        m.groups = kept["in"] // (m.in_channels // m.groups)
    m.in_channels, m.out_channels = kept["in"], kept["out"]


def _widths(m: nn.Module) -> tuple[int, int]:
    return m.in_channels, m.out_channels


_FIELDS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
           "groups", "padding_mode")  # fmt: skip
_BIAS = {"bias": "bias"}
_SIZES = ("in_channels", "out_channels", "groups")

CONV = LayerKind(
    weights=(Weight("weight", reduction_dim=1),), propagate=conv, resize=_resize,
    size_attributes=_SIZES, rebuild=Rebuild(_FIELDS, _BIAS), widths=_widths,
)
CONV_TRANSPOSE = LayerKind(
    weights=(Weight("weight", reduction_dim=0),), propagate=conv, resize=_resize,
    size_attributes=_SIZES, rebuild=Rebuild((*_FIELDS, "output_padding"), _BIAS), widths=_widths,
)

LAYER_KINDS.update(dict.fromkeys((nn.Conv1d, nn.Conv2d, nn.Conv3d), CONV))
LAYER_KINDS.update(
    dict.fromkeys((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), CONV_TRANSPOSE)
)
