"""LeNet-300-100 (Han et al. 2015's benchmark MLP), LeNet-5, and a plain MLP."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

from prunekit.models.registry import register


@register("mlp")
class MLP(nn.Module):
    """Fully connected classifier: input → hidden layers with ReLU → classes."""

    def __init__(
        self, in_features: int = 784, hidden: Sequence[int] = (256, 128), num_classes: int = 10
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register("lenet300")
class LeNet300(MLP):
    """LeNet-300-100: 784-300-100-10, 266,610 parameters (Han et al. 2015, Table 1)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__(in_features, (300, 100), num_classes)


@register("lenet5")
class LeNet5(nn.Module):
    """LeNet-5 (Caffe variant used by Han et al.): conv20-pool-conv50-pool-fc500-fc10.

    Takes ``in_channels``×28×28 images (MNIST, as :mod:`prunekit.data` yields them). 431k
    parameters.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(50 * 4 * 4, 500), nn.ReLU(), nn.Linear(500, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
