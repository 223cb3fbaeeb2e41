from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.models.vgg import VGG, vgg11, vgg16


@pytest.mark.parametrize(("factory", "convs"), [(vgg11, 8), (vgg16, 13)])
def test_depth_and_batchnorm_after_every_conv(factory, convs: int) -> None:
    layers = list(factory().features)
    conv_positions = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(conv_positions) == convs
    assert all(isinstance(layers[i + 1], nn.BatchNorm2d) for i in conv_positions)
    assert sum(isinstance(m, nn.MaxPool2d) for m in layers) == 5


@pytest.mark.parametrize("size", [28, 32, 40])
def test_any_input_size_reaches_a_512_feature(size: int) -> None:
    model = vgg11(in_channels=1).eval()
    features = model.features(torch.rand(1, 1, size, size))
    assert features.shape[:2] == (1, 512)
    assert model(torch.rand(1, 1, size, size)).shape == (1, 10)


def test_unknown_depth_is_explained() -> None:
    with pytest.raises(ValueError, match="vgg19"):
        VGG("vgg19")
