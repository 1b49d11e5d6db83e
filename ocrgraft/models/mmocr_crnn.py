"""MMOCR's CRNN (configs/textrecog/crnn): VeryDeepVgg(leaky_relu=False, input_channels=1) and
CRNNDecoder(rnn_flag=True), the recognizer in the MMOCR deployment seed.

Parameter names follow MMOCR (backbone.cnn.*, decoder.decoder.*) so its checkpoints load. The output
is what MMOCR's test path hands its CTC post-processor: softmax probabilities, batch first.
"""

from __future__ import annotations

import torch.nn as nn

from ocrgraft.models.crnn import BidirectionalLSTM, vgg_stack

# MMOCR 0.x DICT36 with the CTC blank '<BLK>' prepended at index 0.
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class VeryDeepVgg(nn.Module):
    def __init__(self, leaky_relu: bool = False, input_channels: int = 1):
        super().__init__()
        self.cnn = vgg_stack(input_channels, leaky_relu)

    def forward(self, x):
        return self.cnn(x)


class CRNNDecoder(nn.Module):
    def __init__(self, in_channels: int = 512, num_classes: int = len(ALPHABET) + 1):
        super().__init__()
        self.decoder = nn.Sequential(
            BidirectionalLSTM(in_channels, 256, 256), BidirectionalLSTM(256, 256, num_classes)
        )
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, feat):
        x = feat.squeeze(2).permute(2, 0, 1)  # [W, N, C]
        x = self.decoder(x)
        return self.softmax(x.permute(1, 0, 2).contiguous())  # [N, W, classes]


class MMOCRCRNN(nn.Module):
    """Input [N, 1, 32, W]; output character probabilities [N, W/4+1, 37]."""

    def __init__(self, input_channels: int = 1, num_classes: int = len(ALPHABET) + 1):
        super().__init__()
        self.backbone = VeryDeepVgg(False, input_channels)
        self.decoder = CRNNDecoder(512, num_classes)

    def forward(self, x):
        return self.decoder(self.backbone(x))
