"""ONNX export that never bakes in a branch or a size: the legacy path beside ``export_onnx``.

For each model, two files are checked against PyTorch on held-out inputs the export never saw
(the other side of a data-dependent branch, other batch sizes, other sequence lengths):

- *legacy*: what prunekit did before (and what a plain ``torch.onnx.export(..., dynamo=False)``
  with a free batch axis does): one trace, validated on the example alone;
- *prunekit*: :func:`prunekit.export.onnx.export_onnx` with its default exporter (dynamo), a
  free batch axis and, for sequence models, ``sequence_dim=1``.

A cell is the largest absolute difference from PyTorch over the held-out inputs, "fails" when
onnxruntime cannot run one of them, or "refused" with the reason export_onnx gave.

    .venv/bin/python benchmarks/onnx_export.py            # all models
    .venv/bin/python benchmarks/onnx_export.py --quick    # two models (smoke test)
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import torch
from common import print_table, write_results
from torch import Tensor, nn

from prunekit.export.onnx import OnnxExportError, OnnxRuntimeModule, export_onnx
from prunekit.masks import strip
from prunekit.models import build_model
from prunekit.unstructured import prune_by_ratio


class BranchOnValues(nn.Module):
    """The issue's model: ``forward`` picks a layer by the sign of the input's mean."""

    def __init__(self) -> None:
        super().__init__()
        self.positive, self.negative = nn.Linear(16, 8), nn.Linear(16, 8)

    def forward(self, x: Tensor) -> Tensor:
        if x.mean() > 0:
            return self.positive(x)
        return self.negative(x)


class BranchWithCond(BranchOnValues):
    """The same branch written with ``torch.cond``: exported as an ONNX ``If``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cond(x.mean() > 0, self.positive, self.negative, (x,))


Case = tuple[str, nn.Module, Tensor, int | None, list[tuple[str, Tensor]]]


def _cases(quick: bool) -> list[Case]:
    torch.manual_seed(0)
    sign = [("mean > 0, batch 3", torch.randn(3, 16) + 1), ("mean < 0, batch 5", torch.randn(5, 16) - 1)]
    lenet = build_model("lenet300")
    prune_by_ratio(lenet, 0.9, scope="global")
    cases: list[Case] = [
        ("branch on values (Python if)", BranchOnValues(), torch.randn(4, 16) + 1, None, sign),
        ("LeNet-300-100, 90 % sparse", strip(lenet), torch.rand(1, 1, 28, 28), None,
         [(f"batch {b}", torch.rand(b, 1, 28, 28)) for b in (1, 7, 64)]),
    ]
    if quick:
        return cases
    sequences = [(f"batch {b}, length {t}", torch.randn(b, t, 28)) for b, t in ((2, 28), (1, 14), (6, 7))]
    return cases + [
        ("branch with torch.cond", BranchWithCond(), torch.randn(4, 16) + 1, None, sign),
        ("LSTM classifier (zoo lstm)", build_model("lstm"), torch.randn(2, 28, 28), 1, sequences),
        ("tiny transformer (zoo)", build_model("tiny_transformer"), torch.randn(2, 28, 28), 1,
         sequences),
        ("conv autoencoder (zoo)", build_model("conv_autoencoder"), torch.rand(2, 1, 28, 28), None,
         [(f"batch {b}", torch.rand(b, 1, 28, 28)) for b in (1, 5)]),
    ]


def _worst(model: nn.Module, path: Path, inputs: list[tuple[str, Tensor]]) -> str:
    runtime = OnnxRuntimeModule(path)
    worst = 0.0
    for name, x in inputs:
        with torch.inference_mode():
            try:
                actual = runtime(x)
            except Exception as err:  # noqa: BLE001 - onnxruntime's errors are not typed
                return f"fails on {name} ({type(err).__name__})"
            worst = max(worst, float((actual - model(x)).abs().max()))
    return f"{worst:.2g}"


def _legacy(model: nn.Module, example: Tensor, path: Path) -> None:
    """The pre-fix fallback: one TorchScript trace with a free batch axis, warnings ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, input_names=["input"],
            output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )  # fmt: skip


def _row(case: Case, folder: Path) -> dict:
    label, model, example, sequence_dim, held_out = case
    model.eval()
    try:
        _legacy(model, example, folder / "legacy.onnx")
        legacy = _worst(model, folder / "legacy.onnx", held_out)
    except Exception as err:  # noqa: BLE001 - the tracer raises many types
        legacy = f"cannot export ({type(err).__name__})"
    try:
        path = export_onnx(model, example, folder / "prunekit.onnx", sequence_dim=sequence_dim)
        ours = _worst(model, path, held_out)
    except OnnxExportError as err:
        ours = "refused: " + str(err).split(";")[0]
    return {"model": label, "held_out": [name for name, _ in held_out], "legacy": legacy,
            "prunekit": ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two models")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [_row(case, Path(tmp)) for case in _cases(args.quick)]
    print("max |ONNX − PyTorch| on held-out inputs (other branch, batch sizes, lengths)")
    print_table(["model", "held-out inputs", "legacy export", "prunekit export_onnx"],
                [[r["model"], "; ".join(r["held_out"]), r["legacy"], r["prunekit"]] for r in rows])
    print(f"wrote {write_results('onnx_export', {'quick': args.quick, 'rows': rows})}")


if __name__ == "__main__":
    main()
