"""The command line as a user meets it: one-line errors, exit code 2, no tracebacks."""

from pathlib import Path

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
