"""The HTML report: every column plus p95, the plots that fit what was measured."""

from __future__ import annotations

import math

from prunekit.report.html import render_html, table_cells

ROW = {"name": "baseline", "accuracy": 0.9, "latency_ms": 1.0, "latency_p95_ms": 1.75,
       "params": 10, "nonzero_params": 10, "sparsity": 0.0, "macs": 100, "file_bytes": 2048,
       "dense_file_bytes": 2048, "layer_sparsity": {"fc": 0.0},
       "layers": [{"layer": "fc", "out_channels": 4, "original_out_channels": 4}]}


def test_the_table_shows_p95_beside_the_median() -> None:
    header, body = table_cells([ROW, {**ROW, "name": "v", "latency_p95_ms": None}])
    at = header.index("latency ms (p50)")
    assert header[at + 1] == "latency ms (p95)"
    assert [line[at + 1] for line in body] == ["1.750", "—"]


def test_plots_follow_what_was_measured() -> None:
    thin = {**ROW, "name": "thin", "layers": [{**ROW["layers"][0], "out_channels": 2}]}
    measured = render_html([ROW, thin], "t")
    assert "accuracy against latency" in measured and "channels kept" in measured
    assert measured.count("<img") == 3
    masked = render_html([ROW, {**ROW, "name": "masked"}], "t")  # no layer shrunk: no chart
    assert "channels kept" not in masked and masked.count("<img") == 2
    regression = render_html([{**ROW, "task": "regression", "r2": 0.9},
                              {**ROW, "name": "v", "task": "regression", "r2": 0.8}], "t")
    assert "R² against latency" in regression and "accuracy against" not in regression
    blind = render_html([{**ROW, "accuracy": math.nan}, {**ROW, "name": "v", "accuracy": math.nan}], "t")
    assert "accuracy against" not in blind and "cost against baseline" in blind
