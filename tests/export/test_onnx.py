from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from prunekit.export.onnx import (
    DataDependentBranch,
    OnnxExportError,
    OnnxRuntimeModule,
    export_onnx,
    free_axes,
    measure_onnx_latency,
    validation_inputs,
)
from prunekit.masks import set_mask, strip
from prunekit.models import build_model
from prunekit.sparse.layers import SparseLinear
from prunekit.unstructured import prune_by_ratio


def pruned_lenet() -> nn.Module:
    model = build_model("lenet300")
    prune_by_ratio(model, 0.9)
    return strip(model).eval()


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 7 * 7, 10),
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def dynamo_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = pruned_lenet()
    path = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path_factory.mktemp("onnx") / "m.onnx")
    return model, path


@pytest.mark.slow  # the dynamo exporter takes ~10 s per model on 2 cores
def test_dynamo_export_is_valid_and_matches_pytorch_at_any_batch(
    dynamo_file: tuple[nn.Module, Path],
) -> None:
    model, path = dynamo_file
    onnx.checker.check_model(str(path), full_check=True)
    runtime = OnnxRuntimeModule(path)
    for batch in (1, 7):
        x = torch.randn(batch, 1, 28, 28)
        with torch.inference_mode():
            assert torch.allclose(runtime(x), model(x), atol=1e-4)


@pytest.mark.slow
def test_zeros_of_a_pruned_model_survive_export(dynamo_file: tuple[nn.Module, Path]) -> None:
    model, path = dynamo_file
    initializers = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    exported_zeros = sum(int((a == 0).sum()) for a in initializers if a.ndim == 2)
    dense_zeros = sum(
        int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, nn.Linear)
    )
    assert exported_zeros == dense_zeros > 0


def test_torchscript_export_of_a_cnn_with_batchnorm(tmp_path: Path) -> None:
    model = small_cnn()
    path = export_onnx(
        model, torch.randn(3, 1, 14, 14), tmp_path / "cnn.onnx", exporter="torchscript"
    )
    x = torch.randn(5, 1, 14, 14)
    with torch.inference_mode():
        assert torch.allclose(OnnxRuntimeModule(path)(x), model(x), atol=1e-4)


def test_onnxruntime_latency_is_measured_like_pytorch(tmp_path: Path) -> None:
    path = export_onnx(
        small_cnn(), torch.randn(2, 1, 14, 14), tmp_path / "m.onnx", exporter="torchscript"
    )
    latency = measure_onnx_latency(path, torch.randn(4, 1, 14, 14), warmup=2, repeats=7, threads=1)
    assert latency.batch_size == 4 and latency.threads == 1 and latency.repeats == 7
    assert 0 < latency.median_ms <= latency.p95_ms


def test_masked_and_sparse_deployed_models_are_refused(tmp_path: Path) -> None:
    masked = nn.Linear(4, 2)
    set_mask(masked, "weight", torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="strip"):
        export_onnx(masked, torch.randn(2, 4), tmp_path / "a.onnx")
    deployed = nn.Sequential(SparseLinear.from_dense(nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="before prunekit.sparse.deploy"):
        export_onnx(deployed, torch.randn(2, 4), tmp_path / "b.onnx")
    with pytest.raises(ValueError, match="exporter="):
        export_onnx(nn.Linear(4, 2), torch.randn(2, 4), tmp_path / "c.onnx", exporter="tf")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_does_not_reproduce_the_model_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "bad.onnx"
    target.write_bytes(b"previous")
    run = OnnxRuntimeModule.forward
    monkeypatch.setattr(OnnxRuntimeModule, "forward", lambda self, x: run(self, x) + 1e-3)
    with pytest.raises(OnnxExportError, match="differs"):
        export_onnx(nn.Linear(3, 2), torch.ones(2, 3), target, exporter="torchscript")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]


class BranchOnValues(nn.Module):
    """The issue's model: which layer runs depends on the input's values."""

    def __init__(self) -> None:
        super().__init__()
        self.positive, self.negative = nn.Linear(8, 4), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return self.positive(x)
        return self.negative(x)


class BranchWithCond(BranchOnValues):
    """The same model, with the branch written so that an exporter can keep both sides."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.mean() > 0, self.positive, self.negative, (x,))


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_a_branch_on_values_is_refused_with_its_line(tmp_path: Path, exporter: str) -> None:
    model = BranchOnValues().eval()
    with pytest.raises(DataDependentBranch, match=r"test_onnx.py:\d+ \(`if x.mean\(\) > 0:`\).*torch.cond"):
        export_onnx(model, torch.randn(4, 8) + 1.0, tmp_path / "m.onnx", exporter=exporter)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # the dynamo exporter: seconds per model
def test_torch_cond_exports_both_branches(tmp_path: Path) -> None:
    model = BranchWithCond().eval()
    path = export_onnx(model, torch.randn(4, 8) + 1.0, tmp_path / "m.onnx")
    runtime = OnnxRuntimeModule(path)
    for x in (torch.randn(3, 8) + 1.0, torch.randn(5, 8) - 1.0):  # one input per branch
        with torch.inference_mode():
            torch.testing.assert_close(runtime(x), model(x), atol=1e-5, rtol=1e-5)
    assert "If" in {node.op_type for node in onnx.load(str(path)).graph.node}


def _axes(path: Path) -> list[str | int]:
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


def test_sequence_length_and_batch_stay_free(tmp_path: Path) -> None:
    model = build_model("lstm", input_size=6, hidden_size=8).eval()
    path = export_onnx(model, torch.randn(2, 9, 6), tmp_path / "lstm.onnx", exporter="torchscript",
                       sequence_dim=1)
    assert _axes(path) == ["batch", "sequence", 6]
    runtime = OnnxRuntimeModule(path)
    for shape in ((1, 3, 6), (5, 20, 6)):  # beyond what validation itself tried
        x = torch.randn(*shape)
        with torch.inference_mode():
            torch.testing.assert_close(runtime(x), model(x), atol=1e-5, rtol=1e-4)


def test_every_validation_input_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = OnnxRuntimeModule.forward
    wrong_alone = lambda self, x: run(self, x) + (0.35 if len(x) == 1 else 0.0)
    monkeypatch.setattr(OnnxRuntimeModule, "forward", wrong_alone)
    with pytest.raises(OnnxExportError, match=r"on batch 1 \(input shape \(1, 3\).*difference 0.35"):
        export_onnx(nn.Linear(3, 2), torch.ones(4, 3), tmp_path / "m.onnx", exporter="torchscript")
    assert list(tmp_path.iterdir()) == []


def test_validation_inputs_vary_every_free_axis() -> None:
    example = torch.rand(3, 6, 2)
    inputs = dict(validation_inputs(example, free_axes(example, True, 1)))
    assert {name: tuple(x.shape) for name, x in inputs.items()} == {
        "the example": (3, 6, 2), "new values": (3, 6, 2), "batch 1": (1, 6, 2),
        "batch 4 (new values)": (4, 6, 2), "sequence length 5": (3, 5, 2),
        "sequence length 3": (3, 3, 2),
    }
    assert not torch.equal(inputs["new values"], example)
    tokens = torch.randint(3, 9, (2, 5))
    drawn = dict(validation_inputs(tokens, {0: "batch"}))["new values"]
    assert drawn.dtype == torch.int64 and 3 <= int(drawn.min()) and int(drawn.max()) <= 8
    with pytest.raises(ValueError, match="other than the batch"):
        free_axes(example, True, 0)


def test_a_model_that_takes_one_batch_size_says_how_to_export_it(tmp_path: Path) -> None:
    class FixedBatch(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(2, -1) * 2

    with pytest.raises(OnnxExportError, match="model itself fails on batch 1.*dynamic_batch=False"):
        export_onnx(FixedBatch(), torch.randn(2, 3), tmp_path / "a.onnx", exporter="torchscript")
    path = export_onnx(FixedBatch(), torch.randn(2, 3), tmp_path / "b.onnx",
                       exporter="torchscript", dynamic_batch=False)
    assert _axes(path) == [2, 3]


def test_export_gives_back_each_submodules_own_mode(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    model[1].eval()  # training model, dropout deliberately off
    export_onnx(model, torch.randn(3, 4), tmp_path / "m.onnx", exporter="torchscript")
    assert [m.training for m in model.modules()] == [True, True, False, True]
