"""Measurements that prove a compressed model is smaller and faster, taken the same way for all.

Every number in a report comes from here or from :mod:`prunekit.latency`: accuracy and loss on
held-out data, parameters and non-zeros, sparsity of the prunable weights, MACs counted by
``torch.utils.flop_counter`` on a real input, and the size on disk of real files (the dense and
the compressed model, and optionally its ONNX export).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from prunekit.losses import Loss
from prunekit.modes import restore_modes
from prunekit.tasks import evaluate_task
from prunekit.unstructured import PRUNABLE_TYPES

log = logging.getLogger(__name__)


def evaluate_accuracy(
    model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 256, loss: str = "cross_entropy"
) -> dict[str, float]:
    """Accuracy (0..1) and mean loss of a classifier on ``(x, y)``, in eval mode.

    The classification case of :func:`prunekit.tasks.evaluate_task`, which measures every task.

    >>> from prunekit.models import build_model
    >>> r = evaluate_accuracy(build_model("mlp", in_features=4), torch.zeros(8, 4), torch.zeros(8, dtype=torch.long))
    >>> sorted(r)
    ['accuracy', 'loss']
    """
    return evaluate_task(model, x, y, task="classification", loss=loss, batch_size=batch_size)


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
    """Write the variant twice — dense, and compressed (bitmask + non-zero values); return paths.

    Both are whole models that :func:`prunekit.load` rebuilds without the model's source code.
    A model torch.fx cannot trace is written as weights only (with a warning), in the same two
    layouts, so a run never fails for want of a traceable forward.
    """
    from prunekit.export.allowlist import ArchitectureError
    from prunekit.saving import save
    from prunekit.sparse.storage import save_state_dict

    directory = Path(directory)
    dense = directory / "model.safetensors"
    compressed = directory / "model.sparse.safetensors"
    try:
        save(model, dense, format="dense")
        save(model, compressed, format="bitmask")
    except ArchitectureError as err:
        log.warning("%s; writing its weights only", err)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_state_dict(state, dense, format="dense")
        save_state_dict(state, compressed, format="bitmask")
    return dense, compressed


@dataclass(frozen=True)
class Measurement:
    """What one variant is, apart from its speed; ``report.json`` rows are its ``as_row()``
    merged with the latency fields of :func:`prunekit.latency.latency_table` (timed for all
    variants together, so that their ratios are fair)."""

    name: str
    task: str
    accuracy: float
    loss: float
    metrics: dict[str, float]
    params: int
    nonzero_params: int
    sparsity: float
    macs: int
    file_bytes: int
    dense_file_bytes: int
    extra: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        """One flat row: the task's metrics sit beside ``accuracy`` and ``loss``, which every
        row carries (``accuracy`` NaN, i.e. not measured, where the task has none)."""
        row = asdict(self)
        fixed = {k: v for k, v in row.items() if k not in ("extra", "metrics")}
        return {**fixed, **self.metrics, **self.extra}


def measure(
    name: str,
    model: nn.Module,
    x_test: Tensor,
    y_test: Tensor,
    *,
    out_dir: str | Path,
    task: str = "classification",
    loss: str | Loss | None = None,
    onnx: bool = False,
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """Measure one variant and write its files to ``out_dir``: the dense and compressed model,
    and with ``onnx`` an ONNX export checked against PyTorch (``model.onnx``).

    Quality is measured by ``task``'s metrics (:mod:`prunekit.tasks`) under ``loss`` (the
    task's default when None).

    >>> import tempfile
    >>> from prunekit.models import build_model
    >>> m = measure("v", build_model("lenet300"), torch.rand(8, 1, 28, 28),
    ...             torch.zeros(8, dtype=torch.long), out_dir=tempfile.mkdtemp())
    >>> m.params, m.macs
    (266610, 266200)
    """
    with restore_modes(model):  # every step below runs the model; none may change its modes
        scores = evaluate_task(model, x_test, y_test, task=task, loss=loss)
        params, nonzero = count_params(model)
        dense, compressed = save_weights(model, out_dir)
        extra = dict(extra or {})
        if onnx:
            from prunekit.export.onnx import export_onnx

            path = export_onnx(model, x_test[:1], Path(out_dir) / "model.onnx",
                               exporter="torchscript")
            extra["onnx_file_bytes"] = path.stat().st_size
        macs = count_macs(model, x_test[:1])
    return Measurement(
        name=name,
        task=task,
        accuracy=scores.get("accuracy", math.nan),
        loss=scores["loss"],
        metrics={k: v for k, v in scores.items() if k not in ("accuracy", "loss")},
        params=params,
        nonzero_params=nonzero,
        sparsity=prunable_sparsity(model),
        macs=macs,
        file_bytes=compressed.stat().st_size,
        dense_file_bytes=dense.stat().st_size,
        extra=extra,
    )
