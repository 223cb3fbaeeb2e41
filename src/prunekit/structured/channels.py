"""Channel index spaces: the bookkeeping that tells which slices of which tensors move together.

Every prunable unit (a conv filter, a Linear neuron, an LSTM hidden unit, an attention head) is
born as an *element* when a producer layer creates it. A tensor's prunable dimension is
described by an array ``ids`` that names, position by position, the element it carries; ops
rearrange these arrays (``cat`` concatenates them, ``flatten`` repeats each one H·W times) and
couplings merge elements (``a + b`` makes position *i* of ``a`` and of ``b`` one unit). Element
``0`` is :data:`FIXED`: whatever is merged with it can never be removed (the model's inputs and
outputs, ops whose size must not change).

Merges are recorded as edges and resolved once, at the end, by connected components: the
propagation itself never has to look anything up. Every pin carries its reason (the op or
module responsible and the way out), so a report can say why a unit was kept.

>>> p = Propagation()
>>> a, b = p.new_space(3, "conv_a"), p.new_space(3, "conv_b")
>>> p.union(a, b)
>>> p.pin(b[:1], "reaches the model's output")
>>> labels = p.components()
>>> bool(labels[a[1]] == labels[b[1]]), bool(labels[a[0]] == labels[FIXED])
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

FIXED = 0

Role = Literal["out", "in", "norm", "coupled"]


@dataclass(frozen=True)
class Channels:
    """The prunable dimension of one tensor: which element each position along ``dim`` carries.

    ``fresh`` is true while the tensor is still the affine output of its producer (possibly
    through a BatchNorm): the LSH criterion may fold units only along such paths.
    """

    dim: int
    ids: np.ndarray
    fresh: bool = False

    def with_dim(self, dim: int) -> Channels:
        return Channels(dim, self.ids, self.fresh)


@dataclass(frozen=True)
class Member:
    """One slice that a unit owns: ``module.param`` along ``dim``, position ``p`` → ``ids[p]``."""

    module: str
    param: str
    dim: int
    ids: np.ndarray
    role: Role
    is_param: bool


@dataclass(frozen=True)
class Space:
    """The elements one producer created (its output channels, neurons or hidden units)."""

    module: str
    ids: np.ndarray


@dataclass(frozen=True)
class MacsTerm:
    """Dense multiply-accumulates of one layer (or of a product inside ``module``) and the
    channel axes its cost scales with: it shrinks by the kept fraction of each."""

    module: str
    dense_macs: int
    out_ids: np.ndarray
    in_ids: np.ndarray | None


@dataclass(frozen=True)
class Pin:
    """Elements kept because of ``reason`` (an op or module, and what to do about it)."""

    ids: np.ndarray
    reason: str


@dataclass
class Propagation:
    """Mutable record of elements, couplings, member slices and module axes built by a trace.

    ``attributes`` are integer attributes of a user's module that hold a count of units (the
    number of heads an attention's ``view(B, T, self.num_heads, D)`` reads): the rewrite sets
    them to the kept count.
    """

    size: int = 1
    edges: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pins: list[Pin] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    axes: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    attributes: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    spaces: list[Space] = field(default_factory=list)
    macs: list[MacsTerm] = field(default_factory=list)
    unfoldable: list[np.ndarray] = field(default_factory=list)
    _member_index: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def new_space(self, n: int, module: str) -> np.ndarray:
        """Allocate ``n`` fresh elements created by ``module``."""
        ids = np.arange(self.size, self.size + n, dtype=np.int64)
        self.size += n
        self.spaces.append(Space(module, ids))
        return ids

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Couple position ``i`` of ``a`` with position ``i`` of ``b`` (arrays of equal length)."""
        if len(a) != len(b):
            raise AssertionError(f"cannot couple {len(a)} channels with {len(b)}")
        self.edges.append((np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)))

    def pin(self, ids: np.ndarray, reason: str) -> None:
        """Make these elements unremovable, because of ``reason``."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids):
            self.pins.append(Pin(ids, reason))

    def union_blocks(self, ids: np.ndarray, block: int) -> np.ndarray:
        """Merge each run of ``block`` consecutive positions into one unit; return one id per run."""
        runs = ids.reshape(-1, block)
        if block > 1:
            self.union(runs[:, 1:].ravel(), np.repeat(runs[:, 0], block - 1))
        return runs[:, 0].copy()

    def member(
        self, module: str, param: str, dim: int, ids: np.ndarray, role: Role, *, is_param: bool
    ) -> None:
        """Record a slice; a layer called twice couples the slices of both calls."""
        key = (module, param, dim)
        if key in self._member_index:
            self.union(self.members[self._member_index[key]].ids, ids)
            return
        self._member_index[key] = len(self.members)
        self.members.append(Member(module, param, dim, ids, role, is_param))

    def axis(self, module: str, name: str, ids: np.ndarray) -> None:
        """Record that ``module``'s attribute axis ``name`` (e.g. ``out``) follows ``ids``."""
        axes = self.axes.setdefault(module, {})
        if name in axes:
            self.union(axes[name], ids)
        else:
            axes[name] = ids

    def attribute(self, module: str, name: str, ids: np.ndarray) -> None:
        """Record that ``module.<name>`` (an int) counts the kept positions of ``ids``."""
        key = (module, name)
        if key in self.attributes:
            if len(self.attributes[key]) == len(ids):
                self.union(self.attributes[key], ids)
            else:
                reason = (f"{module}.{name} sizes two different unit counts; give each its own "
                          "attribute")
                self.pin(self.attributes[key], reason)
                self.pin(ids, reason)
            return
        self.attributes[key] = ids

    def mark_unfoldable(self, ids: np.ndarray) -> None:
        """These elements pass through an op that is not positively homogeneous."""
        self.unfoldable.append(ids)

    def components(self, *, pinned: bool = True) -> np.ndarray:
        """Label of every element after all couplings; ``labels[FIXED]`` marks the pinned.

        With ``pinned=False`` the pins are left out: what is coupled to what, whatever is kept.
        """
        edges = self.edges + [(p.ids, np.zeros(len(p.ids), np.int64)) for p in self.pins] \
            if pinned else self.edges
        if edges:
            rows = np.concatenate([a for a, _ in edges])
            cols = np.concatenate([b for _, b in edges])
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
        adjacency = coo_matrix(
            (np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(self.size, self.size)
        )
        _, labels = connected_components(adjacency, directed=False)
        return labels
