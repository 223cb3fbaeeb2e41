"""An MLP autoencoder: 784-256-64-256-784 by default.

Why: pruning changes what a network *reconstructs* as well as what it classifies, and an
autoencoder measures the first with no labels at all. Its output is a **reconstruction of the
input** (same shape, values in [0, 1] through a final sigmoid, matching :mod:`prunekit.data`'s
images) — not class logits. Train and evaluate it with a reconstruction loss against the input
(``nn.functional.mse_loss(model(x), x)`` or binary cross-entropy); accuracy means nothing here.

>>> import torch
>>> AutoEncoder()(torch.rand(2, 1, 28, 28)).shape
torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from prunekit.models.registry import register


@register("autoencoder")
class AutoEncoder(nn.Module):
    """Encoder Linear+ReLU down to ``hidden[-1]`` (the code), mirrored decoder, sigmoid output."""

    def __init__(
        self, input_shape: Sequence[int] = (1, 28, 28), hidden: Sequence[int] = (256, 64)
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one width (the code size), e.g. (256, 64)")
        widths = [math.prod(input_shape), *hidden]
        encoder: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(widths):
            encoder += [nn.Linear(a, b), nn.ReLU()]
        decoder: list[nn.Module] = []
        for a, b in itertools.pairwise(widths[::-1]):
            decoder += [nn.Linear(a, b), nn.ReLU()]
        decoder[-1] = nn.Sigmoid()
        decoder.append(nn.Unflatten(1, tuple(input_shape)))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))
