"""What-ifs on the real tiny run: the numbers are what the library's pruners give, the original
is never touched, a kept choice reproduces exactly, and sweeps agree with single what-ifs."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

import prunekit
from prunekit.dashboard import Dashboard
from prunekit.dashboard.export_choice import NotExpressible, recipe_stage, save_pruned
from prunekit.dashboard.whatif import apply_choice, parse_choice, sensitivity_sweep, try_choice
from prunekit.evaluate import count_params, evaluate_accuracy
from prunekit.recipe import parse_recipe
from prunekit.structured import prune_channels

# mlp 64 → 32 → 16 → 10: 2,778 parameters; half of the first hidden layer's 32 neurons out
DENSE_PARAMS = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
HALF_FIRST = 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10


@pytest.fixture(scope="module")
def subject(board: Dashboard, run_id: str):
    return board.workspace.subject(run_id, "baseline")


def test_one_group_pruned_leaves_the_others_and_the_original_alone(subject) -> None:
    result = try_choice(subject, parse_choice({"granularity": "structured", "amounts": {"0": 0.5}}))
    assert result["before"]["params"] == DENSE_PARAMS == count_params(subject.model)[0]
    assert result["after"]["params"] == HALF_FIRST
    assert [(g["modules"], g["removed"]) for g in result["details"]["groups"]] == [
        (["net.1"], 16), (["net.3"], 0)]
    assert result["after"]["macs"] < result["before"]["macs"]
    assert result["held_out"] == 359 and result["after"]["latency_p95_ms"] >= result["after"]["latency_ms"]


def test_accuracy_is_what_the_library_pruner_gives(subject) -> None:
    result = try_choice(subject, parse_choice({"granularity": "structured", "amount": 0.5}))
    direct = copy.deepcopy(subject.model)
    prune_channels(direct, subject.example, ratio=0.5)
    scores = evaluate_accuracy(direct, *subject.held_out)
    assert result["after"]["accuracy"] == scores["accuracy"] and result["after"]["loss"] == scores["loss"]
    assert result["before"]["accuracy"] == evaluate_accuracy(subject.model, *subject.held_out)["accuracy"]


def test_unstructured_per_layer_zeroes_only_that_layer(subject) -> None:
    result = try_choice(subject, parse_choice({"granularity": "unstructured", "amounts": {"net.3": 0.75}}))
    assert result["after"]["nonzero_params"] == result["before"]["nonzero_params"] - 384
    assert result["after"]["macs"] == result["before"]["macs"]  # zeros alone cut no MACs
    assert result["after"]["file_bytes"] < result["before"]["file_bytes"]
    assert result["details"]["layer_sparsity"]["net.3.weight"] == pytest.approx(0.75)


def test_a_kept_stage_reproduces_the_what_if(subject, board: Dashboard, run_id: str) -> None:
    choice = parse_choice({"granularity": "structured", "amounts": {"0": 0.5}})
    kept = recipe_stage(subject, choice, board.workspace.run(run_id)["command"])
    assert kept["verified"] and kept["stage"]["structured"]["ignore"] == ["net.3"]
    recipe = board.workspace.run(run_id)["command"]["recipe"]
    parse_recipe({**recipe, **yaml.safe_load(kept["yaml"])})  # it drops into the run's recipe
    for refused in ({"granularity": "structured", "amounts": {"0": 0.5, "1": 0.25}},
                    {"granularity": "unstructured", "amounts": {"net.1": 0.5}},
                    {"granularity": "structured", "amount": 0.5, "criterion": "random"}):
        with pytest.raises(NotExpressible):
            recipe_stage(subject, parse_choice(refused))


def test_a_saved_model_loads_back_as_the_what_if(subject) -> None:
    choice = parse_choice({"granularity": "structured", "amount": 0.25})
    path = save_pruned(subject, choice)
    assert path.parent.name == "whatif" and path.parent.parent == subject.directory
    expected, _ = apply_choice(subject, choice)
    x = subject.held_out[0][:16]
    torch.testing.assert_close(prunekit.load(path)(x), expected(x))


def test_a_sweep_agrees_with_single_what_ifs(subject) -> None:
    points = sensitivity_sweep(subject, "structured")
    assert len(points) == 2 * 4 * 2  # groups × amounts × (accuracy, loss)
    point = next(p for p in points if p["target"] == "net.1" and p["amount"] == 0.5
                 and p["metric"] == "accuracy")
    single = try_choice(subject, parse_choice({"granularity": "structured", "amounts": {"0": 0.5}}))
    assert point["value"] == single["after"]["accuracy"]


@pytest.mark.parametrize(("choice", "message"), [
    ({"granularity": "structured", "amount": 0.5, "amounts": {"0": 0.5}}, "not both"),
    ({"granularity": "structured", "amounts": {"0": 0}}, "at least one group"),
    ({"granularity": "structured", "amount": 1.0}, r"in \[0, 1\)"),
    ({"granularity": "unstructured", "amount": 0.5, "criterion": "taylor"}, "not one of"),
    ({"granularity": "structured", "amounts": {"7": 0.5}}, "no pruning group"),
])
def test_bad_choices_fail_in_one_line(subject, choice: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        try_choice(subject, parse_choice(choice))
