"""prunekit sensitivity / compress as a user meets them: files, run store, exit codes 0, 2, 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunekit.cli import app
from prunekit.runs import RunStore

runner = CliRunner()
MLP = ["--model", "mlp", "--model-kwargs", '{"in_features": 64, "hidden": [32, 16]}',
       "--data", "digits", "--baseline-epochs", "2"]


def test_sensitivity_writes_table_plot_store_and_reuses_its_cache(tmp_path: Path) -> None:
    args = ["sensitivity", *MLP, "--out", str(tmp_path), "--amounts", "0.5,0.9"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| net.1 | 32 |" in (tmp_path / "sensitivity.md").read_text()
    assert (tmp_path / "sensitivity-structured.png").read_bytes()[:4] == b"\x89PNG"
    store = RunStore(tmp_path)
    run = store.run(store.runs()[0]["id"])
    assert {(p["target"], p["amount"]) for p in run["sensitivity"]} == {
        (t, a) for t in ("net.1", "net.3") for a in (0.5, 0.9)}
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "(cached)" in again.output


def test_compress_meets_a_budget_and_writes_the_path(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compress", *MLP, "--out", str(tmp_path), "--target-params",
                                 "0.5", "--max-accuracy-drop", "5", "--steps", "1",
                                 "--no-uniform"])
    assert result.exit_code == 0, result.output
    assert "met --target-params 0.5 within 5 pt" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["dense", "step 1"]
    assert report["rows"][1]["params"] <= 0.5 * report["rows"][0]["params"]
    assert "| step 1 |" in (tmp_path / "compress.md").read_text()
    assert (tmp_path / "model.safetensors").is_file()


def test_an_impossible_budget_is_one_line_and_exit_3(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compress", *MLP, "--out", str(tmp_path), "--target-macs",
                                 "0.01", "--max-accuracy-drop", "0", "--steps", "1",
                                 "--epochs", "0", "--no-uniform"])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("could not")]
    assert len(lines) == 1 and "--target-macs 0.01 within 0 pt" in lines[0]
    assert "Traceback" not in result.output and (tmp_path / "report.json").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (["--target-macs", "0.5", "--target-params", "0.5", "--max-accuracy-drop", "1"],
     "exactly one budget"),
    (["--target-macs", "0.5"], "one quality bound"),
    (["--target-macs", "1.5", "--max-accuracy-drop", "1"], r"in \(0, 1\)"),
    (["--target-macs", "0.5", "--max-accuracy-drop", "1", "--model-kwargs", "[1]"],
     "JSON object"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, extra: list, message: str) -> None:
    result = runner.invoke(app, ["compress", "--model", "mlp", "--data", "digits", "--out",
                                 str(tmp_path), *extra])
    assert result.exit_code == 2, result.output
    assert pytest.importorskip("re").search(message, result.output)
    assert "Traceback" not in result.output


def test_user_code_needs_trust(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text("from torch import nn\ndef make():\n    return nn.Linear(64, 10)\n")
    result = runner.invoke(app, ["compress", "--model", f"{tmp_path / 'net.py'}:make", "--data",
                                 "digits", "--out", str(tmp_path / "o"), "--target-macs", "0.5",
                                 "--max-accuracy-drop", "1"])
    assert result.exit_code == 2 and "--trust-code" in result.output
