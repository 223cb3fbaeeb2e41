"""ONNX files run by onnxruntime behind the ``nn.Module`` call, and timed like PyTorch.

Why: every PyTorch-side measurement (accuracy, latency, the export's own validation) can then
run on onnxruntime unchanged, and :func:`measure_onnx_latency` *is*
:func:`prunekit.latency.measure_latency` applied to :class:`OnnxRuntimeModule`, so the two
backends stand side by side in a report, measured the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.latency import Latency, measure_latency


def _runtime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:  # the 'export' extra is optional
        raise ImportError(
            "ONNX export needs onnx and onnxruntime: pip install 'prunekit[export]'"
        ) from err
    return onnxruntime


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
    >>> from prunekit.export.onnx import export_onnx
    >>> path = export_onnx(nn.Linear(4, 2).eval(), torch.randn(2, 4),
    ...                    os.path.join(tempfile.mkdtemp(), "m.onnx"), exporter="torchscript")
    >>> measure_onnx_latency(path, torch.randn(1, 4), repeats=5).batch_size
    1
    """
    threads = threads or torch.get_num_threads()
    session = OnnxRuntimeModule(path, threads=threads)
    return measure_latency(session, example_input, warmup=warmup, repeats=repeats, threads=threads)
