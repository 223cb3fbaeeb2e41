"""Layer descriptions: one :class:`LayerKind` per layer type, in :data:`LAYER_KINDS`.

What prunekit knows about a layer — its prunable tensors and N:M axes, its MACs where the flop
counter misses them, how units flow through it, how to shrink it, how to save and rebuild it —
lives in one object per type (:mod:`.kind`); torch.nn's layers are described in the modules
below, one family each. Unstructured and N:M pruning, the MACs counter, the dependency graph,
the rewrite, saving and the latency table all read these, so registering a kind for your own
class takes effect everywhere (docs/layers.md shows how).

>>> from torch import nn
>>> sorted(w.name for w in kind_of(nn.GRU(4, 8, bidirectional=True)).prunable(
...     nn.GRU(4, 8, bidirectional=True)))
['weight_hh_l0', 'weight_hh_l0_reverse', 'weight_ih_l0', 'weight_ih_l0_reverse']
"""

# importing each family registers its kinds in LAYER_KINDS
from prunekit.layers import (  # noqa: F401
    attention,
    conv,
    elementwise,
    embedding,
    linear,
    norms,
    recurrent,
)
from prunekit.layers.inventory import PrunableWeight, prunable_weights, skipped_weights
from prunekit.layers.kind import (
    LAYER_KINDS,
    LayerKind,
    Rebuild,
    Weight,
    kind_for_class,
    kind_of,
    rebuildable,
    saved_name,
)

__all__ = [
    "LAYER_KINDS",
    "LayerKind",
    "PrunableWeight",
    "Rebuild",
    "Weight",
    "kind_for_class",
    "kind_of",
    "prunable_weights",
    "rebuildable",
    "saved_name",
    "skipped_weights",
]
