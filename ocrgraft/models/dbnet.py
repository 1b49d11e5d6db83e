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

from ocrgraft.models.mm_common import ConvModule, ResNet


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
        self.backbone = ResNet(18, in_channels)
        self.neck = FPNC()
        self.det_head = DBHead(256)

    def forward(self, x):
        return self.det_head(self.neck(self.backbone(x)))
