"""Turn measurement rows into ``report.json``, ``report.md`` and ``report.csv``.

Ratios (speed-up, compression) are taken against the first row, the baseline, because a
compression result only means something next to the model it started from.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prunekit.io import write_texts_atomic

Row = dict[str, Any]


def _kb(n: float) -> str:
    return f"{n / 1024:,.1f}"


def _measured(value: Any) -> bool:
    """False for what was not measured: None, or NaN (accuracy without data)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _accuracy(row: Row, base: Row) -> str:
    return f"{100 * row['accuracy']:.2f}" if _measured(row["accuracy"]) else "—"


def _accuracy_delta(row: Row, base: Row) -> str:
    if not (_measured(row["accuracy"]) and _measured(base["accuracy"])):
        return "—"
    return f"{100 * (row['accuracy'] - base['accuracy']):+.2f}"


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: what was not measured becomes null."""
    if isinstance(value, float) and not _measured(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _speedup(row: Row, base: Row) -> str:
    return f"{base['latency_ms'] / row['latency_ms']:.2f}×" if row["latency_ms"] > 0 else "—"


COLUMNS: list[tuple[str, Callable[[Row, Row], str]]] = [
    ("variant", lambda r, b: str(r["name"])),
    ("accuracy %", _accuracy),
    ("Δ acc (pt)", _accuracy_delta),
    ("latency ms (p50)", lambda r, b: f"{r['latency_ms']:.3f}"),
    ("speed-up", _speedup),
    ("params", lambda r, b: f"{r['params']:,}"),
    ("non-zero", lambda r, b: f"{r['nonzero_params']:,}"),
    ("sparsity %", lambda r, b: f"{100 * r['sparsity']:.1f}"),
    ("MACs", lambda r, b: f"{r['macs']:,}"),
    ("file KB", lambda r, b: _kb(r["file_bytes"])),
    ("size vs dense", lambda r, b: f"{r['file_bytes'] / b['dense_file_bytes']:.3f}×"),
]


def _ms(key: str) -> Callable[[Row, Row], str]:
    return lambda r, b: f"{r[key]:.3f}" if r.get(key) is not None else "—"


def _sparse_speedup(row: Row, base: Row) -> str:
    if row.get("sparse_layers") == 0:
        return "all dense"  # deploy found no layer faster sparse: the model runs as it is
    if row.get("sparse_latency_ms") is None:
        return "—"
    return f"{base['latency_ms'] / row['sparse_latency_ms']:.2f}×"


OPTIONAL_COLUMNS: list[tuple[str, str, Callable[[Row, Row], str]]] = [
    ("sparse_latency_ms", "sparse-kernel ms", _ms("sparse_latency_ms")),
    ("sparse_latency_ms", "sparse speed-up", _sparse_speedup),
    ("onnx_latency_ms", "onnxruntime ms", _ms("onnx_latency_ms")),
]
"""Columns shown only when some row has their key (extra latency backends)."""


def cells(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells, each row compared with the first (the baseline)."""
    base = rows[0]
    columns = COLUMNS + [
        (header, fmt) for key, header, fmt in OPTIONAL_COLUMNS if any(key in r for r in rows)
    ]
    return [c[0] for c in columns], [[fmt(r, base) for _, fmt in columns] for r in rows]


def markdown_table(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured Markdown table of the rows.

    >>> row = dict(name="a", accuracy=0.9, latency_ms=1.0, params=10, nonzero_params=5,
    ...            sparsity=0.5, macs=100, file_bytes=2048, dense_file_bytes=4096)
    >>> markdown_table([row]).splitlines()[2].startswith("| a | 90.00 |")
    True
    """
    header, body = cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def write_report(
    rows: Sequence[Row], out_dir: str | Path, *, title: str, meta: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write report.json, .md, .csv and a self-contained report.html as one set; return paths.

    All four are rendered first and replace the old ones only once every file is written, so a
    failure (an unrenderable value, a full disk) leaves the previous report whole, never a new
    Markdown table beside an old JSON.
    """
    from prunekit.report.html import render_html

    if not rows:
        raise ValueError("a report needs at least one row (the baseline)")
    out = Path(out_dir)
    paths = {
        "json": out / "report.json",
        "md": out / "report.md",
        "csv": out / "report.csv",
        "html": out / "report.html",
    }
    document = {"title": title, "rows": list(rows), **(meta or {})}
    text = json.dumps(_json_safe(document), indent=2, default=str, allow_nan=False)
    flat_keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=flat_keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_texts_atomic({
        paths["json"]: text + "\n",
        paths["md"]: f"# {title}\n\n{markdown_table(rows)}",
        paths["csv"]: buffer.getvalue(),
        paths["html"]: render_html(rows, title),
    })  # fmt: skip
    return paths
