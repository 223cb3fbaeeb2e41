"""BatchNorm re-estimation: the statistics are the model's on the given batches, nothing else
changes, and dropout does not leak into them."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.batchnorm_stats import has_batchnorm, reestimate_batchnorm


def test_statistics_are_the_cumulative_ones_of_the_batches_with_dropout_off() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.9), nn.BatchNorm1d(5)).eval()
    net[2].momentum = 0.3
    batches = [torch.randn(32, 6) * 2 + 1 for _ in range(3)]
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    assert reestimate_batchnorm(net, batches)
    with torch.no_grad():
        features = [net[0](b) for b in batches]  # what BatchNorm sees with dropout off
    mean = torch.stack([f.mean(0) for f in features]).mean(0)
    var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(net[2].running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net[2].running_var, var, rtol=1e-5, atol=1e-5)
    assert net[2].momentum == 0.3 and not net.training and not net[1].training
    assert all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())


def test_nothing_to_do_changes_nothing() -> None:
    net = nn.Sequential(nn.Linear(3, 3))
    assert not reestimate_batchnorm(net, [torch.randn(4, 3)])
    bn = nn.Sequential(nn.BatchNorm1d(3))
    assert not reestimate_batchnorm(bn, [])
    assert torch.equal(bn[0].running_mean, torch.zeros(3))


def test_has_batchnorm_sees_only_norms_with_running_statistics() -> None:
    assert has_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    assert not has_batchnorm(nn.Sequential(nn.BatchNorm1d(2, track_running_stats=False)))
    assert not has_batchnorm(nn.Sequential(nn.Linear(2, 2)))
