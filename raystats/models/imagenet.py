"""The ImageNet-size networks of the studies, from torchvision, freshly initialised.

AlexNet, VGG-11, VGG-11-BN, ResNet-18, ResNet-50 and DenseNet-121, built with
``weights=None`` (never pretrained: the studies train from scratch) and
``num_classes`` logits. Where the data has other than 3 channels the first
convolution is replaced by one of the same shape that takes C channels.

Inputs smaller than :data:`MIN_INPUT_SIZE` are refused (``build_model`` raises a
``ConfigError``) rather than upsampled inside the model: an upsampling layer would
multiply the cost of every step silently (7² for 32 → 224), and resizing belongs to
the data pipeline. DenseNet-121 on 32×32 CIFAR-10 is one of Mangalam & Prabhu's
networks; ResNet-18 and ResNet-50 also take 28×28 Fashion-MNIST.
"""

from __future__ import annotations

import torchvision.models as tv
from torch import nn

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
    "resnet18": 17,
    "resnet50": 17,
    "densenet121": 29,
}
"""Smallest height and width each network accepts, in pixels.

The smallest side on which the forward pass is defined and every stride-2 layer still
receives at least 2×2, so that no stage sees only one pixel and its padding
(``tests/test_models.py`` checks each value, and the one below it, on the meta device):

- AlexNet: conv 11×11/4 pad 2 gives ⌊(63 − 7)/4⌋ + 1 = 15, then its three unpadded
  3×3/2 max-pools give 7, 3, 1; at 62 the last pool gets 2×2 and fails.
- VGG: five 2×2/2 max-pools, 32 → 16 → 8 → 4 → 2 → 1.
- ResNet: five stride-2 steps that round up (conv 7×7/2 pad 3, max-pool 3×3/2 pad 1,
  three stride-2 stages), 17 → 9 → 5 → 3 → 2 → 1.
- DenseNet-121: the same two rounding-up steps, then three 2×2 average pools that
  round down, 29 → 15 → 8 → 4 → 2 → 1.
"""


def build_imagenet_model(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A freshly initialised torchvision ``arch`` for (C, H, W) inputs and ``num_classes``.

    Parameters
    ----------
    arch : str
        One of :data:`IMAGENET_ARCHITECTURES`.
    input_shape : tuple of int
        (C, H, W); H and W at least ``MIN_INPUT_SIZE[arch]``, which
        :func:`raystats.models.build_model` checks before calling this.
    num_classes : int
        Number of logits.

    Returns
    -------
    torch.nn.Module
        The torchvision model, its first convolution taking C channels.
    """
    model = _CONSTRUCTORS[arch](weights=None, num_classes=num_classes)
    if input_shape[0] != 3:
        _replace_first_conv(model, input_shape[0])
    return model


def _first_conv_owner(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the first convolution and its attribute name."""
    if isinstance(model, tv.ResNet):
        return model, "conv1"
    if isinstance(model, tv.DenseNet):
        return model.features, "conv0"
    return model.features, "0"  # AlexNet and VGG: features is a Sequential starting with it


def _replace_first_conv(model: nn.Module, channels: int) -> None:
    """Swap the first convolution for one that takes ``channels``, initialised the way
    torchvision initialises that network's convolutions."""
    owner, name = _first_conv_owner(model)
    old = getattr(owner, name)
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, stride=old.stride,
                    padding=old.padding, bias=old.bias is not None)
    if isinstance(model, tv.DenseNet):
        nn.init.kaiming_normal_(new.weight)
    elif isinstance(model, (tv.VGG, tv.ResNet)):
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    # AlexNet keeps nn.Conv2d's own initialisation, as torchvision's AlexNet does.
    setattr(owner, name, new)


def torchvision_feature_blocks(model: nn.Module) -> list[nn.Module] | None:
    """The probe points of a torchvision AlexNet, VGG, ResNet or DenseNet; None otherwise.

    - AlexNet, VGG: every ReLU of the convolutional and the fully connected layers
      (7 for AlexNet, 10 for VGG-11), i.e. each layer after its non-linearity.
    - ResNet: the stem (after its max-pool) and every residual block (9 for ResNet-18,
      17 for ResNet-50), like WRN-16-4's stem and blocks.
    - DenseNet: the stem (after its max-pool), every dense block and every transition
      (8 for DenseNet-121), like the CIFAR DenseNet-BC's probes.
    """
    if isinstance(model, (tv.AlexNet, tv.VGG)):
        layers = [*model.features, *model.classifier]
        return [m for m in layers if isinstance(m, nn.ReLU)]
    if isinstance(model, tv.ResNet):
        return [model.maxpool, *model.layer1, *model.layer2, *model.layer3, *model.layer4]
    if isinstance(model, tv.DenseNet):
        features = model.features
        return [features.pool0, features.denseblock1, features.transition1, features.denseblock2,
                features.transition2, features.denseblock3, features.transition3, features.denseblock4]
    return None
