"""Arguments of graph nodes and layer settings as JSON, and back.

Why a codec of our own: fx arguments hold Python values JSON lacks — tuples (distinct from
lists), slices, ``...``, dtypes, devices, non-finite floats and references to earlier nodes —
and a pickle of them would make loading run code. Plain JSON values stand for themselves; every
other value becomes a one-key object whose key says what it is::

    (1, x[:, ::2], torch.float16)  →  {"tuple": [1, {"node": "getitem"}, {"dtype": "float16"}]}

Decoding accepts only these tags, each with the payload its encoder writes (a list for a tuple,
three values for a slice, a name for a dtype, ...), dtypes, layouts and memory formats only when
``torch`` really has an object of that kind by that name, and nesting only to
:data:`MAX_DEPTH` levels: anything else is one :class:`ArchitectureError`, never an
``IndexError`` from deep inside or a ``RecursionError``.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import fx

from prunekit.export.allowlist import ArchitectureError

_TAGGED = {
    "dtype": torch.dtype, "memory_format": torch.memory_format, "layout": torch.layout,
}  # fmt: skip
MAX_DEPTH = 32
"""Deepest nesting of tuples/lists/dicts/slices an argument may have (fx's own are 3 or 4)."""


def encode_value(value: Any, where: str) -> Any:
    """JSON for an argument or a layer setting; ``where`` names it in errors.

    >>> encode_value((1, slice(None, 2, None)), "example")
    {'tuple': [1, {'slice': [None, 2, None]}]}
    """
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, (list, tuple)):
        items = [encode_value(item, where) for item in value]
        return items if isinstance(value, list) else {"tuple": items}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode_value(v, where) for k, v in value.items()}}
    if isinstance(value, slice):
        return {"slice": [encode_value(p, where) for p in (value.start, value.stop, value.step)]}
    if value is Ellipsis:
        return {"ellipsis": None}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    for tag, kind in _TAGGED.items():
        if isinstance(value, kind):
            return {tag: str(value).removeprefix("torch.")}
    raise ArchitectureError(f"{where}: value {value!r} ({type(value).__name__}) cannot be saved")


def decode_value(value: Any, nodes: Mapping[str, fx.Node], depth: int = 0) -> Any:
    """Inverse of :func:`encode_value`; node references resolve through ``nodes`` (defined so far).

    >>> decode_value({"tuple": [1, {"dtype": "float16"}]}, {})
    (1, torch.float16)
    >>> decode_value({"slice": "::2"}, {})
    Traceback (most recent call last):
    ...
    prunekit.export.allowlist.ArchitectureError: argument {'slice': '::2'}: a slice is a list of three values
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth >= MAX_DEPTH:
        raise ArchitectureError(f"an argument is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [decode_value(item, nodes, depth + 1) for item in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise ArchitectureError(f"argument {_short(value)} is not a valid encoded value")
    ((tag, payload),) = value.items()
    decoded = _decode_tagged(tag, payload, nodes, depth + 1)
    if decoded is _INVALID:
        raise ArchitectureError(f"argument {_short(value)} has an unknown tag or value")
    return decoded


_INVALID = object()


def _decode_tagged(tag: str, payload: Any, nodes: Mapping[str, fx.Node], depth: int) -> Any:
    if tag == "node":
        if not isinstance(payload, str) or payload not in nodes:
            raise ArchitectureError(
                f"argument refers to node {_short(payload)} before it is defined"
            )
        return nodes[payload]
    if tag == "tuple":
        if not isinstance(payload, list):
            raise ArchitectureError(f"argument {_short({tag: payload})}: a tuple is a list")
        return tuple(decode_value(item, nodes, depth) for item in payload)
    if tag == "slice":
        if not isinstance(payload, list) or len(payload) != 3:
            raise ArchitectureError(
                f"argument {_short({tag: payload})}: a slice is a list of three values"
            )
        return slice(*(decode_value(p, nodes, depth) for p in payload))
    if tag == "dict":
        if not isinstance(payload, dict):
            raise ArchitectureError(f"argument {_short({tag: payload})}: a dict is a mapping")
        return {k: decode_value(v, nodes, depth) for k, v in payload.items()}
    if tag == "ellipsis":
        return Ellipsis if payload is None else _INVALID
    if tag == "float":
        return float(payload) if payload in ("inf", "-inf", "nan") else _INVALID
    if tag == "device":
        return _device(payload)
    kind = _TAGGED.get(tag)
    if (
        kind is not None
        and isinstance(payload, str)
        and isinstance(getattr(torch, payload, None), kind)
    ):
        return getattr(torch, payload)
    return _INVALID


def _device(payload: Any) -> torch.device:
    if not isinstance(payload, str):
        raise ArchitectureError(f"device {_short(payload)} is not a name such as 'cpu'")
    try:
        return torch.device(payload)
    except (RuntimeError, ValueError) as err:
        raise ArchitectureError(f"device {_short(payload)}: {err}") from err


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 4, 4


def _short(value: Any) -> str:
    """A short ``repr``: a hostile file may hold megabytes, or thousands of levels, in a value."""
    return _REPR.repr(value)
