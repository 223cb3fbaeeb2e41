from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from prunekit.evaluate import (
    count_macs,
    count_params,
    evaluate_accuracy,
    layer_sparsity,
    prunable_sparsity,
)
from prunekit.models import build_model


def test_macs_match_the_hand_count_for_lenet300() -> None:
    model = build_model("lenet300")
    assert count_macs(model, torch.zeros(1, 1, 28, 28)) == 784 * 300 + 300 * 100 + 100 * 10


def test_macs_for_a_conv_layer() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    # every output element: 3*3*3 MACs; 8*16*16 outputs
    assert count_macs(conv, torch.zeros(1, 3, 16, 16)) == 27 * 8 * 16 * 16


def test_params_nonzero_and_sparsity() -> None:
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    with torch.no_grad():
        model[0].weight[:, :5] = 0  # half of the first layer's 100 weights
    params, nonzero = count_params(model)
    assert params == 100 + 10 + 20 + 2
    assert nonzero == params - 50
    assert prunable_sparsity(model) == pytest.approx(50 / 120)
    assert layer_sparsity(model) == {"0.weight": 0.5, "2.weight": 0.0}


def test_accuracy_counts_correct_predictions() -> None:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert evaluate_accuracy(model, x, y)["accuracy"] == 0.75


def test_saved_weight_files_load_back(tmp_path: Path) -> None:
    from prunekit.evaluate import save_weights
    from prunekit.sparse.storage import load_state_dict

    model = build_model("lenet300")
    with torch.no_grad():
        for p in model.parameters():
            p[p.abs() < p.abs().quantile(0.9)] = 0
    dense, compressed = save_weights(model, tmp_path)
    for loaded in (load_file(str(dense)), load_state_dict(compressed)):
        assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert compressed.stat().st_size < 0.2 * dense.stat().st_size


def test_measure_writes_the_variant_files(tmp_path: Path) -> None:
    from prunekit.evaluate import measure
    from prunekit.masks import strip
    from prunekit.unstructured import prune_by_ratio

    model = build_model("lenet300")
    prune_by_ratio(model, 0.9)
    strip(model)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    row = measure("v", model, x, y, out_dir=tmp_path, onnx=True).as_row()
    assert row["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert row["file_bytes"] == (tmp_path / "model.sparse.safetensors").stat().st_size
    assert row["dense_file_bytes"] == (tmp_path / "model.safetensors").stat().st_size
    assert row["file_bytes"] < 0.15 * row["dense_file_bytes"]
    assert row["onnx_file_bytes"] == (tmp_path / "model.onnx").stat().st_size


def test_weight_files_are_whole_models_that_load_without_code(tmp_path: Path) -> None:
    import prunekit
    from prunekit.evaluate import save_weights

    model = build_model("lenet5").eval()
    dense, compressed = save_weights(model, tmp_path)
    x = torch.rand(2, 1, 28, 28)
    for path in (dense, compressed):
        assert torch.equal(prunekit.load(path)(x), model(x))


def test_untraceable_models_are_saved_as_weights(tmp_path: Path, caplog) -> None:
    from prunekit.evaluate import save_weights
    from prunekit.sparse.storage import load_state_dict

    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -x

    model = DataDependent()
    dense, compressed = save_weights(model, tmp_path)
    assert "cannot trace" in caplog.text
    for path in (dense, compressed):
        assert all(torch.equal(load_state_dict(path)[k], v) for k, v in model.state_dict().items())


class _Attend(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.scaled_dot_product_attention(
            q, k, k, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_macs_of_attention_and_bilinear_match_the_hand_count(kv_heads: int) -> None:
    q, k = torch.zeros(2, 4, 5, 8), torch.zeros(2, kv_heads, 7, 8)
    mask = torch.ones(2, 1, 5, 7, dtype=torch.bool)
    # q·kᵀ and weights·v: every query head of every sample meets 7 keys of width 8, twice
    assert count_macs(_Attend(), (q, k, mask)) == 2 * (2 * 4 * 5 * 7 * 8)
    assert count_macs(nn.Bilinear(3, 4, 5), (torch.zeros(6, 3), torch.zeros(6, 4))) == 6 * 60


def test_measuring_leaves_every_submodule_in_its_own_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(), nn.BatchNorm1d(4)).train()
    model[2].eval()  # a frozen BatchNorm
    count_macs(model, torch.zeros(3, 4))
    evaluate_accuracy(model, torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    assert [m.training for m in model] == [True, True, False]


def test_measure_scores_the_task_and_keeps_each_submodules_mode(tmp_path: Path) -> None:
    from prunekit.evaluate import measure

    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    model[1].eval()
    x = torch.randn(32, 5)
    y = x[:, :2] * 2.0
    row = measure("r", model, x, y, out_dir=tmp_path, task="regression").as_row()
    assert row["task"] == "regression" and {"r2", "mse", "mae"} <= set(row)
    assert row["loss"] == pytest.approx(row["mse"]) and row["accuracy"] != row["accuracy"]  # NaN
    assert [m.training for m in model] == [True, False, True] and model.training
