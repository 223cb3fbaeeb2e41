"""Normalisation layers and PReLU: per-channel parameters that follow the units through.

BatchNorm and InstanceNorm normalise each channel on its own, so a removed channel takes its
scale, shift and running statistics with it and nothing else changes. LayerNorm and RMSNorm
over the last dim also prune with it, but their statistics then cover fewer channels (the
result is close, not identical, to zeroing the unit). GroupNorm makes a whole group of channels
one unit, so the groups stay equal. None of them is pruned element-wise: their parameters are
vectors, not weight matrices.

>>> from torch import nn
>>> from prunekit.layers import kind_of
>>> kind_of(nn.BatchNorm2d(4)).prunable(nn.BatchNorm2d(4))
[]
"""

from __future__ import annotations

import numpy as np
from torch import nn

from prunekit.layers.kind import LAYER_KINDS, LayerKind, Rebuild
from prunekit.structured.channels import Channels
from prunekit.structured.site import Site

_ON_DIM_1 = "a channel-wise layer needs the channels on dim 1"


def batch_norm(site: Site, name: str, m: nn.Module) -> Channels | None:
    """BatchNorm / InstanceNorm: per-channel affine and running statistics."""
    ch = site.channels_at(site.node.args[0], 1, _ON_DIM_1)
    if ch is None:
        return None
    for param in ("weight", "bias", "running_mean", "running_var"):
        site.member(name, m, param, 0, ch.ids, "norm")
    site.prop.axis(name, "channels", ch.ids)
    if not ch.fresh:
        site.prop.mark_unfoldable(ch.ids)
    return ch


def layer_norm(site: Site, name: str, m: nn.Module) -> Channels | None:
    """LayerNorm / RMSNorm over the last dim prune with it; over several dims they pin."""
    ch, shape = site.info(site.node.args[0]), site.shape(site.node.args[0])
    if not isinstance(ch, Channels):
        return None
    normalized = len(m.normalized_shape)
    if ch.dim < len(shape) - normalized:
        return Channels(ch.dim, ch.ids, False)
    if normalized != 1:
        site.pin(ch.ids, f"{type(m).__name__} normalises over {normalized} dims together")
        return None
    for param in ("weight", "bias"):
        site.member(name, m, param, 0, ch.ids, "norm")
    site.prop.axis(name, "channels", ch.ids)
    site.prop.mark_unfoldable(ch.ids)
    return Channels(ch.dim, ch.ids, False)


def group_norm(site: Site, name: str, m: nn.GroupNorm) -> Channels | None:
    """GroupNorm: a whole group of channels is one unit, so the groups stay equal."""
    ch = site.channels_at(site.node.args[0], 1, _ON_DIM_1)
    if ch is None:
        return None
    per_group = m.num_channels // m.num_groups
    ids = np.repeat(site.prop.union_blocks(ch.ids, per_group), per_group)
    for param in ("weight", "bias"):
        site.member(name, m, param, 0, ids, "norm")
    site.prop.axis(name, "channels", ids)
    site.prop.mark_unfoldable(ids)
    return Channels(1, ids, False)


def prelu(site: Site, name: str, m: nn.PReLU) -> Channels | None:
    ch = site.info(site.node.args[0])
    if not isinstance(ch, Channels):
        return None
    if m.num_parameters == 1:
        return Channels(ch.dim, ch.ids, False)
    ch = site.channels_at(site.node.args[0], 1, "PReLU with one slope per channel needs them "
                                                "on dim 1")
    if ch is None:
        return None
    site.member(name, m, "weight", 0, ch.ids, "coupled")
    site.prop.axis(name, "channels", ch.ids)
    return Channels(1, ch.ids, False)


def _num_features(m: nn.Module, kept: dict[str, int]) -> None:
    m.num_features = kept["channels"]


def _normalized_shape(m: nn.Module, kept: dict[str, int]) -> None:
    m.normalized_shape = (kept["channels"],)


def _group_norm_size(m: nn.GroupNorm, kept: dict[str, int]) -> None:
    m.num_groups = m.num_groups * kept["channels"] // m.num_channels
    m.num_channels = kept["channels"]


def _prelu_size(m: nn.PReLU, kept: dict[str, int]) -> None:
    m.num_parameters = kept["channels"]


_NORM_FIELDS = ("num_features", "eps", "momentum", "affine", "track_running_stats")
BATCH_NORM = LayerKind(
    propagate=batch_norm, resize=_num_features, size_attributes=("num_features",),
    rebuild=Rebuild(_NORM_FIELDS),
)
LAYER_KINDS.update(dict.fromkeys(
    (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d,
     nn.InstanceNorm3d),
    BATCH_NORM,
))
# their other subclasses (SyncBatchNorm, the lazy ones) prune alike, but are not saved
LAYER_KINDS.update(dict.fromkeys(
    (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm),
    LayerKind(propagate=batch_norm, resize=_num_features, size_attributes=("num_features",)),
))
LAYER_KINDS[nn.LayerNorm] = LayerKind(
    propagate=layer_norm, resize=_normalized_shape, size_attributes=("normalized_shape",),
    rebuild=Rebuild(("normalized_shape", "eps", "elementwise_affine"), {"bias": "bias"}),
)
if hasattr(nn, "RMSNorm"):  # torch >= 2.4
    LAYER_KINDS[nn.RMSNorm] = LayerKind(
        propagate=layer_norm, resize=_normalized_shape, size_attributes=("normalized_shape",),
        rebuild=Rebuild(("normalized_shape", "eps", "elementwise_affine")),
    )
LAYER_KINDS[nn.GroupNorm] = LayerKind(
    propagate=group_norm, resize=_group_norm_size, size_attributes=("num_groups", "num_channels"),
    rebuild=Rebuild(("num_groups", "num_channels", "eps", "affine")),
)
LAYER_KINDS[nn.PReLU] = LayerKind(
    propagate=prelu, resize=_prelu_size, size_attributes=("num_parameters",),
    rebuild=Rebuild(("num_parameters",)),
)
