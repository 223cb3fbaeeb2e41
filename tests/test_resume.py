"""Reuse only what exactly the same inputs produced, with intact files; say why otherwise."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from prunekit.resume import checkpoint_for, file_digest, fingerprint, finished_row, record_row


def _finished(tmp_path: Path) -> Path:
    directory = tmp_path / "v"
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"weights" * 100)
    record_row(directory, {"name": "v", "accuracy": 0.5, "fingerprint": "abc"})
    return directory


def test_an_intact_row_of_the_same_fingerprint_is_reused(tmp_path: Path) -> None:
    directory = _finished(tmp_path)
    row = finished_row(directory, "abc", "v")
    assert row is not None and row["accuracy"] == 0.5
    assert row["artefacts"] == {"model.safetensors": file_digest(directory / "model.safetensors")}


def test_every_reason_not_to_reuse_is_one_notice(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    cases = {
        "other settings": lambda d: "xyz",
        "garbage row": lambda d: (d / "row.json").write_text("{not json") and "abc",
        "row not a mapping": lambda d: (d / "row.json").write_text("[1, 2]") and "abc",
        "truncated model": lambda d: (d / "model.safetensors").write_bytes(b"weig") and "abc",
        "missing model": lambda d: (d / "model.safetensors").unlink() or "abc",
    }
    for case, damage in cases.items():
        directory = _finished(tmp_path / case.replace(" ", "_"))
        caplog.clear()
        assert finished_row(directory, damage(directory), "v") is None, case
        assert len(caplog.records) == 1 and "recomputing" in caplog.records[0].getMessage(), case
        assert not (directory / "row.json").exists(), case  # never found again


def test_a_checkpoint_of_other_settings_or_damaged_is_not_resumed(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    state = {"model": {}, "optimizer": {}, "next_epoch": 3, "generator": torch.Generator().get_state()}
    torch.save(state, tmp_path / "checkpoint-old.pt")
    torch.save(state, tmp_path / "checkpoint.pt")  # what prunekit before fingerprints wrote
    path = checkpoint_for(tmp_path, "new", "baseline")
    assert path.name == "checkpoint-new.pt" and list(tmp_path.iterdir()) == []
    torch.save(state, path)
    assert checkpoint_for(tmp_path, "new", "baseline").is_file()  # the right one is kept
    path.write_bytes(path.read_bytes()[:50])  # a full disk cut it short
    assert not checkpoint_for(tmp_path, "new", "baseline").exists()
    assert sum("training afresh" in r.getMessage() for r in caplog.records) == 3


def test_fingerprints_see_every_part() -> None:
    base = fingerprint({"lr": 0.1}, "data", 0)
    assert base != fingerprint({"lr": 0.1}, "data", 1) != fingerprint({"lr": 0.2}, "data", 0)
    assert json.loads(json.dumps(base)) == base and len(base) == 16
