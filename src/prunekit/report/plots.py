"""Plots for a report: accuracy against sparsity, and per-layer sparsity of each variant.

Rendered with matplotlib's Agg backend to PNG bytes, so a report works on a machine without a
screen and the HTML page can embed them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Row = dict[str, Any]


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def accuracy_vs_sparsity(rows: Sequence[Row]) -> bytes:
    """Each variant as a point: how much it pruned against what it kept of accuracy."""
    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    for row in rows:
        axes.scatter(100 * row["sparsity"], 100 * row["accuracy"], s=40)
        axes.annotate(row["name"], (100 * row["sparsity"], 100 * row["accuracy"]),
                      textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.axhline(100 * rows[0]["accuracy"], color="grey", lw=0.8, ls="--", label="baseline")
    axes.set_xlabel("sparsity of prunable weights (%)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_xlim(-5, 105)
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(alpha=0.3)
    return _png(figure)


def layer_sparsity_bars(rows: Sequence[Row]) -> bytes:
    """Per-layer sparsity of every variant, grouped by layer."""
    layers = list(rows[0].get("layer_sparsity", {}))
    figure, axes = plt.subplots(figsize=(max(5.5, 0.9 * len(layers) * len(rows) / 2), 3.6))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        values = [100 * row.get("layer_sparsity", {}).get(layer, 0.0) for layer in layers]
        axes.bar([j + i * width for j in range(len(layers))], values, width, label=row["name"])
    axes.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))], layers, rotation=30,
                    ha="right", fontsize=8)
    axes.set_ylabel("zero weights (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=7, ncol=2)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)
