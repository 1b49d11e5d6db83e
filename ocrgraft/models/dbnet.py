"""DBNet text detector as in MMOCR (dbnet_resnet18_fpnc): ResNet-18 backbone, FPNC neck (nearest
upsampling, concat at 1/4 scale), DB head. Input [N, 3, H, W] with H, W multiples of 32; output the
text probability map [N, H, W]. Parameter names follow MMOCR (backbone.*, neck.*, det_head.*) so its
checkpoints load; the threshold branch is kept for that reason, though inference only needs the
probability map.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """Returns the C2..C5 feature maps (strides 4, 8, 16, 32)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, inplanes = (64, 128, 256, 512), 64
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            self.add_module(
                f"layer{i + 1}",
                nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)),
            )
            inplanes = planes

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs


class ConvModule(nn.Module):
    """A bias-free conv under the attribute name MMCV's ConvModule uses (`.conv`)."""

    def __init__(self, c_in: int, c_out: int, k: int, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=padding, bias=False)

    def forward(self, x):
        return self.conv(x)


class FPNC(nn.Module):
    def __init__(self, in_channels=(64, 128, 256, 512), lateral_channels: int = 256, out_channels: int = 64):
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, lateral_channels, 1) for c in in_channels)
        self.smooth_convs = nn.ModuleList(
            ConvModule(lateral_channels, out_channels, 3, 1) for _ in in_channels
        )

    def forward(self, inputs):
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down path
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode="nearest"
            )
        outs = [conv(x) for conv, x in zip(self.smooth_convs, laterals)]
        outs = [F.interpolate(o, size=outs[0].shape[2:], mode="nearest") for o in outs]
        return torch.cat(outs, dim=1)


def _db_branch(c: int, sigmoid: bool) -> nn.Sequential:
    layers = [
        nn.Conv2d(c, c // 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(c // 4),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(c // 4, c // 4, 2, 2),
        nn.BatchNorm2d(c // 4),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(c // 4, 1, 2, 2),
    ]
    return nn.Sequential(*(layers + [nn.Sigmoid()] if sigmoid else layers))


class DBHead(nn.Module):
    def __init__(self, in_channels: int = 256):
        super().__init__()
        self.binarize = _db_branch(in_channels, sigmoid=False)
        self.threshold = _db_branch(in_channels, sigmoid=True)  # training only; kept for checkpoint keys

    def forward(self, x):
        return self.binarize(x).squeeze(1).sigmoid()


class DBNet(nn.Module):
    """Input [N, 3, H, W] (multiples of 32); output the probability map [N, H, W]."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.backbone = ResNet18(in_channels)
        self.neck = FPNC()
        self.det_head = DBHead(256)

    def forward(self, x):
        return self.det_head(self.neck(self.backbone(x)))
