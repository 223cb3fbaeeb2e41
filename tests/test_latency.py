import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.latency import (
    compare_latency,
    interleaved_medians,
    interleaved_times,
    latency_table,
    measure_latency,
    repeats_for,
)
from prunekit.masks import strip
from prunekit.models import build_model
from prunekit.unstructured import prune_by_ratio


def test_medians_rank_alternatives_and_run_each_the_right_number_of_times() -> None:
    calls = {"fast": 0, "slow": 0}

    def run(name: str, seconds: float) -> None:
        calls[name] += 1
        time.sleep(seconds)

    medians = interleaved_medians(
        {"fast": lambda: run("fast", 0.0), "slow": lambda: run("slow", 0.003)}, repeats=4, warmup=2
    )
    assert calls == {"fast": 6, "slow": 6}
    assert medians["slow"] >= 3.0 > medians["fast"]


def test_every_candidate_takes_every_position_in_turn() -> None:
    order: list[str] = []
    interleaved_medians({k: (lambda k=k: order.append(k)) for k in "abc"}, repeats=3, warmup=0)
    assert order == list("abcbcacab")


def test_untimed_calls_warm_each_turn() -> None:
    calls: list[str] = []
    times = interleaved_times({k: (lambda k=k: calls.append(k)) for k in "ab"}, repeats=2,
                              warmup=0, untimed_per_turn=2)
    assert calls == list("aaabbb" "bbbaaa") and [len(v) for v in times.values()] == [2, 2]


def test_timed_scope_wraps_exactly_the_timed_calls() -> None:
    events: list[str] = []

    @contextlib.contextmanager
    def scope(name: object) -> Iterator[None]:
        events.append(f"<{name}")
        yield
        events.append(f"{name}>")

    interleaved_times({k: (lambda k=k: events.append(k)) for k in "ab"}, repeats=1, warmup=1,
                      untimed_per_turn=1, timed_scope=scope)
    assert events == ["a", "b", "a", "<a", "a", "a>", "b", "<b", "b", "b>"]


def test_repeats_are_bounded() -> None:
    assert repeats_for(0.0, budget_ms=10) == 25
    assert repeats_for(2.0, budget_ms=20) == 10
    assert repeats_for(1000.0, budget_ms=20, low=3) == 3
    with pytest.raises(ValueError, match="repeats"):
        interleaved_medians({"a": lambda: None}, repeats=0)


def test_latency_records_its_conditions_and_restores_threads_and_modes() -> None:
    before = torch.get_num_threads()
    layer = nn.Linear(64, 64).train()
    lat = measure_latency(layer, torch.zeros(8, 64), warmup=2, repeats=9, threads=1)
    assert lat.threads == 1 and lat.batch_size == 8 and lat.repeats == 9
    assert 0 < lat.median_ms <= lat.p95_ms
    assert torch.get_num_threads() == before and layer.training


def test_compare_latency_ranks_a_bigger_model_slower() -> None:
    lat = compare_latency({"small": nn.Linear(64, 8), "big": nn.Linear(64, 8192)},
                          torch.zeros(32, 64), repeats=15)
    assert lat["big"].median_ms > lat["small"].median_ms


def test_latency_table_times_every_backend(tmp_path: Path) -> None:
    from prunekit.export.onnx import export_onnx

    model = build_model("lenet300")
    prune_by_ratio(model, 0.95)
    strip(model)
    x = torch.rand(16, 1, 28, 28)
    onnx = export_onnx(model, x, tmp_path / "m.onnx", exporter="torchscript")
    rows = latency_table({"v": model}, x, backends=("torch", "sparse", "onnxruntime"),
                         onnx_files={"v": onnx}, repeats=5, threads=1)
    row = rows["v"]
    assert row["batch_size"] == 16 and row["threads"] == 1
    assert min(row["latency_ms"], row["onnx_latency_ms"]) > 0
    assert 0 <= row["sparse_layers"] <= 3
    # Timed only where some layer runs sparse; otherwise it is the dense model itself.
    assert (row.get("sparse_latency_ms", 0.0) > 0) == (row["sparse_layers"] > 0)
    dense = latency_table({"d": build_model("lenet300")}, x, backends=("sparse",), repeats=3)
    assert dense["d"]["sparse_layers"] == 0 and "sparse_latency_ms" not in dense["d"]
    with pytest.raises(ValueError, match="unknown latency backends"):
        latency_table({"v": model}, x, backends=("tensorrt",))
    with pytest.raises(ValueError, match="needs an ONNX file"):
        latency_table({"v": model}, x, backends=("onnxruntime",))
