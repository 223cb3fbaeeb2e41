import json
import logging
from pathlib import Path

import pytest

from prunekit.sparse import tuning
from prunekit.sparse.kernels import kernel_paths
from prunekit.sparse.tuning import (
    SLICE_CHOICES,
    TUNED_BATCH_COLUMNS,
    KernelTuning,
    cache_path,
    kernel_tuning,
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A fresh cache folder and memo; returns the thread counts measured (a fake, fast)."""
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "_memo", {})
    measured: list[int] = []

    def fake_measure(threads: int, *, budget_s: float) -> KernelTuning:
        measured.append(threads)
        return KernelTuning(path="generic", slice_bytes={1: None, 64: 65536}, threads=threads)

    monkeypatch.setattr(tuning, "measure_kernel_tuning", fake_measure)
    return measured


def test_panel_width_follows_the_nearest_tuned_batch() -> None:
    t = KernelTuning(path="avx2", slice_bytes={1: None, 16: 32768, 64: 65536}, threads=2)
    assert t.panel_width(4096, 1) is None and t.panel_width(4096, 2) is None
    assert t.panel_width(4096, 64) == 256 and t.panel_width(4096, 100) == 160  # 65536/400
    assert t.panel_width(4096, 16) == 512 and t.panel_width(4096, 24) == 336  # 32768/96
    assert t.panel_width(200, 64) is None  # a panel as wide as the weight is one panel
    assert t.panel_width(4096, 100_000) == 16  # never narrower than 16 columns


def test_measured_once_then_read_from_the_cache(cache: list[int], tmp_path: Path) -> None:
    first = kernel_tuning(2)
    assert cache == [2] and cache_path() == tmp_path / "sparse_kernel_tuning.json"
    document = json.loads(cache_path().read_text())
    assert document["machine"] == tuning.machine_key() and set(document["tunings"]) == {"2"}
    tuning._memo.clear()  # a new process
    assert kernel_tuning(2) == first and cache == [2]
    kernel_tuning(1)  # another thread count: measured and added beside the first
    assert cache == [2, 1] and set(json.loads(cache_path().read_text())["tunings"]) == {"1", "2"}
    kernel_tuning(2, refresh=True)
    assert cache == [2, 1, 2]


def test_another_cpu_or_kernel_invalidates_the_cache(
    cache: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel_tuning(2)
    kernel_tuning(1)
    key = tuning.machine_key()
    for changed in ({**key, "cpu_model": "another CPU"}, {**key, "kernel_abi": -1},
                    {**key, "cpu_features": ["avx512f"]}):
        monkeypatch.setattr(tuning, "machine_key", lambda changed=changed: changed)
        tuning._memo.clear()
        before = len(cache)
        kernel_tuning(2)
        assert len(cache) == before + 1
        document = json.loads(cache_path().read_text())
        assert document["machine"] == changed and set(document["tunings"]) == {"2"}


def test_an_unreadable_cache_is_measured_again_with_a_warning(
    cache: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache_path().write_text("{not json")
    with caplog.at_level(logging.WARNING):
        kernel_tuning(2)
    assert cache == [2] and "unreadable" in caplog.text
    assert json.loads(cache_path().read_text())["tunings"]["2"]["path"] == "generic"


def test_a_real_measurement_picks_the_fastest_path_and_a_slice_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tuning, "TUNING_SHAPE", (128, 1024, 0.1))
    measured = tuning.measure_kernel_tuning(2, budget_s=0.5)
    fast = {name for name, runs in kernel_paths().items() if runs} - {"avx2x16"}
    assert set(measured.path_ms) == fast
    assert measured.path == min(measured.path_ms, key=measured.path_ms.__getitem__)
    assert tuple(measured.slice_bytes) == TUNED_BATCH_COLUMNS
    assert all(s is None or s in SLICE_CHOICES for s in measured.slice_bytes.values())


def test_a_cache_that_cannot_be_written_warns_and_still_tunes(
    cache: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("")
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(blocker))
    with caplog.at_level(logging.WARNING):
        assert kernel_tuning(2).path == "generic"
    assert cache == [2] and "PRUNEKIT_CACHE_DIR" in caplog.text
