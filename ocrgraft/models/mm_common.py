"""Parts MMOCR's detectors share, under the parameter names of the libraries MMOCR builds them from, so
its checkpoints load: mmdet's `ResNet` (conv1/bn1 or the deep `stem`, layer1..layer4, downsample.0/1;
depth 18 with BasicBlock or 50 with Bottleneck; `style` "pytorch" puts the stride on the 3x3 conv,
"caffe" on the first 1x1; `forward` returns C2..C5, strides 4 to 32) and mmcv's `ConvModule`
(conv, then bn and ReLU when asked).
"""

from __future__ import annotations

import torch.nn as nn


def _downsample(inplanes: int, planes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inplanes == planes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, style: str = "pytorch"):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, style: str = "pytorch"):
        super().__init__()
        first, middle = (stride, 1) if style == "caffe" else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, first, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, middle, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * 4, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """mmdet.ResNet(depth, deep_stem, stem_channels, style) with out_indices (0, 1, 2, 3)."""

    def __init__(
        self,
        depth: int = 18,
        in_channels: int = 3,
        deep_stem: bool = False,
        stem_channels: int = 64,
        style: str = "pytorch",
    ):
        super().__init__()
        block, counts = DEPTHS[depth]
        if deep_stem:  # 3x3 s2 -> 3x3 -> 3x3, each with BN and ReLU (stem.0 .. stem.8)
            half = stem_channels // 2
            layers = []
            for c_in, c_out, stride in ((in_channels, half, 2), (half, half, 1), (half, stem_channels, 1)):
                layers += [
                    nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(True),
                ]
            self.stem = nn.Sequential(*layers)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_channels)
            self.relu = nn.ReLU(inplace=True)
        self.deep_stem = deep_stem
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem_channels
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), counts)):
            stride = 1 if i == 0 else 2
            blocks = [block(inplanes, planes, stride, style)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, 1, style) for _ in range(count - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = [p * block.expansion for p in (64, 128, 256, 512)]

    def forward(self, x):
        x = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs


class ConvModule(nn.Module):
    """mmcv's ConvModule: `.conv` (no bias when a norm follows), then `.bn` and ReLU if `norm`."""

    def __init__(self, c_in: int, c_out: int, k: int, padding: int = 0, norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out) if norm else None
        self.activate = nn.ReLU() if norm else None

    def forward(self, x):
        x = self.conv(x)
        return x if self.bn is None else self.activate(self.bn(x))
