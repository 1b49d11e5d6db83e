"""PSENet text detector as in MMOCR (psenet_resnet50_fpnf, ctw1500 / icdar2015 configs): mmdet ResNet-50
(caffe style), FPNF neck (nearest upsampling, `fusion_type='concat'`), PSE head. Input [N, 3, H, W] with
H, W multiples of 32; outputs at 1/4 scale: `text`, the text probability [N, H/4, W/4], and `kernels`,
the six shrunk-kernel probabilities [N, 6, H/4, W/4] that PSE's progressive expansion grows back to
text regions. MMOCR's head returns the 7 logits; the sigmoid its post-processor applies is in the graph.

Parameter names are MMOCR 1.x's (backbone.*, neck.*, det_head.*); MMOCR 0.x checkpoints name the head
`bbox_head.*`, read as `det_head.*`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ocrgraft.models.mm_common import ConvModule, ResNet

# MMOCR 0.x -> 1.x parameter prefixes (the head moved from bbox_head to det_head)
CHECKPOINT_RENAMES = (("bbox_head.", "det_head."),)


class FPNF(nn.Module):
    """Laterals, a top-down path smoothed at each level, everything upsampled to 1/4 and concatenated."""

    def __init__(self, in_channels=(256, 512, 1024, 2048), out_channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, norm=True) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, 1, norm=True) for _ in in_channels[:-1]
        )
        self.output_convs = ConvModule(out_channels * len(in_channels), out_channels, 3, 1, norm=True)

    def forward(self, inputs):
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
            laterals[i - 1] = self.fpn_convs[i - 1](laterals[i - 1] + up)
        bottom = laterals[0].shape[2:]
        laterals = [laterals[0]] + [F.interpolate(x, size=bottom, mode="nearest") for x in laterals[1:]]
        return self.output_convs(torch.cat(laterals, 1))


class PANHead(nn.Module):
    """MMOCR's PANHead (PSEHead is the same module): 3x3 conv + BN + ReLU, then 1x1 to the maps."""

    def __init__(self, in_channels: int, hidden_dim: int, out_channel: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_dim, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(hidden_dim)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden_dim, out_channel, 1)

    def forward(self, x):
        return self.conv2(self.relu1(self.bn1(self.conv1(x))))


class PSENet(nn.Module):
    """Input [N, 3, H, W] (multiples of 32); outputs text [N, H/4, W/4] and kernels [N, 6, H/4, W/4]."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.backbone = ResNet(50, in_channels, style="caffe")
        self.neck = FPNF(self.backbone.out_channels, 256)
        self.det_head = PANHead(256, 256, 7)

    def forward(self, x):
        maps = self.det_head(self.neck(self.backbone(x))).sigmoid()
        return maps[:, 0], maps[:, 1:]
