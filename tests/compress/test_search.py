"""The walk: it reaches the budget, spends it where the sensitivity is low, and its estimate
is the pruned model's real count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.compress.budget import PlanCost
from prunekit.compress.search import (
    blended_removed,
    greedy_walk,
    removal_mask,
    state_at,
    uniform_removed,
)
from prunekit.evaluate import count_macs, count_params
from prunekit.structured.prune import graph_and_scores, remove_planned


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, 4))


@pytest.mark.parametrize("kind", ["macs", "params"])
def test_the_estimate_is_what_pruning_leaves(kind: str) -> None:
    net, x = _net(), torch.zeros(1, 16)
    inputs, graph, scores = graph_and_scores(net, x, "l2", None, ())
    measured = count_macs(net, x) if kind == "macs" else count_params(net)[0]
    cost = PlanCost(graph, kind, measured)  # type: ignore[arg-type]
    walk = greedy_walk(graph, scores.scores, cost, lambda g, a: 0.0, target=0.3)
    assert walk[-1].cost <= 0.3 < walk[-2].cost
    assert all(b.cost < a.cost for a, b in itertools.pairwise(walk))
    remove = np.zeros(graph.num_units, dtype=bool)
    for group, count in zip(graph.groups, walk[-1].removed):
        remove[group.units[scores.scores[group.units].argsort()[:count].numpy()]] = True
    pruned_cost = cost(remove)
    remove_planned(graph, scores, remove, inputs, 0.5, 0.0)
    after = count_macs(net, x) if kind == "macs" else count_params(net)[0]
    assert after / measured == pytest.approx(pruned_cost, abs=1e-9)


def test_the_walk_spends_where_the_sensitivity_is_low() -> None:
    net, x = _net(), torch.zeros(1, 16)
    _, graph, scores = graph_and_scores(net, x, "l2", None, ())
    cost = PlanCost(graph, "macs", count_macs(net, x))
    sensitive = lambda g, amount: 50.0 * amount if g == 0 else 1.0 * amount
    walk = greedy_walk(graph, scores.scores, cost, sensitive, target=0.5)
    first, second = walk[-1].removed
    assert second > first  # the cheap group gives first
    assert walk[-1].predicted_drop == pytest.approx(50 * first / 64 + second / 64)
    flipped = greedy_walk(graph, scores.scores, cost, lambda g, a: sensitive(1 - g, a),
                          target=0.5)
    assert flipped[-1].removed[0] > flipped[-1].removed[1]
    assert state_at(walk, 0.75).cost <= 0.75


def test_the_walk_stops_at_the_caps_and_uniform_is_one_ratio() -> None:
    net, x = _net(), torch.zeros(1, 16)
    _, graph, scores = graph_and_scores(net, x, "l2", None, ())
    cost = PlanCost(graph, "macs", count_macs(net, x))
    walk = greedy_walk(graph, scores.scores, cost, lambda g, a: 0.0, target=0.001,
                       max_layer_ratio=0.5)
    assert walk[-1].cost > 0.001 and max(walk[-1].removed) <= 32
    ratio, removed = uniform_removed(graph, scores.scores, cost, 0.4)
    assert removed[0] == removed[1]  # two groups of 64, one ratio
    plan = np.zeros(graph.num_units, dtype=bool)
    for group, count in zip(graph.groups, removed):
        plan[group.units[scores.scores[group.units].argsort()[:count].numpy()]] = True
    assert cost(plan) <= 0.4 and 0 < ratio < 0.9


def test_a_blend_lies_between_its_plans_at_the_budget_and_on_the_notches() -> None:
    net, x = _net(), torch.zeros(1, 16)
    _, graph, scores = graph_and_scores(net, x, "l2", None, ())
    cost = PlanCost(graph, "macs", count_macs(net, x))
    walk = greedy_walk(graph, scores.scores, cost,
                       lambda g, a: 50.0 * a if g == 0 else a, target=0.4)[-1].removed
    _, uniform = uniform_removed(graph, scores.scores, cost, 0.4)
    assert walk[0] < uniform[0] and walk[1] > uniform[1]  # the walk spares group 0
    for alpha in (0.25, 0.5, 0.75):
        mix = blended_removed(graph, scores.scores, cost, walk, uniform, alpha, 0.4,
                              round_to=8)
        assert cost(removal_mask(graph, scores.scores, mix)) <= 0.4
        assert walk[0] <= mix[0] <= uniform[0] + 8 and uniform[1] - 8 <= mix[1] <= walk[1] + 8
        assert all((64 - m) % 8 == 0 for m in mix)  # kept counts stay multiples of round_to
    early, late = (blended_removed(graph, scores.scores, cost, walk, uniform, a, 0.4)
                   for a in (0.2, 0.8))
    assert early[0] < late[0]  # moving from the walk towards uniform
    assert blended_removed(graph, scores.scores, cost, walk, uniform, 0.5, 1e-6,
                           max_layer_ratio=0.5) == (32, 32)  # out of reach: the caps
