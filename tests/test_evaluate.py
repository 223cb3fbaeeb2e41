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
    measure_latency,
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
    assert layer_sparsity(model) == {"0": 0.5, "2": 0.0}


def test_accuracy_counts_correct_predictions() -> None:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert evaluate_accuracy(model, x, y)["accuracy"] == 0.75


def test_latency_records_its_conditions_and_restores_threads() -> None:
    before = torch.get_num_threads()
    lat = measure_latency(nn.Linear(64, 64), torch.zeros(8, 64), warmup=2, repeats=9, threads=1)
    assert lat.threads == 1 and lat.batch_size == 8 and lat.repeats == 9
    assert 0 < lat.median_ms <= lat.p95_ms
    assert torch.get_num_threads() == before


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
