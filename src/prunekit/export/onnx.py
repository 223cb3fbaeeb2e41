"""ONNX export of stripped or compacted models, checked, verified, and timed in onnxruntime.

Why: a pruned model is only useful once it runs where it is deployed, and ONNX is how most
runtimes take models in. :func:`export_onnx` writes the file atomically, validates it with
``onnx.checker`` (full check, with shape inference), and runs it in onnxruntime against
PyTorch's output on the example input, so a file that exists is a file that works.
:func:`measure_onnx_latency` times the file in onnxruntime the same way
:func:`prunekit.latency.measure_latency` times PyTorch (it *is* that function, applied to
:class:`OnnxRuntimeModule`), so the two backends can stand side by side in a report.

Exporters: ``"dynamo"`` (``torch.export``-based, PyTorch's maintained path; several seconds
per model) or ``"torchscript"`` (the legacy tracer; fast, deprecated). If the dynamo exporter
fails on a model, the legacy one is tried, with a logged warning. Models must be plain modules:
strip pruning masks first, and export the dense model rather than a sparse-deployed one (the
custom kernel does not exist in ONNX).

>>> import tempfile, os, torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(8, 4), nn.ReLU()).eval()
>>> path = export_onnx(model, torch.randn(2, 8), os.path.join(tempfile.mkdtemp(), "m.onnx"),
...                    exporter="torchscript")
>>> OnnxRuntimeModule(path)(torch.randn(5, 8)).shape
torch.Size([5, 4])
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from prunekit.io import atomic_write
from prunekit.latency import Latency, measure_latency
from prunekit.masks import has_masks

log = logging.getLogger(__name__)

Exporter = Literal["dynamo", "torchscript"]
INPUT_NAME, OUTPUT_NAME = "input", "output"
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnxscript")


class OnnxExportError(RuntimeError):
    """The model could not be exported, or the exported file does not reproduce the model."""


def _runtime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:  # the 'export' extra is optional
        raise ImportError(
            "ONNX export needs onnx and onnxruntime: pip install 'prunekit[export]'"
        ) from err
    return onnxruntime


def _check_exportable(model: nn.Module) -> None:
    from prunekit.sparse.layers import SparseConv2d, SparseLinear

    if has_masks(model):
        raise ValueError(
            "the model still holds pruning masks; call prunekit.masks.strip(model) before export"
        )
    sparse = [n for n, m in model.named_modules() if isinstance(m, (SparseLinear, SparseConv2d))]
    if sparse:
        raise ValueError(
            f"layers {sparse} run on prunekit's sparse kernel, which ONNX cannot express; "
            "export the model from before prunekit.sparse.deploy"
        )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's chatter (missing torchvision ops, deprecation notes) during export."""
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _export(
    model: nn.Module, example: Tensor, path: Path, exporter: Exporter, opset: int | None,
    dynamic_batch: bool,
) -> None:  # fmt: skip
    if exporter == "dynamo":
        shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
        program = torch.onnx.export(
            model, (example,), dynamo=True, dynamic_shapes=shapes, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
        )  # fmt: skip
        program.save(str(path))
        return
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(
        model, (example,), str(path), dynamo=False, opset_version=opset,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
    )  # fmt: skip


def export_onnx(
    model: nn.Module,
    example_input: Tensor,
    path: str | os.PathLike[str],
    *,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
    dynamic_batch: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export ``model`` to ``path`` (atomically), check it, and verify it against PyTorch.

    ``dynamic_batch`` leaves the first dimension free. Raises :class:`OnnxExportError` if
    no exporter succeeds or onnxruntime's output differs from PyTorch's by more than ``atol``.
    """
    import onnx

    if exporter not in ("dynamo", "torchscript"):
        raise ValueError(f"exporter={exporter!r}: choose 'dynamo' or 'torchscript'")
    _check_exportable(model)
    was_training = model.training
    model.eval()
    # torch.export specialises a dimension of size 1, so trace a batch of two
    example = example_input.expand(2, *example_input.shape[1:]) if (
        dynamic_batch and example_input.shape[0] == 1
    ) else example_input  # fmt: skip
    target = Path(path)
    try:
        with atomic_write(target) as tmp, _quiet_exporter():
            errors = []
            for attempt in dict.fromkeys([exporter, "torchscript"]):
                try:
                    _export(model, example, tmp, attempt, opset, dynamic_batch)  # type: ignore[arg-type]
                    break
                except Exception as err:  # noqa: BLE001 - exporters raise many types; report all
                    errors.append(f"{attempt}: {type(err).__name__}: {err}")
                    log.warning("ONNX export with %s failed (%s); trying the next", attempt, err)
            else:
                raise OnnxExportError("no exporter could export the model:\n" + "\n".join(errors))
            onnx.checker.check_model(str(tmp), full_check=True)
            _verify(model, tmp, example_input, atol)
    finally:
        model.train(was_training)
    return target


def _verify(model: nn.Module, path: Path, example_input: Tensor, atol: float) -> None:
    with torch.inference_mode():
        expected = model(example_input)
        actual = OnnxRuntimeModule(path)(example_input)
    if actual.shape != expected.shape or not torch.allclose(actual, expected, atol=atol, rtol=1e-4):
        worst = (actual - expected).abs().max().item() if actual.shape == expected.shape else None
        raise OnnxExportError(
            f"onnxruntime's output differs from PyTorch's (shapes {tuple(actual.shape)} vs "
            f"{tuple(expected.shape)}, max abs difference {worst}); the file was not written"
        )


class OnnxRuntimeModule(nn.Module):
    """An ONNX file run by onnxruntime behind the ``nn.Module`` call interface (inference only).

    It lets every PyTorch-side measurement (accuracy, latency) run on onnxruntime unchanged.
    ``threads=None`` uses ``torch.get_num_threads()`` intra-op threads, as PyTorch would.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        super().__init__()
        ort = _runtime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.threads = options.intra_op_num_threads
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("OnnxRuntimeModule is inference-only; use torch.inference_mode()")
        array = x.detach().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def measure_onnx_latency(
    path: str | os.PathLike[str],
    example_input: Tensor,
    *,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> Latency:
    """Latency of the ONNX file in onnxruntime: warm-up, then median and p95 of repeats.

    The second latency backend of the evaluation table, measured exactly like
    :func:`prunekit.latency.measure_latency` measures PyTorch.

    >>> import tempfile, os
    >>> path = export_onnx(nn.Linear(4, 2).eval(), torch.randn(2, 4),
    ...                    os.path.join(tempfile.mkdtemp(), "m.onnx"), exporter="torchscript")
    >>> measure_onnx_latency(path, torch.randn(1, 4), repeats=5).batch_size
    1
    """
    threads = threads or torch.get_num_threads()
    session = OnnxRuntimeModule(path, threads=threads)
    return measure_latency(session, example_input, warmup=warmup, repeats=repeats, threads=threads)
