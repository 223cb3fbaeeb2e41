"""Properties every zoo model must have: registered, deterministic, fx-traceable, right shapes."""

from __future__ import annotations

import pytest
import torch
from torch import fx

from prunekit.models import MODELS, build_model

# (zoo name, constructor kwargs, input shape, output shape) — small inputs keep the suite fast.
CASES = [
    ("vgg11", {"in_channels": 1}, (2, 1, 28, 28), (2, 10)),
    ("vgg16", {}, (2, 3, 32, 32), (2, 10)),
    ("resnet20", {"in_channels": 1}, (2, 1, 28, 28), (2, 10)),
    ("resnet56", {}, (2, 3, 32, 32), (2, 10)),
    ("resnet18", {"num_classes": 7}, (1, 3, 64, 64), (1, 7)),
    ("resnet50", {"in_channels": 1, "num_classes": 5}, (1, 1, 64, 64), (1, 5)),
    ("mobilenet_v2", {"num_classes": 10}, (1, 3, 64, 64), (1, 10)),
    ("autoencoder", {}, (2, 1, 28, 28), (2, 1, 28, 28)),
    ("conv_autoencoder", {}, (2, 1, 28, 28), (2, 1, 28, 28)),
    ("lstm", {}, (2, 1, 28, 28), (2, 10)),
    ("tiny_transformer", {}, (2, 1, 28, 28), (2, 10)),
]


def test_every_new_model_is_registered() -> None:
    assert {name for name, *_ in CASES} <= set(MODELS)


@pytest.mark.parametrize(("name", "kwargs", "in_shape", "out_shape"), CASES)
def test_shape_trace_and_determinism(
    name: str, kwargs: dict, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> None:
    torch.manual_seed(1)
    model = build_model(name, **kwargs).eval()
    torch.manual_seed(1)
    twin = build_model(name, **kwargs).eval()
    for (key, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b), f"{name}: {key} differs between two builds with the same seed"

    x = torch.rand(in_shape)
    with torch.no_grad():
        expected = model(x)
        traced = fx.symbolic_trace(model)(x)
    assert expected.shape == out_shape
    assert torch.isfinite(expected).all()
    assert torch.equal(traced, expected)
