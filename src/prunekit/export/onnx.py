"""ONNX export of stripped or compacted models, checked, verified, and timed in onnxruntime.

Why: a pruned model is only useful once it runs where it is deployed, and ONNX is how most
runtimes take models in. :func:`export_onnx` writes the file atomically, validates it with
``onnx.checker`` (full check, with shape inference), and runs it in onnxruntime against PyTorch
on *several* inputs (see :func:`validation_inputs`): the example, batch 1, a larger batch of new
values, and shorter sequences when a sequence axis is free. So a file that exists is a file
that works beyond the one input it was traced on.

An exporter traces one run of ``forward``, and a Python ``if`` on a tensor's *values* then
keeps only the branch that run took: the file is wrong, silently, for every input that would
take the other. prunekit refuses such a model with the line of code responsible, and says how
to write the branch so that ONNX keeps both (``torch.cond``, exported as an ONNX ``If``, or
``torch.where``).

Exporters: ``"dynamo"`` (``torch.export``, PyTorch's maintained path; seconds per model),
``"torchscript"`` (the legacy tracer; fast, deprecated). The first dimension (batch) is free by
default (``dynamic_batch``), and ``sequence_dim`` frees a sequence axis too. If the dynamo
exporter fails for another reason than a data-dependent branch (an operator or a shape it
cannot keep free, as ``nn.LSTM``'s sequence length), the legacy one is tried, with a logged
warning, and its trace is refused if it converted a tensor in the model's own code to a Python
value. :mod:`prunekit.export.onnx_runtime` runs and times the file in onnxruntime. Models
must be plain modules: strip
pruning masks first, and export the dense model rather than a sparse-deployed one (the custom
kernel does not exist in ONNX). Each submodule's train/eval mode is the same after as before.

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
import io
import linecache
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from prunekit.export.onnx_runtime import OnnxRuntimeModule, measure_onnx_latency
from prunekit.io import atomic_write
from prunekit.masks import has_masks
from prunekit.modes import eval_mode

__all__ = [
    "DataDependentBranch", "OnnxExportError", "OnnxRuntimeModule", "export_onnx", "free_axes",
    "measure_onnx_latency", "validation_inputs",
]

log = logging.getLogger(__name__)

Exporter = Literal["dynamo", "torchscript"]
INPUT_NAME, OUTPUT_NAME = "input", "output"
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnxscript", "torch.export",
                  "torch._export", "torch.fx.experimental.symbolic_shapes")
_TORCH_DIR = str(Path(torch.__file__).parent)
_CALL_SITE = re.compile(r'File "([^"]+)", line (\d+), in \w+\n\s+(.+)')


class OnnxExportError(RuntimeError):
    """The model could not be exported, or the exported file does not reproduce the model."""


class DataDependentBranch(OnnxExportError):
    """``forward`` branches on a tensor's values: an exported graph would keep one branch."""


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


def _branch_error(
    where: str, code: str, what: str = "branches on tensor values"
) -> DataDependentBranch:
    return DataDependentBranch(
        f"the model's forward {what} at {where} ({code}); an ONNX file would keep what the "
        "example did there and be wrong for other inputs, so it is not exported. Write a "
        "branch as torch.cond(condition, then_fn, else_fn, (x,)) (exported as an ONNX If) or "
        "torch.where(condition, a, b), and keep sizes as tensors (x.shape, not int(...))"
    )


def _data_dependent(err: BaseException) -> DataDependentBranch | None:
    """The branch error for a ``torch.export`` failure caused by a data-dependent branch."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = "\n".join(str(e) for e in chain)
    if not any(isinstance(e, GuardOnDataDependentSymNode) for e in chain) and (
        "data-dependent" not in text
    ):
        return None
    sites = [m for m in _CALL_SITE.finditer(text) if not m.group(1).startswith(_TORCH_DIR)]
    if not sites:
        return _branch_error("a line of its code", "a Python if on a tensor")
    file, line, code = sites[-1].groups()
    return _branch_error(f"{file}:{line}", f"`{code.strip()}`")


def _dynamo(
    model: nn.Module, example: Tensor, path: Path, axes: dict[int, str], opset: int | None
) -> None:
    """``torch.export`` with the free axes (ranges refined as torch suggests), then to ONNX."""
    from torch.export.dynamic_shapes import refine_dynamic_shapes_from_suggested_fixes

    shapes: Any = ({dim: torch.export.Dim(name) for dim, name in axes.items()},) if axes else None
    for attempt in range(2):
        try:  # a failed export prints its partial graph to stderr: the error says enough
            with contextlib.redirect_stderr(io.StringIO()):
                program = torch.export.export(
                    model, (example,), dynamic_shapes=shapes, strict=False
                )
            break
        except Exception as err:  # export raises many types: classified here, or re-raised
            branch = _data_dependent(err)
            if branch is not None:
                raise branch from None
            refined = None
            if attempt == 0 and shapes is not None and "Suggested fixes:" in str(err):
                fixes = str(err).split("Suggested fixes:")[1].split("\n\n")[0]
                refined = refine_dynamic_shapes_from_suggested_fixes(
                    f"Suggested fixes:{fixes}", shapes
                )
            fixed = refined is not None and any(isinstance(d, int) for d in refined[0].values())
            if refined is None or fixed:  # an axis the model (or this exporter) keeps constant
                raise
            shapes = refined  # only ranges narrowed (a positional table's length): keep them
    onnx_program = torch.onnx.export(
        program, (example,), dynamo=True, opset_version=opset,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
    )  # fmt: skip
    onnx_program.save(str(path))
    _name_axes(path, axes)


def _name_axes(path: Path, axes: dict[int, str]) -> None:
    """Rename torch.export's symbols (``s77``) for the free input axes to ``batch``/``sequence``
    everywhere in the file, so a runtime's shape profiles can name them."""
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    names = {dims[d].dim_param: name for d, name in axes.items() if dims[d].dim_param}
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]
    onnx.save(model, str(path))


def _torchscript(
    model: nn.Module, example: Tensor, path: Path, axes: dict[int, str], opset: int | None
) -> None:
    """The legacy tracer, refused when it turned a tensor into a Python value in model code."""
    dynamic = {INPUT_NAME: axes, OUTPUT_NAME: {0: axes[0]} if 0 in axes else {}} if axes else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
        )  # fmt: skip
    baked = [
        w for w in caught
        if issubclass(w.category, torch.jit.TracerWarning)
        and not str(w.filename).startswith(_TORCH_DIR)  # torch's own checks of its parameters
        and "might cause the trace to be incorrect" in str(w.message)
    ]
    if baked:
        first = baked[0]
        code = linecache.getline(first.filename, first.lineno).strip() or "a tensor's value"
        raise _branch_error(f"{first.filename}:{first.lineno}", f"`{code}`",
                            "turns a tensor into a Python value")


def free_axes(example: Tensor, dynamic_batch: bool, sequence_dim: int | None) -> dict[int, str]:
    """Input dimension → name, for each axis the exported file leaves free.

    >>> free_axes(torch.zeros(2, 16, 8), True, 1)
    {0: 'batch', 1: 'sequence'}
    """
    axes = {0: "batch"} if dynamic_batch else {}
    if sequence_dim is not None:
        dim = sequence_dim % example.dim()
        if dim == 0 or not -example.dim() <= sequence_dim < example.dim():
            raise ValueError(
                f"sequence_dim={sequence_dim} must name an input axis other than the batch "
                f"(0); the example has {example.dim()} dimensions"
            )
        axes[dim] = "sequence"
    return axes


def validation_inputs(example: Tensor, axes: dict[int, str]) -> list[tuple[str, Tensor]]:
    """What the file is checked on: the example; new values of its shape; and per free axis,
    other sizes (batch 1 and batch + 1, sequences shorter by one and by half).

    New values follow the example's mean and spread (integers stay in its range), drawn from a
    fixed seed, so a branch or a size the trace kept has inputs that expose it.

    >>> [name for name, _ in validation_inputs(torch.zeros(3, 6, 2), {0: "batch", 1: "sequence"})]
    ['the example', 'new values', 'batch 1', 'batch 4 (new values)', 'sequence length 5', 'sequence length 3']
    """
    generator = torch.Generator().manual_seed(0)

    def new_values(shape: tuple[int, ...]) -> Tensor:
        if example.is_floating_point():
            spread = example.float().std() if example.numel() > 1 else torch.tensor(1.0)
            noise = torch.randn(shape, generator=generator) * spread.clamp(min=1e-3)
            return (noise + example.float().mean()).to(example.dtype)
        low, high = int(example.min()), int(example.max())
        return torch.randint(low, high + 1, shape, generator=generator, dtype=example.dtype)

    inputs = [("the example", example), ("new values", new_values(tuple(example.shape)))]
    if 0 in axes:
        batch = len(example)
        if batch > 1:
            inputs.append(("batch 1", example[:1]))
        inputs.append((f"batch {batch + 1} (new values)", new_values((batch + 1, *example.shape[1:]))))
    for dim, name in axes.items():
        if dim == 0:
            continue
        length = example.shape[dim]
        for shorter in dict.fromkeys(n for n in (length - 1, length // 2) if n >= 1):
            inputs.append((f"{name} length {shorter}", example.narrow(dim, 0, shorter)))
    return inputs


def export_onnx(
    model: nn.Module,
    example_input: Tensor,
    path: str | os.PathLike[str],
    *,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
    dynamic_batch: bool = True,
    sequence_dim: int | None = None,
    atol: float = 1e-4,
) -> Path:
    """Export ``model`` to ``path`` (atomically), check it, and verify it against PyTorch.

    ``dynamic_batch`` leaves the first dimension free; ``sequence_dim`` (e.g. 1 for
    ``N×T×F`` inputs) leaves that axis free too. Raises :class:`DataDependentBranch` for a
    ``forward`` that branches on tensor values, and :class:`OnnxExportError` if no exporter
    succeeds or onnxruntime's output differs from PyTorch's by more than ``atol`` on any of
    :func:`validation_inputs`; nothing is written then.
    """
    import onnx

    if exporter not in ("dynamo", "torchscript"):
        raise ValueError(f"exporter={exporter!r}: choose 'dynamo' or 'torchscript'")
    _check_exportable(model)
    axes = free_axes(example_input, dynamic_batch, sequence_dim)
    # torch.export specialises a dimension of size 1, so trace free axes at length two at least
    example = example_input.expand(
        *(2 if dim in axes and size == 1 else -1 for dim, size in enumerate(example_input.shape))
    )
    target = Path(path)
    with eval_mode(model), atomic_write(target) as tmp, _quiet_exporter():
        errors = []
        for attempt in dict.fromkeys([exporter, "torchscript"]):
            try:
                (_dynamo if attempt == "dynamo" else _torchscript)(model, example, tmp, axes, opset)
                break
            except DataDependentBranch:
                raise
            except Exception as err:  # noqa: BLE001 - exporters raise many types; report all
                first = _summary(err)
                errors.append(f"{attempt}: {type(err).__name__}: {first}")
                log.warning("ONNX export with %s failed (%s); trying the next", attempt, first)
        else:
            raise OnnxExportError("no exporter could export the model: " + "; ".join(errors))
        onnx.checker.check_model(str(tmp), full_check=True)
        _verify(model, tmp, validation_inputs(example_input, axes), atol)
    return target


def _summary(err: BaseException) -> str:
    """One line of an exporter's error: its first, or the violated constraint it names."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [""]
    if lines[0].startswith("Constraints violated") and len(lines) > 1:
        return lines[1].removeprefix("- ")
    return lines[0]


def _verify(model: nn.Module, path: Path, inputs: list[tuple[str, Tensor]], atol: float) -> None:
    runtime = OnnxRuntimeModule(path)
    for name, x in inputs:
        with torch.inference_mode():
            try:
                expected = model(x)
            except Exception as err:  # noqa: BLE001 - a model raises what it raises
                raise OnnxExportError(
                    f"the model itself fails on {name} (input shape {tuple(x.shape)}: "
                    f"{type(err).__name__}: {_summary(err)}); if it takes "
                    "only the example's size, export with dynamic_batch=False (and no sequence_dim)"
                ) from None
            try:
                actual = runtime(x)
            except Exception as err:  # noqa: BLE001 - onnxruntime's errors are not typed
                raise OnnxExportError(
                    f"onnxruntime cannot run the exported file on {name} (input shape "
                    f"{tuple(x.shape)}): {_summary(err)}; the export fixed a "
                    "size the model needs free (export with dynamic_batch=False, or without "
                    "sequence_dim, if the model really takes one size); the file was not written"
                ) from None
        same = actual.shape == expected.shape and torch.allclose(
            actual, expected, atol=atol, rtol=1e-4
        )
        if not same:
            if actual.shape == expected.shape:
                how = f"max abs difference {(actual - expected).abs().max().item():.3g}"
            else:
                how = f"output shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
            raise OnnxExportError(
                f"onnxruntime's output differs from PyTorch's on {name} (input shape "
                f"{tuple(x.shape)}, {how}): the export kept something of the example (a "
                "branch, a size) that this input changes; the file was not written"
            )
