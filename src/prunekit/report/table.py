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


def _metric(key: str, scale: float, digits: int) -> Callable[[Row, Row], str]:
    """A metric's cell: ``row[key] × scale`` with ``digits`` decimals, "—" if not measured."""

    def cell(row: Row, base: Row) -> str:
        value = row.get(key)
        if not _measured(value):
            return "—"
        return "∞" if math.isinf(value) else f"{scale * value:.{digits}f}"

    return cell


def _delta(key: str, scale: float, digits: int) -> Callable[[Row, Row], str]:
    """The change of ``row[key]`` from the baseline's, signed; "—" if either is not finite."""

    def cell(row: Row, base: Row) -> str:
        value, reference = row.get(key), base.get(key)
        if not (_measured(value) and _measured(reference)):
            return "—"
        if math.isinf(value) or math.isinf(reference):
            return "—"
        return f"{scale * (value - reference):+.{digits}f}"

    return cell


METRIC_COLUMNS: dict[str, list[tuple[str, Callable[[Row, Row], str]]]] = {
    "classification": [("accuracy %", _metric("accuracy", 100, 2)),
                       ("Δ acc (pt)", _delta("accuracy", 100, 2))],
    "multilabel": [("label accuracy %", _metric("accuracy", 100, 2)),
                   ("Δ acc (pt)", _delta("accuracy", 100, 2)),
                   ("loss", _metric("loss", 1, 4))],
    "regression": [("R²", _metric("r2", 1, 4)), ("Δ R²", _delta("r2", 1, 4)),
                   ("MSE", _metric("mse", 1, 4))],
    "reconstruction": [("PSNR dB", _metric("psnr", 1, 2)), ("Δ PSNR dB", _delta("psnr", 1, 2)),
                       ("MSE", _metric("mse", 1, 5))],
}
"""The quality columns of each task (:mod:`prunekit.tasks`), headline metric first; rows
without a ``task`` (older reports) are classification."""


def _json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON: what was not measured (or is infinite) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _ratio(ratio: float, row: Row) -> str:
    """``ratio`` as ``1.87×``, marked "within noise" when the row's measured band holds it
    (see :class:`prunekit.latency.NoiseBand`)."""
    from prunekit.latency import NoiseBand

    band = row.get("noise_band")
    inside = (band is not None and math.isfinite(ratio) and ratio > 0
              and NoiseBand(band, 1.0, 0, 0.0).contains(ratio))
    return f"{ratio:.2f}× (within noise)" if inside else f"{ratio:.2f}×"


def _speedup(row: Row, base: Row) -> str:
    if not row["latency_ms"] > 0:
        return "—"
    return _ratio(base["latency_ms"] / row["latency_ms"], row)


COLUMNS: list[tuple[str, Callable[[Row, Row], str]]] = [
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
    return _ratio(base["latency_ms"] / row["sparse_latency_ms"], row)


OPTIONAL_COLUMNS: list[tuple[str, str, Callable[[Row, Row], str]]] = [
    ("sparse_latency_ms", "sparse-kernel ms", _ms("sparse_latency_ms")),
    ("sparse_latency_ms", "sparse speed-up", _sparse_speedup),
    ("onnx_latency_ms", "onnxruntime ms", _ms("onnx_latency_ms")),
    ("noise_band", "noise band", lambda r, b: f"±{100 * r['noise_band']:.1f} %"
     if r.get("noise_band") is not None else "—"),
]
"""Columns shown only when some row has their key (extra latency backends)."""


def cells(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells, each row compared with the first (the baseline)."""
    base = rows[0]
    task = base.get("task", "classification")
    columns = [("variant", lambda r, b: str(r["name"])), *METRIC_COLUMNS[task], *COLUMNS] + [
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
