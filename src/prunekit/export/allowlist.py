"""What a saved architecture may name: module types, functions and tensor methods.

Why an allowlist: :func:`prunekit.load` rebuilds a model from names written in a file that may
come from anyone. Resolving those names by import (``importlib``) or by unpickling would let a
file run any code it likes; here every name is looked up in the tables below and nowhere else,
so a file can only ask for tensor arithmetic and standard layers. The tables are plain dicts:
add your own leaf layer with :func:`register_leaf_module`.

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
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class ArchitectureError(ValueError):
    """A model cannot be described, or a description cannot be rebuilt, safely and exactly."""


@dataclass(frozen=True)
class LeafModule:
    """A layer saved as ``{type, config}``: its constructor arguments are read off attributes.

    ``fields`` are constructor arguments stored under the attribute of the same name;
    ``presence`` maps a boolean constructor flag to the attribute whose presence (not None) it
    controls, e.g. ``bias=True`` ⇔ ``module.bias is not None``.
    """

    cls: type[nn.Module]
    fields: tuple[str, ...]
    presence: Mapping[str, str] = field(default_factory=dict)

    def config(self, module: nn.Module) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild ``module`` with its current shapes."""
        values = {name: getattr(module, name) for name in self.fields}
        values.update(
            {flag: getattr(module, attr) is not None for flag, attr in self.presence.items()}
        )
        return values


_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
         "padding_mode")  # fmt: skip
_NORM = ("num_features", "eps", "momentum", "affine", "track_running_stats")
_RNN = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
        "bidirectional")  # fmt: skip
_MAX_POOL = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
_AVG_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_EMBEDDING = ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
              "scale_grad_by_freq", "sparse")  # fmt: skip
_INPLACE = ("inplace",)
_BIAS = {"bias": "bias"}

LEAF_MODULES: dict[str, LeafModule] = {
    **{f"torch.nn.Conv{d}d": LeafModule(getattr(nn, f"Conv{d}d"), _CONV, _BIAS) for d in (1, 2, 3)},
    **{
        f"torch.nn.ConvTranspose{d}d": LeafModule(
            getattr(nn, f"ConvTranspose{d}d"), (*_CONV, "output_padding"), _BIAS
        )
        for d in (1, 2, 3)
    },
    "torch.nn.Linear": LeafModule(nn.Linear, ("in_features", "out_features"), _BIAS),
    **{
        f"torch.nn.BatchNorm{d}d": LeafModule(getattr(nn, f"BatchNorm{d}d"), _NORM)
        for d in (1, 2, 3)
    },
    "torch.nn.LayerNorm": LeafModule(
        nn.LayerNorm, ("normalized_shape", "eps", "elementwise_affine"), _BIAS
    ),
    "torch.nn.GroupNorm": LeafModule(nn.GroupNorm, ("num_groups", "num_channels", "eps", "affine")),
    "torch.nn.Embedding": LeafModule(nn.Embedding, _EMBEDDING),
    "torch.nn.LSTM": LeafModule(nn.LSTM, (*_RNN, "proj_size")),
    "torch.nn.GRU": LeafModule(nn.GRU, _RNN),
    "torch.nn.MultiheadAttention": LeafModule(
        nn.MultiheadAttention,
        ("embed_dim", "num_heads", "dropout", "add_zero_attn", "kdim", "vdim", "batch_first"),
        {"bias": "in_proj_bias", "add_bias_kv": "bias_k"},
    ),
    **{
        f"torch.nn.{name}": LeafModule(getattr(nn, name), _INPLACE)
        for name in ("ReLU", "ReLU6", "SiLU", "Hardswish", "Hardsigmoid", "Mish")
    },
    **{
        f"torch.nn.{name}": LeafModule(getattr(nn, name), ())
        for name in ("Sigmoid", "Tanh", "Softsign", "Tanhshrink", "Identity")
    },
    "torch.nn.LeakyReLU": LeafModule(nn.LeakyReLU, ("negative_slope", "inplace")),
    "torch.nn.ELU": LeafModule(nn.ELU, ("alpha", "inplace")),
    "torch.nn.GELU": LeafModule(nn.GELU, ("approximate",)),
    "torch.nn.Hardtanh": LeafModule(nn.Hardtanh, ("min_val", "max_val", "inplace")),
    "torch.nn.Softplus": LeafModule(nn.Softplus, ("beta", "threshold")),
    "torch.nn.PReLU": LeafModule(nn.PReLU, ("num_parameters",)),
    "torch.nn.Softmax": LeafModule(nn.Softmax, ("dim",)),
    "torch.nn.LogSoftmax": LeafModule(nn.LogSoftmax, ("dim",)),
    **{
        f"torch.nn.{name}": LeafModule(getattr(nn, name), ("p", "inplace"))
        for name in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout")
    },
    **{
        f"torch.nn.MaxPool{d}d": LeafModule(getattr(nn, f"MaxPool{d}d"), _MAX_POOL)
        for d in (1, 2, 3)
    },
    "torch.nn.AvgPool1d": LeafModule(nn.AvgPool1d, _AVG_POOL),
    **{
        f"torch.nn.AvgPool{d}d": LeafModule(
            getattr(nn, f"AvgPool{d}d"), (*_AVG_POOL, "divisor_override")
        )
        for d in (2, 3)
    },
    **{
        f"torch.nn.Adaptive{kind}Pool{d}d": LeafModule(
            getattr(nn, f"Adaptive{kind}Pool{d}d"),
            ("output_size", "return_indices") if kind == "Max" else ("output_size",),
        )
        for kind in ("Avg", "Max")
        for d in (1, 2, 3)
    },
    "torch.nn.Flatten": LeafModule(nn.Flatten, ("start_dim", "end_dim")),
    "torch.nn.Unflatten": LeafModule(nn.Unflatten, ("dim", "unflattened_size")),
    "torch.nn.Upsample": LeafModule(
        nn.Upsample, ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")
    ),
    "torch.nn.PixelShuffle": LeafModule(nn.PixelShuffle, ("upscale_factor",)),
    "torch.nn.ZeroPad2d": LeafModule(nn.ZeroPad2d, ("padding",)),
    "torch.nn.ConstantPad2d": LeafModule(nn.ConstantPad2d, ("padding", "value")),
}


def register_leaf_module(
    name: str,
    cls: type[nn.Module],
    fields: tuple[str, ...],
    presence: Mapping[str, str] | None = None,
) -> None:
    """Allow ``cls`` as a layer in saved models, under ``name``, rebuilt as ``cls(**fields)``.

    Register in the process that saves *and* in the one that loads (e.g. at import of the
    package that defines ``cls``): loading never imports anything a file names.

    >>> register_leaf_module("torch.nn.Hardshrink", nn.Hardshrink, ("lambd",))
    >>> leaf_module_name(nn.Hardshrink())
    'torch.nn.Hardshrink'
    """
    LEAF_MODULES[name] = LeafModule(cls, fields, dict(presence or {}))
    _leaf_names.cache_clear()


def _register_prunekit_layers() -> None:
    from prunekit.activations import Entmax15, Sparsemax

    for cls in (Sparsemax, Entmax15):
        LEAF_MODULES[f"prunekit.activations.{cls.__name__}"] = LeafModule(cls, ("dim",))


_register_prunekit_layers()


@functools.cache
def _leaf_names() -> dict[type[nn.Module], str]:
    return {spec.cls: name for name, spec in LEAF_MODULES.items()}


def leaf_module_name(module: nn.Module) -> str | None:
    """The allowlisted name of ``module``'s exact type (subclasses may override forward: None)."""
    return _leaf_names().get(type(module))


def resolve_leaf_module(name: str) -> LeafModule:
    """The allowlisted layer called ``name``, or an error saying how to allow it."""
    spec = LEAF_MODULES.get(name)
    if spec is None:
        raise ArchitectureError(
            f"module type {name!r} is not in prunekit's allowlist of layers, so it is not built "
            "(loading never imports what a file names). If you trust this layer, call "
            "prunekit.export.allowlist.register_leaf_module(...) for it before loading"
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
