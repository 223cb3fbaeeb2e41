from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.models.autoencoder import AutoEncoder


def test_default_is_784_256_64_256_784() -> None:
    model = AutoEncoder()
    widths = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [(784, 256), (256, 64), (64, 256), (256, 784)]


def test_reconstruction_has_input_shape_and_unit_range() -> None:
    model = AutoEncoder(input_shape=(1, 8, 8), hidden=(16,)).eval()
    x = torch.rand(5, 1, 8, 8)
    y = model(x)
    assert y.shape == x.shape
    assert (y >= 0).all() and (y <= 1).all()
    assert model.encoder(x).shape == (5, 16)


def test_a_few_steps_learn_to_reconstruct_low_dimensional_data() -> None:
    model = AutoEncoder(input_shape=(1, 8, 8), hidden=(32, 8))
    x = torch.sigmoid(3 * torch.randn(64, 4) @ torch.randn(4, 64)).reshape(64, 1, 8, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    first = nn.functional.mse_loss(model(x), x).item()
    for _ in range(30):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), x)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_empty_hidden_is_explained() -> None:
    with pytest.raises(ValueError, match="code size"):
        AutoEncoder(hidden=())
