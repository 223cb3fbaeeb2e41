import csv
import json
from pathlib import Path

import pytest

from prunekit.report import markdown_table, write_report


def _row(name: str, **kw) -> dict:
    row = {"name": name, "accuracy": 0.98, "loss": 0.1, "latency_ms": 2.0, "params": 1000,
           "nonzero_params": 1000, "sparsity": 0.0, "macs": 5000, "file_bytes": 4000,
           "dense_file_bytes": 4000, "layer_sparsity": {"fc": 0.0}}
    row.update(kw)
    return row


def test_table_compares_with_the_baseline() -> None:
    rows = [_row("baseline"), _row("pruned", accuracy=0.975, latency_ms=1.0, file_bytes=500)]
    table = markdown_table(rows)
    pruned = table.splitlines()[3]
    assert "| pruned | 97.50 | -0.50 | 1.000 | 2.00× |" in pruned
    assert pruned.endswith("| 0.125× |")


def test_write_report_files(tmp_path: Path) -> None:
    rows = [_row("baseline"), _row("v", sparsity=0.9)]
    paths = write_report(rows, tmp_path, title="t", meta={"seed": 1})
    doc = json.loads(paths["json"].read_text())
    assert doc["rows"][1]["sparsity"] == 0.9 and doc["seed"] == 1
    assert paths["md"].read_text().startswith("# t\n")
    with open(paths["csv"]) as f:
        records = list(csv.DictReader(f))
    assert [r["name"] for r in records] == ["baseline", "v"]
    assert "layer_sparsity" not in records[0]
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "<td>v</td>" in page


def test_empty_report_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one row"):
        write_report([], tmp_path, title="t")


def test_backend_columns_appear_only_when_measured() -> None:
    plain = markdown_table([_row("baseline")])
    assert "sparse-kernel ms" not in plain and "onnxruntime ms" not in plain
    rows = [_row("baseline"), _row("sparse", sparse_latency_ms=0.5, onnx_latency_ms=1.5)]
    table = markdown_table(rows)
    assert "sparse-kernel ms | sparse speed-up | onnxruntime ms" in table
    assert table.splitlines()[3].endswith("| 0.500 | 4.00× | 1.500 |")
    assert table.splitlines()[2].endswith("| — | — | — |")
    kept_dense = _row("dense", sparse_layers=0)
    assert "| — | all dense |" in markdown_table([*rows, kept_dense])


def test_unmeasured_accuracy_is_a_dash_and_json_null(tmp_path: Path) -> None:
    rows = [_row("before", accuracy=float("nan")), _row("after", accuracy=float("nan"))]
    assert "| after | — | — |" in markdown_table(rows)
    paths = write_report(rows, tmp_path, title="t")
    assert json.loads(paths["json"].read_text())["rows"][1]["accuracy"] is None


def test_the_four_files_are_replaced_as_a_set(tmp_path: Path, monkeypatch) -> None:
    """A failure while rendering or writing any of them leaves the previous report whole."""
    from prunekit.report import html

    write_report([_row("baseline")], tmp_path, title="old")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["report.csv", "report.html", "report.json", "report.md"]

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(html, "render_html", broken)
    with pytest.raises(OSError):
        write_report([_row("baseline", accuracy=0.5)], tmp_path, title="new")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
