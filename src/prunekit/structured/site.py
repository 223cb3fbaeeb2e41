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
from torch import Tensor, fx, nn

from prunekit.structured.channels import Channels, Propagation, Role


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
    model: nn.Module | None = None

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

    def where(self) -> str:
        """This node and its module, for messages: ``node 'view_2' in module 'blocks.0.attn'``."""
        scope = self.scope()
        return f"node {self.node.name!r}" + (f" in module {scope!r}" if scope else "")

    def pin(self, ids: np.ndarray, why: str) -> None:
        """Keep these elements, because of ``why`` (said of this node)."""
        self.prop.pin(ids, f"{why} ({self.where()})")

    def pin_inputs(self, why: str) -> None:
        """Keep every channel entering this node (the op needs their count unchanged)."""
        for ch in self.input_channels():
            self.pin(ch.ids, why)

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
            self.pin(info.ids, f"the layer reads dim {dim % max(ndim, 1)} but the channels are "
                               f"on dim {info.dim}")
        return np.zeros(size, dtype=np.int64)

    def channels_at(self, arg: Any, dim: int, why: str) -> Channels | None:
        """``arg``'s channels if they are on ``dim``; pinned (with ``why``) and ``None`` if not."""
        ch = self.info(arg)
        if not isinstance(ch, Channels):
            return None
        if ch.dim != dim:
            self.pin(ch.ids, why)
            return None
        return ch

    def member(
        self, name: str, module: nn.Module, param: str, dim: int, ids: np.ndarray, role: Role
    ) -> None:
        """Record that ``module.<param>`` (if it exists) owns these slices along ``dim``."""
        if isinstance(getattr(module, param, None), Tensor):
            is_param = param in module._parameters
            self.prop.member(name, param, dim, ids, role, is_param=is_param)

    def count_attributes(self, value: int) -> list[str]:
        """Integer attributes of this node's module that may hold ``value`` as a count of heads
        (``num_heads``, ``n_head``, ``all_head_size``...): where a literal size in its forward
        comes from. Names saying "number of" win over others of the same value (``head_dim``).
        """
        if self.model is None:
            return []
        module = self.model.get_submodule(self.scope())
        names = [name for name, v in vars(module).items()
                 if type(v) is int and v == value and "head" in name.lower()]
        counts = [n for n in names if n.lower().startswith(("num", "n_")) or n.endswith("heads")]
        return counts or names

    def scope(self) -> str:
        """The innermost module this node belongs to, for messages ('' at top level)."""
        if self.node.op == "call_module":
            return str(self.node.target)
        stack = self.node.meta.get("nn_module_stack") or {}
        return str(next(reversed(stack.values()))[0]) if stack else ""
