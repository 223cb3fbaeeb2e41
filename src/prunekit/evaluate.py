"""Measurements that prove a compressed model is smaller and faster, taken the same way for all.

Every number in a report comes from here: accuracy and loss on held-out data, latency (warm-up,
then the median and 95th percentile of repeated timed runs, with the batch size and thread count
recorded next to it), parameters and non-zeros, sparsity of the prunable weights, MACs counted by
``torch.utils.flop_counter`` on a real input, and the size on disk of real files.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from prunekit.io import atomic_write
from prunekit.train import LOSSES, batches
from prunekit.unstructured import PRUNABLE_TYPES


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 256, loss: str = "cross_entropy"
) -> dict[str, float]:
    """Accuracy (0..1) and mean loss of ``model`` on ``(x, y)``, in eval mode.

    >>> from prunekit.models import build_model
    >>> r = evaluate_accuracy(build_model("mlp", in_features=4), torch.zeros(8, 4), torch.zeros(8, dtype=torch.long))
    >>> sorted(r)
    ['accuracy', 'loss']
    """
    task_loss = LOSSES[loss]
    was_training = model.training
    model.eval()
    correct, total_loss = 0, 0.0
    for xb, yb in batches(x, y, batch_size, shuffle=False, generator=None):
        out = model(xb)
        total_loss += float(task_loss(out, yb)) * len(xb)
        correct += int((out.argmax(dim=-1) == yb).sum())
    model.train(was_training)
    return {"accuracy": correct / len(x), "loss": total_loss / len(x)}


@dataclass(frozen=True)
class Latency:
    """Wall time of one forward pass, from repeated runs after a warm-up."""

    median_ms: float
    p95_ms: float
    batch_size: int
    threads: int
    repeats: int


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    example_input: Tensor,
    *,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> Latency:
    """Time ``model(example_input)`` in eval mode; medians resist the noise of a busy machine.

    >>> lat = measure_latency(nn.Linear(4, 2), torch.zeros(1, 4), repeats=5)
    >>> lat.median_ms > 0 and lat.batch_size == 1
    True
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    try:
        for _ in range(warmup):
            model(example_input)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(example_input)
            times.append((time.perf_counter() - start) * 1e3)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return Latency(statistics.median(times), p95, len(example_input), used_threads, repeats)


@torch.no_grad()
def count_macs(model: nn.Module, example_input: Tensor) -> int:
    """Multiply-accumulates of one forward pass over ``example_input`` (flop counter ÷ 2)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(example_input)
    model.train(was_training)
    return int(counter.get_total_flops()) // 2


def count_params(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters) over every parameter of the model."""
    params = [p.detach() for p in model.parameters()]
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)


def prunable_sparsity(model: nn.Module) -> float:
    """Fraction of zeros among the weights of Linear and Conv layers (what pruning targets)."""
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, PRUNABLE_TYPES)]
    total = sum(w.numel() for w in weights)
    if total == 0:
        return 0.0
    return 1.0 - sum(int(torch.count_nonzero(w)) for w in weights) / total


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """Per-layer fraction of zero weights, for the report's per-layer table and plot."""
    return {
        name: 1.0 - int(torch.count_nonzero(m.weight)) / m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE_TYPES)
    }


def save_weights(model: nn.Module, directory: str | Path) -> tuple[Path, Path]:
    """Write the dense and the compressed weight files; return their paths.

    The dense file is plain safetensors; the compressed one stores each sparse tensor as a
    bitmask plus its non-zero values and loads back exactly.
    """
    from prunekit.sparse.storage import save_state_dict

    directory = Path(directory)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    dense = directory / "model.safetensors"
    compressed = directory / "model.sparse.safetensors"
    with atomic_write(dense) as tmp:
        save_file(state, str(tmp))
    save_state_dict(state, compressed, format="bitmask")
    return dense, compressed


@dataclass(frozen=True)
class Measurement:
    """One row of a comparison table; ``report.json`` rows are its ``as_row()``."""

    name: str
    accuracy: float
    loss: float
    latency_ms: float
    latency_p95_ms: float
    batch_size: int
    threads: int
    params: int
    nonzero_params: int
    sparsity: float
    macs: int
    file_bytes: int
    dense_file_bytes: int
    extra: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        return {**{k: v for k, v in row.items() if k != "extra"}, **self.extra}


def measure(
    name: str,
    model: nn.Module,
    x_test: Tensor,
    y_test: Tensor,
    *,
    out_dir: str | Path,
    latency_batch: int = 1,
    repeats: int = 50,
    threads: int | None = None,
    loss: str = "cross_entropy",
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """Take every measurement of one model variant and write its weight files to ``out_dir``."""
    scores = evaluate_accuracy(model, x_test, y_test, loss=loss)
    latency = measure_latency(model, x_test[:latency_batch], repeats=repeats, threads=threads)
    params, nonzero = count_params(model)
    dense, compressed = save_weights(model, out_dir)
    return Measurement(
        name=name,
        accuracy=scores["accuracy"],
        loss=scores["loss"],
        latency_ms=latency.median_ms,
        latency_p95_ms=latency.p95_ms,
        batch_size=latency.batch_size,
        threads=latency.threads,
        params=params,
        nonzero_params=nonzero,
        sparsity=prunable_sparsity(model),
        macs=count_macs(model, x_test[:1]),
        file_bytes=compressed.stat().st_size,
        dense_file_bytes=dense.stat().st_size,
        extra=dict(extra or {}),
    )
