"""Arguments of graph nodes and layer settings as JSON, and back.

Why a codec of our own: fx arguments hold Python values JSON lacks — tuples (distinct from
lists), slices, ``...``, dtypes, devices, non-finite floats and references to earlier nodes —
and a pickle of them would make loading run code. Plain JSON values stand for themselves; every
other value becomes a one-key object whose key says what it is::

    (1, x[:, ::2], torch.float16)  →  {"tuple": [1, {"node": "getitem"}, {"dtype": "float16"}]}

Decoding accepts only these tags, and dtypes, layouts and memory formats only when ``torch``
really has an object of that kind by that name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import fx

from prunekit.export.allowlist import ArchitectureError

_TAGGED = {
    "dtype": torch.dtype, "memory_format": torch.memory_format, "layout": torch.layout,
}  # fmt: skip


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


def decode_value(value: Any, nodes: Mapping[str, fx.Node]) -> Any:
    """Inverse of :func:`encode_value`; node references resolve through ``nodes`` (defined so far).

    >>> decode_value({"tuple": [1, {"dtype": "float16"}]}, {})
    (1, torch.float16)
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [decode_value(item, nodes) for item in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise ArchitectureError(f"argument {value!r} is not a valid encoded value")
    ((tag, payload),) = value.items()
    if tag == "node":
        if payload not in nodes:
            raise ArchitectureError(f"argument refers to node {payload!r} before it is defined")
        return nodes[payload]
    if tag == "tuple":
        return tuple(decode_value(item, nodes) for item in payload)
    if tag == "dict":
        return {str(k): decode_value(v, nodes) for k, v in payload.items()}
    if tag == "slice":
        return slice(*(decode_value(p, nodes) for p in payload))
    if tag == "ellipsis":
        return Ellipsis
    if tag == "float" and payload in ("inf", "-inf", "nan"):
        return float(payload)
    if tag == "device":
        return torch.device(str(payload))
    if tag in _TAGGED and isinstance(getattr(torch, str(payload), None), _TAGGED[tag]):
        return getattr(torch, str(payload))
    raise ArchitectureError(f"argument {value!r} has an unknown tag or value")
