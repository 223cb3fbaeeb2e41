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

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.structured.graph import DependencyGraph
from prunekit.structured.trace import run_one_sample


class RewriteError(RuntimeError):
    """The compacted model failed its check; the original was restored."""


def _conv(m: nn.Module, kept: dict[str, int]) -> None:
    per_group_in = m.in_channels // m.groups
    if m.groups > 1:
        m.groups = kept["in"] // per_group_in
    m.in_channels, m.out_channels = kept["in"], kept["out"]


def _linear(m: nn.Linear, kept: dict[str, int]) -> None:
    m.in_features, m.out_features = kept["in"], kept["out"]


def _norm(m: nn.Module, kept: dict[str, int]) -> None:
    m.num_features = kept["channels"]


def _layer_norm(m: nn.LayerNorm, kept: dict[str, int]) -> None:
    m.normalized_shape = (kept["channels"],)


def _group_norm(m: nn.GroupNorm, kept: dict[str, int]) -> None:
    m.num_groups = m.num_groups * kept["channels"] // m.num_channels
    m.num_channels = kept["channels"]


def _prelu(m: nn.PReLU, kept: dict[str, int]) -> None:
    m.num_parameters = kept["channels"]


def _embedding(m: nn.Embedding, kept: dict[str, int]) -> None:
    m.embedding_dim = kept["out"]


def _recurrent(m: nn.RNNBase, kept: dict[str, int]) -> None:
    m.input_size, m.hidden_size = kept["in"], kept["hidden"]
    m._init_flat_weights()


FIXUPS: dict[type, Callable[[Any, dict[str, int]], None]] = {
    nn.modules.conv._ConvNd: _conv,
    nn.Linear: _linear,
    nn.modules.batchnorm._BatchNorm: _norm,
    nn.modules.instancenorm._InstanceNorm: _norm,
    nn.LayerNorm: _layer_norm,
    nn.GroupNorm: _group_norm,
    nn.PReLU: _prelu,
    nn.Embedding: _embedding,
    nn.RNNBase: _recurrent,
}
"""Layer class → how to update its size attributes from the kept count of each axis."""

_ATTRIBUTES = (
    "in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
    "normalized_shape", "num_groups", "num_channels", "num_parameters", "embedding_dim",
    "input_size", "hidden_size",
)


def _fixup(module: nn.Module) -> Callable[[Any, dict[str, int]], None] | None:
    return next((FIXUPS[c] for c in type(module).__mro__ if c in FIXUPS), None)


class _Snapshot:
    """The tensors and size attributes of touched layers, to restore after a failed check."""

    def __init__(self) -> None:
        self.saved: dict[nn.Module, tuple[dict, dict, dict]] = {}

    def keep(self, module: nn.Module) -> None:
        if module not in self.saved:
            attributes = {a: getattr(module, a) for a in _ATTRIBUTES if hasattr(module, a)}
            self.saved[module] = (dict(module._parameters), dict(module._buffers), attributes)

    def restore(self) -> None:
        for module, (params, buffers, attributes) in self.saved.items():
            module._parameters.update(params)
            module._buffers.update(buffers)
            for name, value in attributes.items():
                object.__setattr__(module, name, value)
            if isinstance(module, nn.RNNBase):
                module._init_flat_weights()


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
    got = _shapes(run_one_sample(model, model, example_inputs))
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

    ``remove`` is a boolean array over ``graph``'s units. The model is checked on one sample of
    ``example_input`` afterwards and restored if the check fails.
    """
    remove = np.asarray(remove, dtype=bool)
    if remove.shape != (graph.num_units,):
        raise ValueError(f"remove has shape {remove.shape}; expected ({graph.num_units},)")
    keep_unit = np.append(~remove, True)  # index -1 (pinned) → kept
    model, snapshot = graph.model, _Snapshot()
    touched: set[str] = set()
    for member in graph.members:
        keep = keep_unit[graph.unit_of[member.ids]]
        if keep.all():
            continue
        module = model.get_submodule(member.module)
        snapshot.keep(module)
        touched.add(member.module)
        index = torch.from_numpy(np.flatnonzero(keep))
        tensor = getattr(module, member.param).detach()
        _replace(module, member.param, tensor.index_select(member.dim, index).contiguous())
    for name in touched:
        module = model.get_submodule(name)
        fixup = _fixup(module)
        if fixup is not None:
            kept = {axis: int(keep_unit[graph.unit_of[ids]].sum()) for axis, ids in graph.axes[name].items()}
            fixup(module, kept)
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        _check(graph, inputs)
    except Exception as exc:
        snapshot.restore()
        raise RewriteError(
            f"the compacted model failed its check ({type(exc).__name__}: {exc}); the model was "
            "restored. A shape in forward() probably does not follow the channels (a literal "
            "size computed from another tensor); pass the module involved in ignore=[...]"
        ) from exc
