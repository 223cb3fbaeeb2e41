"""Which tensors of a model pruning targets, and which weight-bearing ones it leaves, and why.

Every number prunekit reports about sparsity is over exactly :func:`prunable_weights`, so a model
"80 % sparse" has 80 % zeros there; :func:`skipped_weights` names every other matrix (2-d or
more) with the reason it is left, so nothing is hidden: a custom layer without a description, an
embedding table not opted in, an ignored module.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 8))
>>> [w.name for w in prunable_weights(net)]
['1.weight_ih_l0', '1.weight_hh_l0']
>>> skipped_weights(net)
{'0.weight': 'an embedding table: pruned only with embeddings=True'}
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from torch import Tensor, nn

from prunekit.layers.kind import Weight, kind_of


@dataclass(frozen=True)
class PrunableWeight:
    """One prunable tensor: ``module.<weight.name>``, called ``name`` in the state dict."""

    module_name: str
    module: nn.Module
    weight: Weight

    @property
    def name(self) -> str:
        return f"{self.module_name}.{self.weight.name}" if self.module_name else self.weight.name

    @property
    def tensor(self) -> Tensor:
        return getattr(self.module, self.weight.name)


def _check_ignore(model: nn.Module, ignore: Collection[str]) -> None:
    known = {name for name, _ in model.named_modules()}
    known |= {name for name, _ in model.named_parameters()}
    unknown = set(ignore) - known
    if unknown:
        raise ValueError(f"ignore names {sorted(unknown)} are not modules or parameters of the "
                         "model; use names from model.named_modules()")


def _survey(
    model: nn.Module, ignore: Collection[str], embeddings: bool
) -> tuple[list[PrunableWeight], dict[str, str]]:
    _check_ignore(model, ignore)
    prunable: list[PrunableWeight] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        kind = kind_of(module)
        for weight in kind.prunable(module) if kind is not None else ():
            entry = PrunableWeight(module_name, module, weight)
            if id(entry.tensor) in seen or module_name in ignore or entry.name in ignore:
                continue
            if weight.opt_in and not embeddings:
                continue
            seen.add(id(entry.tensor))
            prunable.append(entry)
    skipped = {}
    for name, param in model.named_parameters():
        if param.dim() >= 2 and id(param) not in seen:
            skipped[name] = _why_skipped(model, name, ignore)
    return prunable, skipped


def _why_skipped(model: nn.Module, name: str, ignore: Collection[str]) -> str:
    module_name, _, param = name.rpartition(".")
    module = model.get_submodule(module_name)
    kind = kind_of(module)
    if name in ignore or module_name in ignore:
        return "ignored (named in ignore)"
    if kind is None:
        return (f"{type(module).__name__} has no layer description: register one for it "
                "(prunekit.layers.LAYER_KINDS, see docs/layers.md)")
    if any(w.name == param and w.opt_in for w in kind.prunable(module)):
        return "an embedding table: pruned only with embeddings=True"
    return f"{type(module).__name__}'s description does not prune {param!r}"


def prunable_weights(
    model: nn.Module, ignore: Collection[str] = (), *, embeddings: bool = False
) -> list[PrunableWeight]:
    """The tensors unstructured and N:M pruning act on, each once (tied tensors too).

    ``ignore`` names modules or parameters to leave; ``embeddings=True`` adds embedding tables.
    """
    return _survey(model, ignore, embeddings)[0]


def skipped_weights(
    model: nn.Module, ignore: Collection[str] = (), *, embeddings: bool = False
) -> dict[str, str]:
    """Every parameter of 2 or more dims that pruning leaves → why (for reports and warnings)."""
    return _survey(model, ignore, embeddings)[1]
