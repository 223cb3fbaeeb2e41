import logging
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from prunekit.sparse.kernels import (
    CSRPanels,
    default_kernel_path,
    kernel_library,
    kernel_path_lanes,
    kernel_paths,
    load_kernel_library,
)

RUNNABLE = [name for name, runs in kernel_paths().items() if runs]
UNAVAILABLE = [name for name, runs in kernel_paths().items() if not runs]


def sparse_weight(rows: int, cols: int, sparsity: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    w[torch.rand(rows, cols, generator=g) < sparsity] = 0
    return w


def densify(panels: CSRPanels) -> torch.Tensor:
    """Rebuild the dense matrix from the panel layout, independently of the kernel."""
    out = torch.zeros(panels.rows, panels.cols)
    idx = panels.idx.to(torch.int64) & 0xFFFF if panels.idx.dtype == torch.int16 else panels.idx
    for p in range(panels.panels):
        ptr = panels.ptr[p]
        for i in range(panels.rows):
            k0, k1 = int(ptr[i]), int(ptr[i + 1])
            out[i, p * panels.panel_width + idx[k0:k1].long()] = panels.val[k0:k1]
    return out


def test_the_kernel_is_built_by_the_install() -> None:
    assert kernel_library() is not None, "run `pip install -e .` with gcc present"


@pytest.mark.parametrize("width", [None, 16, 7, 40])
def test_panels_hold_exactly_the_non_zeros(width: int | None) -> None:
    w = sparse_weight(9, 40, 0.7)
    panels = CSRPanels.from_dense(w, width)
    assert panels.nnz == int((w != 0).sum())
    assert panels.panels == (1 if width is None else -(-40 // width))
    assert torch.equal(densify(panels), w)
    cost = panels.row_cost
    assert cost[0] == 0 and bool((cost[1:] >= cost[:-1]).all())


# 127 = 64 + 32 + 16 + 8 + 4 + 3 walks every rung of each path's block ladder once
@pytest.mark.parametrize("batch", [1, 3, 4, 8, 13, 16, 31, 64, 127, 130])
@pytest.mark.parametrize("width", [None, 32, 50])
@pytest.mark.parametrize("path", RUNNABLE)
def test_every_runnable_path_equals_dense_matmul(path: str, batch: int, width: int | None) -> None:
    w = sparse_weight(37, 120, 0.8, seed=batch)
    bias = torch.randn(37)
    xt = torch.randn(120, batch)
    expected = w @ xt + bias[:, None]
    panels = CSRPanels.from_dense(w, width, bias, path=path)
    for threads in (1, 2, 5):
        out = panels.multiply_transposed(xt, threads=threads)
        assert torch.allclose(out, expected, atol=1e-4, rtol=1e-5), (path, threads)


@pytest.mark.parametrize("batch", [1, 13, 64, 130])
@pytest.mark.parametrize("path", RUNNABLE)
def test_a_row_major_batch_seen_transposed_is_transposed_by_the_kernel(path: str,
                                                                       batch: int) -> None:
    w = sparse_weight(37, 123, 0.8, seed=batch)  # 123 columns: shares and tiles end unevenly
    bias = torch.randn(37)
    x = torch.randn(batch, 123)
    before = x.clone()
    panels = CSRPanels.from_dense(w, 50, bias, path=path)
    for threads in (1, 2, 5):
        out = panels.multiply_transposed(x.t(), threads=threads)
        assert torch.allclose(out, w @ x.t() + bias[:, None], atol=1e-4, rtol=1e-5), threads
    assert torch.equal(x, before)  # the input is read, never written


def test_a_batch_whose_per_thread_slices_would_outgrow_one_copy_is_copied_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from prunekit.sparse import kernels

    asked: list[int] = []
    real = kernels._scratch
    monkeypatch.setattr(kernels, "_scratch", lambda count: asked.append(count) or real(count))
    monkeypatch.setattr(kernels, "SCRATCH_FLOATS", 0)
    w, x = sparse_weight(16, 64, 0.8), torch.randn(8, 64)
    one_panel = CSRPanels.from_dense(w)  # 2 threads x the whole slice: twice one copy
    assert torch.allclose(one_panel.multiply_transposed(x.t(), threads=2), w @ x.t(), atol=1e-5)
    assert asked == []
    panels = CSRPanels.from_dense(w, 16)  # 2 threads x 16 columns: within one copy
    assert torch.allclose(panels.multiply_transposed(x.t(), threads=2), w @ x.t(), atol=1e-5)
    assert asked == [2 * 16 * 8]


@pytest.mark.parametrize("path", RUNNABLE)
def test_every_runnable_path_reads_32_bit_indices(path: str) -> None:
    w = torch.zeros(3, 70_000)
    w[0, 69_999], w[1, 3], w[2, 40_000] = 1.5, -2.0, 0.5
    xt = torch.randn(70_000, 20)
    out = CSRPanels.from_dense(w).multiply_transposed(xt, threads=2, path=path)
    assert torch.allclose(out, w @ xt)


def test_the_default_path_is_the_best_the_cpu_has() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "avx2" not in kernel_paths():
        pytest.skip("no /proc/cpuinfo or not an x86-64 build to compare with")
    lines = cpuinfo.read_text().splitlines()
    flags = set(next(line for line in lines if line.startswith("flags")).split())
    has_avx2 = {"avx2", "fma"} <= flags
    assert kernel_paths()["avx512"] == ({"avx512f", "avx512vl"} <= flags and has_avx2)
    assert kernel_paths()["avx2"] == kernel_paths()["avx2x16"] == has_avx2
    best = "avx512" if kernel_paths()["avx512"] else "avx2" if has_avx2 else "generic"
    assert default_kernel_path() == best
    assert kernel_path_lanes("avx512") == 16 and kernel_path_lanes("avx2") == 8


@pytest.mark.parametrize("path", UNAVAILABLE or ["no-such-path"])
def test_a_path_the_cpu_cannot_run_is_refused_not_run(path: str) -> None:
    panels = CSRPanels.from_dense(sparse_weight(8, 8, 0.5))
    match = "cannot run on this CPU" if path in kernel_paths() else "unknown kernel path"
    with pytest.raises(ValueError, match=match):
        panels.multiply_transposed(torch.randn(8, 4), threads=1, path=path)
    with pytest.raises(ValueError, match=match):
        CSRPanels.from_dense(sparse_weight(8, 8, 0.5), path=path)
    # The C side refuses too, before writing anything: past the last path on every machine,
    # and each path this CPU lacks.
    library = kernel_library()
    indices = [len(kernel_paths())] + [list(kernel_paths()).index(p) for p in UNAVAILABLE]
    xt = torch.randn(8, 4)
    for index in indices:
        yt = torch.full((8, 4), 7.0)
        code = library.pk_spmm(panels._describe(), xt.data_ptr(), yt.data_ptr(), 4, 1, index,
                                   None, None)
        assert code == -4 and bool((yt == 7.0).all())


def test_concurrent_callers_get_correct_results() -> None:
    w = sparse_weight(300, 200, 0.9)
    panels = CSRPanels.from_dense(w)
    inputs = [torch.randn(200, 8) for _ in range(8)]
    expected = [w @ xt for xt in inputs]

    def run(index: int) -> bool:
        out = panels.multiply_transposed(inputs[index], threads=1 + index % 2)
        return bool(torch.allclose(out, expected[index], atol=1e-4))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(run, range(8)))


def test_edge_cases_empty_rows_all_zero_no_bias_and_more_threads_than_rows() -> None:
    w = torch.zeros(3, 10)
    w[1, 4] = 2.0
    xt = torch.randn(10, 5)
    out = CSRPanels.from_dense(w).multiply_transposed(xt, threads=8)
    assert torch.equal(out, w @ xt)
    zero = CSRPanels.from_dense(torch.zeros(4, 6))
    assert zero.nnz == 0
    assert torch.equal(zero.multiply_transposed(torch.randn(6, 2), threads=2), torch.zeros(4, 2))


def test_wide_matrices_use_32_bit_indices() -> None:
    w = torch.zeros(2, 70_000)
    assert CSRPanels.from_dense(w).idx.dtype == torch.int32
    assert CSRPanels.from_dense(w, 65_536).idx.dtype == torch.int16


def test_moving_the_buffers_refreshes_the_kernel_pointers() -> None:
    w = sparse_weight(8, 8, 0.5)
    panels = CSRPanels.from_dense(w, bias=torch.ones(8))
    xt = torch.randn(8, 3)
    first = panels.multiply_transposed(xt, threads=1)
    panels.double().float()  # reallocates every floating buffer
    assert torch.equal(panels.multiply_transposed(xt, threads=1), first)


def test_bad_inputs_are_refused() -> None:
    panels = CSRPanels.from_dense(torch.eye(4))
    with pytest.raises(ValueError, match=r"shape \(4, batch\)"):
        panels.multiply_transposed(torch.randn(5, 2), threads=1)
    with pytest.raises(ValueError, match="float32"):
        panels.multiply_transposed(torch.randn(4, 2, dtype=torch.float64), threads=1)
    with pytest.raises(ValueError, match="2-D"):
        CSRPanels.from_dense(torch.ones(2, 2, 2))


def test_missing_library_is_none_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert load_kernel_library(tmp_path) is None
    assert "not built" in caplog.text and "pip install -e ." in caplog.text


def _child_multiplies(panels: CSRPanels, xt: torch.Tensor, queue: multiprocessing.Queue) -> None:
    # only the kernel runs here: libgomp (torch's own thread pool) is not fork-safe
    queue.put(panels.multiply_transposed(xt, threads=2).tolist())


def test_a_forked_child_gets_a_fresh_thread_pool() -> None:
    panels = CSRPanels.from_dense(sparse_weight(64, 64, 0.5))
    xt = torch.randn(64, 16)
    expected = panels.multiply_transposed(xt, threads=2)  # the parent's pool is running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_multiplies, args=(panels, xt, queue))
    child.start()
    child.join(timeout=60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0, "the child hung or crashed in the kernel's thread pool"
    assert queue.get(timeout=5) == expected.tolist()
