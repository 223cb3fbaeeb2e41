"""Why units are kept, said out loud: the warnings a structured prune reports, and what stands in
the way of a MACs target.

A pruner that quietly removes less than asked misleads worse than one that fails. So a prune
that removes no unit, keeps every unit of a layer for a reason the user can change (a literal
size in a ``view``, a per-head mask, a layer fx cannot trace), or cannot reach ``max_macs``
names the op or module responsible and the fix. Units that are kept because they reach the
model's output (the classifier's classes) or because the user named them in ``ignore`` are
expected and not warned about.

>>> import torch
>>> from torch import nn
>>> from prunekit.structured.graph import build_graph
>>> class Fixed(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.conv, self.fc = nn.Conv2d(1, 3, 3), nn.Linear(12, 2)
...     def forward(self, x):
...         return self.fc(self.conv(x).view(-1, 12))
>>> print(kept_layer_warnings(build_graph(Fixed(), torch.zeros(1, 1, 4, 4)))[0])
all 3 units of 'conv' are kept: view() to (·, 12) gives the channels a literal size, which will not shrink with them: compute it (x.size(0), -1) or flatten (node 'view')
"""

from __future__ import annotations

import numpy as np

from prunekit.structured.graph import DependencyGraph

EXPECTED = ("they reach the model's output", "named in ignore")
"""Pin reasons that are the user's intent, not a limitation: never warned about."""


def _unexpected(reasons: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(r for r in reasons if not any(e in r for e in EXPECTED))


def kept_layer_warnings(graph: DependencyGraph) -> list[str]:
    """One line per layer whose units are all kept for a reason the user can change, and per
    submodule fx could not trace."""
    lines = [f"module {name!r} is kept whole: {why}" for name, why in graph.trace.opaque.items()
             if why != "named in ignore"]
    for pinned in graph.pinned:
        reasons = _unexpected(pinned.reasons)
        if pinned.kept == pinned.size and reasons:
            lines.append(f"all {pinned.size} units of {pinned.module!r} are kept: "
                         + "; ".join(reasons))
    return lines


def nothing_removed(graph: DependencyGraph) -> str:
    """Why a prune removed no unit (for the warning that says so)."""
    if graph.num_units == 0:
        causes = kept_layer_warnings(graph) or ["every unit reaches the model's output"]
        return "structured pruning found no removable unit: " + " | ".join(causes)
    return ("structured pruning removed no unit: the target needs none, or every group is at "
            "its max_layer_ratio; lower the target's ratio or raise max_layer_ratio")


def unreachable_macs(
    graph: DependencyGraph, left: np.ndarray, fixed: float, target: float
) -> str:
    """The error for a MACs target that even removing every prunable unit cannot reach.

    ``left[i]`` is what MACs term ``i`` keeps with every unit gone (on the example); ``fixed``
    is what the counter measured outside every term (layers no rule describes).
    """
    by_module: dict[str, float] = {}
    for term, macs in zip(graph.macs, left):
        by_module[term.module or "<model>"] = by_module.get(term.module or "<model>", 0.0) + macs
    reasons = {p.module: _unexpected(p.reasons) or p.reasons for p in graph.pinned}
    heaviest = sorted(by_module.items(), key=lambda kv: -kv[1])[:4]
    named = [f"{module!r} keeps {macs:,.0f} ({'; '.join(reasons.get(module, ()))})"
             if reasons.get(module) else f"{module!r} keeps {macs:,.0f}"
             for module, macs in heaviest if macs > 0]
    if fixed > 0:
        opaque = [f"{name!r} ({why})" for name, why in graph.trace.opaque.items()]
        named.append(f"{fixed:,.0f} are in work no layer rule covers"
                     + (f", e.g. {', '.join(opaque)}" if opaque else ""))
    floor = float(left.sum()) + fixed
    return (f"max_macs: even removing every removable unit leaves {floor:,.0f} MACs, above the "
            f"target {target:,.0f}; what cannot shrink: {'; '.join(named) or 'nothing found'}. "
            "Fix what pins those layers (see prunekit explain), or ask for fewer savings")
