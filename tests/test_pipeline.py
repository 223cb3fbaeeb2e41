"""Recipes end to end: the demo's promises, Han et al.'s result, and resuming a crashed run."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from prunekit import pipeline, stages
from prunekit.recipe import RecipeError, load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny", "data": {"name": "digits"},
    "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [32]}},
    "train": {"epochs": 3, "lr": 0.01}, "measure": {"repeats": 3},
    "variants": [
        {"name": "half", "stages": [{"prune": {"sparsity": 0.5}}, {"train": {"epochs": 1}}]},
        {"name": "l1", "stages": [{"train": {"epochs": 1, "regularizers": [{"kind": "l1", "lam": 1e-4}]}}]},
    ],
}


def test_rerun_reuses_finished_variants_and_redoes_changed_ones(tmp_path: Path, monkeypatch) -> None:
    rows = pipeline.run_recipe(parse_recipe(TINY), tmp_path, progress=False)
    assert [r["name"] for r in rows] == ["baseline", "half", "l1"]
    assert rows[1]["sparsity"] == pytest.approx(0.5, abs=1e-3)

    trained: list[str] = []
    real_fit = stages.fit
    monkeypatch.setattr(stages, "fit", lambda *a, **k: trained.append(k["description"]) or real_fit(*a, **k))
    again = pipeline.run_recipe(parse_recipe(TINY), tmp_path, progress=False)
    timed = {"latency_ms", "latency_p95_ms", "batch_size", "threads", "noise_band"}

    def untimed(rs: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in timed} for r in rs]

    assert trained == [] and untimed(again) == untimed(rows)  # latency is re-timed together
    assert all(r["latency_ms"] > 0 for r in again)

    changed = json.loads(json.dumps(TINY))
    changed["variants"][1]["stages"][0]["train"]["epochs"] = 2
    pipeline.run_recipe(parse_recipe(changed), tmp_path, progress=False)
    assert trained == ["l1[0]"]


def test_crash_mid_variant_resumes_after_the_last_finished_one(tmp_path: Path, monkeypatch) -> None:
    real_fit = stages.fit

    def crash_on_l1(*args, **kwargs):
        if kwargs["description"].startswith("l1"):
            raise KeyboardInterrupt("power cut")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(stages, "fit", crash_on_l1)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_recipe(parse_recipe(TINY), tmp_path, progress=False)
    assert (tmp_path / "half" / "row.json").is_file() and not (tmp_path / "l1" / "row.json").exists()

    trained: list[str] = []
    monkeypatch.setattr(stages, "fit", lambda *a, **k: trained.append(k["description"]) or real_fit(*a, **k))
    rows = pipeline.run_recipe(parse_recipe(TINY), tmp_path, progress=False)
    assert trained == ["l1[0]"] and [r["name"] for r in rows] == ["baseline", "half", "l1"]


@pytest.mark.slow
def test_demo_recipe_keeps_its_promises(tmp_path: Path) -> None:
    rows = {r["name"]: r for r in pipeline.run_recipe(load_recipe(ROOT / "recipes/demo.yaml"), tmp_path, progress=False)}
    base, pruned = rows["baseline"], rows["magnitude-poly-90"]
    assert pruned["sparsity"] >= 0.89
    assert pruned["accuracy"] >= base["accuracy"] - 0.01
    assert pruned["file_bytes"] <= 0.2 * pruned["dense_file_bytes"]
    assert set(rows) == {"baseline", "l1", "l2", "magnitude-poly-90", "sparsemax",
                         "compress-macs-25"}
    small = rows["compress-macs-25"]  # smaller layers, not masks: a quarter of the MACs
    assert small["macs"] <= 0.25 * base["macs"] and small["accuracy"] >= base["accuracy"] - 0.01
    assert "noise_band" in small
    report = json.loads((tmp_path / "report.json").read_text())
    keys = {"name", "accuracy", "loss", "latency_ms", "params", "nonzero_params", "sparsity",
            "macs", "file_bytes", "dense_file_bytes"}
    assert all(keys <= set(r) for r in report["rows"])


@pytest.mark.slow
def test_han2015_recipe_reaches_12x_fewer_weights_without_losing_accuracy(tmp_path: Path) -> None:
    rows = pipeline.run_recipe(load_recipe(ROOT / "recipes/han2015_lenet300.yaml"), tmp_path, progress=False)
    base, pruned = rows[0], rows[1]
    baseline_weights = 784 * 300 + 300 * 100 + 100 * 10
    assert pruned["nonzero_params"] <= baseline_weights / 12
    assert pruned["accuracy"] >= base["accuracy"] - 0.005


def test_structured_stage_makes_the_variant_smaller(tmp_path: Path) -> None:
    recipe = {
        "name": "structured", "data": {"name": "digits"},
        "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [32, 32]}},
        "train": {"epochs": 3, "lr": 0.01}, "measure": {"repeats": 3},
        "variants": [{"name": "thin", "stages": [
            {"structured": {"macs_fraction": 0.5, "criterion": "taylor"}},
            {"train": {"epochs": 1}},
        ]}],
    }
    base, thin = pipeline.run_recipe(parse_recipe(recipe), tmp_path, progress=False)
    assert thin["macs"] <= 0.5 * base["macs"]
    assert thin["params"] < base["params"] and thin["sparsity"] == 0.0
    assert thin["accuracy"] > 0.5


def test_group_lasso_in_a_recipe_shrinks_whole_units(tmp_path: Path) -> None:
    """The penalty is wired over the graph's units: it drives whole hidden neurons to ~zero."""
    import prunekit

    recipe = json.loads(json.dumps(TINY))
    recipe["variants"] = [{"name": "gl", "stages": [{"train": {
        "epochs": 3, "regularizers": [{"kind": "group_lasso", "lam": 1e-3}]}}]}]
    rows = pipeline.run_recipe(parse_recipe(recipe), tmp_path, progress=False)

    def near_zero_units(name: str) -> int:
        model = prunekit.load(tmp_path / name / "model.safetensors")
        norms = model.get_submodule("net.1").weight.detach().norm(dim=1)  # one per neuron
        return int((norms < 0.05 * norms.max()).sum())

    assert near_zero_units("baseline") == 0
    assert near_zero_units("gl") >= 5 and rows[1]["accuracy"] > 0.85


def test_a_run_is_recorded_in_its_store_with_progress_and_layers(tmp_path: Path, monkeypatch) -> None:
    from prunekit.runs import RunStore

    rows = pipeline.run_recipe(parse_recipe(TINY), tmp_path, progress=False)
    (summary,) = RunStore(tmp_path).runs()
    run = RunStore(tmp_path).run(summary["id"])
    assert run["status"] == "finished" and run["command"]["recipe"]["name"] == "tiny"
    assert [r["name"] for r in run["rows"]] == [r["name"] for r in rows]
    assert run["rows"][1]["sparsity"] == rows[1]["sparsity"]
    assert set(run["layers"]) == {"baseline", "half", "l1"}
    first = run["layers"]["half"][0]
    assert first["sparsity"] == pytest.approx(rows[1]["layer_sparsity"][first["layer"] + ".weight"])
    assert first["latency_ms"] > 0 and rows[1]["layers"][0]["macs"] == first["macs"]
    events = RunStore(tmp_path).events(run["id"])
    baseline_epochs = [e for e in events if e["event"] == "epoch" and e["description"] == "baseline"]
    assert [e["epoch"] for e in baseline_epochs] == [1, 2, 3]
    stage_events = [(e["variant"], e["stage"], e["kind"]) for e in events if e["event"] == "stage"]
    assert stage_events == [("baseline", 0, "train"), ("half", 0, "prune"), ("half", 1, "train"),
                      ("l1", 0, "train")]

    def broken(*args, **kwargs):
        raise ValueError("loss became NaN")

    monkeypatch.setattr(stages, "fit", broken)
    with pytest.raises(ValueError):
        pipeline.run_recipe(parse_recipe(TINY), tmp_path / "failed", progress=False)
    (failed,) = RunStore(tmp_path / "failed").runs()
    assert (failed["status"], failed["error"]) == ("failed", "loss became NaN")
SMALL = {
    "name": "small", "data": {"name": "digits"},
    "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [16]}},
    "train": {"epochs": 2, "lr": 0.01}, "measure": {"repeats": 2},
}


def _edited(**changes: object) -> dict:
    recipe = json.loads(json.dumps(SMALL))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = recipe
        for part in parents:
            target = target.setdefault(part, {})
        target[key] = value
    return recipe


def _untimed(row: dict) -> dict:
    return {k: v for k, v in row.items()
            if k not in {"latency_ms", "latency_p95_ms", "batch_size", "threads", "artefacts",
                         "noise_band"}}


@pytest.mark.parametrize(
    "change", [{"train__lr": 0.05}, {"data__test_fraction": 0.3}, {"train__epochs": 1}],
)
def test_an_edited_recipe_never_reports_the_old_baseline(tmp_path: Path, change: dict, caplog) -> None:
    """The issue: after a finished run, an edited recipe into the same --out resumed the old
    checkpoint and reported the old model (baseline 0.33 vs 0.91 in a fresh folder)."""
    import logging

    pipeline.run_recipe(parse_recipe(SMALL), tmp_path / "reused", progress=False)
    caplog.set_level(logging.WARNING)
    again = pipeline.run_recipe(parse_recipe(_edited(**change)), tmp_path / "reused", progress=False)
    fresh = pipeline.run_recipe(parse_recipe(_edited(**change)), tmp_path / "fresh", progress=False)
    assert _untimed(again[0]) == _untimed(fresh[0])
    notices = [r.getMessage() for r in caplog.records if "reused" in r.getMessage()]
    assert any("changed" in n and "recomputing" in n for n in notices), notices


def test_user_code_edits_and_damaged_files_are_recomputed(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "net.py"
    source.write_text("from torch import nn\ndef make(width=16):\n"
                      "    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(),"
                      " nn.Linear(width, 10))\n")
    recipe = {**SMALL, "model": {"name": f"{source}:make"}}
    out = tmp_path / "out"
    pipeline.run_recipe(parse_recipe(recipe, trust_code=True), out, progress=False, trust_code=True)
    trained: list[str] = []
    real_fit = stages.fit
    monkeypatch.setattr(stages, "fit", lambda *a, **k: trained.append(k["description"]) or real_fit(*a, **k))
    pipeline.run_recipe(parse_recipe(recipe, trust_code=True), out, progress=False, trust_code=True)
    assert trained == []  # nothing changed: reused
    source.write_text(source.read_text().replace("width=16", "width=12"))
    pipeline.run_recipe(parse_recipe(recipe, trust_code=True), out, progress=False, trust_code=True)
    assert trained == ["baseline"]
    (out / "baseline" / "model.safetensors").write_bytes(b"truncated")
    (out / "baseline" / ".report.md.999999999.0123abcd.tmp").write_text("half")
    rows = pipeline.run_recipe(parse_recipe(recipe, trust_code=True), out, progress=False, trust_code=True)
    assert trained == ["baseline", "baseline"] and rows[0]["params"] == 64 * 12 + 12 + 12 * 10 + 10
    assert not list(out.rglob("*.tmp"))


def test_user_code_is_not_imported_without_trust(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    source = tmp_path / "net.py"
    source.write_text(f"open({str(canary)!r}, 'w').write('ran')\ndef make():\n    return None\n")
    recipe = parse_recipe({**SMALL, "model": {"name": f"{source}:make"}}, trust_code=True)
    with pytest.raises(ValueError, match="--trust-code"):
        pipeline.run_recipe(recipe, tmp_path / "out", progress=False)
    assert not canary.exists()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"name": "lenet5"}, r"cannot take data 'digits' \(samples of shape \[1, 8, 8\]\)"),
        ({"name": "mlp", "kwargs": {"in_features": 64, "num_classes": 3}}, "outputs 3 classes"),
    ],
)
def test_a_model_that_cannot_take_the_data_fails_before_training(
    tmp_path: Path, model: dict, message: str, monkeypatch
) -> None:
    monkeypatch.setattr(stages, "fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(pipeline.RunError, match=message):
        pipeline.run_recipe(parse_recipe({**SMALL, "model": model}), tmp_path, progress=False)


def test_bad_output_folders_are_one_line_and_lose_nothing(tmp_path: Path) -> None:
    import os

    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    for out in (a_file, a_file / "sub"):
        with pytest.raises(pipeline.RunError, match="is a file, not a folder"):
            pipeline.run_recipe(parse_recipe(SMALL), out, progress=False)
    assert a_file.read_text() == "keep me"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(pipeline.RunError, match="cannot be written"):
            pipeline.run_recipe(parse_recipe(SMALL), locked / "out", progress=False)


def _quick(path: str, **changes: object) -> dict:
    """A shipped recipe as a dict, to run for real at a fraction of its length."""
    import yaml

    recipe = yaml.safe_load((ROOT / path).read_text())
    recipe["measure"] = {"repeats": 3}
    recipe.update(changes)
    return recipe


def test_seed_regression_recipe_reports_r2_and_prunes_what_it_says(tmp_path: Path) -> None:
    recipe = _quick("recipes/seed_regression.yaml")
    recipe["train"].update(epochs=2, batch_size=100)  # 8 steps an epoch
    recipe["baseline"]["train"]["epochs"] = 10
    for variant in recipe["variants"]:
        variant["stages"][2]["train"]["epochs"] = 1
    rows = {r["name"]: r for r in pipeline.run_recipe(parse_recipe(recipe), tmp_path, progress=False)}
    assert set(rows) == {"baseline", "l1-prune-80", "l2-prune-80", "prune-80-control"}
    base = rows["baseline"]
    assert base["task"] == "regression" and base["r2"] > 0.7 and base["mse"] < 0.35
    assert math.isnan(base["accuracy"])  # not measured: a regression has no accuracy
    for name in ("l1-prune-80", "l2-prune-80", "prune-80-control"):
        assert rows[name]["sparsity"] == pytest.approx(0.8, abs=1e-3)
        assert rows[name]["r2"] > 0.2
    # the L1 penalty left the weights ready for magnitude pruning: it loses less than the control
    assert rows["l1-prune-80"]["r2"] > rows["prune-80-control"]["r2"] + 0.05
    table = (tmp_path / "report.md").read_text()
    assert "| variant | R² | Δ R² | MSE |" in table and "accuracy" not in table
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["rows"][0]["accuracy"] is None and report["rows"][0]["r2"] == base["r2"]


def test_autoencoder_recipe_reconstructs_and_both_variants_shrink(tmp_path: Path) -> None:
    import prunekit
    from prunekit.data import load_dataset

    recipe = _quick("recipes/autoencoder.yaml")
    recipe["data"]["options"] = {"n_samples": 500}  # 400 train / 100 test digits
    recipe["train"].update(batch_size=32, lr=0.003)  # 13 steps an epoch
    recipe["baseline"]["train"]["epochs"] = 4
    gradual, structured = recipe["variants"]
    gradual["stages"][0]["train"]["epochs"] = 2
    gradual["stages"][0]["train"]["prune"]["schedule"].update(end_step=13, frequency=4)
    structured["stages"][1]["train"]["epochs"] = 1
    rows = {r["name"]: r for r in pipeline.run_recipe(parse_recipe(recipe), tmp_path, progress=False)}
    base, sparse, thin = rows["baseline"], rows["magnitude-80"], rows["half-macs"]
    data = load_dataset("mnist5k", target="input", n_samples=500)
    mean_image = float(((data.x_test - data.x_train.mean(0)) ** 2).mean())
    assert base["task"] == "reconstruction" and base["mse"] < 0.5 * mean_image  # it learned
    assert base["psnr"] == pytest.approx(-10 * math.log10(base["mse"]), abs=1e-3)  # peak 1
    assert sparse["sparsity"] == pytest.approx(0.8, abs=1e-3) and sparse["mse"] < mean_image
    assert thin["macs"] <= 0.5 * base["macs"] and thin["params"] < base["params"]
    assert "| variant | PSNR dB | Δ PSNR dB | MSE |" in (tmp_path / "report.md").read_text()
    model = prunekit.load(tmp_path / "half-macs" / "model.safetensors")
    with torch.no_grad():
        error = float(((model(data.x_test) - data.x_test) ** 2).mean())
    assert error == pytest.approx(thin["mse"], rel=1e-4)  # the saved model is the measured one


USER_LOSS = '''
import torch.nn.functional as F


def huber(output, target):
    return F.huber_loss(output, target, delta=0.5)
'''


def test_recipe_losses_are_checked_against_the_task_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recipe_user_loss.py").write_text(USER_LOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    trained: list[str] = []
    real_fit = stages.fit
    monkeypatch.setattr(stages, "fit", lambda *a, **k: trained.append(k["loss"]) or real_fit(*a, **k))
    recipe = {"name": "r", "data": {"name": "seed_regression", "options": {"n_samples": 200}},
              "model": {"name": "mlp", "kwargs": {"in_features": 10, "hidden": [8], "num_classes": 1}},
              "measure": {"repeats": 2},
              "variants": [{"name": "v", "stages": [{"train": {"loss": "cross_entropy"}}]}]}
    with pytest.raises(ValueError, match=r"'seed_regression' \(regression\): loss 'cross_entropy' "
                                         r"does not fit a regression task; use one of \['mse', 'l1'\]"):
        pipeline.run_recipe(parse_recipe(recipe), tmp_path / "a", progress=False)
    recipe["variants"][0]["stages"][0]["train"]["loss"] = "recipe_user_loss:huber"
    with pytest.raises(RecipeError, match="--trust-code"):
        parse_recipe(recipe)  # refused when the recipe is read
    with pytest.raises(ValueError, match="trust_code=True"):  # and again when it is run
        pipeline.run_recipe(parse_recipe(recipe, trust_code=True), tmp_path / "b", progress=False)
    assert trained == [] and "recipe_user_loss" not in sys.modules
    rows = pipeline.run_recipe(parse_recipe(recipe, trust_code=True), tmp_path / "c",
                               progress=False, trust_code=True)
    assert trained == ["mse", "recipe_user_loss:huber"]  # the task's default, then the user's
    assert rows[1]["task"] == "regression" and "r2" in rows[1]
    monkeypatch.delitem(sys.modules, "recipe_user_loss")


def test_a_compress_stage_meets_its_budget_and_resumes(tmp_path) -> None:
    recipe = parse_recipe({
        "name": "c", "data": {"name": "digits"},
        "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [32, 16]}},
        "train": {"epochs": 1, "lr": 0.01}, "baseline": {"train": {"epochs": 3}},
        "measure": {"repeats": 3},
        "variants": [{"name": "small", "stages": [
            {"compress": {"target_params": 0.5, "max_drop": 5.0, "steps": 1}}]}],
    })
    rows = pipeline.run_recipe(recipe, tmp_path, progress=False)
    assert rows[1]["params"] <= 0.5 * rows[0]["params"]
    assert "met --target-params 0.5" in (tmp_path / "small" / "compress.md").read_text()
    again = pipeline.run_recipe(recipe, tmp_path, progress=False)
    assert again[1]["params"] == rows[1]["params"] and again[1]["accuracy"] == rows[1]["accuracy"]
