"""CRNN as in Sierkinhane/CRNN_Chinese_Characters_Rec (lib/models/crnn.py), the model the Ascend
CRNN_Dynamic seed converts: grayscale 1x32xW, a VGG-like conv stack, two BiLSTM layers.

Parameter names match the original so its checkpoints load unchanged. The Linear after each LSTM
runs through `view(T*b, h) -> Linear -> view(T, b, -1)`, which exporters turn into the
Reshape -> Gemm -> Reshape chain that the seed's fix.py removes by hand; it is kept on purpose.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

# The 37-class alphabet of the Ascend seed's checkpoint: CTC blank at index 0, then these.
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def vgg_stack(in_channels: int, leaky_relu: bool = False) -> nn.Sequential:
    """The shared 'very deep VGG' conv stack (also MMOCR's VeryDeepVgg): height 32 -> 1, width W -> W/4+1."""
    ks, ps, nm = [3, 3, 3, 3, 3, 3, 2], [1, 1, 1, 1, 1, 1, 0], [64, 128, 256, 256, 512, 512, 512]
    cnn = nn.Sequential()

    def conv_relu(i: int, bn: bool = False) -> None:
        cnn.add_module(f"conv{i}", nn.Conv2d(in_channels if i == 0 else nm[i - 1], nm[i], ks[i], 1, ps[i]))
        if bn:
            cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(nm[i]))
        cnn.add_module(f"relu{i}", nn.LeakyReLU(0.2, inplace=True) if leaky_relu else nn.ReLU(True))

    conv_relu(0)
    cnn.add_module("pooling0", nn.MaxPool2d(2, 2))
    conv_relu(1)
    cnn.add_module("pooling1", nn.MaxPool2d(2, 2))
    conv_relu(2, True)
    conv_relu(3)
    cnn.add_module("pooling2", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))
    conv_relu(4, True)
    conv_relu(5)
    cnn.add_module("pooling3", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))
    conv_relu(6, True)
    return cnn


class BidirectionalLSTM(nn.Module):
    """Sequence-first BiLSTM whose Linear runs on the flattened [T*b, 2h] view."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int):
        super().__init__()
        self.rnn = nn.LSTM(n_in, n_hidden, bidirectional=True)
        self.embedding = nn.Linear(n_hidden * 2, n_out)

    def forward(self, x):
        recurrent, _ = self.rnn(x)
        t, b, h = recurrent.size()
        out = self.embedding(recurrent.view(t * b, h))
        return out.view(t, b, -1)


class LinearOnSequence(nn.Module):
    """BidirectionalLSTM with its Linear on the 3-D sequence instead of the flattened view: the same
    MatMul + Add, without a Reshape whose target an exporter could bake from the example width."""

    def __init__(self, block: BidirectionalLSTM):
        super().__init__()
        self.rnn, self.embedding = block.rnn, block.embedding

    @staticmethod
    def matches(m: nn.Module) -> bool:
        return type(m) is BidirectionalLSTM

    def forward(self, x):
        recurrent, _ = self.rnn(x)
        return self.embedding(recurrent)


class CRNN(nn.Module):
    """Input [N, 1, 32, W]; output log-probabilities [W/4+1, N, nclass] (sequence first)."""

    def __init__(self, img_h: int = 32, nc: int = 1, nclass: int = len(ALPHABET) + 1, nh: int = 256):
        super().__init__()
        if img_h != 32:
            raise ValueError("this CRNN reduces height 32 to 1; img_h must be 32")
        self.cnn = vgg_stack(nc)
        self.rnn = nn.Sequential(BidirectionalLSTM(512, nh, nh), BidirectionalLSTM(nh, nh, nclass))

    def forward(self, x):
        conv = self.cnn(x)
        conv = conv.squeeze(2).permute(2, 0, 1)  # [w, b, c]
        return F.log_softmax(self.rnn(conv), dim=2)
