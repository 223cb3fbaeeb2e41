"""The sparse kernel's settings for this machine, measured once and cached.

Why measure: the fastest kernel path (AVX-512 is not always faster than AVX2: some Xeons lower
their clock for wide vectors) and the fastest panel width (the activation slice one panel
reads should fit the caches, whose sizes differ per CPU) are the machine's own. A guess tuned
on one CPU is wrong on another, so :func:`kernel_tuning` measures them on a synthetic 90 %-sparse
512 × 4096 matrix at several batch widths, in a few seconds, and caches the result in a JSON
file (``$PRUNEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/prunekit``, else ``~/.cache/prunekit``)
keyed by the CPU model, its features, the kernel's ABI and paths, and the thread count; when any
of them changes the entry is measured again. :func:`prunekit.sparse.deploy` then times each
layer only in the tuned layouts, against dense, on the layer's real input — so the break-even
it finds is the machine's own, and a layer where sparse loses stays dense.

>>> tuning = KernelTuning(path="avx2", slice_bytes={1: None, 64: 65536}, threads=2)
>>> tuning.panel_width(cols=4096, batch_columns=64), tuning.panel_width(4096, 1)
(256, None)
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from prunekit.io import write_text_atomic
from prunekit.latency import time_until_stable
from prunekit.machine import cpu_info
from prunekit.sparse.kernels import ABI_VERSION, CSRPanels, kernel_paths

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
CACHE_NAME = "sparse_kernel_tuning.json"
TUNED_BATCH_COLUMNS = (1, 16, 64, 256)
"""Batch widths (columns of the transposed activations) tuned; a layer uses the nearest."""
SLICE_CHOICES = (8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10)
"""Bytes of activations one panel reads, tried at each batch width (besides one panel)."""
VERIFICATION_PATHS = ("avx2x16",)
"""Paths that exist to execute another path's source on this CPU: correct, never fast."""
TUNING_SHAPE = (512, 4096, 0.1)
"""Rows, columns and density of the synthetic matrix timed."""


@dataclass(frozen=True)
class KernelTuning:
    """What was measured fastest here: the kernel path, and the slice size per batch width.

    ``slice_bytes[b]`` is the activation bytes per panel for ``b`` batch columns (None: one
    panel). ``path_ms`` keeps the per-path timings that chose ``path`` (batch 64).
    """

    path: str
    slice_bytes: dict[int, int | None]
    threads: int
    seconds: float = 0.0
    path_ms: dict[str, float] = field(default_factory=dict)

    def panel_width(self, cols: int, batch_columns: int) -> int | None:
        """The tuned panel width for a ``cols``-wide weight and ``batch_columns`` (None: one
        panel), from the nearest tuned batch width on a log scale."""
        nearest = min(
            self.slice_bytes, key=lambda b: abs(math.log2(b) - math.log2(max(1, batch_columns)))
        )
        size = self.slice_bytes[nearest]
        return None if size is None else _width(size, batch_columns, cols)


def cache_path() -> Path:
    """Where the tuning cache lives (see the module docstring for the order of choices)."""
    if os.environ.get("PRUNEKIT_CACHE_DIR"):
        return Path(os.environ["PRUNEKIT_CACHE_DIR"]) / CACHE_NAME
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prunekit" / CACHE_NAME


def machine_key() -> dict[str, Any]:
    """Everything a cached tuning depends on apart from the thread count."""
    info = cpu_info()
    return {
        "cpu_model": info.model,
        "cpu_features": list(info.features),
        "kernel_abi": ABI_VERSION,
        "kernel_paths": [name for name, runs in kernel_paths().items() if runs],
    }


_memo: dict[int, KernelTuning] = {}


def kernel_tuning(
    threads: int | None = None, *, refresh: bool = False, budget_s: float = 2.0
) -> KernelTuning:
    """This machine's tuning for ``threads`` (default: torch's), from the cache or measured.

    ``refresh=True`` measures again and overwrites the entry.
    """
    threads = threads or torch.get_num_threads()
    if not refresh and threads in _memo:
        return _memo[threads]
    path = cache_path()
    document = _read_cache(path)
    entry = document["tunings"].get(str(threads))
    if entry is not None and not refresh:
        tuning = _from_json(entry)
    else:
        log.info("measuring the sparse kernel for this CPU at %d thread(s), once: cached in %s",
                 threads, path)
        tuning = measure_kernel_tuning(threads, budget_s=budget_s)
        document["tunings"][str(threads)] = _to_json(tuning)
        try:
            write_text_atomic(path, json.dumps(document, indent=2) + "\n")
        except OSError as err:  # a read-only home must not stop deploy: it measures each run
            log.warning("cannot write the sparse kernel tuning cache %s (%s); set "
                        "PRUNEKIT_CACHE_DIR to a writable folder to keep it", path, err)
    _memo[threads] = tuning
    return tuning


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache document if it belongs to this machine and kernel; else a fresh, empty one."""
    fresh = {"format": CACHE_FORMAT, "machine": machine_key(), "tunings": {}}
    if not path.exists():
        return fresh
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        stale = document.get("format") != CACHE_FORMAT or document.get("machine") != fresh["machine"]
        if not stale:
            for entry in document["tunings"].values():
                _from_json(entry)  # every entry must parse, or the file is rewritten
            return document
        log.info("sparse kernel tuning in %s is for another CPU or kernel: measuring again", path)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("unreadable sparse kernel tuning cache %s (%s): measuring again", path, err)
    return fresh


def _to_json(tuning: KernelTuning) -> dict[str, Any]:
    data = asdict(tuning)
    data["slice_bytes"] = {str(b): size for b, size in tuning.slice_bytes.items()}
    return data


def _from_json(data: dict[str, Any]) -> KernelTuning:
    slices = {int(b): None if size is None else int(size) for b, size in data["slice_bytes"].items()}
    if not slices or data["path"] not in kernel_paths():
        raise ValueError(f"bad tuning entry {data}")
    return KernelTuning(
        path=str(data["path"]), slice_bytes=slices, threads=int(data["threads"]),
        seconds=float(data.get("seconds", 0.0)), path_ms=dict(data.get("path_ms", {})),
    )  # fmt: skip


def measure_kernel_tuning(threads: int, *, budget_s: float = 2.0) -> KernelTuning:
    """Time every fast path, then every slice size per batch width, round-robin (medians).

    ``budget_s`` is shared between the stages; each stops early once two timings of the same
    layout agree within 2 %, and runs at least 3 rounds.
    """
    start = time.perf_counter()
    rows, cols, density = TUNING_SHAPE
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(rows, cols, generator=generator)
    weight[torch.rand(rows, cols, generator=generator) >= density] = 0
    inputs = {b: torch.randn(cols, b, generator=generator) for b in TUNED_BATCH_COLUMNS}
    stage_s = budget_s / (1 + len(TUNED_BATCH_COLUMNS))

    def timed(matrices: dict[Any, CSRPanels], xt: torch.Tensor) -> dict[Any, float]:
        runs = {key: (lambda m=m: m.multiply_transposed(xt, threads=threads))
                for key, m in matrices.items()}  # fmt: skip
        with torch.inference_mode():
            return time_until_stable(
                runs, max_band=0.02, budget_s=stage_s, min_rounds=3, untimed_per_turn=1
            ).medians

    fast = [name for name, runs in kernel_paths().items() if runs and name not in VERIFICATION_PATHS]
    if not fast:
        raise RuntimeError("the sparse kernel is not built; reinstall with pip install -e .")
    default_width = _width(SLICE_CHOICES[3], 64, cols)
    path_ms = timed(
        {name: CSRPanels.from_dense(weight, default_width, path=name) for name in fast},
        inputs[64],
    )
    path = min(path_ms, key=path_ms.__getitem__)
    packed: dict[int | None, CSRPanels] = {}  # one packing per width, shared by the batches
    slice_bytes: dict[int, int | None] = {}
    for batch, xt in inputs.items():
        widths: dict[int | None, int | None] = {None: None}  # slice bytes -> panel width
        for size in SLICE_CHOICES:
            width = _width(size, batch, cols)
            if width is not None and width not in widths.values():
                widths[size] = width
        for width in widths.values():
            if width not in packed:
                packed[width] = CSRPanels.from_dense(weight, width, path=path)
        medians = timed({size: packed[width] for size, width in widths.items()}, xt)
        slice_bytes[batch] = min(medians, key=medians.__getitem__)
    return KernelTuning(
        path=path, slice_bytes=slice_bytes, threads=threads,
        seconds=time.perf_counter() - start, path_ms={str(k): v for k, v in path_ms.items()},
    )  # fmt: skip


def _width(slice_bytes: int, batch_columns: int, cols: int) -> int | None:
    """Columns per panel (a multiple of 16) whose activations fill ``slice_bytes``; None when
    that is the whole weight."""
    width = max(16, slice_bytes // (4 * max(1, batch_columns)) // 16 * 16)
    return None if width >= cols else width
