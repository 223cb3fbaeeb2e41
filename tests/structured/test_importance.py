"""Each criterion ranks units by what it claims to measure, over the whole coupled group."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.structured.graph import build_graph
from prunekit.structured.importance import IMPORTANCE, ScoringData, score_units


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _hidden_units(graph) -> list[int]:
    return graph.units_of(graph.axes["0"]["out"]).tolist()


def test_l1_and_l2_sum_over_every_coupled_slice() -> None:
    net = _mlp()
    g = build_graph(net, torch.zeros(1, 3))
    units = _hidden_units(g)
    w1, b1, w2 = net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach()
    for i, u in enumerate(units):
        l1 = w1[i].abs().sum() + b1[i].abs() + w2[:, i].abs().sum()
        l2 = math.sqrt(w1[i].pow(2).sum() + b1[i].pow(2) + w2[:, i].pow(2).sum())
        assert IMPORTANCE["l1"](g, ScoringData()).scores[u].item() == pytest.approx(float(l1))
        assert IMPORTANCE["l2"](g, ScoringData()).scores[u].item() == pytest.approx(l2)


def test_bn_scale_reads_gamma_and_is_nan_without_batchnorm() -> None:
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 1),
                        nn.ReLU(), nn.Conv2d(4, 1, 1))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.5, -2.0, 0.1]))
    g = build_graph(net, torch.zeros(1, 1, 2, 2))
    scores = IMPORTANCE["bn_scale"](g, ScoringData()).scores
    bn_units = g.units_of(g.axes["1"]["channels"])
    assert scores[bn_units].tolist() == pytest.approx([0.5, 2.0, 0.1])
    assert torch.isnan(scores[g.units_of(g.axes["3"]["out"])]).all()


def test_taylor_is_squared_first_order_term_and_restores_grads() -> None:
    net = _mlp()
    g = build_graph(net, torch.zeros(1, 3))
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    sentinel = torch.full_like(net[0].weight, 7.0)
    net[0].weight.grad = sentinel
    scores = IMPORTANCE["taylor"](g, ScoringData([(x, y)])).scores
    assert net[0].weight.grad is sentinel
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    for i, u in enumerate(_hidden_units(g)):
        first = (net[0].weight * net[0].weight.grad)[i].sum() + (net[0].bias * net[0].bias.grad)[i]
        first = first + (net[2].weight * net[2].weight.grad)[:, i].sum()
        assert scores[u].item() == pytest.approx(float(first.detach()) ** 2, rel=1e-5)


def test_activation_criteria_see_dead_and_quiet_units() -> None:
    net = _mlp()
    with torch.no_grad():
        net[0].bias[1] = -100.0  # never fires
        net[0].weight[2] *= 0.01
        net[0].bias[2] = 0.0
    g = build_graph(net, torch.zeros(1, 3))
    data = ScoringData([(torch.randn(64, 3), torch.zeros(64, dtype=torch.long))])
    units = _hidden_units(g)
    mean = IMPORTANCE["activation_mean"](g, data).scores
    apoz = IMPORTANCE["apoz"](g, data).scores
    assert mean[units[1]] == 0 and apoz[units[1]] == 0
    assert mean[units[2]] < min(mean[units[0]], mean[units[3]])
    assert 0 < apoz[units[0]] <= 1


def test_random_is_seeded() -> None:
    g = build_graph(_mlp(), torch.zeros(1, 3))
    a = IMPORTANCE["random"](g, ScoringData(seed=1)).scores
    assert torch.equal(a, IMPORTANCE["random"](g, ScoringData(seed=1)).scores)
    assert not torch.equal(a, IMPORTANCE["random"](g, ScoringData(seed=2)).scores)


def test_data_criteria_and_unknown_names_fail_clearly() -> None:
    g = build_graph(_mlp(), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="needs data"):
        score_units(g, "taylor", ScoringData())
    with pytest.raises(ValueError, match="choose one of"):
        score_units(g, "l3", ScoringData())
