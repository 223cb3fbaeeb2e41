"""prunekit: make PyTorch models smaller and faster, and prove it with measurements.

The top level stays light (``import prunekit`` imports no torch): names below are imported on
first use. Add an export with one line in ``_LAZY``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"save": "prunekit.saving", "load": "prunekit.saving"}

__all__ = ["load", "save"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'prunekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
