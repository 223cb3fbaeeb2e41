"""The run store: what goes in comes out, a killed writer leaves it consistent, bad files say so."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prunekit.runs.store import STORE_NAME, RunStore, StoreError, find_stores

ROWS = [
    {"name": "baseline", "accuracy": 0.9, "latency_ms": 1.0, "macs": 100, "params": 10,
     "layer_sparsity": {"fc": 0.0}},
    {"name": "pruned", "accuracy": math.nan, "latency_ms": 0.5, "macs": 50, "params": 5},
]
LAYERS = {"pruned": [{"layer": "fc", "kind": "Linear", "out_channels": 4,
                      "original_out_channels": 8, "macs": 50, "macs_share": 1.0}]}


def test_a_finished_run_reads_back_as_written(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = store.start_run("run", "demo", {"recipe": {"seed": 3}}, "f1", {"torch": "2.13"})
    store.add_event(run_id, "epoch", {"epoch": 1, "loss": 0.5})
    store.add_event(run_id, "epoch", {"epoch": 2, "loss": 0.25})
    store.finish_run(run_id, ROWS, layers=LAYERS, sensitivity=[
        {"variant": "baseline", "target": "fc", "granularity": "unstructured", "amount": 0.5,
         "metric": "accuracy", "value": 0.8}])
    run = store.run(run_id)
    assert run["status"] == "finished" and run["command"] == {"recipe": {"seed": 3}}
    assert [r["name"] for r in run["rows"]] == ["baseline", "pruned"]
    assert run["rows"][1]["accuracy"] is None  # NaN (not measured) is stored as null
    assert run["rows"][0]["layer_sparsity"] == {"fc": 0.0}
    assert run["layers"]["pruned"][0]["out_channels"] == 4
    assert run["layers"]["pruned"][0]["original_out_channels"] == 8
    assert run["sensitivity"][0]["value"] == 0.8
    events = store.events(run_id)
    assert [(e["event"], e["epoch"]) for e in events] == [("epoch", 1), ("epoch", 2)]
    assert [e["loss"] for e in store.events(run_id, after=events[0]["seq"])] == [0.25]
    with sqlite3.connect(tmp_path / STORE_NAME) as conn:  # queryable with plain SQL
        assert conn.execute("SELECT name FROM rows WHERE macs < 80").fetchall() == [("pruned",)]
    summary = store.runs()[0]
    assert (summary["rows"], summary["best_accuracy"]) == (2, 0.9)


def test_failed_and_cancelled_runs_keep_their_reason(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    failed = store.start_run("run", "a", {}, "f", {})
    store.fail_run(failed, "data set 'x' is unknown")
    cancelled = store.start_run("run", "b", {}, "f", {})
    store.fail_run(cancelled, "cancelled", cancelled=True)
    statuses = {r["title"]: (r["status"], r["error"]) for r in store.runs()}
    assert statuses == {"a": ("failed", "data set 'x' is unknown"), "b": ("cancelled", "cancelled")}


WRITER = textwrap.dedent("""
    import sys
    from prunekit.runs.store import RunStore
    store = RunStore(sys.argv[1])
    layers = {"v": [{"layer": f"l{i}", "kind": "Linear", "macs": i} for i in range(3000)]}
    rows = [{"name": f"r{i}", "accuracy": 0.5} for i in range(200)]
    print("ready", flush=True)
    while True:
        run_id = store.start_run("run", "t", {}, "f", {})
        store.finish_run(run_id, rows, layers=layers)
""")


def test_a_writer_killed_mid_transaction_leaves_the_store_consistent(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for delay in (0.7, 1.1, 1.6):
        writer = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    with sqlite3.connect(tmp_path / STORE_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = RunStore(tmp_path)
    runs = store.runs()
    statuses = {r["status"] for r in runs}
    assert "interrupted" in statuses and statuses <= {"finished", "interrupted"}
    for summary in runs:  # all of a run's results or none of them, never part
        run = store.run(summary["id"])
        expected = (200, 3000) if summary["status"] == "finished" else (0, 0)
        assert (len(run["rows"]), len(run["layers"].get("v", []))) == expected


def test_unreadable_stores_fail_in_one_line(tmp_path: Path) -> None:
    (tmp_path / STORE_NAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a readable run store"):
        RunStore(tmp_path).runs()
    newer = tmp_path / "newer"
    store = RunStore(newer)
    store.start_run("run", "t", {}, "f", {})
    with sqlite3.connect(newer / STORE_NAME) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer prunekit"):
        RunStore(newer).runs()
    with pytest.raises(StoreError, match="no run store here"):
        RunStore(tmp_path / "empty").runs()


def test_find_stores_walks_down_but_not_through_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    RunStore(outside / "secret").start_run("run", "s", {}, "f", {})
    root = tmp_path / "runs"
    for name in ("a", "b/c"):
        RunStore(root / name).start_run("run", name, {}, "f", {})
    (root / "link").symlink_to(outside, target_is_directory=True)
    found = sorted(s.directory.relative_to(root).as_posix() for s in find_stores([root]))
    assert found == ["a", "b/c"]
