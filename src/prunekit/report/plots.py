"""Plots for a report: accuracy against each cost, per-layer sparsity and channels kept, and
what a run cost when it measured no accuracy.

Rendered with matplotlib's Agg backend to PNG bytes, so a report works on a machine without a
screen and the HTML page can embed them. Every plot places a variant by what it really
removed: a structured variant's pruned weights are gone rather than zero, so the x axis of the
accuracy plot is "weights removed or zero" against the baseline, not the sparsity of what is
left (which reads 0 % for a model made genuinely smaller).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from prunekit.report.table import _measured as measured
from prunekit.tasks import headline as task_headline

Row = dict[str, Any]

COSTS: list[tuple[str, Callable[[Row, Row], float]]] = [
    ("latency ms (p50)", lambda r, b: r["latency_ms"]),
    ("file size KB", lambda r, b: r["file_bytes"] / 1024),
    ("MACs", lambda r, b: r["macs"]),
    ("weights removed or zero, % of baseline", lambda r, b: 100 * removed_or_zero(r, b)),
]
"""The x axes of :func:`accuracy_vs_costs`: one panel per way a variant can be cheaper."""

AXIS_LABELS = {"classification": "test accuracy (%)", "multilabel": "label accuracy (%)",
               "regression": "test R²", "reconstruction": "test PSNR (dB)"}
"""The y-axis label of each task's headline metric (:func:`prunekit.tasks.headline`)."""


def headline(rows: Sequence[Row]) -> tuple[str, float, str]:
    """Key, scale and axis label of the metric the rows' task is judged by (rows without a
    ``task`` are classification).

    >>> headline([{"task": "regression"}])
    ('r2', 1.0, 'test R²')
    """
    task = rows[0].get("task") or "classification"
    metric, scale, _ = task_headline(task)
    return metric, scale, AXIS_LABELS[task]


def removed_or_zero(row: Row, base: Row) -> float:
    """Fraction of the baseline's parameters that ``row`` removed or holds at zero.

    >>> removed_or_zero({"nonzero_params": 25}, {"params": 100})
    0.75
    """
    return 1.0 - row["nonzero_params"] / base["params"] if base["params"] else math.nan


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both counts (lower cost x, higher accuracy y).

    >>> pareto_front([(1, 0.9), (2, 0.95), (3, 0.93), (0.5, 0.5)])
    [(0.5, 0.5), (1, 0.9), (2, 0.95)]
    """
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def accuracy_vs_costs(rows: Sequence[Row]) -> bytes:
    """The task's headline metric (accuracy, R², PSNR) against latency, file size, MACs and
    weights removed: each variant a point, the dense baseline (first row) a black diamond, the
    Pareto front a dashed staircase."""
    base = rows[0]
    key, scale, metric_label = headline(rows)
    figure, panels = plt.subplots(2, 2, figsize=(10, 7))
    for axes, (label, cost) in zip(panels.flat, COSTS):
        points = [(cost(r, base), scale * r[key], r["name"]) for r in rows
                  if measured(r.get(key))]
        for i, (x, y, name) in enumerate(points):
            if i == 0:
                axes.scatter(x, y, marker="D", s=60, color="black", zorder=3, label="dense baseline")
            else:
                axes.scatter(x, y, s=40, zorder=3)
            axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        front = pareto_front([(x, y) for x, y, _ in points])
        if len(front) > 1:
            axes.step(*zip(*front), where="post", color="grey", lw=0.9, ls="--",
                      label="Pareto front")
        if measured(base.get(key)):
            axes.axhline(scale * base[key], color="black", lw=0.6, ls=":")
        axes.set_xlabel(label)
        axes.set_ylabel(metric_label)
        axes.grid(alpha=0.3)
    panels.flat[0].legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return _png(figure)


def cost_bars(rows: Sequence[Row]) -> bytes:
    """MACs, parameters, latency and file size of each row against the first: the plot for a
    run that measured no accuracy (``prunekit prune`` without ``--data``)."""
    measures = [("MACs", "macs"), ("parameters", "params"), ("latency p50", "latency_ms"),
                ("latency p95", "latency_p95_ms"), ("file size", "file_bytes")]
    measures = [(label, key) for label, key in measures if all(measured(r.get(key)) for r in rows)]
    base = rows[0]
    figure, axes = plt.subplots(figsize=(6.5, 3.6))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        values = [row[key] / base[key] if base[key] else math.nan for _, key in measures]
        xs = [j + i * width for j in range(len(measures))]
        axes.bar(xs, values, width, label=row["name"])
        for x, v in zip(xs, values):
            axes.annotate(f"{v:.2f}×", (x, v), ha="center", va="bottom", fontsize=7)
    axes.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(measures))],
                    [label for label, _ in measures], fontsize=8)
    axes.set_ylabel(f"against {base['name']} (×)")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def _layer_bars(rows: Sequence[Row], layers: list[str], value: Callable[[Row, str], float],
                ylabel: str) -> bytes:
    figure, axes = plt.subplots(figsize=(max(5.5, 0.45 * len(layers) * len(rows)), 3.6))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        axes.bar([j + i * width for j in range(len(layers))],
                 [value(row, layer) for layer in layers], width, label=row["name"])
    axes.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(layers))], layers,
                    rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, 105)
    axes.legend(fontsize=7, ncol=2, loc="best", framealpha=0.9)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def layer_sparsity_bars(rows: Sequence[Row]) -> bytes:
    """Per-layer sparsity of every variant, grouped by layer."""
    layers = list(rows[0].get("layer_sparsity", {}))
    return _layer_bars(rows, layers,
                       lambda row, layer: 100 * row.get("layer_sparsity", {}).get(layer, math.nan),
                       "zero weights (%)")


def channels_kept_bars(rows: Sequence[Row]) -> bytes:
    """Per layer, the share of the baseline's output channels (neurons, filters, hidden units)
    each variant kept; the rows' ``layers`` come from :func:`prunekit.runs.layers.layer_table`."""
    def kept(row: Row, layer: str) -> float:
        entry = next((e for e in row.get("layers", []) if e["layer"] == layer), None)
        if entry is None or not entry.get("original_out_channels"):
            return math.nan
        return 100 * entry["out_channels"] / entry["original_out_channels"]

    layers = [e["layer"] for e in rows[0].get("layers", []) if e.get("out_channels")]
    return _layer_bars(rows, layers, kept, "output channels kept (%)")
