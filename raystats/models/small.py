"""The small architectures of the studies: a 3-layer MLP and a small CNN."""

from __future__ import annotations

import torch
from torch import nn


def mlp3(input_shape: tuple[int, int, int], num_classes: int, width: int = 512) -> nn.Sequential:
    """Three fully connected layers (two hidden of ``width``, ReLU)."""
    features = input_shape[0] * input_shape[1] * input_shape[2]
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, width), nn.ReLU(inplace=True),
        nn.Linear(width, width), nn.ReLU(inplace=True),
        nn.Linear(width, num_classes),
    )


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
    )


class SmallCNN(nn.Module):
    """Two conv blocks and two dense layers (~200k parameters on 28×28 inputs).

    The adaptive pool to 4×4 makes the dense part the same size for 8×8 digits,
    28×28 Fashion-MNIST and 32×32 CIFAR.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, widths=(32, 64), hidden: int = 128):
        super().__init__()
        self.block1 = _conv_block(input_shape[0], widths[0])
        self.block2 = _conv_block(widths[0], widths[1])
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(widths[1] * 16, hidden), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dense(self.pool(self.block2(self.block1(x)))))
