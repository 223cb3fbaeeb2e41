"""The model as its pruning groups see it: layers, how data flows, what each group couples,
what is pinned and why, and how the criterion scores each group's units.

Built from :func:`prunekit.structured.build_graph` on the variant's own model and input, so
the groups shown are exactly those a what-if (or a ``structured`` stage) prunes, with the same
indices.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
...                     nn.Linear(8 * 6 * 6, 10))
>>> view = describe_structure(net, torch.zeros(1, 3, 8, 8))
>>> [(g["index"], g["size"], g["modules"]) for g in view["groups"]]
[(0, 8, ['0'])]
>>> [(p["module"], p["reason"].split(":")[0]) for p in view["pinned"]]
[('4', 'reaches the model output')]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from torch import Tensor, fx, nn

from prunekit.runs.layers import weighted_layers

COUPLING_OPS = frozenset(["add", "iadd", "sub", "mul", "cat", "concat"])
"""Ops drawn as nodes: where channels of different layers meet."""

SCORE_SAMPLES = 64


def _op(node: fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _shown(node: fx.Node, weighted: set[str]) -> bool:
    if node.op == "call_module":
        return str(node.target) in weighted
    return node.op in ("call_function", "call_method") and _op(node) in COUPLING_OPS


def _flow(graph_module: fx.GraphModule, weighted: set[str]) -> tuple[list[dict], list[list[str]]]:
    """Shown nodes in execution order and edges to each from its nearest shown ancestors."""
    nodes, edges, nearest = [], [], {}
    for node in graph_module.graph.nodes:
        sources: set[str] = set()
        for parent in node.all_input_nodes:
            sources |= {parent.name} if parent.name in nearest and _shown(parent, weighted) \
                else nearest.get(parent.name, set())
        if _shown(node, weighted):
            label = str(node.target) if node.op == "call_module" else _op(node)
            nodes.append({"id": node.name, "label": label, "op": node.op,
                          "module": str(node.target) if node.op == "call_module" else None})
            edges += [[source, node.name] for source in sorted(sources)]
        nearest[node.name] = sources
        if node.op == "placeholder":
            nodes.append({"id": node.name, "label": "input", "op": "input", "module": None})
            nearest[node.name] = {node.name}
        elif node.op == "output":
            nodes.append({"id": node.name, "label": "output", "op": "output", "module": None})
            edges += [[source, node.name] for source in sorted(sources)]
    return nodes, edges


def _reaches_output(graph_module: fx.GraphModule, start: str, producers: set[str]) -> bool:
    """Whether ``start``'s output channels flow to the model output without another producer
    (a layer that makes new channels) in between."""
    node = next(n for n in graph_module.graph.nodes
                if n.op == "call_module" and str(n.target) == start)
    frontier, seen = list(node.users), set()
    while frontier:
        current = frontier.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        if current.op == "output":
            return True
        if current.op == "call_module" and str(current.target) in producers:
            continue
        frontier += list(current.users)
    return False


def _tied(model: nn.Module) -> set[str]:
    owners: dict[int, set[str]] = {}
    for name, module in model.named_modules():
        for tensor in module.parameters(recurse=False):
            owners.setdefault(id(tensor), set()).add(name)
    return {name for names in owners.values() if len(names) > 1 for name in names}


def _pinned(graph: Any, ignore: Iterable[str]) -> list[dict[str, Any]]:
    """Every layer with output channels that no group may remove, with the reason."""
    ignored, tied = set(ignore), _tied(graph.model)
    outs = [m for m in graph.members if m.role == "out" and m.param == "weight"]
    producers = {m.module for m in outs}
    pinned = []
    for member in outs:
        count = int((graph.units_of(member.ids) < 0).sum())
        if not count:
            continue
        if member.module in ignored:
            reason = "kept whole: it is in ignore"
        elif member.module in tied:
            reason = "shares its weights with another layer: cutting one would cut both"
        elif _reaches_output(graph.trace.module, member.module, producers):
            reason = "reaches the model output: the output's size (its classes) must not change"
        else:
            reason = ("coupled to a size that must not change (the model input, a reshape to a "
                      "fixed size, or an op prunekit keeps whole)")
        pinned.append({"module": member.module, "pinned": count, "of": len(member.ids),
                       "reason": reason})
    return pinned


def _couples(graph: Any, units: np.ndarray) -> list[dict[str, Any]]:
    """Each parameter slice the group's units own: ``module.param`` along ``dim``, and role."""
    mine = np.zeros(graph.num_units + 1, dtype=bool)
    mine[units] = True
    slices = []
    for member in graph.members:
        owned = graph.units_of(member.ids)
        count = int(mine[owned[owned >= 0]].sum())
        if count:
            slices.append({"module": member.module, "param": member.param, "dim": member.dim,
                           "role": member.role, "positions": count})
    return slices


def _score_summary(values: np.ndarray) -> dict[str, Any]:
    finite = np.sort(values[np.isfinite(values)])
    if not len(finite):
        return {"mean": None, "min": None, "max": None, "sorted": []}
    picks = np.linspace(0, len(finite) - 1, min(SCORE_SAMPLES, len(finite))).round().astype(int)
    return {"mean": float(finite.mean()), "min": float(finite[0]), "max": float(finite[-1]),
            "sorted": [float(v) for v in finite[picks]]}


def describe_structure(
    model: nn.Module, example_input: Tensor, *, criterion: str = "l2",
    data: Sequence[tuple[Tensor, Tensor]] = (), ignore: Iterable[str] = (),
) -> dict[str, Any]:
    """Nodes and edges of the data flow, the pruning groups (what each couples, its units'
    scores by ``criterion``) and the pinned layers, as JSON for the page."""
    from prunekit.structured.prune import graph_and_scores

    if criterion in ("taylor", "activation_mean", "apoz") and not data:
        raise ValueError(f"criterion {criterion!r} needs data, and this run recorded none")
    ignore = tuple(ignore)
    _, graph, unit_scores = graph_and_scores(model, example_input, criterion, data, ignore)
    scores = unit_scores.scores.double().numpy()
    nodes, edges = _flow(graph.trace.module, {name for name, _ in weighted_layers(model)})
    group_of = {m: g.index for g in graph.groups for m in g.modules}
    for node in nodes:
        node["group"] = group_of.get(node["module"])
    groups = [{
        "index": g.index, "size": g.size, "modules": list(g.modules),
        "couples": _couples(graph, g.units), "score": _score_summary(scores[g.units]),
    } for g in graph.groups]
    return {"criterion": criterion, "nodes": nodes, "edges": edges, "groups": groups,
            "pinned": _pinned(graph, ignore), "units": graph.num_units}
