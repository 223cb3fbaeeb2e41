"""Structured pruning: remove whole neurons, channels, filters, heads, hidden units and blocks.

The split follows Torch-Pruning's: the dependency graph (:mod:`.graph`) knows *what must change
together*, an importance (:mod:`.importance`) knows *what matters*, the pruner (:mod:`.prune`)
decides *how much*; :mod:`.rewrite` then builds the smaller dense layers in place.
:mod:`.latency_aware` decides how much by measured time instead (:mod:`.latency_table`), and
:mod:`.deploy` runs the result on oneDNN with BatchNorm, activations and residual adds fused.
How units flow through each layer type is part of its description (:mod:`prunekit.layers`).

The names below are imported on first use, so that the layer descriptions can use this
package's propagation primitives (:mod:`.channels`, :mod:`.site`) without importing the pruner.

>>> import torch
>>> from prunekit.structured import prune_channels
>>> from prunekit.models import build_model
>>> model = build_model("resnet20")
>>> report = prune_channels(model, torch.zeros(1, 3, 32, 32), ratio=0.5)
>>> model.layer1[0].conv1.out_channels
8
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "remove_blocks": "blocks",
    **dict.fromkeys(["FusedConv", "fold_batch_norms", "fuse_for_cpu", "prepare_for_cpu"], "deploy"),
    **dict.fromkeys(["DependencyGraph", "Group", "build_graph"], "graph"),
    **dict.fromkeys(["IMPORTANCE", "ScoringData", "UnitScores", "score_units"], "importance"),
    **dict.fromkeys(["LatencyPruneReport", "prune_for_latency"], "latency_aware"),
    **dict.fromkeys(["LatencyTable", "LayerCost", "measure_latency_table"], "latency_table"),
    "OP_RULES": "op_rules",
    **dict.fromkeys(["PruneReport", "plan_removal", "prune_channels"], "prune"),
    **dict.fromkeys(["Explanation", "explain"], "explain"),
    "GroupLasso": "regularize",
    **dict.fromkeys(["RewriteError", "remove_units"], "rewrite"),
    "UnsupportedOpError": "site",
    "TraceError": "trace",
}

__all__ = [
    "IMPORTANCE",
    "OP_RULES",
    "DependencyGraph",
    "Explanation",
    "FusedConv",
    "Group",
    "GroupLasso",
    "LatencyPruneReport",
    "LatencyTable",
    "LayerCost",
    "PruneReport",
    "RewriteError",
    "ScoringData",
    "TraceError",
    "UnitScores",
    "UnsupportedOpError",
    "build_graph",
    "explain",
    "fold_batch_norms",
    "fuse_for_cpu",
    "measure_latency_table",
    "plan_removal",
    "prepare_for_cpu",
    "prune_channels",
    "prune_for_latency",
    "remove_blocks",
    "remove_units",
    "score_units",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'prunekit.structured' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"prunekit.structured.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
