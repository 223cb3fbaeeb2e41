"""Sensitivity curves on a trained MLP: the model is never touched, the cache is read back only
for exactly the same inputs, and the curves say what one-shot pruning really does."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch

from prunekit.data import load_dataset
from prunekit.models import build_model
from prunekit.sensitivity import measure_sensitivity, prune_amounts
from prunekit.tasks import evaluate_task
from prunekit.train import fit


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mlp", in_features=64, hidden=(32, 16))
    fit(model, data.x_train, data.y_train, epochs=6, lr=0.01, progress=False)
    return model.eval(), data


def test_curves_are_one_target_pruned_alone_and_leave_the_model(trained) -> None:
    model, data = trained
    before = copy.deepcopy(model.state_dict())
    held_out = (data.x_test, data.y_test)
    result = measure_sensitivity(model, data.x_train[:1], held_out, amounts=(0.25, 0.9),
                                 progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [c.target for c in result.curves] == ["net.1", "net.3"]
    assert [c.size for c in result.curves] == [32, 16]
    pruned = copy.deepcopy(model)
    prune_amounts(pruned, data.x_train[:1], "structured", {"1": 0.9})
    assert pruned.net[3].out_features == 2  # 16 → ⌊0.1·16⌋ kept
    direct = evaluate_task(pruned, *held_out)["accuracy"]
    assert result.curves[1].values["accuracy"][1] == direct
    assert result.dense["accuracy"] > 0.8 and direct < result.dense["accuracy"] - 0.1
    assert result.drop(result.curves[1], 0.9) == pytest.approx(100 * (result.dense["accuracy"] - direct))


def test_unstructured_targets_are_weights_and_rows_fit_the_store(trained) -> None:
    model, data = trained
    result = measure_sensitivity(model, data.x_train[:1], (data.x_test, data.y_test),
                                 granularity="unstructured", amounts=(0.5,), progress=False)
    assert [c.target for c in result.curves] == ["net.1.weight", "net.3.weight", "net.5.weight"]
    rows = result.rows("baseline")
    assert len(rows) == 3 * 2  # targets × (accuracy, loss)
    assert {r["granularity"] for r in rows} == {"unstructured"} and rows[0]["amount"] == 0.5


def test_the_cache_is_reused_only_for_the_same_inputs(trained, tmp_path, caplog) -> None:
    model, data = trained
    cache = tmp_path / "s.json"
    held_out = (data.x_test[:200], data.y_test[:200])
    args = (data.x_train[:1], held_out)
    first = measure_sensitivity(model, *args, amounts=(0.5,), cache=cache, progress=False)
    assert not first.cached and json.loads(cache.read_text())["fingerprint"] == first.fingerprint
    again = measure_sensitivity(model, *args, amounts=(0.5,), cache=cache, progress=False)
    assert again.cached and again.curves == first.curves and again.dense == first.dense
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.net[1].weight[0, 0] += 1.0
    caplog.set_level(logging.WARNING)
    for other, amounts, criterion in ((changed, (0.5,), None), (model, (0.25,), None),
                                      (model, (0.5,), "l1")):
        result = measure_sensitivity(other, *args, amounts=amounts, criterion=criterion,
                                     cache=cache, progress=False)
        assert not result.cached and result.fingerprint != first.fingerprint
        assert "measuring again" in caplog.text
    other_data = (data.x_test[200:300], data.y_test[200:300])
    assert not measure_sensitivity(model, data.x_train[:1], other_data, amounts=(0.25,),
                                   cache=cache, progress=False).cached
    cache.write_text("{not json")
    assert not measure_sensitivity(model, *args, amounts=(0.5,), cache=cache,
                                   progress=False).cached


def test_bad_grids_fail_in_one_line(trained) -> None:
    model, data = trained
    with pytest.raises(ValueError, match=r"fractions in \(0, 1\)"):
        measure_sensitivity(model, data.x_train[:1], (data.x_test, data.y_test), amounts=(1.0,))
    with pytest.raises(ValueError, match="no pruning group '9'"):
        prune_amounts(copy.deepcopy(model), data.x_train[:1], "structured", {"9": 0.5})


def test_batchnorm_is_re_estimated_on_the_training_batches_before_scoring(tmp_path) -> None:
    from torch import nn

    from prunekit.batchnorm_stats import reestimate_batchnorm

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Linear(32, 10))
    fit(model, data.x_train, data.y_train, epochs=4, lr=0.01, progress=False)
    model.eval()
    held_out = (data.x_test, data.y_test)
    batches = [(data.x_train[i : i + 64], data.y_train[i : i + 64]) for i in range(0, 256, 64)]
    cache = tmp_path / "s.json"
    fresh = measure_sensitivity(model, data.x_train[:1], held_out, amounts=(0.75,), data=batches,
                                cache=cache, progress=False)
    stale = measure_sensitivity(model, data.x_train[:1], held_out, amounts=(0.75,), data=batches,
                                recalibrate_batchnorm=False, cache=cache, progress=False)
    assert not stale.cached and stale.fingerprint != fresh.fingerprint  # the flag is an input
    pruned = copy.deepcopy(model)
    prune_amounts(pruned, data.x_train[:1], "structured", {"0": 0.75}, data=batches)
    assert evaluate_task(pruned, *held_out)["loss"] == stale.curves[0].values["loss"][0]
    assert reestimate_batchnorm(pruned, [x for x, _ in batches])
    assert evaluate_task(pruned, *held_out)["loss"] == fresh.curves[0].values["loss"][0]
    assert fresh.curves[0].values["loss"][0] != stale.curves[0].values["loss"][0]


def test_a_batchnorm_model_without_training_batches_is_warned_about(trained, caplog) -> None:
    from torch import nn

    _, data = trained
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 10)).eval()
    caplog.set_level(logging.WARNING)
    measure_sensitivity(model, data.x_train[:1], (data.x_test, data.y_test), amounts=(0.5,),
                        progress=False)
    assert "not re-estimated" in caplog.text
