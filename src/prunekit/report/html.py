"""One self-contained HTML page per run: the comparison table and the plots, inline.

No external scripts, styles or images: the file can be mailed or archived and still opens.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from prunekit.report.plots import accuracy_vs_sparsity, layer_sparsity_bars
from prunekit.report.table import cells

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


def render_html(rows: Sequence[dict[str, Any]], title: str) -> str:
    """The report page as a string.

    >>> row = dict(name="a", accuracy=0.9, latency_ms=1.0, params=10, nonzero_params=5,
    ...            sparsity=0.5, macs=100, file_bytes=2048, dense_file_bytes=4096,
    ...            layer_sparsity={"fc": 0.5})
    >>> "<td>a</td>" in render_html([row], "t")
    True
    """
    header, body = cells(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body
    )
    figures = _img(accuracy_vs_sparsity(rows), "accuracy against sparsity")
    if rows[0].get("layer_sparsity"):
        figures += _img(layer_sparsity_bars(rows), "per-layer sparsity")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"
        f"{figures}</body></html>\n"
    )
