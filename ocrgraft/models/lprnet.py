"""LPRNet as in sirius-ai/LPRNet_Pytorch (model/LPRNet.py), the model of the Sophon seed:
3x24x94 input, 68 classes, output [N, 68, 18].

Kept as in the original because both matter for conversion:
- nn.MaxPool3d on 4-D tensors: the "depth" it pools over is the channel axis. Sophon's toolchain
  and TensorRT lack it; see ocrgraft.frontends.torch for the rewrite into two MaxPool2d.
- the global-context normalization `f / mean(f**2)` takes the mean over the whole tensor,
  batch included, so a sample's output depends on the rest of its batch.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# sirius-ai's CHARS: provinces, digits, letters without I/O, then 'I', 'O' and the blank '-' (index 67).
CHARS = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新0123456789ABCDEFGHJKLMNPQRSTUVWXYZIO-"


class SmallBasicBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        q = ch_out // 4
        self.block = nn.Sequential(
            nn.Conv2d(ch_in, q, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(q, q, kernel_size=(3, 1), padding=(1, 0)),
            nn.ReLU(),
            nn.Conv2d(q, q, kernel_size=(1, 3), padding=(0, 1)),
            nn.ReLU(),
            nn.Conv2d(q, ch_out, kernel_size=1),
        )

    def forward(self, x):
        return self.block(x)


class LPRNet(nn.Module):
    """Input [N, 3, 24, 94]; output per-column class scores [N, class_num, 18]."""

    def __init__(self, lpr_max_len: int = 8, class_num: int = len(CHARS), dropout_rate: float = 0.5):
        super().__init__()
        self.lpr_max_len = lpr_max_len
        self.class_num = class_num
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=1),  # 0
            nn.BatchNorm2d(64),
            nn.ReLU(),  # 2: kept
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 1, 1)),
            SmallBasicBlock(64, 128),  # 4
            nn.BatchNorm2d(128),
            nn.ReLU(),  # 6: kept
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(2, 1, 2)),
            SmallBasicBlock(64, 256),  # 8
            nn.BatchNorm2d(256),
            nn.ReLU(),
            SmallBasicBlock(256, 256),  # 11
            nn.BatchNorm2d(256),
            nn.ReLU(),  # 13: kept
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(4, 1, 2)),  # 14
            nn.Dropout(dropout_rate),
            nn.Conv2d(64, 256, kernel_size=(1, 4), stride=1),  # 16
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Conv2d(256, class_num, kernel_size=(13, 1), stride=1),  # 20
            nn.BatchNorm2d(class_num),
            nn.ReLU(),
        )  # 22: kept
        self.container = nn.Sequential(nn.Conv2d(448 + class_num, class_num, kernel_size=1, stride=1))
        self.pool5 = nn.AvgPool2d(kernel_size=5, stride=5)
        self.pool_4x10 = nn.AvgPool2d(kernel_size=(4, 10), stride=(4, 2))

    def forward(self, x):
        keep = []
        for i, layer in enumerate(self.backbone.children()):
            x = layer(x)
            if i in (2, 6, 13, 22):
                keep.append(x)
        context = []
        for i, f in enumerate(keep):
            if i in (0, 1):
                f = self.pool5(f)
            elif i == 2:
                f = self.pool_4x10(f)
            context.append(f / torch.mean(torch.pow(f, 2)))  # mean over the whole batch, as trained
        x = self.container(torch.cat(context, 1))
        return torch.mean(x, dim=2)
