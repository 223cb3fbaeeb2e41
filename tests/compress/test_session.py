"""What every step of compress does, done the same way for steps, probes and the baseline."""

from __future__ import annotations

import copy

import pytest
import torch

from prunekit.compress import Budget, Settings
from prunekit.compress.session import Session
from prunekit.tasks import evaluate_task

FAST = {"steps": 2, "epochs": 1, "lr": 0.01, "latency_budget_s": 0.5}


def _session(model, data, **settings) -> Session:
    return Session(model, data, Budget("macs", 0.5), 1.0, Settings(**{**FAST, **settings}),
                   data.x_test[:8], False, False, None)


def test_a_probe_scores_minus_the_validation_loss_of_its_pruned_copy(trained) -> None:
    model, data = trained
    run = _session(model, data, probe_epochs=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sizes = {"net.1": 48, "net.3": 32}
    light, heavy = {"net.1": 4, "net.3": 0}, {"net.1": 40, "net.3": 28}
    scores = [run.probe(model, removed, sizes, 0) for removed in (light, heavy)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pruned = copy.deepcopy(model)
    run.prune_to(pruned, heavy, sizes)
    loss = evaluate_task(pruned.eval(), run.x_val, run.y_val, task="classification",
                         loss=run.loss)["loss"]
    assert scores[1] == pytest.approx(-loss)
    assert scores[0] > scores[1]  # removing 68 of 80 hidden units costs more loss than 4


def test_a_drop_equal_to_the_bound_is_within_it_and_one_beyond_is_not(trained) -> None:
    model, data = trained
    run = _session(model, data)
    assert not run.over_bound(1.0) and not run.over_bound(100 * (0.97 - 0.96))
    assert run.over_bound(1.01)
    assert run.drop(run.dense_val) == 0.0 and run.drop(run.dense_val - 0.01) == pytest.approx(1.0)


def test_pruning_to_counts_removes_exactly_them_and_keeps_the_rest(trained) -> None:
    model, data = trained
    run = _session(model, data)
    pruned = copy.deepcopy(model)
    run.prune_to(pruned, {"net.1": 10, "net.3": 5}, {"net.1": 48, "net.3": 32})
    assert pruned.net[1].out_features == 38 and pruned.net[3].out_features == 27
    assert pruned(data.x_test[:4]).shape == (4, 10)
