"""Shared fixtures: small, seeded, fast, never writing into the user's own folders; and the
structured-pruning reference of exactness: zero some units, remove them, compare the outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from prunekit.structured.graph import DependencyGraph, build_graph
from prunekit.structured.rewrite import remove_units


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The kernel's tuning cache (and any other prunekit cache) goes to a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path_factory.mktemp("prunekit-cache")))
        yield


def pick_units(graph: DependencyGraph, fraction: float, seed: int = 0) -> np.ndarray:
    """A random ``fraction`` of each group's units, never a whole group."""
    rng = np.random.default_rng(seed)
    remove = np.zeros(graph.num_units, dtype=bool)
    for group in graph.groups:
        count = min(group.size - 1, max(1, int(fraction * group.size)))
        remove[rng.choice(group.units, size=count, replace=False)] = True
    return remove


@torch.no_grad()
def zero_units(graph: DependencyGraph, remove: np.ndarray) -> None:
    """Zero every slice the units own except the next layers' inputs: they then output 0."""
    keep = np.append(~remove, True)
    for member in graph.members:
        if member.role == "in" or not member.is_param:
            continue
        tensor = getattr(graph.model.get_submodule(member.module), member.param)
        zeroed = np.flatnonzero(~keep[graph.unit_of[member.ids]])
        tensor.index_fill_(member.dim, torch.from_numpy(zeroed), 0.0)


def outputs_before_after(
    model: nn.Module, x: Tensor | tuple[Tensor, ...], fraction: float = 0.3, seed: int = 0,
    ignore: tuple = (),
) -> tuple[Tensor, Tensor, DependencyGraph]:
    """Outputs with some units zeroed, and after removing exactly those units."""
    inputs = x if isinstance(x, tuple) else (x,)
    model.eval()
    graph = build_graph(model, inputs, ignore=ignore)
    remove = pick_units(graph, fraction, seed)
    zero_units(graph, remove)
    with torch.no_grad():
        before = model(*inputs)
    remove_units(graph, remove, inputs)
    with torch.no_grad():
        after = model(*inputs)
    return before, after, graph


@pytest.fixture(scope="session")
def exact_removal() -> Callable[..., tuple[Tensor, Tensor, DependencyGraph]]:
    """Zero some units, remove them, compare: the structured tests' reference of exactness."""
    return outputs_before_after


@pytest.fixture(scope="session")
def zero_out() -> Callable[[DependencyGraph, np.ndarray], None]:
    """:func:`zero_units`, for tests that pick the units themselves."""
    return zero_units
