"""Physically remove units: every member slice is cut out and each layer's attributes updated.

The model is changed in place and stays an ordinary ``nn.Module`` of the same classes with
smaller shapes (``Conv2d(64, 128)`` becomes ``Conv2d(32, 64)``): no masks, wrappers or hooks, so
``state_dict()`` loads into the compacted architecture and every runtime (eager, TorchScript,
ONNX, oneDNN) sees a genuinely smaller dense model. Parameters are replaced by new
``nn.Parameter`` objects, so build the optimizer after pruning.

If the rewritten model no longer runs on the example input, or its output shapes changed, every
layer is restored and :class:`RewriteError` explains; a half-pruned model is never returned.

>>> import numpy as np, torch
>>> from torch import nn
>>> from prunekit.structured.graph import build_graph
>>> net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
>>> g = build_graph(net, torch.zeros(1, 4))
>>> remove_units(g, np.arange(g.num_units) < 2, torch.zeros(1, 4))
>>> net[0].out_features, net[2].in_features
(4, 4)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.layers import kind_of
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.trace import run_example


class RewriteError(RuntimeError):
    """The compacted model failed its check; the original was restored."""


class _Snapshot:
    """The tensors and size attributes of touched layers (and any layer replaced), to restore
    after a failed check."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.saved: dict[nn.Module, tuple[dict, dict, dict]] = {}
        self.replaced: list[tuple[str, nn.Module]] = []

    def keep(self, module: nn.Module, attributes: tuple[str, ...] = ()) -> None:
        kind = kind_of(module)
        names = (*(kind.size_attributes if kind is not None else ()), *attributes)
        values = {a: getattr(module, a) for a in names if hasattr(module, a)}
        if module in self.saved:
            self.saved[module][2].update({a: v for a, v in values.items()
                                          if a not in self.saved[module][2]})
            return
        self.saved[module] = (dict(module._parameters), dict(module._buffers), values)

    def replace(self, name: str, new: nn.Module) -> None:
        self.replaced.append((name, self.model.get_submodule(name)))
        _set_submodule(self.model, name, new)

    def restore(self) -> None:
        for name, original in reversed(self.replaced):
            _set_submodule(self.model, name, original)
        for module, (params, buffers, attributes) in self.saved.items():
            module._parameters.update(params)
            module._buffers.update(buffers)
            for name, value in attributes.items():
                object.__setattr__(module, name, value)
            if isinstance(module, nn.RNNBase):
                module._init_flat_weights()


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _replace(module: nn.Module, name: str, value: Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        setattr(module, name, value)


def _shapes(value: Any) -> Any:
    if isinstance(value, Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        return tuple(_shapes(v) for v in value)
    return None


def _check(graph: DependencyGraph, example_inputs: tuple[Tensor, ...]) -> None:
    model = graph.model
    output = next(n for n in graph.trace.module.graph.nodes if n.op == "output")
    expected = _shapes_of_size(graph.trace.shapes.get(output.args[0]))
    got = _shapes(run_example(model, model, example_inputs))
    if expected is not None and got != expected:
        raise RewriteError(f"output shapes changed from {expected} to {got}")


def _shapes_of_size(meta: Any) -> Any:
    if isinstance(meta, torch.Size):
        return tuple(meta)
    if isinstance(meta, tuple):
        return tuple(_shapes_of_size(m) for m in meta)
    return None


def remove_units(
    graph: DependencyGraph, remove: np.ndarray, example_input: Tensor | tuple[Tensor, ...]
) -> None:
    """Cut the units where ``remove`` is true out of ``graph.model``, in place.

    ``remove`` is a boolean array over ``graph``'s units. The model is checked on
    ``example_input`` afterwards and restored if the check fails.
    """
    remove = np.asarray(remove, dtype=bool)
    if remove.shape != (graph.num_units,):
        raise ValueError(f"remove has shape {remove.shape}; expected ({graph.num_units},)")
    keep_unit = np.append(~remove, True)  # index -1 (pinned) → kept
    model, snapshot = graph.model, _Snapshot(graph.model)

    def kept(ids: np.ndarray) -> int:
        return int(keep_unit[graph.unit_of[ids]].sum())

    touched: dict[str, nn.Module] = {}
    for member in graph.members:
        keep = keep_unit[graph.unit_of[member.ids]]
        if keep.all():
            continue
        module = touched.setdefault(member.module, model.get_submodule(member.module))
        snapshot.keep(module)
        index = torch.from_numpy(np.flatnonzero(keep))
        tensor = getattr(module, member.param).detach()
        _replace(module, member.param, tensor.index_select(member.dim, index).contiguous())
    for name, module in touched.items():
        kind = kind_of(module)
        if kind is not None and kind.resize is not None:
            axes = graph.axes.get(name, {})
            replacement = kind.resize(module, {axis: kept(ids) for axis, ids in axes.items()})
            if replacement is not None:
                snapshot.replace(name, replacement)
    counts = []
    for (name, attribute), ids in graph.attributes.items():
        module = model.get_submodule(name)
        if getattr(module, attribute) != kept(ids):
            snapshot.keep(module, (attribute,))
            setattr(module, attribute, kept(ids))
            counts.append(f"{name or 'model'}.{attribute} = {kept(ids)}")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        _check(graph, inputs)
    except Exception as exc:
        snapshot.restore()
        set_counts = f" (after setting {', '.join(counts)})" if counts else ""
        raise RewriteError(
            f"the compacted model failed its check{set_counts}: {type(exc).__name__}: {exc}; "
            "the model was restored. A shape in forward() probably does not follow the "
            "channels (a literal size, or one computed from another tensor): compute it from "
            "the attribute or the input, or pass the module involved in ignore=[...]"
        ) from exc
