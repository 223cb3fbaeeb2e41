"""Group lasso over the dependency graph's units: train a model towards removable units.

``λ · Σ_u √n_u · ‖w_u‖₂`` where ``w_u`` is every parameter slice unit ``u`` owns (its filter, its
BatchNorm channel, the next layer's input column...) and ``n_u`` their number of weights (Yuan &
Lin 2006; Wen et al. 2016 for channels). The L2 norm of a whole group has its kink at zero, so
the penalty drives entire units to zero together, which structured pruning then removes with no
loss. The groups are exactly those :func:`prunekit.structured.prune_channels` removes.

It is a loss term, used like the other regularizers with :func:`prunekit.train.fit`; build it
again after pruning (the parameters are new objects then).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
>>> penalty = GroupLasso(net, torch.zeros(1, 3), lam=1e-3)
>>> penalty(net).backward()
>>> net[0].weight.grad.shape
torch.Size([4, 3])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.structured.graph import build_graph


@dataclass(frozen=True)
class _Slice:
    module: str
    param: str
    dim: int
    positions: Tensor
    units: Tensor


class GroupLasso:
    """Loss term ``λ Σ_u √n_u ‖w_u‖₂`` over the structured-pruning units of ``model``."""

    def __init__(
        self, model: nn.Module, example_input: Tensor, lam: float, *, ignore: Iterable[str] = ()
    ) -> None:
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        graph = build_graph(model, example_input, ignore=ignore)
        self.lam = lam
        self.num_units = graph.num_units
        self.slices: list[_Slice] = []
        sizes = np.zeros(graph.num_units)
        for member in graph.members:
            if not member.is_param:
                continue
            units = graph.units_of(member.ids)
            positions = np.flatnonzero(units >= 0)
            if not len(positions):
                continue
            tensor = getattr(model.get_submodule(member.module), member.param)
            per_position = tensor.numel() // tensor.shape[member.dim]
            np.add.at(sizes, units[positions], per_position)
            self.slices.append(_Slice(member.module, member.param, member.dim,
                                      torch.from_numpy(positions), torch.from_numpy(units[positions])))
        self.weights = torch.from_numpy(np.sqrt(sizes)).float()

    def __call__(self, model: nn.Module) -> Tensor:
        squares = torch.zeros(self.num_units)
        for s in self.slices:
            tensor = getattr(model.get_submodule(s.module), s.param)
            others = [d for d in range(tensor.dim()) if d != s.dim]
            per_position = tensor.pow(2).sum(others) if others else tensor.pow(2)
            squares = squares.index_add(0, s.units, per_position[s.positions])
        return self.lam * (self.weights * torch.sqrt(squares + 1e-12)).sum()
