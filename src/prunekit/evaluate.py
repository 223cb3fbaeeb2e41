"""Measurements that prove a compressed model is smaller and faster, taken the same way for all.

Every number in a report comes from here or from :mod:`prunekit.latency`: accuracy and loss on
held-out data, parameters and non-zeros, sparsity of exactly the weights pruning acts on (and
which weight matrices it leaves, and why), MACs counted by ``torch.utils.flop_counter`` on a
real input (with what it misses counted by hand), and the size on disk of real files (the dense
and the compressed model, and optionally its ONNX export).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from prunekit.layers import kind_of, prunable_weights, skipped_weights
from prunekit.losses import Loss
from prunekit.modes import eval_mode, restore_modes
from prunekit.tasks import evaluate_task

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


def _attention_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    """``q·kᵀ`` and ``attention·v`` of scaled dot-product attention, in flops (2 per MAC):
    the flop counter has no formula for the kernel it runs on CPU."""
    return 2 * math.prod(query[:-1]) * key[-2] * (query[-1] + value[-1])


_MISSED_OPS = {
    op: _attention_flops
    for op in [getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)]
    if op is not None
}


class _HandCounts:
    """Forward hooks on every layer whose description counts its own MACs (RNNs, attention,
    Bilinear): what the flop counter saw inside the outermost such layer is replaced by that
    count, so work the counter misses (oneDNN's LSTM, the fused attention path) is in, once."""

    def __init__(self, model: nn.Module, counter: FlopCounterMode) -> None:
        self.counter, self.correction, self.depth, self.start = counter, 0, 0, 0
        self.handles = []
        for module in model.modules():
            kind = kind_of(module)
            if kind is not None and kind.macs is not None:
                self.handles.append(module.register_forward_pre_hook(self._enter))
                self.handles.append(
                    module.register_forward_hook(self._leave(kind.macs), with_kwargs=True))

    def _enter(self, module: nn.Module, args: tuple) -> None:
        if self.depth == 0:
            self.start = self.counter.get_total_flops()
        self.depth += 1

    def _leave(self, macs: Any) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            self.depth -= 1
            if self.depth == 0:
                bound = inspect.signature(module.forward).bind(*args, **kwargs).arguments
                inside = self.counter.get_total_flops() - self.start
                self.correction += 2 * macs(module, tuple(bound.values()), output) - inside

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def count_macs(model: nn.Module, example_input: Tensor | tuple[Tensor, ...]) -> int:
    """Multiply-accumulates of one forward pass over ``example_input`` (flop counter ÷ 2).

    ``torch.utils.flop_counter`` counts what dispatches to known aten ops; on CPU it misses
    LSTMs (one oneDNN op), ``nn.MultiheadAttention`` in eval mode (one fused op),
    ``nn.Bilinear`` and ``scaled_dot_product_attention``. Those are counted by hand: layers by
    their description's ``macs`` (:mod:`prunekit.layers`), attention by its two products.
    Every submodule's train/eval mode is restored.

    >>> count_macs(nn.LSTM(10, 20), torch.zeros(7, 1, 10)) == 7 * 4 * 20 * (10 + 20)
    True
    """
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    counter = FlopCounterMode(display=False, custom_mapping=_MISSED_OPS)
    hand = _HandCounts(model, counter)
    try:
        with eval_mode(model), counter:
            model(*inputs)
    finally:
        hand.remove()
    return (int(counter.get_total_flops()) + hand.correction) // 2


def count_params(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters) over every parameter of the model."""
    params = [p.detach() for p in model.parameters()]
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)


def prunable_sparsity(
    model: nn.Module, ignore: Collection[str] = (), *, embeddings: bool = False
) -> float:
    """Fraction of zeros among exactly the weights pruning acts on (the same ``ignore`` and
    ``embeddings`` as the pruning call): Linear, Conv, ConvTranspose, RNN and attention
    weights, and any described layer (:func:`prunekit.layers.prunable_weights`).

    >>> net = nn.LSTM(2, 2)
    >>> _ = nn.init.zeros_(net.weight_ih_l0)
    >>> prunable_sparsity(net)
    0.5
    """
    weights = [w.tensor.detach() for w in prunable_weights(model, ignore, embeddings=embeddings)]
    total = sum(w.numel() for w in weights)
    if total == 0:
        return 0.0
    return 1.0 - sum(int(torch.count_nonzero(w)) for w in weights) / total


def layer_sparsity(
    model: nn.Module, ignore: Collection[str] = (), *, embeddings: bool = False
) -> dict[str, float]:
    """Fraction of zeros of each prunable weight, by state-dict name, for the report's
    per-layer table and plot."""
    return {
        w.name: 1.0 - int(torch.count_nonzero(w.tensor)) / w.tensor.numel()
        for w in prunable_weights(model, ignore, embeddings=embeddings)
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
    and with ``onnx`` an ONNX export checked against PyTorch (``model.onnx``). ``sparsity`` is
    over the prunable weights; ``extra["unpruned_weights"]`` names every other weight matrix
    with the reason it is left, so the figure is never read as covering more than it does.

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
        extra = {"unpruned_weights": skipped_weights(model), **(extra or {})}
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
