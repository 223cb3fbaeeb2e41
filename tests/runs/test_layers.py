"""Per-layer data: channels kept against the baseline, MACs and time that add up once."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

from prunekit.evaluate import count_macs
from prunekit.models import build_model
from prunekit.runs.layers import layer_latency, layer_profiles, layer_table, without_timing
from prunekit.structured import prune_channels


def test_channels_kept_are_read_against_the_reference() -> None:
    dense = build_model("lenet5").eval()
    pruned = copy.deepcopy(dense)
    x = torch.zeros(1, 1, 28, 28)
    prune_channels(pruned, x, ratio=0.5)
    rows = {r["layer"]: r for r in layer_table(pruned, x, reference=dense)}
    assert (rows["features.0"]["out_channels"], rows["features.0"]["original_out_channels"]) == (10, 20)
    assert (rows["features.3"]["in_channels"], rows["features.3"]["original_in_channels"]) == (10, 20)
    assert rows["classifier.3"]["out_channels"] == rows["classifier.3"]["original_out_channels"] == 10
    assert sum(r["macs"] for r in rows.values()) == count_macs(pruned, x)
    assert sum(r["macs_share"] for r in rows.values()) == pytest.approx(1.0)
    assert rows["features.0"]["params"] == 10 * 25 + 10


class SlowLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01)  # a known cost that only this layer spends
        return super().forward(x)


class Mixer(nn.Module):
    """A layer with weights of its own *and* a weighted layer inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 16))
        self.proj = SlowLinear(16, 16, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x @ self.weight)


def test_nested_layers_are_not_counted_twice() -> None:
    model = nn.Sequential(Mixer(), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(3, 16)
    rows = {r["layer"]: r for r in layer_table(model, x)}
    assert set(rows) == {"0", "0.proj", "2"}
    assert rows["0"]["macs"] == rows["0.proj"]["macs"] == 3 * 16 * 16  # each its own ops only
    assert sum(r["macs"] for r in rows.values()) == count_macs(model, x)
    assert rows["0"]["params"] == 256  # its own weight, not its child's
    times = layer_latency(model, x, repeats=5)
    assert times["0.proj"]["latency_ms"] >= 10.0  # the sleep is the child's ...
    assert times["0"]["latency_ms"] < 5.0  # ... and not its parent's too
    # shares are medians of parts over the median of wholes, which need not add up exactly;
    # counting the child's sleep twice would make them ~2
    assert 0.5 < sum(t["latency_share"] for t in times.values()) <= 1.05


def test_profiles_merge_counts_and_times_and_reports_keep_only_counts() -> None:
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    profiles = layer_profiles({"a": net}, torch.zeros(1, 8), reference="a", repeats=3)
    layer = profiles["a"][0]
    assert {"latency_ms", "latency_share", "macs", "out_channels"} <= set(layer)
    assert "latency_ms" not in without_timing(layer) and without_timing(layer)["macs"] == 128
    with pytest.raises(ValueError, match="repeats"):
        layer_latency(net, torch.zeros(1, 8), repeats=0)
