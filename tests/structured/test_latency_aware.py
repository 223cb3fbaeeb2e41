"""Latency-aware pruning: targets met, time spent where the table says, exact removal.

The greedy logic is tested on hand-made tables (deterministic costs); one test measures a real
table end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.evaluate import count_macs
from prunekit.machine import CpuInfo
from prunekit.structured import latency_table
from prunekit.structured.graph import DependencyGraph, build_graph
from prunekit.structured.latency_aware import prune_for_latency
from prunekit.structured.latency_table import LatencyTable, LayerCost, measure_latency_table


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()


X = torch.randn(2, 3, 8, 8)


def _table(per_mac: dict[str, float], fixed: dict[str, float] | None = None) -> LatencyTable:
    """Costs ``per_mac[layer] · in · out`` (+ ``fixed[layer] · out``), rest 1 ms."""
    fixed = fixed or {}
    widths = {"0": (3, 32), "3": (32, 32), "6": (32, 16), "10": (16, 10)}
    layers = {name: LayerCost((0.0, 0.0, fixed.get(name, 0.0), per_mac.get(name, 1e-3)),
                              *widths[name]) for name in widths}
    dense = 1.0 + sum(c.at(c.in_channels, c.out_channels) for c in layers.values())
    return LatencyTable(layers, dense, 1.0, tuple(X.shape), 1, 0.0, 0.0)


def _kept(net: nn.Sequential) -> tuple[int, int, int]:
    return net[0].out_channels, net[3].out_channels, net[6].out_channels


def test_max_latency_is_met_by_the_estimate_and_shapes_stay() -> None:
    net = _net()
    table = _table({"0": 1e-2, "3": 1e-2, "6": 1e-2})
    report = prune_for_latency(net, X, table, max_latency=0.5, round_to=1)
    assert report.estimated_latency_fraction <= 0.5
    assert table.estimate_ms(net) / table.dense_ms == pytest.approx(
        report.estimated_latency_fraction, rel=1e-9)
    assert net(X).shape == (2, 10)
    assert report.removed == sum(g.removed for g in report.groups) > 0


def test_the_slow_layer_loses_channels_first() -> None:
    slow_first = _net()
    prune_for_latency(slow_first, X, _table({"0": 1.0, "3": 1e-4, "6": 1e-4}, {"0": 5.0}),
                      max_latency=0.6, round_to=1)
    slow_last = _net()
    prune_for_latency(slow_last, X, _table({"0": 1e-4, "3": 1e-4, "6": 1.0}, {"6": 5.0}),
                      max_latency=0.6, round_to=1)
    assert _kept(slow_first)[0] < 32 and _kept(slow_first)[2] == 16
    assert _kept(slow_last)[2] < 16


def test_max_macs_is_met_and_goes_where_macs_are_slowest() -> None:
    dense_macs = count_macs(_net(), X[:1])
    net = _net()
    report = prune_for_latency(net, X, _table({"0": 1e-3, "3": 1e-3, "6": 1e-3}, {"0": 10.0}),
                               max_macs=0.6, round_to=1)
    assert count_macs(net, X[:1]) <= 0.6 * dense_macs
    assert report.estimated_macs_fraction <= 0.6
    # conv 0 costs 10 ms per output channel beyond its MACs: its MACs are the slowest
    kept = _kept(net)
    assert kept[0] < 32 and kept[1:] == (32, 16)


def test_round_to_keeps_multiples_and_the_cap_holds() -> None:
    net = _net()
    prune_for_latency(net, X, _table({"0": 1e-2, "3": 1e-2, "6": 1e-2}), max_latency=0.4,
                      round_to=8, max_layer_ratio=0.75)
    assert all(k % 8 == 0 and k >= 8 for k in _kept(net))


@pytest.mark.parametrize(("features", "block"), [(("avx2", "avx512f"), 16), (("avx2",), 8)])
def test_by_default_wide_groups_keep_multiples_of_the_cpus_vector_width(
    monkeypatch: pytest.MonkeyPatch, features: tuple[str, ...], block: int
) -> None:
    """A kept width off the vector width leaves oneDNN's last channel block partly empty."""
    monkeypatch.setattr(latency_table, "cpu_info", lambda: CpuInfo("test", features, 2))
    assert latency_table.group_rounding(None, 64) == block
    assert latency_table.group_rounding(None, 63) == 8  # too few vectors to round by 16
    assert latency_table.group_rounding(4, 64) == 4  # an explicit round_to is kept
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()
    widths = {"0": (3, 64), "2": (64, 64), "6": (64, 10)}
    layers = {name: LayerCost((0.0, 0.0, 0.0, 1e-3), *w) for name, w in widths.items()}
    dense = 1.0 + sum(c.at(c.in_channels, c.out_channels) for c in layers.values())
    table = LatencyTable(layers, dense, 1.0, tuple(X.shape), 1, 0.0, 0.0)
    prune_for_latency(net, X, table, max_latency=0.8)
    # the cheapest step is the second conv's; multiples of 8 stop it at 40, of 16 at 32
    assert (net[0].out_channels, net[2].out_channels) == (64, 40 if block == 8 else 32)


@torch.no_grad()
def _zero_every_slice(graph: DependencyGraph, remove: np.ndarray) -> None:
    """The units' filters, BatchNorm channels and the next layers' input columns all 0."""
    keep = np.append(~remove, True)
    for member in graph.members:
        if member.is_param:
            tensor = getattr(graph.model.get_submodule(member.module), member.param)
            zeroed = np.flatnonzero(~keep[graph.unit_of[member.ids]])
            tensor.index_fill_(member.dim, torch.from_numpy(zeroed), 0.0)


def test_removing_zeroed_units_leaves_outputs_identical() -> None:
    net = _net()
    graph = build_graph(net, X)
    remove = np.zeros(graph.num_units, dtype=bool)
    for group in graph.groups:
        remove[group.units[:5]] = True
    _zero_every_slice(graph, remove)
    with torch.no_grad():
        before = net(X)
    table = _table({"0": 1e-2, "3": 1e-2, "6": 1e-2})
    # zeroed units score 0, so they go before any unit that carries signal
    report = prune_for_latency(net, X, table, max_latency=0.9, round_to=1, criterion="l1")
    assert 0 < report.removed <= remove.sum()
    with torch.no_grad():
        torch.testing.assert_close(net(X), before, atol=1e-5, rtol=1e-5)


def test_an_unreachable_target_explains_itself() -> None:
    with pytest.raises(ValueError, match="cannot be met within max_layer_ratio"):
        prune_for_latency(_net(), X, _table({}), max_latency=0.05, max_layer_ratio=0.5)


def test_targets_and_table_are_validated() -> None:
    table = _table({})
    with pytest.raises(ValueError, match="exactly one target"):
        prune_for_latency(_net(), X, table)
    with pytest.raises(ValueError, match="exactly one target"):
        prune_for_latency(_net(), X, table, max_latency=0.5, max_macs=0.5)
    with pytest.raises(ValueError, match="max_latency is a fraction"):
        prune_for_latency(_net(), X, table, max_latency=1.5)
    with pytest.raises(ValueError, match="max_macs"):
        prune_for_latency(_net(), X, table, max_macs=-1)
    with pytest.raises(ValueError, match="measured on inputs of shape"):
        prune_for_latency(_net(), torch.randn(2, 3, 16, 16), table, max_latency=0.5)


def test_end_to_end_with_a_measured_table() -> None:
    net = _net()
    table = measure_latency_table(net, X, configs=4, repeats=2)
    before, dense_ms = count_macs(net, X[:1]), table.estimate_ms(net)
    report = prune_for_latency(net, X, table, max_macs=0.5)
    assert count_macs(net, X[:1]) <= 0.5 * before
    assert net(X).shape == (2, 10)
    # On a net this small, measured times are mostly fixed cost, so only consistency is checked.
    expected = table.estimate_ms(net) / dense_ms
    assert report.estimated_latency_fraction == pytest.approx(expected, rel=1e-6)


def test_prune_aimed_spends_what_the_uniform_ratio_would_leave() -> None:
    import copy

    from prunekit.structured import prune_channels
    from prunekit.structured.latency_aware import prune_aimed

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(64, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16 * 16 * 16, 10))
    x = torch.randn(2, 3, 16, 16)
    uniform = copy.deepcopy(net)
    prune_channels(uniform, x, ratio=0.5, round_to=8)
    widths = {"0": (3, 32), "2": (32, 64), "4": (64, 16), "7": (16 * 16 * 16, 10)}
    costs = {name: LayerCost((0.0, 0.0, 0.0, 1e-3), *w) for name, w in widths.items()}
    dense = 1.0 + sum(c.at(c.in_channels, c.out_channels) for c in costs.values())
    table = LatencyTable(costs, dense, 1.0, tuple(x.shape), 1, 0.0, 0.0)  # time ∝ MACs, not timed
    aimed = copy.deepcopy(net)
    report, used = prune_aimed(aimed, x, ratio=0.5, table=table)
    assert used is table and isinstance(report.estimated_latency_fraction, float)
    assert count_macs(aimed, x) <= count_macs(uniform, x)
    assert all(m.out_channels % 8 == 0 for m in aimed.modules() if isinstance(m, nn.Conv2d))
    fast = copy.deepcopy(net)
    report, _ = prune_aimed(fast, x, max_latency=0.6, table=table)
    assert report.estimated_latency_fraction <= 0.6
    plain = copy.deepcopy(net)
    _, none = prune_aimed(plain, x, ratio=0.5, latency_aware=False)
    assert none is None and plain[0].out_channels == 16  # prune_channels' counts, round_to 1
    with pytest.raises(ValueError, match="exactly one target"):
        prune_aimed(copy.deepcopy(net), x, ratio=0.5, max_latency=0.5, table=table)
