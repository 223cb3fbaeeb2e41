import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit import latency
from prunekit.latency import (
    TWIN,
    NoiseBand,
    compare_latency,
    describe_ratio,
    interleaved_medians,
    interleaved_times,
    latency_table,
    measure_latency,
    noise_band,
    repeats_for,
    time_until_stable,
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


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_every_candidate_follows_every_other_and_takes_every_position_equally_often(
    count: int,
) -> None:
    names = "abcde"[:count]
    order: list[str] = []
    cycle = 2 * count if count % 2 else count
    interleaved_times({k: (lambda k=k: order.append(k)) for k in names}, repeats=cycle, warmup=0)
    rounds = [order[i : i + count] for i in range(0, len(order), count)]
    followers = Counter((r[i], r[i + 1]) for r in rounds for i in range(count - 1))
    positions = Counter((r[i], i) for r in rounds for i in range(count))
    assert all(sorted(r) == list(names) for r in rounds)
    assert len(followers) == count * (count - 1) and len(set(followers.values())) == 1
    assert len(positions) == count * count and len(set(positions.values())) == 1


def test_successive_calls_continue_the_cycle_of_orders() -> None:
    whole: list[str] = []
    interleaved_times({k: (lambda k=k: whole.append(k)) for k in "abc"}, repeats=6, warmup=0)
    parts: list[str] = []
    runs = {k: (lambda k=k: parts.append(k)) for k in "abc"}
    interleaved_times(runs, repeats=2, warmup=0)
    interleaved_times(runs, repeats=4, warmup=0, first_round=2)
    assert parts == whole and whole[:3] != whole[3:6]


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


def _jittered(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [1.0 + rng.uniform(0.0, 0.3) for _ in range(n)]


def test_noise_band_of_a_constant_gap_is_that_gap() -> None:
    first = _jittered(50, 0)
    band = noise_band(first, [1.1 * t for t in first])
    assert band.width == pytest.approx(0.1) and band.twin_ratio == pytest.approx(1 / 1.1)
    assert noise_band(first, first).width == 0.0 and band.rounds == 50


def test_noise_band_narrows_with_rounds_and_is_deterministic() -> None:
    short = noise_band(_jittered(20, 1), _jittered(20, 2))
    long = noise_band(_jittered(800, 1), _jittered(800, 2))
    assert long.width < short.width / 2  # the median's spread falls as 1/sqrt(rounds)
    assert noise_band(_jittered(20, 1), _jittered(20, 2)) == short
    assert noise_band(_jittered(20, 1), _jittered(20, 2), confidence=0.5).width < short.width
    with pytest.raises(ValueError, match="equal length"):
        noise_band([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        noise_band([1.0, 0.0], [1.0, 1.0])


def test_a_ratio_inside_the_band_reads_within_noise() -> None:
    band = NoiseBand(width=0.05, twin_ratio=1.0, rounds=30, confidence=0.95)
    assert band.contains(1.049) and band.contains(1 / 1.049)
    assert not band.contains(1.06) and not band.contains(1 / 1.06)
    assert describe_ratio(0.97, band) == "0.97x (within noise)"
    assert describe_ratio(2.0, band) == "2.00x" and describe_ratio(1.0, None) == "1.00x"


class FakeClock:
    """Stands in for ``time`` in prunekit.latency: calls advance it by what they 'take'."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def taking(self, ms: float, jitter: float = 0.0, seed: int = 0) -> Callable[[], None]:
        rng = random.Random(seed)

        def run() -> None:
            self.now += ms * (1 + rng.uniform(-jitter, jitter)) / 1e3

        return run


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(latency, "time", fake)
    return fake


def test_time_until_stable_times_a_twin_and_tells_a_real_gap_from_noise(clock: FakeClock) -> None:
    result = time_until_stable({"fast": clock.taking(1.0), "slow": clock.taking(20.0)}, warmup=0)
    assert result.converged and result.band.rounds == 5
    assert result.band.width == pytest.approx(0.0, abs=1e-12)
    assert len(result.times[TWIN]) == 5 and TWIN not in result.medians
    assert result.speedup("slow", "fast") == pytest.approx(20.0)
    assert result.describe("slow", "fast") == "20.00x"


def test_time_until_stable_adds_rounds_until_the_band_is_narrow(clock: FakeClock) -> None:
    noisy = {"a": clock.taking(1.0, jitter=0.3, seed=1), "b": clock.taking(1.0, jitter=0.3, seed=2)}
    result = time_until_stable(noisy, max_band=0.05, budget_s=60.0)
    assert result.converged and result.band.width <= 0.05 and result.band.rounds > 5
    assert result.describe("a", "b").endswith("(within noise)")  # identical, both jittered
    calls = []
    b = clock.taking(2.0)
    twin_of_b = {"a": clock.taking(1.0), "b": lambda: (calls.append(1), b())}
    # b is called for itself and for its twin: 2 warm-up calls each, then one per round each
    assert time_until_stable(twin_of_b, reference="b", warmup=2).band.rounds == len(calls) / 2 - 2


def test_time_until_stable_stops_at_max_rounds_or_the_budget() -> None:
    capped = time_until_stable({"a": lambda: None}, max_band=0.0, max_rounds=12, budget_s=60)
    assert not capped.converged and capped.band.rounds == 12
    start = time.perf_counter()
    timed_out = time_until_stable({"a": lambda: time.sleep(0.001)}, max_band=0.0, budget_s=0.2)
    assert not timed_out.converged and time.perf_counter() - start < 1.0
    with pytest.raises(ValueError, match="must be a candidate"):
        time_until_stable({"a": lambda: None}, reference="b")
    with pytest.raises(ValueError, match="min_rounds"):
        time_until_stable({"a": lambda: None}, min_rounds=1)
