"""``prunekit run --nproc 2``: torchrun's workers run the recipe together, rank 0 alone writes
and prints, and what they trained is reused by a later run of any size."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prunekit import pipeline
from prunekit.cli import app
from prunekit.recipe import load_recipe

RECIPE = {
    "name": "two-ranks", "seed": 0, "data": {"name": "digits"},
    "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [48]}},
    "train": {"epochs": 2, "lr": 0.01, "batch_size": 64}, "measure": {"repeats": 3},
    "variants": [
        {"name": "gradual", "stages": [{"train": {"epochs": 1, "prune": {"schedule": {
            "kind": "agp", "initial_sparsity": 0.0, "final_sparsity": 0.8, "begin_step": 0,
            "end_step": 20, "frequency": 5}}}}]},
        {"name": "narrow", "stages": [{"structured": {"ratio": 0.25}}, {"train": {"epochs": 1}}]},
        {"name": "rounds", "stages": [{"iterative": {"final_sparsity": 0.75, "rounds": 2,
                                                     "train": {"epochs": 1}}}]},
        {"name": "taught", "stages": [{"prune": {"sparsity": 0.6}},
                                      {"train": {"epochs": 1, "distill": True}}]},
    ],
}


@pytest.mark.slow
def test_nproc_2_runs_the_recipe_once_and_a_single_process_reuses_it(tmp_path: Path) -> None:
    recipe, out = tmp_path / "r.yaml", tmp_path / "out"
    recipe.write_text(yaml.safe_dump(RECIPE))
    done = subprocess.run(
        [sys.executable, "-m", "prunekit", "run", str(recipe), "--out", str(out), "--nproc", "2",
         "--quiet"], check=False, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("report:") == 1  # rank 0 alone prints
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2
    rows = {row["name"]: row for row in report["rows"]}
    assert [row["world_size"] for row in rows.values()] == [2] * 5
    assert rows["gradual"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert rows["rounds"]["sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert rows["taught"]["sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert rows["narrow"]["params"] < rows["baseline"]["params"]
    assert rows["baseline"]["accuracy"] > 0.85
    with sqlite3.connect(out / "runs.sqlite") as db:  # one run recorded, by one writer
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 1

    again = pipeline.run_recipe(load_recipe(recipe), out, progress=False)  # one process
    for row in again:  # same fingerprints: reused, with the world size that trained it
        assert row["world_size"] == 2
        assert row["accuracy"] == rows[row["name"]]["accuracy"]


def test_nproc_under_torchrun_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["run", str(recipe), "--nproc", "2"])
    assert result.exit_code == 2
    assert "drop it when launching with torchrun" in result.output
    assert result.output.count("\n") == 1
