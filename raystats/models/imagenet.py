"""The ImageNet-size networks of the studies, from torchvision, freshly initialised.

AlexNet, VGG-11, VGG-11-BN, ResNet-18, ResNet-50 and DenseNet-121, built with
``weights=None`` (never pretrained: the studies train from scratch) and
``num_classes`` logits. Where the data has other than 3 channels the first
convolution is replaced by one of the same shape that takes C channels.

Inputs smaller than :data:`MIN_INPUT_SIZE` are refused with a ``ConfigError`` rather
than upsampled inside the model: an upsampling layer would multiply the cost of every
step silently (7² for 32 → 224), and resizing belongs to the data pipeline. The
minimum is the network's total stride, 32, below which the last stage would see a
feature map of padding only; AlexNet's unpadded pooling fails outright below 63.
DenseNet-121 on 32×32 CIFAR-10 is one of Mangalam & Prabhu's networks.
"""

from __future__ import annotations

import torchvision.models as tv
from torch import nn

from raystats.errors import ConfigError

_CONSTRUCTORS = {
    "alexnet": tv.alexnet,
    "vgg11": tv.vgg11,
    "vgg11_bn": tv.vgg11_bn,
    "resnet18": tv.resnet18,
    "resnet50": tv.resnet50,
    "densenet121": tv.densenet121,
}
IMAGENET_ARCHITECTURES = tuple(_CONSTRUCTORS)

MIN_INPUT_SIZE = {
    "alexnet": 63,
    "vgg11": 32,
    "vgg11_bn": 32,
    "resnet18": 32,
    "resnet50": 32,
    "densenet121": 32,
}
"""Smallest height and width each network accepts, in pixels."""


def build_imagenet_model(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A freshly initialised torchvision ``arch`` for (C, H, W) inputs and ``num_classes``.

    Parameters
    ----------
    arch : str
        One of :data:`IMAGENET_ARCHITECTURES`.
    input_shape : tuple of int
        (C, H, W); H and W at least ``MIN_INPUT_SIZE[arch]``.
    num_classes : int
        Number of logits.

    Returns
    -------
    torch.nn.Module
        The torchvision model, its first convolution taking C channels.

    Raises
    ------
    ConfigError
        If H or W is below the network's minimum.
    """
    channels, height, width = input_shape
    minimum = MIN_INPUT_SIZE[arch]
    if min(height, width) < minimum:
        raise ConfigError(
            f"arch={arch!r} needs inputs of at least {minimum}×{minimum} pixels, got {height}×{width}: "
            f"resize the images or use a CIFAR-size architecture (wrn16_4, densenet_bc100, "
            f"resnext29_4x64d, cnn, mlp3)"
        )
    model = _CONSTRUCTORS[arch](weights=None, num_classes=num_classes)
    if channels != 3:
        _replace_first_conv(model, channels, keep_default_init=arch == "alexnet")
    return model


def _first_conv_owner(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the first convolution and its attribute name."""
    if isinstance(model, tv.ResNet):
        return model, "conv1"
    if isinstance(model, tv.DenseNet):
        return model.features, "conv0"
    return model.features, "0"  # AlexNet and VGG: features is a Sequential starting with it


def _replace_first_conv(model: nn.Module, channels: int, keep_default_init: bool) -> None:
    owner, name = _first_conv_owner(model)
    old = getattr(owner, name)
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, stride=old.stride,
                    padding=old.padding, bias=old.bias is not None)
    if not keep_default_init:  # torchvision's init for VGG, ResNet and DenseNet
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    setattr(owner, name, new)


def torchvision_feature_blocks(model: nn.Module) -> list[nn.Module] | None:
    """The probe points of a torchvision AlexNet, VGG, ResNet or DenseNet; None otherwise.

    - AlexNet, VGG: every ReLU of the convolutional and the fully connected layers
      (7 for AlexNet, 10 for VGG-11), i.e. each layer after its non-linearity.
    - ResNet: the stem (after its max-pool) and every residual block (9 for ResNet-18,
      17 for ResNet-50).
    - DenseNet: the stem (after its max-pool) and every dense block (5 for DenseNet-121).
    """
    if isinstance(model, (tv.AlexNet, tv.VGG)):
        layers = [*model.features, *model.classifier]
        return [m for m in layers if isinstance(m, nn.ReLU)]
    if isinstance(model, tv.ResNet):
        return [model.maxpool, *model.layer1, *model.layer2, *model.layer3, *model.layer4]
    if isinstance(model, tv.DenseNet):
        features = model.features
        return [features.pool0, features.denseblock1, features.denseblock2, features.denseblock3,
                features.denseblock4]
    return None
