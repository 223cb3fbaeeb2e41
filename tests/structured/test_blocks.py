"""Block removal: residual blocks are found, scored by their branch, and become identities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.models import build_model
from prunekit.structured.blocks import remove_blocks, residual_blocks


def test_finds_identity_shortcut_blocks_only() -> None:
    model = build_model("resnet20")
    found = residual_blocks(model, torch.zeros(1, 3, 32, 32))
    # stage 2 and 3 open with a strided block whose shortcut is a conv: not removable
    assert found == [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3) if (s, b) not in
                     ((2, 0), (3, 0))]


def test_block_with_zero_branch_is_removed_first_and_exactly() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    with torch.no_grad():
        model.layer2[1].bn2.weight.zero_()
        model.layer2[1].bn2.bias.zero_()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    removed = remove_blocks(model, x, count=1)
    assert [r.name for r in removed] == ["layer2.1"] and removed[0].change == 0.0
    assert isinstance(model.layer2[1], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=1e-5, rtol=0)


def test_user_candidates_must_preserve_shape() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    removed = remove_blocks(model, x, count=1, candidates=["2"])
    assert removed[0].name == "2" and isinstance(model[2], nn.Identity)
    assert model(x).shape == (3, 2)
    with pytest.raises(ValueError, match="shape-preserving"):
        remove_blocks(model, x, count=1, candidates=["0"])
    with pytest.raises(ValueError, match="count must be"):
        remove_blocks(model, x, count=2, candidates=["4"])
