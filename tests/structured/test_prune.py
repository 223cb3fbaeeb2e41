"""The pruner's targets: per-layer and global ratios, MACs targets, rounding, ignored layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.evaluate import count_macs
from prunekit.models import build_model
from prunekit.structured.prune import prune_channels


def _convnet() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 10),
    )


X = torch.randn(2, 3, 8, 8)


def test_layer_ratio_removes_that_fraction_of_every_group() -> None:
    net = _convnet()
    report = prune_channels(net, X, ratio=0.5)
    assert (net[0].out_channels, net[3].out_channels, net[8].out_features) == (16, 32, 20)
    assert net[10].out_features == 10  # the classifier keeps its classes
    assert report.removed == 68 and report.units == 136
    assert net(X).shape == (2, 10)


def test_global_ratio_respects_the_per_layer_maximum() -> None:
    net = _convnet()
    with torch.no_grad():
        net[1].weight[4:] = 1e-3  # 28 of the first layer's channels look useless
    report = prune_channels(net, X, ratio=0.4, scope="global", max_layer_ratio=0.75,
                            criterion="bn_scale")
    assert report.removed == int(0.4 * (32 + 64))  # the Linear group has no BN: no score
    assert net[0].out_channels == 8  # capped at 75 %
    assert net[8].out_features == 40
    assert sum(g.removed for g in report.groups) == report.removed


def test_max_macs_fraction_and_absolute() -> None:
    dense = count_macs(_convnet(), X)
    net = _convnet()
    report = prune_channels(net, X, max_macs=0.5)
    after = count_macs(net, X)
    assert after <= 0.5 * dense and after > 0.4 * dense
    assert report.estimated_macs_fraction == pytest.approx(after / dense, abs=0.02)
    net = _convnet()
    prune_channels(net, X, max_macs=int(0.3 * dense), scope="global")
    assert count_macs(net, X) <= 0.3 * dense


def test_unreachable_macs_target_fails_clearly() -> None:
    with pytest.raises(ValueError, match="raise max_layer_ratio"):
        prune_channels(_convnet(), X, max_macs=0.001, max_layer_ratio=0.5)


def test_round_to_keeps_multiples() -> None:
    net = _convnet()
    prune_channels(net, X, ratio=0.3, round_to=8)
    assert net[0].out_channels % 8 == 0 and net[3].out_channels % 8 == 0
    assert net[8].out_features % 8 == 0
    assert net[3].out_channels == 48


def test_ignored_layer_keeps_its_outputs() -> None:
    net = _convnet()
    prune_channels(net, X, ratio=0.5, ignore=["3"])
    assert net[3].out_channels == 64 and net[3].in_channels == 16


def test_data_driven_criterion_through_the_pruner() -> None:
    net = _convnet()
    data = [(torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,)))]
    prune_channels(net, X, ratio=0.25, criterion="taylor", data=data)
    assert net[0].out_channels == 24


def test_bn_scale_leaves_groups_without_batchnorm() -> None:
    net = _convnet()
    prune_channels(net, X, ratio=0.5, criterion="bn_scale")
    assert net[0].out_channels == 16 and net[8].out_features == 40


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one target"),
        ({"ratio": 0.5, "max_macs": 0.5}, "exactly one target"),
        ({"ratio": 1.0}, "ratio must be"),
        ({"ratio": 0.5, "scope": "model"}, "scope must be"),
        ({"ratio": 0.5, "round_to": 0}, "round_to"),
        ({"max_macs": 1.5}, "fraction"),
    ],
)
def test_bad_arguments_fail_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prune_channels(_convnet(), X, **kwargs)


def test_resnet18_half_channels_matches_torch_pruning_macs() -> None:
    model = build_model("resnet18")
    x = torch.randn(1, 3, 64, 64)
    dense = count_macs(model, x)
    prune_channels(model, x, ratio=0.5)
    assert dense / count_macs(model, x) == pytest.approx(3.74, abs=0.05)
    assert model(x).shape == (1, 1000)
