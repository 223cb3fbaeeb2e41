import logging

import pytest
import torch
from torch import nn

from prunekit.masks import get_mask, strip
from prunekit.schedules import PolynomialDecay
from prunekit.sparse.nm import GradualNM, is_nm_sparse, nm_mask, nm_violations, prune_nm
from prunekit.train import fit


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (3, 8), (1, 2)])
def test_linear_is_exactly_n_of_m_and_keeps_the_largest(n: int, m: int) -> None:
    layer = nn.Linear(32, 12)
    original = layer.weight.detach().clone()
    achieved = prune_nm(layer, n, m)
    assert achieved == {"weight": pytest.approx(1 - n / m)}
    blocks = layer.weight.detach().reshape(-1, m)
    assert ((blocks != 0).sum(dim=1) == n).all()  # exactly N survivors per block
    kept = original.reshape(-1, m).abs()
    survivors = blocks != 0
    # every survivor outranks every pruned weight of its own block
    low_kept = kept.masked_fill(~survivors, float("inf")).min(dim=1).values
    high_dropped = kept.masked_fill(survivors, -1.0).max(dim=1).values
    assert (low_kept >= high_dropped).all()
    assert torch.equal(layer.weight[survivors.reshape(12, 32)], original[survivors.reshape(12, 32)])


def test_conv_blocks_run_along_input_channels_at_each_kernel_position() -> None:
    conv = nn.Conv2d(8, 6, 3)
    prune_nm(conv, 2, 4)
    weight = conv.weight.detach()
    per_position = (weight != 0).reshape(6, 2, 4, 3, 3).sum(dim=2)  # blocks of 4 input channels
    assert (per_position == 2).all()
    assert is_nm_sparse(weight, 2, 4)


def test_mask_is_the_projects_boolean_buffer_and_strips_cleanly() -> None:
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    prune_nm(net, 2, 4)
    mask = get_mask(net[0])
    assert mask is not None and mask.dtype == torch.bool
    assert torch.equal(mask, net[0].weight != 0)
    strip(net)
    assert sorted(net.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert is_nm_sparse(net[0].weight, 2, 4) and is_nm_sparse(net[2].weight, 2, 4)


def test_earlier_masks_are_kept() -> None:
    layer = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 9.0))
    prune_nm(layer, 3, 4)
    prune_nm(layer, 2, 4)
    assert layer.weight.tolist() == [[0, 0, 3, 4, 0, 0, 7, 8]]
    # a weight pruned before never comes back, even if it is larger than a survivor
    layer.weight_mask[0, 3] = False
    prune_nm(layer, 2, 4)
    assert layer.weight.tolist() == [[0, 0, 3, 0, 0, 0, 7, 8]]


def test_indivisible_layers_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    with caplog.at_level(logging.WARNING):
        achieved = prune_nm(net, 2, 4)
    assert achieved == {"2.weight": 0.5}
    assert torch.count_nonzero(net[0].weight) == net[0].weight.numel()
    assert "dim 1, size 3" in caplog.text


def test_no_prunable_layer_and_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="divisible by M=4"):
        prune_nm(nn.Linear(6, 2), 2, 4)
    with pytest.raises(ValueError, match="0 <= N <= M"):
        prune_nm(nn.Linear(8, 2), 5, 4)
    with pytest.raises(ValueError, match="unknown criterion"):
        prune_nm(nn.Linear(8, 2), 2, 4, criterion="nope")
    with pytest.raises(ValueError, match="multiple of M"):
        nm_mask(torch.ones(2, 6), 2, 4)


def test_violations_are_counted_per_block() -> None:
    weight = torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0], [1.0] * 8])
    assert nm_violations(weight, 2, 4) == 3
    assert not is_nm_sparse(weight, 2, 4)
    assert is_nm_sparse(weight, 4, 4)


def test_gradual_ramp_reaches_2_of_4_and_survives_training() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.randn(256, 16), torch.randint(0, 4, (256,))
    ramp = GradualNM(2, 4, PolynomialDecay(0.0, 0.5, begin_step=0, end_step=20, frequency=5))
    assert [ramp.kept_per_block(s) for s in (0.0, 0.2, 0.3, 0.5, 0.9)] == [4, 4, 3, 2, 2]
    fit(net, x, y, epochs=3, batch_size=16, optimizer="adam", callbacks=[ramp], progress=False)
    for layer in (net[0], net[2]):
        assert is_nm_sparse(layer.weight, 2, 4)
        assert int((layer.weight != 0).sum()) == layer.weight.numel() // 2
