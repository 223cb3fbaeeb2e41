"""What a propagation rule sees of one graph node: its inputs' channels and shapes.

A rule is a small function ``rule(site) -> channels of the output``; it reads its inputs through
the :class:`Site`, records couplings in ``site.prop`` and returns a :class:`Channels` (or a
tuple of them for tuple outputs, or ``None`` when the output carries nothing prunable).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import fx

from prunekit.structured.channels import Channels, Propagation


class UnsupportedOpError(ValueError):
    """Structured pruning met an op it cannot follow; the message names the way out."""


def flat_channels(info: Any) -> Iterator[Channels]:
    """Every :class:`Channels` inside a (possibly nested tuple) info."""
    if isinstance(info, Channels):
        yield info
    elif isinstance(info, tuple):
        for item in info:
            yield from flat_channels(item)


def flat_nodes(arg: Any) -> Iterator[fx.Node]:
    """Every fx node inside an argument (lists, tuples, dicts, slices)."""
    if isinstance(arg, fx.Node):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for item in arg:
            yield from flat_nodes(item)
    elif isinstance(arg, dict):
        for item in arg.values():
            yield from flat_nodes(item)
    elif isinstance(arg, slice):
        yield from flat_nodes((arg.start, arg.stop, arg.step))


@dataclass
class Site:
    """One node being propagated, with access to the channels and shapes of its inputs."""

    node: fx.Node
    prop: Propagation
    infos: dict[fx.Node, Any]
    shapes: dict[fx.Node, Any]

    def info(self, arg: Any) -> Any:
        return self.infos.get(arg) if isinstance(arg, fx.Node) else None

    def shape(self, arg: Any) -> Any:
        return self.shapes.get(arg) if isinstance(arg, fx.Node) else None

    @property
    def out_shape(self) -> Any:
        return self.shapes.get(self.node)

    def arg(self, position: int, keyword: str, default: Any = None) -> Any:
        """An argument given by position or keyword (as ``torch.cat(xs, dim=1)`` or ``(xs, 1)``)."""
        if position < len(self.node.args):
            return self.node.args[position]
        return self.node.kwargs.get(keyword, default)

    def input_channels(self) -> list[Channels]:
        """Channels of every input node that carries any."""
        nodes = [*flat_nodes(self.node.args), *flat_nodes(self.node.kwargs)]
        return [ch for n in nodes for ch in flat_channels(self.info(n))]

    def pin_inputs(self) -> None:
        """Keep every channel entering this node (the op needs their count unchanged)."""
        for ch in self.input_channels():
            self.prop.pin(ch.ids)

    def ids_at(self, arg: Any, dim: int, size: int | None = None) -> np.ndarray:
        """Element ids along ``dim`` of ``arg``; channels on any other dim are pinned."""
        info = self.info(arg)
        shape = self.shape(arg)
        if size is None:
            size = int(shape[dim])
        ndim = len(shape) if shape is not None else 0
        if isinstance(info, Channels):
            if ndim and info.dim == dim % ndim:
                return info.ids
            self.prop.pin(info.ids)
        return np.zeros(size, dtype=np.int64)

    def scope(self) -> str:
        """The innermost module this node belongs to, for messages ('' at top level)."""
        if self.node.op == "call_module":
            return str(self.node.target)
        stack = self.node.meta.get("nn_module_stack") or {}
        return next(reversed(stack), "") if stack else ""
