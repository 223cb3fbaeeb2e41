"""Fully connected layers: ``nn.Linear`` (and its subclasses, such as attention's ``out_proj``)
and ``nn.Bilinear``.

A Linear's output neurons are born here; its input features are the previous units' slices,
along the last dim of any ``(..., features)`` tensor. ``nn.Bilinear`` computes
``y_k = x1ᵀ W_k x2``: its output neurons are units, its two inputs are kept whole (an input
feature of ``x1`` meets every feature of ``x2``), and ``torch.utils.flop_counter`` does not count
it, so its MACs are counted here.

>>> import torch
>>> from torch import nn
>>> from prunekit.layers import kind_of
>>> layer = nn.Bilinear(3, 4, 5)
>>> kind_of(layer).macs(layer, (torch.zeros(2, 3), torch.zeros(2, 4)), torch.zeros(2, 5))
120
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from prunekit.layers.kind import LAYER_KINDS, LayerKind, Rebuild, Weight
from prunekit.structured.channels import Channels, MacsTerm
from prunekit.structured.site import Site


def linear(site: Site, name: str, m: nn.Linear) -> Channels:
    prop, x = site.prop, site.node.args[0]
    in_ids = site.ids_at(x, len(site.shape(x)) - 1, m.in_features)
    out = prop.new_space(m.out_features, name)
    site.member(name, m, "weight", 0, out, "out")
    site.member(name, m, "weight", 1, in_ids, "in")
    site.member(name, m, "bias", 0, out, "out")
    prop.axis(name, "in", in_ids)
    prop.axis(name, "out", out)
    prop.macs.append(MacsTerm(name, math.prod(site.out_shape) * m.in_features, out, in_ids))
    return Channels(len(site.out_shape) - 1, out, True)


def _resize_linear(m: nn.Linear, kept: dict[str, int]) -> None:
    m.in_features, m.out_features = kept["in"], kept["out"]


def bilinear(site: Site, name: str, m: nn.Bilinear) -> Channels:
    site.pin_inputs("nn.Bilinear's input features are kept whole (each meets every feature "
                    "of the other input)")
    out = site.prop.new_space(m.out_features, name)
    site.member(name, m, "weight", 0, out, "out")
    site.member(name, m, "bias", 0, out, "out")
    site.prop.axis(name, "out", out)
    dense = math.prod(site.out_shape) * m.in1_features * m.in2_features
    site.prop.macs.append(MacsTerm(name, dense, out, None))
    return Channels(len(site.out_shape) - 1, out, True)


def _resize_bilinear(m: nn.Bilinear, kept: dict[str, int]) -> None:
    m.out_features = kept["out"]


def _bilinear_macs(m: nn.Bilinear, inputs: tuple[Any, ...], output: Any) -> int:
    out = output if isinstance(output, Tensor) else inputs[0]
    return out.numel() * m.in1_features * m.in2_features


LINEAR = LayerKind(
    weights=(Weight("weight", reduction_dim=1),), propagate=linear, resize=_resize_linear,
    size_attributes=("in_features", "out_features"),
    rebuild=Rebuild(("in_features", "out_features"), {"bias": "bias"}),
    widths=lambda m: (m.in_features, m.out_features),
)
BILINEAR = LayerKind(
    weights=(Weight("weight", reduction_dim=2),), propagate=bilinear, resize=_resize_bilinear,
    size_attributes=("out_features",), macs=_bilinear_macs,
    rebuild=Rebuild(("in1_features", "in2_features", "out_features"), {"bias": "bias"}),
)

LAYER_KINDS[nn.Linear] = LINEAR
LAYER_KINDS[nn.Bilinear] = BILINEAR
