"""prune_and_measure: two comparable rows, a saved compacted model, the report files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import prunekit
from prunekit.data import load_dataset
from prunekit.models import build_model
from prunekit.structured.before_after import parse_macs, parse_shape, prune_and_measure


def test_rows_report_and_saved_model(tmp_path: Path) -> None:
    data = load_dataset("digits")
    model = build_model("mlp", in_features=64, hidden=(32, 16))
    example = data.x_test[:4]
    before, after = prune_and_measure(model, example, tmp_path, dataset=data, repeats=3,
                                      ratio=0.5)
    assert before["params"] > after["params"] and before["macs"] > after["macs"]
    assert 0.0 <= after["accuracy"] <= 1.0 and after["removed_units"] == 24
    for name in ("report.json", "report.md", "model.safetensors"):
        assert (tmp_path / name).is_file()
    loaded = prunekit.load(tmp_path / "model.safetensors")
    torch.testing.assert_close(loaded(example), model(example))


def test_without_data_accuracy_is_nan(tmp_path: Path) -> None:
    before, _ = prune_and_measure(build_model("lenet5"), torch.zeros(2, 1, 28, 28), tmp_path,
                                  repeats=2, ratio=0.25)
    assert math.isnan(before["accuracy"])


def test_parsers() -> None:
    assert parse_shape("8,3,224,224") == (8, 3, 224, 224)
    assert parse_macs("0.5") == 0.5 and parse_macs("1000") == 1000
    with pytest.raises(ValueError, match="positive ints"):
        parse_shape("8,0")
    with pytest.raises(ValueError, match="fraction"):
        parse_macs("half")


def test_deploy_times_folded_copies_but_saves_the_plain_model(tmp_path: Path) -> None:
    model = build_model("resnet20")
    rows = prune_and_measure(model, torch.randn(2, 3, 32, 32), tmp_path, repeats=2, ratio=0.5,
                             deploy=True)
    assert rows[1]["latency_ms"] > 0
    assert isinstance(model.bn1, torch.nn.BatchNorm2d)
    loaded = prunekit.load(tmp_path / "model.safetensors")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())


def test_a_prune_is_recorded_and_its_report_plots_what_it_measured(tmp_path: Path) -> None:
    from prunekit.runs import RunStore

    prune_and_measure(build_model("lenet5"), torch.zeros(2, 1, 28, 28), tmp_path, repeats=2,
                      ratio=0.5, title="lenet5 structured pruning")
    (summary,) = RunStore(tmp_path).runs()
    run = RunStore(tmp_path).run(summary["id"])
    assert (run["kind"], run["title"]) == ("prune", "lenet5 structured pruning")
    assert run["command"]["input_shape"] == [2, 1, 28, 28] and run["command"]["data"] is None
    conv = next(layer for layer in run["layers"]["after"] if layer["layer"] == "features.0")
    assert (conv["out_channels"], conv["original_out_channels"]) == (10, 20)
    assert run["rows"][1]["model_file"] == "model.safetensors"
    page = (tmp_path / "report.html").read_text()
    assert page.count("<img") == 2  # cost against 'before' (no accuracy), channels kept
    assert "cost against before" in page and "channels kept" in page


def test_each_submodules_mode_is_given_back(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    model[1].eval()  # frozen statistics inside a training model
    model[3].eval()
    before = [m.training for m in model.modules()]
    prune_and_measure(model, torch.randn(4, 6), tmp_path, repeats=2, ratio=0.5)
    assert model[0].out_features == 4  # pruned, and every position keeps its own mode
    assert [m.training for m in model.modules()] == before == [True, True, False, True, False, True]


def test_after_reports_the_macs_and_the_measured_latency_ratio(tmp_path: Path) -> None:
    model = build_model("lenet5")
    before, after = prune_and_measure(model, torch.randn(2, 1, 28, 28), tmp_path, repeats=3,
                                      ratio=0.5, latency_aware=True, latency_budget_s=0.5)
    assert after["latency_aware"] and after["latency_table_seconds"] > 0
    assert after["latency_table_deployment"] == "fused"
    assert after["macs_ratio"] == before["macs"] / after["macs"] > 1.5
    assert after["latency_ratio"] == pytest.approx(before["latency_ms"] / after["latency_ms"])
    assert after["latency_vs_macs"] == pytest.approx(after["latency_ratio"] / after["macs_ratio"])
    assert after["speedup_text"].startswith(f"{after['latency_ratio']:.2f}x")
    assert model.features[0].out_channels % 8 == 0 and model.features[3].out_channels % 8 == 0
