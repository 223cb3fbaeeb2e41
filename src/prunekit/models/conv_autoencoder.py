"""A convolutional autoencoder: strided Conv2d down to a 7×7 code, ConvTranspose2d back up.

Why: the decoders people prune are transposed convolutions, whose weights are laid out
``(in, out, kH, kW)``, the other way round from a Conv2d's, so pruning and structured rewriting
must get their axes right. This model gives that a real, trainable target on the offline data:
MNIST-5k reconstructed through a ``channels[-1]×7×7`` code, trained with
``load_dataset("mnist5k", target="input")`` and loss ``mse``. The output passes a sigmoid, so it
lives in [0, 1] like :mod:`prunekit.data`'s images; PSNR is the metric that fits
(:mod:`prunekit.tasks`).

>>> import torch
>>> ConvAutoEncoder()(torch.rand(2, 1, 28, 28)).shape
torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

from prunekit.models.registry import register


@register("conv_autoencoder")
class ConvAutoEncoder(nn.Module):
    """Each width in ``channels`` halves the image (3×3, stride 2); the decoder mirrors it."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must name at least one width, e.g. (16, 32)")
        widths = [in_channels, *channels]
        encoder: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            encoder += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU()]
        decoder: list[nn.Module] = []
        for a, b in itertools.pairwise(widths[::-1]):
            decoder += [nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1),
                        nn.ReLU()]
        decoder[-1] = nn.Sigmoid()
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))
