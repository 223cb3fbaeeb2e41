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

:func:`rebuild` turns that back into a ``torch.fx.GraphModule`` using only the tables in
:mod:`prunekit.export.allowlist`: nothing named in a description is imported, evaluated or
unpickled, and names that reach fx's generated code are checked to be plain identifiers.

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

import keyword
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, fx, nn

from prunekit.export.allowlist import (
    TENSOR_PROPERTIES,
    ArchitectureError,
    check_method,
    function_name,
    leaf_module_name,
    resolve_function,
    resolve_leaf_module,
)
from prunekit.export.values import decode_value, encode_value

FORMAT = "prunekit.architecture"
VERSION = 1
OPS = ("placeholder", "get_attr", "call_module", "call_function", "call_method", "output")
_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")

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
    leaves = sorted({str(n.target) for n in graph_module.graph.nodes if n.op == "call_module"})
    modules = {path: _describe_module(path, graph_module.get_submodule(path)) for path in leaves}
    attributes: dict[str, str] = {}
    nodes = []
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and not _inside(str(node.target), leaves):
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


def rebuild(description: Mapping[str, Any], state: Mapping[str, Tensor]) -> fx.GraphModule:
    """Build the model ``description`` describes and load ``state`` into it (strictly).

    Layers are built on the meta device and receive ``state``'s tensors directly, so nothing is
    initialised twice; a description whose layer shapes disagree with the tensors is refused.
    """
    if description.get("format") != FORMAT or description.get("version") != VERSION:
        raise ArchitectureError(
            f"architecture is {description.get('format')!r} version "
            f"{description.get('version')!r}; this prunekit reads {FORMAT!r} version {VERSION}"
        )
    modules = _mapping(description, "modules")
    attributes = _mapping(description, "attributes")
    root = nn.Module()
    for path, spec in modules.items():
        _attach(root, _checked_path(path), _build_module(path, spec))
    for target, kind in attributes.items():
        _attach(root, _checked_path(target), _attribute(target, kind, state))
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for entry in description.get("graph", ()):
        name, node = _build_node(graph, entry, nodes)
        nodes[name] = node
    tied = _mapping(description, "tied")
    try:
        graph.lint()
        rebuilt = fx.GraphModule(root, graph, "PrunedModel")
        full_state = {**state, **{name: state[source] for name, source in tied.items()}}
        rebuilt.load_state_dict(full_state, strict=True, assign=True)
        for name, source in tied.items():
            owner, _, attribute = _checked_path(name).rpartition(".")
            setattr(rebuilt.get_submodule(owner), attribute, _tensor_at(rebuilt, source))
    except (RuntimeError, AttributeError, KeyError, TypeError) as err:
        raise ArchitectureError(f"architecture and weights do not fit together: {err}") from err
    _check_materialised(rebuilt)
    rebuilt.train(bool(description.get("training", False)))
    for path, spec in modules.items():
        rebuilt.get_submodule(path).train(bool(spec.get("training", False)))
    return rebuilt


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
            _check_property(node.args, where)
    elif node.op == "call_method":
        check_method(node.target)
    return {
        "op": node.op, "name": node.name, "target": target,
        "args": encode_value(node.args, where), "kwargs": encode_value(dict(node.kwargs), where),
    }  # fmt: skip


def _check_property(args: Any, where: str) -> None:
    if len(args) != 2 or args[1] not in TENSOR_PROPERTIES:
        raise ArchitectureError(
            f"{where}: getattr may only read tensor properties {sorted(TENSOR_PROPERTIES)}"
        )


def _mapping(description: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = description.get(key, {})
    if not isinstance(value, Mapping):
        raise ArchitectureError(f"architecture field {key!r} must be a mapping")
    return value


def _checked_path(path: object) -> str:
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ArchitectureError(f"{path!r} is not a valid attribute path (a.b.0 of [A-Za-z0-9_])")
    return path


def _checked_identifier(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ArchitectureError(f"{what} {name!r} is not a valid Python identifier")
    if name == "self":  # fx's generated forward binds the module to `self`
        raise ArchitectureError(f"{what} 'self' would shadow the module in the generated code")
    return name


def _build_module(path: str, spec: Any) -> nn.Module:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("config"), Mapping):
        raise ArchitectureError(f"layer {path!r}: description must hold 'type' and 'config'")
    leaf = resolve_leaf_module(str(spec.get("type")))
    unknown = set(spec["config"]) - set(leaf.fields) - set(leaf.presence)
    if unknown:
        raise ArchitectureError(f"layer {path!r}: unexpected arguments {sorted(unknown)}")
    config = {key: decode_value(value, {}) for key, value in spec["config"].items()}
    try:
        with torch.device("meta"):
            return leaf.cls(**config)
    except (TypeError, ValueError, RuntimeError, AssertionError) as err:
        raise ArchitectureError(f"layer {path!r} ({spec['type']}) cannot be built: {err}") from err


def _attribute(target: str, kind: Any, state: Mapping[str, Tensor]) -> Tensor:
    tensor = state.get(target)
    if not isinstance(tensor, Tensor) or kind not in ("parameter", "buffer"):
        raise ArchitectureError(f"attribute {target!r} ({kind!r}) has no tensor in the weights")
    return nn.Parameter(tensor) if kind == "parameter" else tensor


def _attach(root: nn.Module, path: str, value: nn.Module | Tensor) -> None:
    *parents, name = path.split(".")
    owner = root
    for part in parents:
        child = owner._modules.get(part)
        if child is None:
            child = nn.Module()
            _attach_one(owner, part, child, path)
        owner = child
    if name in owner._modules or name in owner._parameters or name in owner._buffers:
        raise ArchitectureError(f"{path!r} is described twice")
    _attach_one(owner, name, value, path)


def _attach_one(owner: nn.Module, name: str, value: nn.Module | Tensor, path: str) -> None:
    try:
        if isinstance(value, nn.Module):
            owner.add_module(name, value)
        elif isinstance(value, nn.Parameter):
            owner.register_parameter(name, value)
        else:
            owner.register_buffer(name, value)
    except (KeyError, TypeError) as err:
        raise ArchitectureError(f"{path!r} cannot be placed in the model: {err}") from err


def _build_node(graph: fx.Graph, entry: Any, nodes: Mapping[str, fx.Node]) -> tuple[str, fx.Node]:
    if not isinstance(entry, Mapping) or entry.get("op") not in OPS:
        raise ArchitectureError(f"graph entry {entry!r} has no valid op (one of {OPS})")
    op, target = entry["op"], entry.get("target")
    name = _checked_identifier(entry.get("name"), "node name")
    if name in nodes:
        raise ArchitectureError(f"graph node {name!r} is defined twice")
    args = decode_value(entry.get("args", {"tuple": []}), nodes)
    kwargs = decode_value(entry.get("kwargs", {"dict": {}}), nodes)
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise ArchitectureError(f"graph node {name!r}: args must be a tuple and kwargs a dict")
    for key in kwargs:
        _checked_identifier(key, f"graph node {name!r} keyword")
    if op == "placeholder":
        target = _checked_identifier(target, "input name")
    elif op in ("get_attr", "call_module"):
        target = _checked_path(target)
    elif op == "call_function":
        target = resolve_function(str(target))
        if target is getattr:
            _check_property(args, f"graph node {name!r}")
    elif op == "call_method":
        target = check_method(target)
    return name, graph.create_node(op, target, args, kwargs, name=name)


def _tensor_at(model: nn.Module, path: str) -> Tensor:
    owner, _, name = path.rpartition(".")
    tensor = getattr(model.get_submodule(owner), name)
    if not isinstance(tensor, Tensor):
        raise ArchitectureError(f"tied tensor {path!r} is not a tensor of the model")
    return tensor


def _check_materialised(model: nn.Module) -> None:
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_meta:
            raise ArchitectureError(f"the weights hold no tensor for {name!r}")
