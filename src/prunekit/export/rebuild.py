"""Turn an architecture description back into a model, trusting nothing the file says.

Why a module of its own: this is the code a hostile file talks to. A description is JSON that
anyone can write, and ``torch.fx.GraphModule`` resolves the names in its graph with ``getattr``
and then calls them, so a name that reached a method, a function's ``__globals__`` or a class
would run whatever the file asked for (an attribute path through ``forward.__globals__`` to
``exec`` did, before these rules). The rules hold *by construction*:

- a layer or tensor path is a dotted path of plain names — no ``__dunder__`` part, and no part
  that ``fx.GraphModule`` or ``nn.Module`` already use as an attribute (``forward``, ``graph``,
  ``apply``, ...);
- ``call_module`` may only call a layer this rebuild built from the allowlist, and ``get_attr``
  may only read a parameter or buffer it registered; both are found by walking the registered
  children, never by ``getattr``;
- ``call_function`` resolves only through the allowlist, ``call_method`` only to an allowlisted
  tensor method called on a graph value, ``getattr`` only for tensor properties;
- every field has the type it must have: a description that is a list, a string, deeply nested
  or carries a malformed tag is refused with one :class:`ArchitectureError` line.

>>> from torch import nn
>>> from prunekit.export.architecture import describe, trace
>>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
>>> rebuilt = rebuild(describe(trace(net)), net.state_dict())
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
    resolve_function,
    resolve_leaf_module,
)
from prunekit.export.values import decode_value

FORMAT = "prunekit.architecture"
VERSION = 1
OPS = ("placeholder", "get_attr", "call_module", "call_function", "call_method", "output")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_RESERVED = frozenset(dir(fx.GraphModule))  # forward, graph, code, training, apply, to, ...
_KINDS = ("parameter", "buffer")


def checked_path(path: object, what: str = "attribute path") -> str:
    """``path`` if it is a dotted path of plain names a model may hold, else an error.

    >>> checked_path("layer1.0.conv")
    'layer1.0.conv'
    >>> checked_path("0.forward.__globals__")
    Traceback (most recent call last):
    ...
    prunekit.export.allowlist.ArchitectureError: attribute path '0.forward.__globals__': part 'forward' is not a plain layer or tensor name (a.b.0 of [A-Za-z0-9_], no __dunder__ parts, none of nn.Module's own attribute names)
    """
    if not isinstance(path, str):
        raise ArchitectureError(f"{what} {path!r} is not a string")
    for part in path.split("."):
        if not _NAME.fullmatch(part) or part.startswith("__") or part in _RESERVED:
            raise ArchitectureError(
                f"{what} {path!r}: part {part!r} is not a plain layer or tensor name (a.b.0 of "
                "[A-Za-z0-9_], no __dunder__ parts, none of nn.Module's own attribute names)"
            )
    return path


def checked_identifier(name: object, what: str) -> str:
    """``name`` if it can stand as a variable in fx's generated ``forward``, else an error."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ArchitectureError(f"{what} {name!r} is not a valid Python identifier")
    if name == "self" or name.startswith("__"):  # fx's forward binds the module to `self`
        raise ArchitectureError(f"{what} {name!r} would shadow a name of the generated code")
    return name


def check_property(args: Any, where: str) -> None:
    """A graph may ``getattr`` only a tensor property, on a graph value."""
    if (
        not isinstance(args, tuple)
        or len(args) != 2
        or not isinstance(args[0], fx.Node)
        or args[1] not in TENSOR_PROPERTIES
    ):
        raise ArchitectureError(
            f"{where}: getattr may only read tensor properties {sorted(TENSOR_PROPERTIES)} of a "
            "graph value"
        )


def rebuild(description: Any, state: Mapping[str, Tensor]) -> fx.GraphModule:
    """Build the model ``description`` describes and load ``state`` into it (strictly).

    Layers are built on the meta device and receive ``state``'s tensors directly, so nothing is
    initialised twice; a description whose layer shapes disagree with the tensors is refused.
    """
    if not isinstance(description, Mapping):
        raise ArchitectureError(
            f"the architecture is a {type(description).__name__}, not a mapping; the file is "
            "damaged or was not written by prunekit.save"
        )
    version = description.get("version")
    if description.get("format") != FORMAT or type(version) is not int or version != VERSION:
        raise ArchitectureError(
            f"architecture is {description.get('format')!r} version "
            f"{description.get('version')!r}; this prunekit reads {FORMAT!r} version {VERSION}"
        )
    modules = _mapping(description, "modules")
    attributes = _mapping(description, "attributes")
    tied = _mapping(description, "tied")
    entries = description.get("graph", [])
    if not isinstance(entries, list):
        raise ArchitectureError("architecture field 'graph' must be a list of nodes")
    root = nn.Module()
    for path, spec in modules.items():
        _attach(root, checked_path(path, "layer path"), _build_module(path, spec))
    for target, kind in attributes.items():
        _attach(root, checked_path(target), _attribute(target, kind, state))
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for entry in entries:
        name, node = _build_node(graph, entry, nodes, root, modules)
        nodes[name] = node
    for name, source in tied.items():
        if _registered(root, checked_path(name)) is None or not isinstance(source, str):
            raise ArchitectureError(f"tied tensor {name!r} is not a tensor of the model")
    try:
        graph.lint()
        rebuilt = fx.GraphModule(root, graph, "PrunedModel")
        full_state = {**state, **{name: state[source] for name, source in tied.items()}}
        rebuilt.load_state_dict(full_state, strict=True, assign=True)
        for name, source in tied.items():
            owner_path, _, attribute = name.rpartition(".")
            owner = _registered(rebuilt, owner_path) if owner_path else rebuilt
            setattr(owner, attribute, _tensor_at(rebuilt, checked_path(source)))
    except (RuntimeError, AttributeError, KeyError, TypeError, ValueError, IndexError) as err:
        problem = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())[:400]
        raise ArchitectureError(f"architecture and weights do not fit together: {problem}") from err
    _check_materialised(rebuilt)
    rebuilt.train(_flag(description, "training", "the model"))
    for path, spec in modules.items():
        _registered(rebuilt, path).train(_flag(spec, "training", f"layer {path!r}"))
    return rebuilt


def _mapping(description: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = description.get(key, {})
    if not isinstance(value, Mapping):
        raise ArchitectureError(f"architecture field {key!r} must be a mapping")
    return value


def _flag(spec: Mapping[str, Any], key: str, what: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise ArchitectureError(f"{what}: {key!r} must be true or false, not {value!r}")
    return value


def _registered(root: nn.Module, path: str) -> nn.Module | Tensor | None:
    """The layer, parameter or buffer registered at ``path`` under ``root``, or None.

    Walks ``_modules``/``_parameters``/``_buffers`` only: what ``getattr`` would also find
    (methods, class attributes, a function's globals) is not there.
    """
    owner: nn.Module = root
    *parents, name = path.split(".")
    for part in parents:
        child = owner._modules.get(part)
        if child is None:
            return None
        owner = child
    for table in (owner._modules, owner._parameters, owner._buffers):
        if name in table:
            return table[name]
    return None


def _build_module(path: str, spec: Any) -> nn.Module:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("config"), Mapping):
        raise ArchitectureError(f"layer {path!r}: description must hold 'type' and 'config'")
    if not isinstance(spec.get("type"), str):
        raise ArchitectureError(f"layer {path!r}: 'type' must be a layer name")
    leaf = resolve_leaf_module(spec["type"])
    unknown = set(spec["config"]) - set(leaf.fields) - set(leaf.presence)
    if unknown:
        raise ArchitectureError(f"layer {path!r}: unexpected arguments {sorted(unknown, key=str)}")
    config = {key: decode_value(value, {}) for key, value in spec["config"].items()}
    try:
        with torch.device("meta"):
            return leaf.cls(**config)
    except Exception as err:  # an allowlisted constructor refusing its arguments, in any way
        problem = " ".join(str(err).split())[:300]
        raise ArchitectureError(
            f"layer {path!r} ({spec['type']}) cannot be built: {problem}"
        ) from err


def _attribute(target: str, kind: Any, state: Mapping[str, Tensor]) -> Tensor:
    tensor = state.get(target)
    if not isinstance(tensor, Tensor) or kind not in _KINDS:
        raise ArchitectureError(f"attribute {target!r} ({kind!r}) has no tensor in the weights")
    return nn.Parameter(tensor) if kind == "parameter" else tensor


def _attach(root: nn.Module, path: str, value: nn.Module | Tensor) -> None:
    *parents, name = path.split(".")
    owner = root
    for part in parents:
        child = owner._modules.get(part)
        if child is None:
            if part in owner._parameters or part in owner._buffers:
                raise ArchitectureError(f"{path!r} would place something inside a tensor")
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


def _build_node(
    graph: fx.Graph,
    entry: Any,
    nodes: Mapping[str, fx.Node],
    root: nn.Module,
    modules: Mapping[str, Any],
) -> tuple[str, fx.Node]:
    if not isinstance(entry, Mapping) or entry.get("op") not in OPS:
        raise ArchitectureError(f"graph entry {str(entry)[:80]!r} has no valid op (one of {OPS})")
    op, target = entry["op"], entry.get("target")
    name = checked_identifier(entry.get("name"), "node name")
    if name in nodes:
        raise ArchitectureError(f"graph node {name!r} is defined twice")
    where = f"graph node {name!r}"
    args = decode_value(entry.get("args", {"tuple": []}), nodes)
    kwargs = decode_value(entry.get("kwargs", {"dict": {}}), nodes)
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise ArchitectureError(f"{where}: args must be a tuple and kwargs a dict")
    for key in kwargs:
        checked_identifier(key, f"{where} keyword")
    if op == "placeholder":
        target = checked_identifier(target, "input name")
    elif op == "call_module":
        if checked_path(target, f"{where} layer") not in modules:
            raise ArchitectureError(f"{where} calls {target!r}, which is not a layer it describes")
    elif op == "get_attr":
        if not isinstance(_registered(root, checked_path(target, f"{where} tensor")), Tensor):
            raise ArchitectureError(f"{where} reads {target!r}, which is not a tensor it holds")
    elif op == "call_function":
        target = resolve_function(target if isinstance(target, str) else repr(target))
        if target is getattr:
            check_property(args, where)
    elif op == "call_method":
        target = check_method(target)
        if not args or not isinstance(args[0], fx.Node):
            raise ArchitectureError(f"{where}: method {target!r} must be called on a graph value")
    elif op == "output" and len(args) != 1:
        raise ArchitectureError(f"{where}: the output node takes exactly one argument")
    return name, graph.create_node(op, target, args, kwargs, name=name)


def _tensor_at(model: nn.Module, path: str) -> Tensor:
    tensor = _registered(model, path)
    if not isinstance(tensor, Tensor):
        raise ArchitectureError(f"tied tensor {path!r} is not a tensor of the model")
    return tensor


def _check_materialised(model: nn.Module) -> None:
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_meta:
            raise ArchitectureError(f"the weights hold no tensor for {name!r}")
