"""Recording a run: one call or a context; failures, cancels and a broken store are all said."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from prunekit.data import load_dataset
from prunekit.models import build_model
from prunekit.runs import RunStore, record_run, recording
from prunekit.train import fit


def test_record_run_in_one_call(tmp_path: Path) -> None:
    rows = [{"name": "before", "macs": 10}, {"name": "after", "macs": 4}]
    run_id = record_run(tmp_path, "prune", {"ratio": 0.5}, "abc", rows, title="lenet5",
                        layers={"after": [{"layer": "fc", "macs": 4}]})
    run = RunStore(tmp_path).run(run_id)
    assert (run["kind"], run["title"], run["status"], run["fingerprint"]) == ("prune", "lenet5", "finished", "abc")
    assert [r["macs"] for r in run["rows"]] == [10, 4] and run["layers"]["after"][0]["macs"] == 4
    assert {"torch", "cpu", "threads", "cpu_flags"} <= set(run["environment"])


@pytest.mark.parametrize(("raised", "status", "error"), [
    (ValueError("lr = -1: must be > 0\nsecond line"), "failed", "lr = -1: must be > 0"),
    (KeyboardInterrupt(), "cancelled", "cancelled"),
])
def test_an_interrupted_body_marks_the_run(tmp_path: Path, raised: BaseException, status: str,
                                           error: str) -> None:
    with pytest.raises(type(raised)), recording(tmp_path, "run", {}, fingerprint="f", title="t"):
        raise raised
    (summary,) = RunStore(tmp_path).runs()
    assert (summary["status"], summary["error"]) == (status, error)


def test_a_body_that_never_finishes_is_not_reported_finished(tmp_path: Path) -> None:
    with recording(tmp_path, "run", {}, fingerprint="f", title="t"):
        pass
    assert RunStore(tmp_path).runs()[0]["status"] == "failed"


def test_an_unwritable_store_warns_and_the_run_goes_on(tmp_path: Path, caplog) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the run folder should be")
    ran = []
    with caplog.at_level(logging.WARNING, logger="prunekit.runs.record"):
        assert record_run(blocked, "prune", {}, "f", [{"name": "x"}]) is None
        with recording(blocked, "run", {}, fingerprint="f", title="t") as run:
            run.event("stage", variant="v")
            ran.append(True)
            run.finish([{"name": "x"}])
    assert ran == [True]
    assert "cannot record this run" in caplog.text


def test_training_progress_reports_every_epoch_with_its_loss(tmp_path: Path) -> None:
    data = load_dataset("digits")
    model = build_model("mlp", in_features=64, hidden=(16,))
    with recording(tmp_path, "run", {}, fingerprint="f", title="t") as run:
        history = fit(model, data.x_train, data.y_train, epochs=3, progress=False,
                      callbacks=[run.training("baseline", epochs=3, steps=3 * 23)])
        run.finish([{"name": "baseline"}])
    events = RunStore(tmp_path).events(run.run_id)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert [e["loss"] for e in epochs] == pytest.approx([e["loss"] for e in history.epochs])
    assert events[0]["event"] == "train" and events[0]["steps"] == 69
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == sorted(steps) and all(1 <= s <= 69 for s in steps)
