"""Group lasso: the exact formula over the graph's units, and it drives whole units to zero."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunekit.structured.regularize import GroupLasso


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_value_matches_the_formula() -> None:
    net = _net()
    penalty = GroupLasso(net, torch.zeros(1, 3), lam=0.5)
    w1, b1, w2 = net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach()
    expected = sum(
        math.sqrt(3 + 1 + 2)
        * math.sqrt(float(w1[i].pow(2).sum() + b1[i].pow(2) + w2[:, i].pow(2).sum()))
        for i in range(4)
    )
    assert float(penalty(net).detach()) == pytest.approx(0.5 * expected, rel=1e-5)


def test_training_on_the_penalty_alone_zeroes_whole_units() -> None:
    net = _net()
    penalty = GroupLasso(net, torch.zeros(1, 3), lam=1.0)
    for lr in (0.05, 0.005, 0.0005):  # subgradient steps oscillate around 0 by ~lr·λ·√n
        optimizer = torch.optim.SGD(net.parameters(), lr=lr)
        for _ in range(100):
            optimizer.zero_grad()
            penalty(net).backward()
            optimizer.step()
    unit = torch.cat([net[0].weight, net[0].bias[:, None], net[2].weight.T], 1).detach()
    assert unit.norm(dim=1).max() < 0.01
    assert net[2].bias.abs().min() > 0  # the output bias is no unit's: untouched


def test_negative_lambda_is_rejected() -> None:
    with pytest.raises(ValueError, match="lam"):
        GroupLasso(_net(), torch.zeros(1, 3), lam=-1.0)
