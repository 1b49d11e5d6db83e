"""PANet text detector as in MMOCR (panet_resnet18_fpem-ffm, ctw1500 / icdar2015 configs): mmdet
ResNet-18 with a deep 128-channel stem, FPEM-FFM neck (two feature pyramid enhancement modules, nearest
upsampling inside, bilinear fusion), PAN head. Input [N, 3, H, W] with H, W multiples of 32; outputs at
1/4 scale: `text` and `kernel` probabilities [N, H/4, W/4] and the 4-channel pixel `embedding`
[N, 4, H/4, W/4] that PAN's pixel aggregation clusters. MMOCR's head returns the 6 raw maps; the
sigmoid its post-processor applies to the first two is in the graph.

Parameter names are MMOCR 1.x's (backbone.*, neck.*, det_head.*); MMOCR 0.x checkpoints name the head
`bbox_head.*`, read as `det_head.*`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ocrgraft.models.mm_common import ResNet
from ocrgraft.models.psenet import PANHead

CHECKPOINT_RENAMES = (("bbox_head.", "det_head."),)


class SeparableConv2d(nn.Module):
    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.depthwise_conv = nn.Conv2d(channels, channels, 3, stride, 1, groups=channels)
        self.pointwise_conv = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.pointwise_conv(self.depthwise_conv(x))))


def _upsample_add(x, y):
    return F.interpolate(x, size=y.shape[2:], mode="nearest") + y


class FPEM(nn.Module):
    """Up-scale enhancement (top-down) then down-scale enhancement (bottom-up)."""

    def __init__(self, channels: int = 128):
        super().__init__()
        for name, stride in (("up_add", 1), ("down_add", 2)):
            for i in (1, 2, 3):
                setattr(self, f"{name}{i}", SeparableConv2d(channels, stride))

    def forward(self, c2, c3, c4, c5):
        c4 = self.up_add1(_upsample_add(c5, c4))
        c3 = self.up_add2(_upsample_add(c4, c3))
        c2 = self.up_add3(_upsample_add(c3, c2))
        c3 = self.down_add1(_upsample_add(c3, c2))
        c4 = self.down_add2(_upsample_add(c4, c3))
        c5 = self.down_add3(_upsample_add(c5, c4))
        return c2, c3, c4, c5


class FPEM_FFM(nn.Module):  # noqa: N801  (MMOCR's name)
    def __init__(self, in_channels=(64, 128, 256, 512), conv_out: int = 128, fpem_repeat: int = 2):
        super().__init__()
        for level, c in zip((2, 3, 4, 5), in_channels):
            reduce = nn.Sequential(nn.Conv2d(c, conv_out, 1), nn.BatchNorm2d(conv_out), nn.ReLU())
            setattr(self, f"reduce_conv_c{level}", reduce)
        self.fpems = nn.ModuleList(FPEM(conv_out) for _ in range(fpem_repeat))

    def forward(self, x):
        levels = [getattr(self, f"reduce_conv_c{i}")(f) for i, f in zip((2, 3, 4, 5), x)]
        fused = None
        for fpem in self.fpems:  # feature fusion: the sum of every FPEM's outputs
            levels = list(fpem(*levels))
            fused = levels if fused is None else [a + b for a, b in zip(fused, levels)]
        size = fused[0].shape[2:]
        up = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in fused[1:]]
        return torch.cat([fused[0], *up], 1)


class PANet(nn.Module):
    """Input [N, 3, H, W] (multiples of 32); outputs text and kernel [N, H/4, W/4], embedding
    [N, 4, H/4, W/4]."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.backbone = ResNet(18, in_channels, deep_stem=True, stem_channels=128)
        self.neck = FPEM_FFM(self.backbone.out_channels)
        self.det_head = PANHead(4 * 128, 128, 6)

    def forward(self, x):
        maps = self.det_head(self.neck(self.backbone(x)))
        return maps[:, 0].sigmoid(), maps[:, 1].sigmoid(), maps[:, 2:]
