"""ResNets: ImageNet style (ResNet-18/50) and CIFAR style (ResNet-20/56), He et al. 2016.

Why two families: ImageNet ResNets are what deployment benchmarks time (224×224, a 7×7 stem and
a max-pool), CIFAR ResNets are what pruning papers report accuracy on (32×32, a 3×3 stem, three
stages of 16/32/64 channels). Both are written here without torchvision (it cannot be imported
beside this torch build).

The ImageNet models reproduce torchvision's layer names and parameter counts exactly (ResNet-18:
11,689,512; ResNet-50: 25,557,032 at 1000 classes; ResNet-50 is "v1.5", stride on the 3×3 conv),
so a torchvision ``state_dict`` loads into them unchanged.

The CIFAR models use **option B** shortcuts (a 1×1 conv + BatchNorm where the shape changes),
not the paper's option A (identity with zero-padded channels). Option A ties the block's output
channels to the input's by fixed offsets that no pruner can shrink independently; with option B
every shortcut is a real layer, so structured pruning (ours and Torch-Pruning's, which the
benchmarks compare against) can remove channels from every stage. It costs ~1 % more parameters
(ResNet-20: 272,474 instead of 269,722) and is the variant He et al. also evaluate.

>>> import torch
>>> resnet20(in_channels=1)(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prunekit.models.registry import register


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(_conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    """Two 3×3 convs and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride, as torchvision's "v1.5"), 1×1 expand ×4."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def _stage(block: Block, in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [block(in_planes, planes, stride)]
    layers += [block(planes * block.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ResNet(nn.Module):
    """ImageNet-style ResNet with torchvision's module names (``conv1``, ``layer1``…, ``fc``)."""

    def __init__(
        self, block: Block, layers: list[int], in_channels: int = 3, num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        in_planes = 64
        for index, (planes, blocks, stride) in enumerate(zip(widths, layers, strides), start=1):
            setattr(self, f"layer{index}", _stage(block, in_planes, planes, blocks, stride))
            in_planes = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet of depth 6n+2: a 3×3 stem, stages of 16/32/64 channels, option B."""

    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = _conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(BasicBlock, 16, 16, blocks, 1)
        self.layer2 = _stage(BasicBlock, 16, 32, blocks, 2)
        self.layer3 = _stage(BasicBlock, 32, 64, blocks, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register("resnet18")
def resnet18(in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ResNet-18, torchvision-compatible (11,689,512 parameters at 1000 classes)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], in_channels, num_classes)


@register("resnet50")
def resnet50(in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ResNet-50 v1.5, torchvision-compatible (25,557,032 parameters at 1000 classes)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], in_channels, num_classes)


@register("resnet20")
def resnet20(in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    """CIFAR ResNet-20, option-B shortcuts (272,474 parameters at 10 classes)."""
    return CifarResNet(20, in_channels, num_classes)


@register("resnet56")
def resnet56(in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    """CIFAR ResNet-56, option-B shortcuts (855,770 parameters at 10 classes)."""
    return CifarResNet(56, in_channels, num_classes)
