"""One self-contained HTML page per run: the comparison table and the plots, inline.

No external scripts, styles or images: the file can be mailed or archived and still opens.
The page shows every column of the table plus the 95th-percentile latency, accuracy against
each cost (latency, size, MACs, weights removed) with the baseline and the Pareto front
marked, per-layer sparsity and channels kept; a run that measured no accuracy shows what each
row cost against the first instead of an empty accuracy plot.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from prunekit.report.plots import (
    accuracy_vs_costs,
    channels_kept_bars,
    cost_bars,
    headline,
    layer_sparsity_bars,
)
from prunekit.report.table import _measured, cells

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:80rem}
table{border-collapse:collapse;font-size:.9rem}th,td{padding:.3rem .6rem;border-bottom:1px solid #ddd}
td{text-align:right;font-variant-numeric:tabular-nums}td:first-child,th:first-child{text-align:left}
th{background:#f4f4f4}figure{display:inline-block;margin:1rem 1rem 0 0}img{max-width:100%}
"""


def _img(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def table_cells(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The report's header and cells, with the p95 latency beside the median when measured."""
    header, body = cells(rows)
    if not any(_measured(r.get("latency_p95_ms")) for r in rows):
        return header, body
    at = header.index("latency ms (p50)") + 1
    header.insert(at, "latency ms (p95)")
    for line, row in zip(body, rows):
        p95 = row.get("latency_p95_ms")
        line.insert(at, f"{p95:.3f}" if _measured(p95) else "—")
    return header, body


def _figures(rows: Sequence[dict[str, Any]]) -> str:
    key, _, label = headline(rows)
    name = label.removeprefix("test ").split(" (")[0]  # "accuracy", "R²", "PSNR"
    if any(_measured(r.get(key)) for r in rows):
        figures = _img(accuracy_vs_costs(rows), f"{name} against latency, file size, MACs and "
                       "weights removed (◆ dense baseline, dashed: Pareto front)")
    else:
        figures = _img(cost_bars(rows), f"cost against {rows[0]['name']} ({key} not measured)")
    if rows[0].get("layer_sparsity"):
        figures += _img(layer_sparsity_bars(rows), "per-layer sparsity")
    if any(e.get("out_channels") != e.get("original_out_channels")
           for r in rows for e in r.get("layers", [])):  # only when some layer was shrunk
        figures += _img(channels_kept_bars(rows), "output channels kept, % of the baseline's")
    return figures


def render_html(rows: Sequence[dict[str, Any]], title: str) -> str:
    """The report page as a string.

    >>> row = dict(name="a", accuracy=0.9, latency_ms=1.0, latency_p95_ms=1.5, params=10,
    ...            nonzero_params=5, sparsity=0.5, macs=100, file_bytes=2048,
    ...            dense_file_bytes=4096, layer_sparsity={"fc": 0.5})
    >>> page = render_html([row], "t")
    >>> "<td>a</td>" in page, "<td>1.500</td>" in page
    (True, True)
    """
    header, body = table_cells(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"
        f"{_figures(rows)}</body></html>\n"
    )
