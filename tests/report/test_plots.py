"""Report plots: the Pareto front is right, structured variants sit where they removed weights."""

from __future__ import annotations

import random

import pytest

from prunekit.report.plots import (
    accuracy_vs_costs,
    channels_kept_bars,
    cost_bars,
    pareto_front,
    removed_or_zero,
)

BASE = {"name": "baseline", "accuracy": 0.98, "latency_ms": 1.0, "latency_p95_ms": 1.2,
        "file_bytes": 4000, "macs": 1000, "params": 100, "nonzero_params": 100,
        "layers": [{"layer": "conv", "out_channels": 20, "original_out_channels": 20}]}
THIN = {**BASE, "name": "thin", "accuracy": 0.97, "macs": 500, "params": 50, "nonzero_params": 50,
        "sparsity": 0.0, "layers": [{"layer": "conv", "out_channels": 10, "original_out_channels": 20}]}


def test_pareto_front_keeps_exactly_the_undominated_points() -> None:
    rng = random.Random(0)
    points = [(rng.random(), rng.random()) for _ in range(60)]
    front = pareto_front(points)

    def dominated(p: tuple[float, float]) -> bool:
        return any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)

    assert front and all(not dominated(p) for p in front)
    assert all(dominated(p) for p in points if p not in front)


def test_a_structured_variant_is_placed_by_what_it_removed() -> None:
    assert THIN["sparsity"] == 0.0  # nothing left is zero …
    assert removed_or_zero(THIN, BASE) == pytest.approx(0.5)  # … but half the weights are gone


@pytest.mark.parametrize("plot", [accuracy_vs_costs, cost_bars, channels_kept_bars])
def test_plots_render_png(plot) -> None:
    png = plot([BASE, THIN])
    assert png.startswith(b"\x89PNG") and len(png) > 5000
