"""Embedding tables: ``nn.Embedding`` and ``nn.EmbeddingBag``.

An embedding's columns are units born here (structured pruning narrows the table). Element-wise
pruning of the table is opt-in (``embeddings=True``): a lookup multiplies nothing, so its zeros
save memory but no time, and a sparse table changes every token that uses it. N:M does not
apply (no dim is summed over).

>>> from torch import nn
>>> from prunekit.layers import kind_of
>>> [(w.name, w.opt_in, w.reduction_dim) for w in kind_of(nn.Embedding(5, 3)).prunable(nn.Embedding(5, 3))]
[('weight', True, None)]
"""

from __future__ import annotations

from torch import nn

from prunekit.layers.kind import LAYER_KINDS, LayerKind, Rebuild, Weight
from prunekit.structured.channels import Channels
from prunekit.structured.site import Site


def embedding(site: Site, name: str, m: nn.Module) -> Channels:
    out = site.prop.new_space(m.embedding_dim, name)
    site.member(name, m, "weight", 1, out, "out")
    site.prop.axis(name, "out", out)
    site.prop.mark_unfoldable(out)
    return Channels(len(site.out_shape) - 1, out, False)


def _resize(m: nn.Module, kept: dict[str, int]) -> None:
    m.embedding_dim = kept["out"]


_FIELDS = ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
           "scale_grad_by_freq", "sparse")  # fmt: skip
_TABLE = (Weight("weight", reduction_dim=None, opt_in=True),)

LAYER_KINDS[nn.Embedding] = LayerKind(
    weights=_TABLE, propagate=embedding, resize=_resize, size_attributes=("embedding_dim",),
    rebuild=Rebuild(_FIELDS),
)
LAYER_KINDS[nn.EmbeddingBag] = LayerKind(
    weights=_TABLE, propagate=embedding, resize=_resize, size_attributes=("embedding_dim",),
    rebuild=Rebuild((*_FIELDS, "mode", "include_last_offset")),
)
