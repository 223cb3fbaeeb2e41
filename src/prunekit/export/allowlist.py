"""What a saved architecture may name: module types, functions and tensor methods.

Why an allowlist: :func:`prunekit.load` rebuilds a model from names written in a file that may
come from anyone. Resolving those names by import (``importlib``) or by unpickling would let a
file run any code it likes; here every name is looked up in the tables below and nowhere else,
so a file can only ask for tensor arithmetic and standard layers. The layers are those whose
description (:mod:`prunekit.layers`) says how to rebuild them: add your own with
:func:`register_leaf_module` or a ``LayerKind`` with ``rebuild``.

Functions come from four namespaces — ``operator`` (arithmetic, comparisons, ``getitem``),
``math``, ``torch.nn.functional`` (its own functions) and ``torch`` (the native tensor operators
and ``torch.functional``) — minus anything that reads or writes files. Methods are the public
methods of ``torch.Tensor`` minus those that escape the tensor world (hooks, storages, NumPy,
``apply_``). ``getattr`` is allowed only for tensor properties such as ``shape`` and ``dtype``.

>>> resolve_function("torch.nn.functional.relu") is torch.nn.functional.relu
True
>>> function_name(operator.add)
'operator.add'
"""

from __future__ import annotations

import builtins
import functools
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from prunekit.layers import LAYER_KINDS, LayerKind, Rebuild, kind_for_class, rebuildable, saved_name


class ArchitectureError(ValueError):
    """A model cannot be described, or a description cannot be rebuilt, safely and exactly."""


@dataclass(frozen=True)
class LeafModule:
    """A layer saved as ``{type, config}``: its class and how its constructor arguments are
    read off attributes (the layer description's :class:`~prunekit.layers.Rebuild`)."""

    cls: type[nn.Module]
    rebuild: Rebuild

    @property
    def fields(self) -> tuple[str, ...]:
        return self.rebuild.fields

    @property
    def presence(self) -> Mapping[str, str]:
        return self.rebuild.presence

    def config(self, module: nn.Module) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild ``module`` with its current shapes."""
        return self.rebuild.config(module)


def leaf_modules() -> dict[str, LeafModule]:
    """Every layer type a saved model may name → how it is rebuilt.

    Derived, at each call, from the layer descriptions (:data:`prunekit.layers.LAYER_KINDS`):
    how to rebuild a layer lives with the rest of what prunekit knows about it.

    >>> leaf_modules()["torch.nn.Linear"].fields
    ('in_features', 'out_features')
    """
    return {name: LeafModule(cls, rebuild) for name, (cls, rebuild) in rebuildable().items()}


def register_leaf_module(
    name: str,
    cls: type[nn.Module],
    fields: tuple[str, ...],
    presence: Mapping[str, str] | None = None,
) -> None:
    """Allow ``cls`` as a layer in saved models, under ``name``, rebuilt as ``cls(**fields)``.

    This sets the ``rebuild`` of ``cls``'s layer description (keeping what it inherits from a
    base class, so a subclass of ``nn.Conv2d`` is still pruned as one). Register in the process
    that saves *and* in the one that loads (e.g. at import of the package that defines ``cls``):
    loading never imports anything a file names.

    >>> register_leaf_module("torch.nn.Hardshrink", nn.Hardshrink, ("lambd",))
    >>> leaf_module_name(nn.Hardshrink())
    'torch.nn.Hardshrink'
    """
    kind = kind_for_class(cls) or LayerKind()
    LAYER_KINDS[cls] = replace(kind, rebuild=Rebuild(tuple(fields), dict(presence or {}), name))


def leaf_module_name(module: nn.Module) -> str | None:
    """The allowlisted name of ``module``'s exact type (subclasses may override forward: None)."""
    return saved_name(type(module))


def resolve_leaf_module(name: str) -> LeafModule:
    """The allowlisted layer called ``name``, or an error saying how to allow it."""
    spec = leaf_modules().get(name)
    if spec is None:
        raise ArchitectureError(
            f"module type {name!r} is not in prunekit's allowlist of layers, so it is not built "
            "(loading never imports what a file names). If you trust this layer, register it "
            "before loading: prunekit.export.allowlist.register_leaf_module(name, cls, fields), "
            "or a prunekit.layers.LayerKind with rebuild=... (docs/layers.md)"
        )
    return spec


_OPERATORS = (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "neg", "pos", "abs",
    "invert", "and_", "or_", "xor", "lshift", "rshift", "not_", "eq", "ne", "lt", "le", "gt",
    "ge", "getitem", "iadd", "isub", "imul", "itruediv", "ifloordiv", "imatmul", "contains",
)  # fmt: skip
# from_file reads a file the graph names; frombuffer/from_numpy read raw Python-object memory
_TORCH_DENIED = frozenset({"from_file", "frombuffer", "from_numpy"})
_FUNCTIONAL_MODULES = frozenset({"torch.nn.functional", "torch._C._nn", "torch"})
TENSOR_PROPERTIES = frozenset(
    {"shape", "dtype", "device", "ndim", "layout", "T", "mT", "is_cuda", "requires_grad"}
)
_METHODS_DENIED = frozenset({
    "apply_", "map_", "map2_", "backward", "register_hook", "register_post_accumulate_grad_hook",
    "retain_grad", "numpy", "storage", "untyped_storage", "storage_type", "set_", "share_memory_",
    "pin_memory", "record_stream", "data_ptr", "const_data_ptr", "module_load",
})  # fmt: skip


def _public_callables(namespace: Any, names: Any) -> dict[str, Callable[..., Any]]:
    found = {}
    for name in names:
        value = getattr(namespace, name, None)
        if not name.startswith("_") and callable(value) and not isinstance(value, type):
            found[name] = value
    return found


@functools.cache
def _functions() -> dict[str, Callable[..., Any]]:
    table: dict[str, Callable[..., Any]] = {"builtins.getattr": builtins.getattr}
    for name, fn in _public_callables(operator, _OPERATORS).items():
        table[f"operator.{name}"] = fn
    for name, fn in _public_callables(math, dir(math)).items():
        table[f"math.{name}"] = fn
    for name, fn in _public_callables(F, dir(F)).items():
        if getattr(fn, "__module__", None) in _FUNCTIONAL_MODULES:
            table[f"torch.nn.functional.{name}"] = fn
    native = {n for n in dir(torch._C._VariableFunctions) if n not in _TORCH_DENIED}
    for name, fn in _public_callables(
        torch, sorted(native | set(torch.functional.__all__))
    ).items():
        table[f"torch.{name}"] = fn
    return table


@functools.cache
def _function_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for name, fn in _functions().items():
        names.setdefault(id(fn), name)
    return names


def function_name(fn: Callable[..., Any]) -> str | None:
    """The allowlisted qualified name of ``fn``, or None if it may not appear in a saved graph."""
    return _function_names().get(id(fn))


def resolve_function(name: str) -> Callable[..., Any]:
    """The allowlisted function called ``name`` (e.g. ``"torch.flatten"``), or an error."""
    fn = _functions().get(name)
    if fn is None:
        raise ArchitectureError(
            f"function {name!r} is not in prunekit's allowlist (operator, math, "
            "torch.nn.functional and torch tensor operators); the file cannot be loaded safely"
        )
    return fn


@functools.cache
def _methods() -> frozenset[str]:
    return frozenset(_public_callables(torch.Tensor, dir(torch.Tensor))) - _METHODS_DENIED


def check_method(name: object) -> str:
    """``name`` if it is an allowlisted ``torch.Tensor`` method, else an error naming it."""
    if not isinstance(name, str) or name not in _methods():
        raise ArchitectureError(
            f"method {name!r} is not an allowlisted torch.Tensor method; a saved graph may only "
            "call tensor methods that compute values"
        )
    return name
