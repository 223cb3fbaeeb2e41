"""BatchNorm folding keeps outputs and removes every conv-following BatchNorm."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models import build_model
from prunekit.structured.deploy import fold_batch_norms, prepare_for_cpu
from prunekit.structured.prune import prune_channels


def _with_statistics(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32))
    return model.eval()


def test_fold_keeps_a_pruned_resnet_outputs() -> None:
    model = _with_statistics(build_model("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    prune_channels(model, x, ratio=0.5)
    expected = model(x)
    assert fold_batch_norms(model) == 21  # stem, 18 in blocks, 2 shortcuts
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


def test_prepare_for_cpu_is_channels_last_and_equivalent() -> None:
    model = _with_statistics(build_model("resnet20"))
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    prepare_for_cpu(model)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
