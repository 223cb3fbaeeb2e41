"""The command line as a user meets it: one-line errors, exit code 2, no tracebacks."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prunekit.cli import app

runner = CliRunner()


def _write(tmp_path: Path, recipe: dict) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_validate_accepts_the_demo() -> None:
    result = runner.invoke(app, ["validate", "recipes/demo.yaml"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_validate_rejects_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "t", "model": {"name": "lenet5"},
                             "variants": [{"name": "v", "stages": [{"prune": {"sparsity": 1.2}}]}]})
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "prune.sparsity = 1.2" in lines[0]
    assert "Traceback" not in result.output


def test_run_rejects_before_training(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "t"})
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "model is required" in result.output
    assert not (tmp_path / "out").exists()


def test_run_writes_report(tmp_path: Path) -> None:
    path = _write(tmp_path, {
        "name": "tiny", "data": {"name": "digits"},
        "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [16]}},
        "train": {"epochs": 2, "lr": 0.01}, "measure": {"repeats": 3},
        "variants": [{"name": "pruned", "stages": [
            {"prune": {"sparsity": 0.5, "scope": "layer"}}, {"train": {"epochs": 1}}]}],
    })
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "pruned" in result.output
    for name in ("report.json", "report.md", "report.csv", "pruned/model.safetensors",
                 "pruned/model.sparse.safetensors", "baseline/model.safetensors"):
        assert (out / name).is_file(), name


USER_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        return self.fc(torch.relu(self.c2(x)).mean(dim=(2, 3)))


def make():
    return Net()
'''


def test_prune_user_model_writes_report_and_a_model_that_loads_without_its_code(
    tmp_path: Path,
) -> None:
    import json
    import subprocess
    import sys

    source = tmp_path / "user_net.py"
    source.write_text(USER_MODEL)
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "prune", "--model", f"{source}:make", "--input-shape", "2,3,16,16", "--ratio", "0.5",
        "--criterion", "l2", "--out", str(out), "--repeats", "3", "--trust-code",
    ])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert set(rows) == {"before", "after"}
    for key in ("macs", "params", "latency_ms", "file_bytes", "dense_file_bytes", "accuracy"):
        assert key in rows["after"], key
    assert rows["after"]["macs"] < rows["before"]["macs"] / 3
    assert rows["after"]["params"] < rows["before"]["params"]
    source.unlink()  # the fresh process must not need the user's code
    check = (
        "import torch, prunekit\n"
        f"m = prunekit.load({str(out / 'model.safetensors')!r})\n"
        "print(m.c1.out_channels, tuple(m(torch.zeros(1, 3, 16, 16)).shape))\n"
    )
    fresh = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                           cwd=tmp_path, check=True)
    assert fresh.stdout.split() == ["8", "(1,", "10)"]


def test_prune_rejects_bad_input_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "prune", "--model", "lenet5", "--input-shape", "1,1,28,x", "--ratio", "0.5",
        "--out", str(tmp_path / "out"),
    ])
    assert result.exit_code == 2 and "input shape" in result.output
    assert "Traceback" not in result.output


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    return lines[0]


def test_a_recipe_that_names_code_needs_trust_code(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = _write(tmp_path, {"name": "t", "model": {"name": "os:system", "kwargs": {
        "command": f"touch {canary}"}}})  # fmt: skip
    for command in (["validate"], ["run", "-o", str(tmp_path / "o")]):
        line = _one_error_line(runner.invoke(app, [*command, str(path)]))
        assert "names Python code (module 'os')" in line and "--trust-code" in line
    assert not canary.exists()
    result = runner.invoke(app, ["validate", str(path), "--trust-code"])
    assert result.exit_code == 0 and "imports and runs Python code: os:system" in result.output
    assert not canary.exists()  # validate never imports


def test_run_into_a_file_or_a_full_disk_is_one_line(tmp_path: Path, monkeypatch) -> None:
    path = _write(tmp_path, {"name": "t", "data": {"name": "digits"},
                             "model": {"name": "mlp", "kwargs": {"in_features": 64}}})
    blocker = tmp_path / "taken"
    blocker.write_text("keep")
    line = _one_error_line(runner.invoke(app, ["run", str(path), "--out", str(blocker / "x")]))
    assert "is a file, not a folder" in line and blocker.read_text() == "keep"

    import prunekit.io

    def full_disk(target):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(prunekit.io, "_new_temporary", full_disk)
    line = _one_error_line(runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")]))
    assert "No space left on device" in line and "recipe.json" in line


SMALL_NET = '''
from prunekit.models import build_model


def classifier():
    return build_model("mlp", in_features=64, hidden=(32,))


def regressor():
    return build_model("mlp", in_features=10, hidden=(16,), num_classes=1)
'''


def _net_file(tmp_path: Path) -> Path:
    source = tmp_path / "small_net.py"
    source.write_text(SMALL_NET)
    return source


def _rows(out: Path) -> dict:
    import json

    return {r["name"]: r for r in json.loads((out / "report.json").read_text())["rows"]}


def test_prune_with_data_and_prunekits_own_sparse_weights(tmp_path: Path) -> None:
    import torch

    import prunekit
    from prunekit.data import load_dataset
    from prunekit.evaluate import evaluate_accuracy
    from prunekit.masks import strip
    from prunekit.models import build_model
    from prunekit.train import fit
    from prunekit.unstructured import prune_by_ratio

    digits = load_dataset("digits")
    torch.manual_seed(0)
    trained = build_model("mlp", in_features=64, hidden=(32,))
    fit(trained, digits.x_train, digits.y_train, epochs=2, lr=1e-2, progress=False)
    prune_by_ratio(trained, 0.5)
    strip(trained)
    weights = prunekit.save(trained.eval(), tmp_path / "w.safetensors", format="bitmask")
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "prune", "--model", f"{_net_file(tmp_path)}:classifier", "--trust-code",
        "--input-shape", "2,1,8,8", "--weights", str(weights), "--data", "digits",
        "--criterion", "taylor", "--ratio", "0.25", "--out", str(out), "--repeats", "2",
    ])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    expected = evaluate_accuracy(trained, digits.x_test, digits.y_test)["accuracy"]
    assert rows["before"]["accuracy"] == pytest.approx(expected)  # the weights were loaded
    assert rows["after"]["params"] < rows["before"]["params"] and rows["after"]["accuracy"] > 0.3
    again = tmp_path / "again"  # a pruned, saved model is pruned again from its file
    result = runner.invoke(app, [
        "prune", "--model", str(out / "model.safetensors"), "--input-shape", "2,1,8,8",
        "--data", "digits", "--ratio", "0.25", "--out", str(again), "--repeats", "2",
    ])
    assert result.exit_code == 0, result.output
    assert _rows(again)["before"]["params"] == rows["after"]["params"]


def test_prune_a_regression_reports_r2_under_its_loss(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "prune", "--model", f"{_net_file(tmp_path)}:regressor", "--trust-code",
        "--input-shape", "2,10", "--data", "seed_regression", "--loss", "l1",
        "--criterion", "taylor", "--ratio", "0.5", "--out", str(out), "--repeats", "2",
    ])
    assert result.exit_code == 0, result.output
    before, after = _rows(out)["before"], _rows(out)["after"]
    assert before["task"] == "regression" and {"r2", "mse", "mae"} <= set(before)
    assert before["loss"] == pytest.approx(before["mae"], rel=1e-5)  # measured under --loss l1
    assert after["task"] == "regression" and after["params"] < before["params"]
    assert "R²" in result.output and "accuracy" not in result.output


def test_prune_bad_weights_and_untrusted_losses_fail_in_one_line(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({"net.1.weight": torch.zeros(3, 3)}, str(wrong))
    base = ["prune", "--model", f"{_net_file(tmp_path)}:classifier", "--trust-code",
            "--input-shape", "2,1,8,8", "--ratio", "0.5", "--out", str(tmp_path / "o")]
    cases = [
        (["--weights", str(wrong)], "do not fit the model (missing"),
        (["--data", "digits", "--loss", "mse"], "loss 'mse' does not fit a classification task"),
        (["--data", "digits", "--loss", "my_pkg.losses:focal"], "--trust-code"),
        (["--loss", "l1"], "give the data set too (--data)"),
        (["--data", "digits", "--target", "labels"], "--target 'labels'"),
    ]
    for extra, message in cases:
        args = [a for a in base if a != "--trust-code"] if "my_pkg" in " ".join(extra) else base
        result = runner.invoke(app, [*args, *extra])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
