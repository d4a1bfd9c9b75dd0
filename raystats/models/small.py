"""The small architectures of the studies: a 3-layer MLP and a small CNN.

Both are ``nn.Sequential`` with named stages, so a stage is reached by name
(``model.block1``) and the hidden representations for prediction-depth probes are
the stages listed by each class's ``feature_blocks()``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class MLP3(nn.Sequential):
    """Three fully connected layers: flatten → ``width`` → ``width`` → classes, ReLU between.

    The "three layer MLPs" of Kishida & Nakayama (longer version). Parameters on
    Fashion-MNIST (1, 28, 28), 10 classes, width 512: 784·512+512 + 512·512+512 +
    512·10+10 = 669,706.

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one input; the first layer takes C·H·W features.
    num_classes : int
        Number of logits.
    width : int, default 512
        Size of both hidden layers.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: int = 512):
        features = input_shape[0] * input_shape[1] * input_shape[2]
        super().__init__(OrderedDict(
            flatten=nn.Flatten(),
            hidden1=nn.Sequential(nn.Linear(features, width), nn.ReLU(inplace=True)),
            hidden2=nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True)),
            classifier=nn.Linear(width, num_classes),
        ))

    def feature_blocks(self) -> list[nn.Module]:
        """The two hidden layers, after their ReLU."""
        return [self.hidden1, self.hidden2]


def mlp3(input_shape: tuple[int, int, int], num_classes: int, width: int = 512) -> MLP3:
    """A freshly initialised :class:`MLP3`."""
    return MLP3(input_shape, num_classes, width)


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3×3-BN-ReLU-conv3×3-BN-ReLU-maxpool 2×2.

    ``ceil_mode`` pooling keeps odd sizes (7×7 after one block on 28×28) from losing
    their last row, and lets 8×8 digits be pooled twice (8 → 4 → 2).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
    )


class SmallCNN(nn.Sequential):
    """A small CNN: two conv blocks and two dense layers.

    ``block1`` → ``block2`` → ``pool`` (adaptive average to 4×4) → ``dense``
    (flatten, Linear to ``hidden``, ReLU) → ``classifier``. The adaptive pool makes
    the dense part the same size for 8×8 digits, 28×28 Fashion-MNIST and 32×32 CIFAR.
    The shape follows Mangalam & Prabhu's "[Conv ▷ ReLU ▷ MaxPool] × 2 ↦ [FC ▷ ReLU] ↦
    FC", with two BN-ed convolutions per block.

    Parameters with the default widths (32, 64) and hidden 128, 10 classes: 197,674 on
    one input channel (Fashion-MNIST, digits), 198,250 on three (CIFAR); the
    PERF_NOTES' "220k-parameter CNN" is this size class.

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one input. Any H, W ≥ 1 works.
    num_classes : int
        Number of logits.
    widths : tuple of int, default (32, 64)
        Channels of the two conv blocks.
    hidden : int, default 128
        Size of the hidden dense layer.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int,
        widths: tuple[int, int] = (32, 64), hidden: int = 128,
    ):
        super().__init__(OrderedDict(
            block1=_conv_block(input_shape[0], widths[0]),
            block2=_conv_block(widths[0], widths[1]),
            pool=nn.AdaptiveAvgPool2d(4),
            dense=nn.Sequential(nn.Flatten(), nn.Linear(widths[1] * 16, hidden), nn.ReLU(inplace=True)),
            classifier=nn.Linear(hidden, num_classes),
        ))

    def feature_blocks(self) -> list[nn.Module]:
        """Both conv blocks (after their max-pool) and the hidden dense layer."""
        return [self.block1, self.block2, self.dense]
