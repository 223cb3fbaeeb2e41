"""One real tiny run (digits, an MLP, an unstructured and a structured variant) and a dashboard
serving it, shared by the dashboard's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import prunekit
from prunekit.dashboard import Dashboard
from prunekit.data import load_dataset
from prunekit.pipeline import run_recipe
from prunekit.recipe import parse_recipe
from prunekit.structured.before_after import prune_and_measure

TINY = {
    "name": "tiny digits", "data": {"name": "digits"},
    "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [32, 16]}},
    "train": {"epochs": 4, "lr": 0.01}, "measure": {"repeats": 5},
    "variants": [
        {"name": "half", "stages": [{"prune": {"sparsity": 0.5}}, {"train": {"epochs": 1}}]},
        {"name": "thin", "stages": [{"structured": {"ratio": 0.5, "latency_aware": False}},
                                    {"train": {"epochs": 1}}]},
    ],
}


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/tiny`` (a recipe run) and ``runs/pruned`` (its baseline through ``prunekit prune``)."""
    root = tmp_path_factory.mktemp("runs")
    run_recipe(parse_recipe(TINY), root / "tiny", progress=False)
    data = load_dataset("digits")
    baseline = prunekit.load(root / "tiny" / "baseline" / "model.safetensors")
    prune_and_measure(baseline, data.x_test[:1], root / "pruned", dataset=data, repeats=3,
                      ratio=0.25, title="digits structured pruning")
    return root


@pytest.fixture(scope="session")
def board(runs_root: Path) -> Iterator[Dashboard]:
    dashboard = Dashboard([runs_root], port=0).start()
    yield dashboard
    dashboard.close()


@pytest.fixture(scope="session")
def run_id(board: Dashboard) -> str:
    return next(r["id"] for r in board.workspace.runs() if r.get("title") == "tiny digits")
