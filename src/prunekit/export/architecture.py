"""A model's architecture as plain JSON: a torch.fx graph plus each layer's constructor arguments.

Why: a structurally pruned model has smaller layers than its source code builds, so the code
cannot rebuild it, and pickling it would make loading run arbitrary code. Instead we trace the
model with ``torch.fx`` (standard layers stay whole, everything else is traced through), then
write down

- every layer as ``{"type": "torch.nn.Conv2d", "config": {...}}`` — constructor arguments read
  off its attributes, so they describe the *pruned* shapes;
- every tensor the graph reads directly (``get_attr``) as a parameter or a buffer;
- every graph node: its op, name, target (a layer path, an allowlisted function's qualified name,
  or a tensor method's name) and its arguments, encoded as JSON with tags for tuples, slices,
  dtypes and references to earlier nodes.

:func:`~prunekit.export.rebuild.rebuild` turns that back into a ``torch.fx.GraphModule`` using
only the tables in :mod:`prunekit.export.allowlist`, resolving every name by construction
(nothing named in a description is imported, evaluated, unpickled or reached by ``getattr``).
``describe`` applies the same rules to the names it writes, so a model whose description could
not be loaded back is refused before anything is saved.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
>>> description = describe(trace(net))
>>> description["modules"]["0"]["config"]["out_features"]
3
>>> rebuilt = rebuild(description, net.state_dict())
>>> x = torch.randn(2, 4)
>>> torch.equal(rebuilt(x), net(x))
True
"""

from __future__ import annotations

from typing import Any

from torch import fx, nn

from prunekit.export.allowlist import (
    ArchitectureError,
    check_method,
    function_name,
    leaf_module_name,
    resolve_leaf_module,
)
from prunekit.export.rebuild import FORMAT, VERSION, check_property, checked_path, rebuild
from prunekit.export.values import encode_value

__all__ = ["ArchitectureError", "describe", "rebuild", "tied_tensors", "trace"]


class _ScopedTracer(fx.Tracer):
    """fx tracer whose leaves are the allowlisted layers, remembering which module it is in.

    Buffers are traced as graph inputs (``get_attr``) rather than folded into constants, so the
    saved weights keep the model's own names (``offset``, not ``_tensor_constant0``).
    """

    proxy_buffer_attributes = True

    def __init__(self) -> None:
        super().__init__()
        self.module_path_stack: list[str] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return leaf_module_name(m) is not None

    def call_module(
        self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        name = self.path_of_module(m) or "<the model itself>"
        self.module_path_stack.append(f"{name!r} ({type(m).__module__}.{type(m).__qualname__})")
        result = super().call_module(m, forward, args, kwargs)
        self.module_path_stack.pop()
        return result


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` into a GraphModule whose leaves are allowlisted layers.

    Fails with the path and class of the innermost module whose ``forward`` fx cannot follow.

    >>> from torch import nn
    >>> [n.op for n in trace(nn.Sequential(nn.Linear(2, 2))).graph.nodes]
    ['placeholder', 'call_module', 'output']
    """
    tracer = _ScopedTracer()
    try:
        graph = tracer.trace(model)
    except Exception as err:
        where = (
            tracer.module_path_stack[-1]
            if tracer.module_path_stack
            else repr(type(model).__qualname__)
        )
        raise ArchitectureError(
            f"torch.fx cannot trace module {where}: {type(err).__name__}: {err}. Make its "
            "forward traceable (no Python if/for on tensor values, no tensor-to-Python "
            "conversions), save a traceable wrapper around it, or register how to rebuild it "
            "(prunekit.export.allowlist.register_leaf_module; a subclass of a torch.nn layer is "
            "saved by its own type, its forward may differ: docs/layers.md)"
        ) from err
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def describe(graph_module: fx.GraphModule) -> dict[str, Any]:
    """The JSON-ready architecture of a traced model (see the module docstring for the schema).

    >>> from torch import nn
    >>> describe(trace(nn.Sequential(nn.ReLU())))["modules"]["0"]
    {'type': 'torch.nn.ReLU', 'config': {'inplace': False}, 'training': True}
    """
    leaves = sorted(
        {checked_path(n.target, "layer path") for n in graph_module.graph.nodes
         if n.op == "call_module"}
    )  # fmt: skip
    modules = {path: _describe_module(path, graph_module.get_submodule(path)) for path in leaves}
    attributes: dict[str, str] = {}
    nodes = []
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and not _inside(checked_path(node.target), leaves):
            attributes[str(node.target)] = _attribute_kind(graph_module, str(node.target))
        nodes.append(_describe_node(node))
    return {
        "format": FORMAT, "version": VERSION, "training": graph_module.training,
        "modules": modules, "attributes": attributes, "tied": tied_tensors(graph_module),
        "graph": nodes,
    }  # fmt: skip


def tied_tensors(model: nn.Module) -> dict[str, str]:
    """Names of parameters/buffers that are the same tensor as an earlier name (weight tying).

    The weights file stores each tensor once; :func:`rebuild` ties the names back together.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    >>> net[1].weight = net[0].weight
    >>> tied_tensors(net)
    {'1.weight': '0.weight'}
    """
    first: dict[int, str] = {}
    tied: dict[str, str] = {}
    for named in (model.named_parameters, model.named_buffers):
        for name, tensor in named(remove_duplicate=False):
            if id(tensor) in first:
                tied[name] = first[id(tensor)]
            else:
                first[id(tensor)] = name
    return tied


def _inside(target: str, leaves: list[str]) -> bool:
    return any(target.startswith(leaf + ".") for leaf in leaves)


def _describe_module(path: str, module: nn.Module) -> dict[str, Any]:
    name = leaf_module_name(module)
    if name is None:
        raise ArchitectureError(
            f"layer {path!r} is a {type(module).__qualname__}, which prunekit cannot save; "
            "register it with prunekit.export.allowlist.register_leaf_module"
        )
    config = resolve_leaf_module(name).config(module)
    encoded = {
        key: encode_value(value, f"layer {path!r} argument {key!r}")
        for key, value in config.items()
    }
    return {"type": name, "config": encoded, "training": module.training}


def _attribute_kind(graph_module: fx.GraphModule, target: str) -> str:
    owner_path, _, name = target.rpartition(".")
    owner = graph_module.get_submodule(owner_path)
    if name in owner._parameters:
        return "parameter"
    if name in owner._buffers:
        return "buffer"
    raise ArchitectureError(
        f"the graph reads attribute {target!r}, which is not a tensor; only tensors can be saved"
    )


def _describe_node(node: fx.Node) -> dict[str, Any]:
    where = f"graph node {node.name!r} ({node.op} {node.target})"
    target: Any = node.target
    if node.op == "call_function":
        target = function_name(node.target)
        if target is None:
            raise ArchitectureError(
                f"{where}: {getattr(node.target, '__qualname__', node.target)!r} is not an "
                "allowlisted function (operator, math, torch.nn.functional, torch tensor ops); "
                "express it with those"
            )
        if node.target is getattr:
            check_property(node.args, where)
    elif node.op == "call_method":
        check_method(node.target)
    return {
        "op": node.op, "name": node.name, "target": target,
        "args": encode_value(node.args, where), "kwargs": encode_value(dict(node.kwargs), where),
    }  # fmt: skip





















