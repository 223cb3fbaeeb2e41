from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.models.mobilenet import MobileNetV2, make_divisible


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_and_names_match_torchvision() -> None:
    model = MobileNetV2()
    assert _params(model) == 3_504_872
    keys = set(model.state_dict())
    assert {
        "features.0.0.weight",
        "features.1.conv.0.0.weight",
        "features.1.conv.1.weight",
        "features.2.conv.3.running_mean",
        "features.18.0.weight",
        "classifier.1.weight",
    } <= keys


def test_depthwise_convs_and_residuals() -> None:
    model = MobileNetV2()
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    residual = [m for m in model.features[1:-1] if m.use_res_connect]
    assert len(residual) == 10  # repeats after the first of each stage: 1+2+3+2+2


@pytest.mark.parametrize("width", [0.35, 0.5, 1.4])
def test_width_mult_scales_widths_to_multiples_of_eight(width: float) -> None:
    model = MobileNetV2(num_classes=10, width_mult=width).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert convs[0].out_channels == make_divisible(32 * width)
    assert model.classifier[1].in_features == make_divisible(1280 * max(1.0, width))
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_bad_width_is_explained() -> None:
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2(width_mult=0)
