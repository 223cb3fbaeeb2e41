"""Structured pruning: remove whole neurons, channels, filters, heads, hidden units and blocks.

The split follows Torch-Pruning's: the dependency graph (:mod:`.graph`) knows *what must change
together*, an importance (:mod:`.importance`) knows *what matters*, the pruner (:mod:`.prune`)
decides *how much*; :mod:`.rewrite` then builds the smaller dense layers in place.
:mod:`.latency_aware` decides how much by measured time instead (:mod:`.latency_table`), and
:mod:`.deploy` runs the result on oneDNN with BatchNorm, activations and residual adds fused.

>>> import torch
>>> from prunekit.models import build_model
>>> model = build_model("resnet20")
>>> report = prune_channels(model, torch.zeros(1, 3, 32, 32), ratio=0.5)
>>> model.layer1[0].conv1.out_channels
8
"""

from prunekit.structured.blocks import remove_blocks
from prunekit.structured.deploy import FusedConv, fold_batch_norms, fuse_for_cpu, prepare_for_cpu
from prunekit.structured.graph import DependencyGraph, Group, build_graph
from prunekit.structured.importance import IMPORTANCE, ScoringData, UnitScores, score_units
from prunekit.structured.latency_aware import LatencyPruneReport, prune_for_latency
from prunekit.structured.latency_table import LatencyTable, LayerCost, measure_latency_table
from prunekit.structured.module_rules import MODULE_RULES
from prunekit.structured.op_rules import OP_RULES
from prunekit.structured.prune import PruneReport, plan_removal, prune_channels
from prunekit.structured.regularize import GroupLasso
from prunekit.structured.rewrite import RewriteError, remove_units
from prunekit.structured.site import UnsupportedOpError
from prunekit.structured.trace import TraceError

__all__ = [
    "IMPORTANCE",
    "MODULE_RULES",
    "OP_RULES",
    "DependencyGraph",
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
