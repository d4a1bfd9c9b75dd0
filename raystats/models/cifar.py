"""The CIFAR-size networks of Kishida & Nakayama: WRN-16-4, DenseNet-BC (k=12, depth 100)
and ResNeXt-29 (4×64d).

Each follows its paper's CIFAR variant (3×3 stem, three stages, global average pool,
one linear classifier) and takes any channel count. The global pool is adaptive, so
the same network runs on 8×8 digits and 28×28 Fashion-MNIST as on 32×32 CIFAR;
:data:`MIN_INPUT_SIZE` gives the smallest inputs.

Parameter counts on CIFAR-10 (3×32×32, 10 classes), pinned in ``tests/test_models.py``:

============================  ============  =====================================
network                       ours          published
============================  ============  =====================================
WRN-16-4                      2,748,890     2.7M (Zagoruyko & Komodakis, table 1)
DenseNet-BC, k=12, depth 100  769,162       0.8M (Huang et al., table 2)
ResNeXt-29, 8×64d             34,426,698    34.4M (Xie et al., table 7)
ResNeXt-29, 16×64d            68,155,210    68.1M (Xie et al., table 7)
ResNeXt-29, 4×64d             17,562,442    not in the paper; same recipe, cardinality 4
============================  ============  =====================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_INPUT_SIZE = {"wrn16_4": 3, "densenet_bc100": 4, "resnext29_4x64d": 3}
"""Smallest height and width each network accepts, in pixels: the smallest side on
which every stride-2 layer still receives at least 2×2 (WRN and ResNeXt: 3 → 2 → 1;
DenseNet-BC's 2×2 average pools: 4 → 2 → 1)."""


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal (fan-out) convolutions, BN scale 1 and shift 0, zero linear biases.

    The initialisation of the three papers' reference code; returns ``model``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
    return model


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False)


def _head(channels: int) -> nn.Sequential:
    """BN-ReLU (pre-activation nets only), global average pool, flatten."""
    return nn.Sequential(
        nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


# --- WRN-16-4 ---------------------------------------------------------------------

class WideBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3×3-BN-ReLU-conv3×3, plus the shortcut.

    Where the shape changes the shortcut is a 1×1 convolution of the pre-activated
    input, as in Zagoruyko & Komodakis' code.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(nn.Module):
    """Wide ResNet WRN-``depth``-``width`` (Zagoruyko & Komodakis, 2016), CIFAR variant.

    A 3×3 stem with 16 channels, three groups of (depth − 4) / 6 pre-activation basic
    blocks with 16·width, 32·width and 64·width channels (the 2nd and 3rd group start
    with stride 2), then BN-ReLU-global average pool and a linear classifier. No
    dropout. WRN-16-4: 2 blocks per group, widths 64, 128, 256; 2,748,890 parameters
    on CIFAR-10 (published: 2.7M).

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one input.
    num_classes : int
        Number of logits.
    depth : int, default 16
        Total depth, 6n + 4.
    width : int, default 4
        Widening factor k.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, depth: int = 16, width: int = 4):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth={depth} is not of the form 6n + 4")
        blocks = (depth - 4) // 6
        widths = (16 * width, 32 * width, 64 * width)
        self.stem = _conv3x3(input_shape[0], 16)
        channels = 16
        for index, (out_channels, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
            group = [WideBasicBlock(channels if b == 0 else out_channels, out_channels, stride if b == 0 else 1)
                     for b in range(blocks)]
            self.add_module(f"group{index}", nn.Sequential(*group))
            channels = out_channels
        self.head = _head(channels)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.group3(self.group2(self.group1(self.stem(x))))
        return self.classifier(self.head(x))

    def feature_blocks(self) -> list[nn.Module]:
        """The stem convolution and every residual block, in order (7 for WRN-16-4)."""
        return [self.stem, *self.group1, *self.group2, *self.group3]


def wrn16_4(input_shape: tuple[int, int, int], num_classes: int) -> WideResNet:
    """WRN-16-4 of Kishida & Nakayama's CIFAR-10 runs."""
    return WideResNet(input_shape, num_classes, depth=16, width=4)


# --- DenseNet-BC -------------------------------------------------------------------

class DenseLayer(nn.Module):
    """Bottleneck layer: BN-ReLU-conv1×1 (4k channels)-BN-ReLU-conv3×3 (k channels),
    concatenated to its input."""

    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = _conv3x3(4 * growth, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([x, new], dim=1)


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN-ReLU-conv1×1 (compression)-average pool 2×2."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2),
    )


class DenseNetBC(nn.Module):
    """DenseNet-BC (Huang et al., 2017), CIFAR variant.

    A 3×3 stem with 2k channels, three dense blocks of (depth − 4) / 6 bottleneck
    layers each adding k channels, joined by transitions that compress the channels
    by ``compression`` and halve H and W, then BN-ReLU-global average pool and a
    linear classifier. Depth 100, k = 12, compression 0.5: 16 layers per block,
    channels 24 → 216 → 108 → 300 → 150 → 342; 769,162 parameters on CIFAR-10
    (published: 0.8M).

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one input; H, W ≥ 4.
    num_classes : int
        Number of logits.
    depth : int, default 100
        Total depth, 6n + 4 (each bottleneck layer counts two convolutions).
    growth : int, default 12
        Growth rate k.
    compression : float, default 0.5
        Share of channels a transition keeps.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int,
        depth: int = 100, growth: int = 12, compression: float = 0.5,
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth={depth} is not of the form 6n + 4")
        layers = (depth - 4) // 6
        channels = 2 * growth
        self.stem = _conv3x3(input_shape[0], channels)
        for index in range(1, 4):
            block = []
            for _ in range(layers):
                block.append(DenseLayer(channels, growth))
                channels += growth
            self.add_module(f"dense{index}", nn.Sequential(*block))
            if index < 3:
                compressed = int(channels * compression)
                self.add_module(f"transition{index}", _transition(channels, compressed))
                channels = compressed
        self.head = _head(channels)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transition1(self.dense1(self.stem(x)))
        x = self.dense3(self.transition2(self.dense2(x)))
        return self.classifier(self.head(x))

    def feature_blocks(self) -> list[nn.Module]:
        """The stem, each dense block and each transition, in order (6 modules)."""
        return [self.stem, self.dense1, self.transition1, self.dense2, self.transition2, self.dense3]


def densenet_bc100(input_shape: tuple[int, int, int], num_classes: int) -> DenseNetBC:
    """DenseNet-BC with k = 12 and depth 100 of Kishida & Nakayama's CIFAR-10 runs."""
    return DenseNetBC(input_shape, num_classes, depth=100, growth=12, compression=0.5)


# --- ResNeXt-29 --------------------------------------------------------------------

class ResNeXtBlock(nn.Module):
    """Bottleneck with grouped convolution: conv1×1 (D)-BN-ReLU-grouped conv3×3 (D,
    ``cardinality`` groups)-BN-ReLU-conv1×1-BN, plus the shortcut, then ReLU.

    Where the shape changes the shortcut is a 1×1 convolution with BN.
    """

    def __init__(self, in_channels: int, out_channels: int, inner: int, cardinality: int, stride: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.grouped = _conv3x3(inner, inner, stride, groups=cardinality)
        self.bn2 = nn.BatchNorm2d(inner)
        self.expand = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.reduce(x)))
        out = F.relu(self.bn2(self.grouped(out)))
        out = self.bn3(self.expand(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNeXt(nn.Module):
    """ResNeXt-``depth`` (Xie et al., 2017), CIFAR variant, ``cardinality``×``base_width``d.

    A 3×3 stem with 64 channels (BN-ReLU), three stages of (depth − 2) / 9 bottleneck
    blocks with 256, 512 and 1024 output channels (the 2nd and 3rd stage start with
    stride 2), whose grouped convolution has D = cardinality · base_width · 2^stage
    channels (256, 512, 1024 for 4×64d), then global average pool and a linear
    classifier. The paper's 8×64d and 16×64d come out at 34.4M and 68.1M parameters
    on CIFAR-10, as published; 4×64d has 17,562,442.

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one input.
    num_classes : int
        Number of logits.
    cardinality : int, default 4
        Groups of the 3×3 convolutions.
    base_width : int, default 64
        Channels per group in the first stage (d).
    depth : int, default 29
        Total depth, 9n + 2.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int,
        cardinality: int = 4, base_width: int = 64, depth: int = 29,
    ):
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError(f"ResNeXt depth={depth} is not of the form 9n + 2")
        blocks = (depth - 2) // 9
        self.stem = nn.Sequential(_conv3x3(input_shape[0], 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        channels = 64
        for index, stride in enumerate((1, 2, 2), start=1):
            out_channels = 256 * 2 ** (index - 1)
            inner = cardinality * base_width * 2 ** (index - 1)
            stage = [ResNeXtBlock(channels if b == 0 else out_channels, out_channels, inner, cardinality,
                                  stride if b == 0 else 1) for b in range(blocks)]
            self.add_module(f"stage{index}", nn.Sequential(*stage))
            channels = out_channels
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.classifier(self.head(x))

    def feature_blocks(self) -> list[nn.Module]:
        """The stem and every bottleneck block, in order (10 for ResNeXt-29)."""
        return [self.stem, *self.stage1, *self.stage2, *self.stage3]


def resnext29_4x64d(input_shape: tuple[int, int, int], num_classes: int) -> ResNeXt:
    """ResNeXt-29 (4×64d) of Kishida & Nakayama's CIFAR-10 runs."""
    return ResNeXt(input_shape, num_classes, cardinality=4, base_width=64, depth=29)
