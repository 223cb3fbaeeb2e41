"""What prunekit knows about one layer type, kept in one object: the :class:`LayerKind`.

Why one object: pruning a layer touches every part of prunekit. Unstructured and N:M pruning
must know which tensors to mask and along which dim the N:M blocks run; the MACs counter what
``torch.utils.flop_counter`` misses inside it; the dependency graph how its units flow; the
rewrite how to make it smaller and which attributes a rollback restores; saving how to build it
again; the latency table its widths. Spread over separate tables, a layer known to one part was
unknown to the next (a rule registered for a user's class never reached the tracer). Kept
together, one registration takes effect everywhere.

Kinds are found along the class's MRO, so a subclass of ``nn.Conv2d`` is pruned as a Conv2d
unless it registers its own. Saving is the exception: a file names an exact type and
:func:`prunekit.load` builds exactly that type, because a subclass may override ``forward``.

>>> from torch import nn
>>> class MyConv(nn.Conv2d):
...     pass
>>> kind_of(MyConv(1, 2, 3)) is kind_of(nn.Conv2d(1, 2, 3))
True
>>> saved_name(nn.Conv2d), saved_name(MyConv)
('torch.nn.Conv2d', None)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

PropagationRule = Callable[[Any, str, Any], Any]
"""``rule(site, module_name, module) -> channels of the output`` (see :mod:`prunekit.structured`)."""

Resize = Callable[[Any, dict[str, int]], "nn.Module | None"]
"""``resize(module, kept)``: set size attributes from the kept count of each axis; may return a
replacement module (an ``nn.MultiheadAttention`` whose heads shrink becomes another class)."""

MacsCount = Callable[[Any, tuple[Any, ...], Any], int]
"""``macs(module, inputs, output)``: multiply-accumulates of one call, counted by hand."""


@dataclass(frozen=True)
class Weight:
    """One prunable tensor of a layer.

    ``reduction_dim`` is the dim whose entries one output sums over, along which N:M blocks run
    (``None``: N:M does not apply). ``opt_in`` tensors (embedding tables) are pruned only when
    the caller asks (``embeddings=True``): a lookup table's zeros save no compute.
    """

    name: str
    reduction_dim: int | None = 1
    opt_in: bool = False


@dataclass(frozen=True)
class Rebuild:
    """How a saved layer is built again: ``cls(**config)`` with arguments read off attributes.

    ``fields`` are constructor arguments stored under the attribute of the same name;
    ``presence`` maps a boolean flag to the attribute whose presence (not None) it controls, e.g.
    ``bias=True`` ⇔ ``module.bias is not None``. ``name`` is what the file calls the type
    (default: ``torch.nn.X`` for torch's layers, else ``module.QualName``).
    """

    fields: tuple[str, ...]
    presence: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None

    def config(self, module: nn.Module) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild ``module`` with its current shapes."""
        values = {name: getattr(module, name) for name in self.fields}
        values.update(
            {flag: getattr(module, attr) is not None for flag, attr in self.presence.items()}
        )
        return values


def _nothing(module: nn.Module) -> Sequence[Weight]:
    return ()


@dataclass(frozen=True)
class LayerKind:
    """Everything prunekit knows about one layer type; every field is optional.

    - ``weights``: the prunable tensors (a tuple, or a function of the module when they depend
      on it, as an LSTM's per-layer matrices do);
    - ``propagate``: the structured-pruning rule (how units enter, are born in, leave the layer);
    - ``resize``: update size attributes after units are cut; ``size_attributes``: what a failed
      rewrite restores;
    - ``macs``: multiply-accumulates of a call, for layers the flop counter misses (RNNs,
      ``nn.MultiheadAttention``'s fused path, ``nn.Bilinear``);
    - ``rebuild``: constructor fields, for saving (exact type only);
    - ``widths``: ``(in, out)`` channel widths, for the latency table.
    """

    weights: tuple[Weight, ...] | Callable[[nn.Module], Sequence[Weight]] = _nothing
    propagate: PropagationRule | None = None
    resize: Resize | None = None
    size_attributes: tuple[str, ...] = ()
    macs: MacsCount | None = None
    rebuild: Rebuild | None = None
    widths: Callable[[nn.Module], tuple[int, int]] | None = None

    def prunable(self, module: nn.Module) -> list[Weight]:
        """The prunable tensors ``module`` actually holds (a missing bias or projection is not)."""
        listed = self.weights if isinstance(self.weights, tuple) else self.weights(module)
        return [w for w in listed if isinstance(getattr(module, w.name, None), Tensor)]


LAYER_KINDS: dict[type[nn.Module], LayerKind] = {}
"""Layer class → its kind. Add yours with one line: ``LAYER_KINDS[MyLayer] = LayerKind(...)``
(see docs/layers.md)."""


def kind_for_class(cls: type) -> LayerKind | None:
    """The kind registered for ``cls`` or its nearest registered base class."""
    return next((LAYER_KINDS[c] for c in cls.__mro__ if c in LAYER_KINDS), None)


def kind_of(module: nn.Module) -> LayerKind | None:
    """The kind of ``module``: its class's, or its nearest registered base class's."""
    return kind_for_class(type(module))


def saved_name(cls: type) -> str | None:
    """What a file calls ``cls``, if this exact class may be saved (has ``rebuild``)."""
    kind = LAYER_KINDS.get(cls)
    if kind is None or kind.rebuild is None:
        return None
    if kind.rebuild.name is not None:
        return kind.rebuild.name
    if cls.__module__.startswith("torch.nn") and getattr(nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def rebuildable() -> dict[str, tuple[type[nn.Module], Rebuild]]:
    """Every saved name → (class, how to rebuild it), derived from :data:`LAYER_KINDS` now."""
    table = {}
    for cls, kind in LAYER_KINDS.items():
        name = saved_name(cls)
        if name is not None and kind.rebuild is not None:
            table[name] = (cls, kind.rebuild)
    return table
