from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.models.resnet import CifarResNet, resnet18, resnet20, resnet50, resnet56


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_imagenet_resnets_match_torchvision_parameter_counts() -> None:
    assert _params(resnet18()) == 11_689_512
    assert _params(resnet50()) == 25_557_032


def test_imagenet_resnets_use_torchvision_names() -> None:
    keys = set(resnet50().state_dict())
    assert {"conv1.weight", "bn1.running_var", "fc.weight", "fc.bias"} <= keys
    assert "layer1.0.downsample.0.weight" in keys  # projection on the first bottleneck
    assert "layer1.0.conv3.weight" in keys and "layer4.2.bn3.num_batches_tracked" in keys
    assert "layer1.1.downsample.0.weight" not in keys
    assert len(keys) == 320
    # ResNet-50 v1.5: the stride sits on the 3x3 conv, not on the first 1x1.
    block = resnet50().layer2[0]
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)


def test_cifar_resnets_have_option_b_shortcuts_only_where_shape_changes() -> None:
    model = resnet56()
    projections = [name for name, _ in model.named_modules() if name.endswith("downsample")]
    assert projections == ["layer2.0.downsample", "layer3.0.downsample"]
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 55 + 2
    assert _params(resnet20()) == 272_474
    assert _params(model) == 855_770


def test_cifar_resnet_accepts_mnist_and_keeps_resolution_through_stage_one() -> None:
    model = resnet20(in_channels=1).eval()
    x = torch.rand(2, 1, 28, 28)
    assert model.layer1(model.relu(model.bn1(model.conv1(x)))).shape == (2, 16, 28, 28)
    assert model(x).shape == (2, 10)


def test_residual_is_added() -> None:
    """With the second BN zeroed, a block without projection reduces to relu(x)."""
    block = resnet18().layer1[0].eval()
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.randn(1, 64, 8, 8)
    assert torch.equal(block(x), torch.relu(x))


def test_bad_cifar_depth_is_explained() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)
