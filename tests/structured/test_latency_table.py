"""The latency table: fitted costs, what it covers, saving, and refusing the wrong model."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.machine import CpuInfo
from prunekit.structured import latency_table
from prunekit.structured.graph import build_graph
from prunekit.structured.latency_table import LatencyTable, LayerCost, measure_latency_table


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU(),
        nn.Conv2d(32, 16, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
    ).eval()


X = torch.randn(4, 3, 8, 8)


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    return measure_latency_table(_net(), X, configs=5, repeats=2)


def test_layer_cost_is_the_fitted_bilinear_form() -> None:
    cost = LayerCost((1.0, 0.5, 0.25, 0.01), 64, 32)
    assert cost.at(64, 32) == pytest.approx(1 + 32 + 8 + 0.01 * 64 * 32)
    assert cost.at(0, 0) == 1.0
    assert LayerCost((-5.0, 0.0, 0.0, 0.0), 8, 8).at(8, 8) == 0.0  # never negative
    grouped = LayerCost((0.0, 1.0, 2.0, 0.0), 32, 32, coupled=True)
    assert grouped.at(0, 16) == grouped.at(999, 16) == 32 + 32  # input follows the output


def test_every_conv_and_linear_is_timed_at_its_dense_widths(table: LatencyTable) -> None:
    assert sorted(table.layers) == ["0", "3", "5", "8"]
    widths = {name: (c.in_channels, c.out_channels) for name, c in table.layers.items()}
    assert widths == {"0": (3, 32), "3": (32, 32), "5": (32, 16), "8": (1024, 10)}
    assert table.layers["3"].coupled and not table.layers["5"].coupled
    assert table.input_shape == (4, 3, 8, 8) and table.threads >= 1
    assert table.dense_ms > 0 and table.rest_ms >= 0 and table.seconds > 0
    assert all(math.isfinite(v) for c in table.layers.values() for v in c.coefficients)
    assert math.isfinite(table.fit_error)
    assert table.estimate_ms(_net()) >= table.rest_ms


def test_table_round_trips_through_json(table: LatencyTable, tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    table.save(path)
    assert LatencyTable.load(path) == table


def test_a_file_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"format": 99}')
    with pytest.raises(ValueError, match="not a prunekit latency table"):
        LatencyTable.load(path)


def test_check_refuses_another_input_or_model(table: LatencyTable) -> None:
    net = _net()
    table.check(build_graph(net, X), X[:1])
    with pytest.raises(ValueError, match="measured on inputs of shape"):
        table.check(build_graph(net, X), torch.randn(1, 3, 16, 16))
    wider = nn.Sequential(*list(_net())[:5], nn.Conv2d(32, 24, 1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(24 * 8 * 8, 10))
    with pytest.raises(ValueError, match="does not match this model at layer '5'"):
        table.check(build_graph(wider, X), X[:1])


def test_bad_arguments_fail_before_any_timing() -> None:
    with pytest.raises(ValueError, match="configs must be >= 2"):
        measure_latency_table(_net(), X, configs=1)
    with pytest.raises(ValueError, match="fractions must be in"):
        measure_latency_table(_net(), X, fractions=(0.0, 1.0))
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure_latency_table(_net(), X, repeats=0)
    with pytest.raises(ValueError, match="deployment must be one of"):
        measure_latency_table(_net(), X, deployment="onnx")


class _Slow(nn.Module):
    """An elementwise module that takes 3 ms: where its time goes is unmistakable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.003)
        return x


def test_an_eager_table_charges_each_module_to_the_layer_that_ran_before_it(
        tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), _Slow(), nn.ReLU(),
                        nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 8 * 8, 10)).eval()
    table = measure_latency_table(net, X, configs=3, repeats=2, deployment="eager")
    assert table.deployment == "eager" and sorted(table.layers) == ["0", "4", "7"]
    assert table.layer_ms("0", 3, 16) > 2.5  # the sleep follows conv 0: it is conv 0's cost
    assert table.layer_ms("4", 16, 8) < 2.5 and table.layer_ms("7", 512, 10) < 2.5
    assert table.rest_ms < 2.5  # not left over as fixed time
    table.save(tmp_path / "eager.json")
    assert LatencyTable.load(tmp_path / "eager.json") == table


def test_by_default_the_copies_timed_have_widths_the_pruner_can_choose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rounded per group as the pruner rounds it: 16 for a 64-wide group on AVX-512, 8 for a
    32-wide one (too few vectors), so the fit is sampled where the pruner will look. The
    fractions are picked so the two roundings disagree: rounded by 8, the 64-wide group would
    keep 24, 40 or 56; by 16, 32, 48 or 64. The 32-wide group keeps 24 of it only by 8."""
    monkeypatch.setattr(latency_table, "cpu_info", lambda: CpuInfo("t", ("avx512f",), 2))
    net = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Conv2d(64, 32, 3), nn.ReLU(),
                        nn.Conv2d(32, 8, 3)).eval()
    x = torch.randn(1, 3, 12, 12)
    copies = latency_table._pruned_copies(build_graph(net, x), x, (0.4, 0.65, 0.9), 12, None, 0)
    first = {m[0].out_channels for m in copies[1:]}
    second = {m[2].out_channels for m in copies[1:]}
    assert first <= {32, 48, 64} and len(first) > 1
    assert second <= {16, 24, 32} and 24 in second
