"""Structured pruning: remove whole neurons, channels, filters, heads, hidden units and blocks.

The split follows Torch-Pruning's: the dependency graph (:mod:`.graph`) knows *what must change
together*, an importance (:mod:`.importance`) knows *what matters*, the pruner (:mod:`.prune`)
decides *how much*; :mod:`.rewrite` then builds the smaller dense layers in place.

>>> import torch
>>> from prunekit.models import build_model
>>> model = build_model("resnet20")
>>> report = prune_channels(model, torch.zeros(1, 3, 32, 32), ratio=0.5)
>>> model.layer1[0].conv1.out_channels
8
"""

from prunekit.structured.blocks import remove_blocks
from prunekit.structured.graph import DependencyGraph, Group, build_graph
from prunekit.structured.importance import IMPORTANCE, ScoringData, UnitScores, score_units
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
    "Group",
    "GroupLasso",
    "PruneReport",
    "RewriteError",
    "ScoringData",
    "TraceError",
    "UnitScores",
    "UnsupportedOpError",
    "build_graph",
    "plan_removal",
    "prune_channels",
    "remove_blocks",
    "remove_units",
    "score_units",
]
