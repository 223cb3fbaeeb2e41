"""The dependency graph: which parameter slices of a model must be removed together.

``build_graph(model, example_input)`` traces the model (:mod:`.trace`), walks its nodes in
order, applying a rule per layer (its description's ``propagate``, :mod:`prunekit.layers`) or op
(:mod:`.op_rules`), and resolves the couplings into

- **units**: the smallest things that can be removed (a filter together with its BatchNorm
  channel, the next conv's input channel, and every channel a residual ``add`` ties to it);
- **members**: for every unit, the slices of parameters and buffers it owns;
- **groups**: units born in the same layers (one ResNet stage's residual channels, one conv's
  filters, one transformer block's heads); per-layer ratios and score normalisation apply here.

Channels that reach the model's output, the model's input, an ignored module, or an op that
needs their count fixed are *pinned* and belong to no unit; :attr:`DependencyGraph.pinned`
says, per layer, how many of its units were kept and why.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
>>> g = build_graph(net, torch.zeros(1, 3, 8, 8))
>>> len(g.groups), g.groups[0].size, g.groups[0].modules
(1, 8, ('0',))
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor, fx, nn

from prunekit.layers import kind_of
from prunekit.structured.channels import FIXED, Channels, MacsTerm, Member, Propagation
from prunekit.structured.op_rules import HOMOGENEOUS_OPS, OP_RULES, op_name
from prunekit.structured.site import Site, UnsupportedOpError, flat_channels
from prunekit.structured.trace import Trace, trace_model

ACTIVATION_OPS = frozenset(
    ["relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "tanh", "hardswish"]
)
ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.PReLU,
)


@dataclass(frozen=True)
class Group:
    """Units that are born in the same layers and are pruned by one ratio."""

    index: int
    units: np.ndarray
    modules: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.units)


@dataclass(frozen=True)
class ActivationPoint:
    """A node whose output carries units after a non-linearity (or a producer's raw output)."""

    node: str
    channels: Channels
    after_activation: bool


@dataclass(frozen=True)
class Pinned:
    """Of the ``size`` units a layer creates, ``kept`` are pinned (never removed), and why."""

    module: str
    size: int
    kept: int
    reasons: tuple[str, ...]


@dataclass
class DependencyGraph:
    """Units, their member slices and groups, for one model and input shape.

    ``attributes`` are user modules' integer attributes that count units (an attention's
    ``num_heads``), set to the kept count by the rewrite; ``pinned`` lists every layer some of
    whose units are kept whatever the target, with the reasons.
    """

    model: nn.Module
    trace: Trace
    members: list[Member]
    axes: dict[str, dict[str, np.ndarray]]
    unit_of: np.ndarray
    groups: list[Group]
    unit_group: np.ndarray
    foldable: np.ndarray
    macs: list[MacsTerm]
    points: list[ActivationPoint]
    attributes: dict[tuple[str, str], np.ndarray]
    pinned: list[Pinned]

    @property
    def num_units(self) -> int:
        return len(self.unit_group)

    def units_of(self, ids: np.ndarray) -> np.ndarray:
        """Unit index of each element id (``-1`` for pinned elements)."""
        return self.unit_of[ids]

    def group_of(self, module: str) -> Group | None:
        """The group whose units ``module`` produces, if any."""
        return next((g for g in self.groups if module in g.modules), None)


def _validate_ignore(model: nn.Module, ignore: Iterable[str]) -> frozenset[str]:
    names = dict(model.named_modules())
    for name in ignore:
        if name not in names or not name:
            close = difflib.get_close_matches(name, list(names), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(f"ignore: {name!r} is not a submodule of the model{hint}")
    return frozenset(ignore)


def _producers(prop: Propagation, channels: Sequence[Channels]) -> list[str]:
    ids = {int(i) for ch in channels for i in ch.ids if i != FIXED}
    return sorted({s.module for s in prop.spaces if ids.intersection(s.ids.tolist())})


def _unsupported(site: Site, what: str) -> UnsupportedOpError:
    channels = site.input_channels()
    producers = _producers(site.prop, channels)
    scope = site.scope()
    suggestion = [scope] if scope else producers
    return UnsupportedOpError(
        f"structured pruning cannot follow channels through {what} ({site.where()}): its "
        f"input carries prunable channels of {producers}. Pass ignore={suggestion!r} (CLI: "
        f"--ignore {','.join(suggestion)}) to leave those channels unpruned, or describe it: "
        "a rule in prunekit.structured.OP_RULES, or a prunekit.layers.LayerKind for a layer "
        "(docs/layers.md)"
    )


def _call_module(site: Site, graph_module: fx.GraphModule, opaque: dict[str, str]) -> Any:
    name = str(site.node.target)
    module = graph_module.get_submodule(name)
    kind = kind_of(module)
    rule = kind.propagate if kind is not None else None
    if name in opaque and rule is None:
        for ch in site.input_channels():
            site.prop.pin(ch.ids, f"{name!r} is kept whole: {opaque[name]}")
        return None
    if rule is None:
        if site.input_channels():
            raise _unsupported(site, f"layer {type(module).__name__}")
        return None
    result = rule(site, name, module)
    if name in opaque:
        for ch in flat_channels(result):
            site.prop.pin(ch.ids, f"the output of {name!r} is kept: {opaque[name]}")
        return None
    return result


def _call_op(site: Site) -> Any:
    if site.out_shape is None or not site.input_channels():
        return None  # sizes, dtypes and other non-tensors follow the channels at run time
    name = op_name(site.node)
    rule = OP_RULES.get(name)
    if rule is None:
        raise _unsupported(site, f"op {name!r}")
    result = rule(site)
    if name not in HOMOGENEOUS_OPS:
        for ch in site.input_channels():
            site.prop.mark_unfoldable(ch.ids)
    return result


def _propagate(model: nn.Module, trace: Trace) -> tuple[Propagation, dict[fx.Node, Any]]:
    prop, infos = Propagation(), {}
    graph_module = trace.module
    for node in graph_module.graph.nodes:
        site = Site(node, prop, infos, trace.shapes, model)
        if node.op == "call_module":
            infos[node] = _call_module(site, graph_module, trace.opaque)
        elif node.op in ("call_function", "call_method"):
            infos[node] = _call_op(site)
        elif node.op == "output":
            site.pin_inputs("they reach the model's output")
    return prop, infos


def _points(trace: Trace, infos: dict[fx.Node, Any]) -> list[ActivationPoint]:
    points = []
    for node, info in infos.items():
        if not isinstance(info, Channels):
            continue
        if node.op == "call_module":
            module = trace.module.get_submodule(str(node.target))
            activation = isinstance(module, ACTIVATION_MODULES)
        else:
            activation = op_name(node) in ACTIVATION_OPS
        if activation or info.fresh:
            points.append(ActivationPoint(node.name, info, activation))
    return points


def _groups(prop: Propagation, unit_of: np.ndarray, num_units: int) -> tuple[list[Group], np.ndarray]:
    rows, cols, owners = [], [], {}
    for space in prop.spaces:
        units = np.unique(unit_of[space.ids])
        units = units[units >= 0]
        if len(units):
            rows.append(units[:-1])
            cols.append(units[1:])
            owners.setdefault(int(units[0]), []).append(space.module)
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    adjacency = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(num_units, num_units))
    _, labels = connected_components(adjacency, directed=False)
    modules: dict[int, list[str]] = {}
    for first_unit, names in owners.items():
        modules.setdefault(int(labels[first_unit]), []).extend(names)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = []
    for index, units in enumerate(np.split(order, bounds) if num_units else []):
        label = int(labels[units[0]])
        names = tuple(dict.fromkeys(modules.get(label, [])))
        groups.append(Group(index, units, names))
    unit_group = np.empty(num_units, dtype=np.int64)
    for g in groups:
        unit_group[g.units] = g.index
    return groups, unit_group


def _pin_shared_tensors(model: nn.Module, prop: Propagation) -> None:
    """A parameter tied between layers (shared embeddings) cannot be cut twice: keep it whole."""
    owners: dict[int, set[str]] = {}
    for member in prop.members:
        tensor = getattr(model.get_submodule(member.module), member.param)
        owners.setdefault(id(tensor), set()).add(member.module)
    for member in prop.members:
        owning = owners[id(getattr(model.get_submodule(member.module), member.param))]
        if len(owning) > 1:
            prop.pin(member.ids, f"{member.module}.{member.param} is one tensor shared by "
                                 f"{sorted(owning)}, so it is kept whole")


_FIXED_REASON = ("coupled position by position to channels that cannot change (the model's "
                 "input, or a tensor no layer produces)")


def _pinned(prop: Propagation, labels: np.ndarray) -> list[Pinned]:
    """Every layer with pinned units, with the reasons of the pins coupled to them."""
    free = prop.components(pinned=False)
    reasons: dict[int, list[str]] = {int(free[FIXED]): [_FIXED_REASON]}
    for pin in prop.pins:
        for label in np.unique(free[pin.ids]):
            reasons.setdefault(int(label), []).append(pin.reason)
    result = []
    for space in prop.spaces:
        kept = labels[space.ids] == labels[FIXED]
        if kept.any():
            why = dict.fromkeys(r for c in np.unique(free[space.ids[kept]])
                                for r in reasons.get(int(c), ()))
            result.append(Pinned(space.module, len(space.ids), int(kept.sum()), tuple(why)))
    return result


def build_graph(
    model: nn.Module, example_input: Tensor | tuple[Tensor, ...], *, ignore: Iterable[str] = ()
) -> DependencyGraph:
    """Trace ``model`` on ``example_input`` and find every group of coupled channels.

    ``ignore`` names modules whose output channels are all kept (the classifier needs none:
    whatever reaches the model's output is always kept); a composite module in ``ignore`` is
    kept whole, as an opaque box, which is also the way around code that fx cannot trace.
    """
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    trace = trace_model(model, inputs, _validate_ignore(model, ignore))
    prop, infos = _propagate(model, trace)
    _pin_shared_tensors(model, prop)
    labels = prop.components()
    member_ids = np.concatenate([m.ids for m in prop.members]) if prop.members else np.zeros(0, int)
    unit_labels = np.unique(labels[member_ids])
    unit_labels = unit_labels[unit_labels != labels[FIXED]]
    label_to_unit = np.full(labels.max() + 1, -1, dtype=np.int64)
    label_to_unit[unit_labels] = np.arange(len(unit_labels))
    unit_of = label_to_unit[labels]
    groups, unit_group = _groups(prop, unit_of, len(unit_labels))
    foldable = np.ones(len(unit_labels), dtype=bool)
    for ids in prop.unfoldable:
        units = unit_of[ids]
        foldable[units[units >= 0]] = False
    return DependencyGraph(
        model, trace, prop.members, prop.axes, unit_of, groups, unit_group, foldable, prop.macs,
        _points(trace, infos), prop.attributes, _pinned(prop, labels),
    )
