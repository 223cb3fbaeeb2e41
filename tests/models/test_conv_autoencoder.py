from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.models.conv_autoencoder import ConvAutoEncoder


def test_encoder_halves_twice_and_the_decoder_is_transposed() -> None:
    model = ConvAutoEncoder().eval()
    x = torch.rand(3, 1, 28, 28)
    assert model.encoder(x).shape == (3, 32, 7, 7)
    decoder = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in decoder] == [(32, 16), (16, 1)]
    y = model(x)
    assert y.shape == x.shape and (y >= 0).all() and (y <= 1).all()


def test_other_widths_and_image_sizes() -> None:
    model = ConvAutoEncoder(in_channels=3, channels=(8,)).eval()
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="at least one width"):
        ConvAutoEncoder(channels=())
