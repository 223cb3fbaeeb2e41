"""Launching from the page refuses, before starting anything, what the dashboard must not run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prunekit.dashboard.jobs import Jobs, LaunchError, parse_launch

RECIPE = {"name": "t", "data": {"name": "digits"},
          "model": {"name": "mlp", "kwargs": {"in_features": 64}}}


def text(**changes) -> str:
    return yaml.safe_dump({**RECIPE, **changes})


def test_a_zoo_recipe_inside_the_roots_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "data.npz").write_bytes(b"")
    recipe = parse_launch(text(data={"name": "npz", "path": str(tmp_path / "data.npz")}), [tmp_path])
    assert recipe.name == "t"


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": {"name": "evil.py:make"}}, "dashboard runs zoo models"),
    ({"model": {"name": "os:system", "kwargs": {"command": "touch /tmp/pwned"}}}, "dashboard runs zoo models"),
    ({"data": {"name": "npz", "path": "/etc/data.npz"}}, "outside the run directories"),
    ({"baseline": {"load": "../weights.safetensors"}}, "outside the run directories"),
    ({"train": {"epochs": -1}}, "train.epochs"),
])
def test_refusals_name_the_reason(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        parse_launch(text(**changes), [tmp_path])


def test_bad_text_names_and_places_fail_before_anything_starts(tmp_path: Path) -> None:
    jobs = Jobs([tmp_path])
    with pytest.raises(LaunchError, match="not valid YAML at line 2"):
        jobs.launch("name: t\n  bad: [", "run1")
    with pytest.raises(LaunchError, match="over 256 KB"):
        jobs.launch("#" * 300_000, "run1")
    for name in ("../up", ".hidden", "a/b", ""):
        with pytest.raises(LaunchError, match="run name"):
            jobs.launch(text(), name)
    (tmp_path / "taken").mkdir()
    with pytest.raises(LaunchError, match="exists already"):
        jobs.launch(text(), "taken")
    with pytest.raises(LaunchError, match="no run directory number 3"):
        jobs.launch(text(), "fresh", root=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and jobs.states() == []
