from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from prunekit.export.onnx import (
    OnnxExportError,
    OnnxRuntimeModule,
    export_onnx,
    measure_onnx_latency,
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
