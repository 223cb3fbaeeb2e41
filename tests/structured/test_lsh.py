"""LSH redundancy finds near-duplicate units and folds them so outputs barely change."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.structured.graph import build_graph
from prunekit.structured.importance import ScoringData
from prunekit.structured.lsh import redundancy
from prunekit.structured.prune import prune_channels


def _with_duplicates() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 2 * 2, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        for dup, src, scale in ((5, 1, 3.0), (7, 2, 0.5)):
            # make BN(conv_dup(x)) = scale * BN(conv_src(x)) exactly
            net[0].weight[dup] = net[0].weight[src]
            net[0].bias[dup] = net[0].bias[src]
            bn.running_mean[dup] = bn.running_mean[src]
            bn.running_var[dup] = bn.running_var[src]
            bn.weight[dup] = scale * bn.weight[src]
            bn.bias[dup] = scale * bn.bias[src]
        net.eval()
    return net


def test_finds_the_planted_duplicates_with_their_scale() -> None:
    net = _with_duplicates()
    g = build_graph(net, torch.zeros(1, 2, 6, 6))
    result = redundancy(g, ScoringData())
    units = g.units_of(g.axes["0"]["out"])
    found = {(int(j), int(k)): s for j, (k, s) in result.folds.items()}
    pairs = {(min(a, b), max(a, b)) for a, b in found}
    assert pairs == {tuple(sorted((units[5], units[1]))), tuple(sorted((units[7], units[2])))}
    planted = {(units[5], units[1]): 3.0, (units[7], units[2]): 0.5}
    for (j, k), scale in found.items():
        assert result.scores[j] == 0 and result.scores[k] > 0
        expected = planted[(j, k)] if (j, k) in planted else 1 / planted[(k, j)]
        assert abs(scale - expected) < 1e-5


def test_folding_keeps_outputs_when_duplicates_are_removed() -> None:
    net = _with_duplicates()
    x = torch.randn(4, 2, 6, 6)
    with torch.no_grad():
        before = net(x)
    report = prune_channels(net, x, ratio=0.25, criterion="lsh", ignore=["5"])  # convs only
    assert report.folded == 2 and net[0].out_channels == 6
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, atol=1e-5, rtol=1e-5)


def test_without_folding_the_same_removal_changes_outputs() -> None:
    net = _with_duplicates()
    x = torch.randn(4, 2, 6, 6)
    with torch.no_grad():
        before = net(x)
    g = build_graph(net, x)
    result = redundancy(g, ScoringData())
    from prunekit.structured.rewrite import remove_units

    remove = torch.zeros(g.num_units, dtype=torch.bool)
    remove[list(result.folds)] = True
    remove_units(g, remove.numpy(), x)
    with torch.no_grad():
        assert (net(x) - before).abs().max() > 1e-3


def test_residual_groups_score_duplicates_but_do_not_fold() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(4, 4)
            self.c = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.c(h + self.b(torch.relu(h)))

    net = Block()
    with torch.no_grad():
        net.a.weight[3] = 2 * net.a.weight[0]
        net.a.bias[3] = 2 * net.a.bias[0]
        net.b.weight[3] = 2 * net.b.weight[0]
        net.b.bias[3] = 2 * net.b.bias[0]
    result = redundancy(build_graph(net, torch.zeros(1, 3)), ScoringData())
    assert result.folds == {}
    assert (result.scores == 0).sum() == 1
