"""VGG-11 and VGG-16 with BatchNorm, CIFAR style (Simonyan & Zisserman 2015; Liu et al. 2017).

Why this shape: it is the network that channel-pruning papers (network slimming, L1-filter
pruning) report on, so results here compare with theirs. Three changes from the ImageNet VGG make
it work on small images: BatchNorm after every conv, ``ceil_mode`` max-pools so that 28×28 MNIST
survives the five halvings (28→14→7→4→2→1) exactly as 32×32 CIFAR does (32→16→8→4→2→1), and a
global average pool before a single Linear classifier, so any input size gives a 512-d feature.

>>> import torch
>>> VGG("vgg11", in_channels=1)(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from torch import Tensor, nn

from prunekit.models.registry import register

POOL = "M"
CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    "vgg16": [
        64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL,
        512, 512, 512, POOL, 512, 512, 512, POOL,
    ],
}


class VGG(nn.Module):
    """A VGG from a layer list: ints are 3×3 conv widths (conv-BN-ReLU), ``"M"`` a 2×2 max-pool."""

    def __init__(self, depth: str = "vgg16", in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"VGG depth {depth!r} is unknown; choose one of {sorted(CONFIGS)}")
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIGS[depth]:
            if item == POOL:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [
                    nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
                    nn.BatchNorm2d(int(item)),
                    nn.ReLU(inplace=True),
                ]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@register("vgg11")
def vgg11(in_channels: int = 3, num_classes: int = 10) -> VGG:
    """VGG-11 with BatchNorm (8 convs, 9.2 M parameters at 10 classes)."""
    return VGG("vgg11", in_channels, num_classes)


@register("vgg16")
def vgg16(in_channels: int = 3, num_classes: int = 10) -> VGG:
    """VGG-16 with BatchNorm (13 convs, 14.7 M parameters at 10 classes)."""
    return VGG("vgg16", in_channels, num_classes)
