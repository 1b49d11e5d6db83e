"""deep-text-recognition-benchmark (clovaai) None-VGG-BiLSTM-CTC, the plate recognizer of the
TensorRT seed: 3x32x100 RGB, VGG_FeatureExtractor, AdaptiveAvgPool2d((None, 1)) on the permuted
feature map, two batch-first BiLSTMs, a Linear CTC head. Parameter names match model.py.
"""

from __future__ import annotations

import torch.nn as nn

# Chinese plate alphabet: province abbreviations, then letters (no I, O) and digits; blank at 0.
ALPHABET = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


class VGGFeatureExtractor(nn.Module):
    """Height 32 -> 1, width W -> W/4 - 1 (100 -> 24)."""

    def __init__(self, input_channel: int, output_channel: int = 512):
        super().__init__()
        c = [output_channel // 8, output_channel // 4, output_channel // 2, output_channel]
        self.ConvNet = nn.Sequential(
            nn.Conv2d(input_channel, c[0], 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c[0], c[1], 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c[1], c[2], 3, 1, 1),
            nn.ReLU(True),
            nn.Conv2d(c[2], c[2], 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c[2], c[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(c[3]),
            nn.ReLU(True),
            nn.Conv2d(c[3], c[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(c[3]),
            nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c[3], c[3], 2, 1, 0),
            nn.ReLU(True),
        )

    def forward(self, x):
        return self.ConvNet(x)


class BidirectionalLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(hidden_size * 2, output_size)

    def forward(self, x):
        recurrent, _ = self.rnn(x)
        return self.linear(recurrent)


class DTRB(nn.Module):
    """Input [N, 3, 32, W]; output CTC logits [N, W/4-1, num_class] (batch first)."""

    def __init__(
        self,
        input_channel: int = 3,
        output_channel: int = 512,
        hidden_size: int = 256,
        num_class: int = len(ALPHABET) + 1,
    ):
        super().__init__()
        self.FeatureExtraction = VGGFeatureExtractor(input_channel, output_channel)
        self.AdaptiveAvgPool = nn.AdaptiveAvgPool2d((None, 1))  # feature height -> 1
        self.SequenceModeling = nn.Sequential(
            BidirectionalLSTM(output_channel, hidden_size, hidden_size),
            BidirectionalLSTM(hidden_size, hidden_size, hidden_size),
        )
        self.Prediction = nn.Linear(hidden_size, num_class)

    def forward(self, x):
        feature = self.FeatureExtraction(x)
        feature = self.AdaptiveAvgPool(feature.permute(0, 3, 1, 2)).squeeze(3)  # [b, w, c]
        return self.Prediction(self.SequenceModeling(feature).contiguous())
