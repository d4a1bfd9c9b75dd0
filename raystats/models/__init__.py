"""Architectures of the reference studies, built for a data set's input shape and classes.

CIFAR-size: ``mlp3``, ``cnn``, ``wrn16_4``, ``densenet_bc100``, ``resnext29_4x64d``, and
``airbench`` (a fast network after Keller Jordan's airbench, with
:func:`recommended_recipe`). ImageNet-size, from torchvision without pretrained
weights: ``alexnet``, ``vgg11``, ``vgg11_bn``, ``resnet18``, ``resnet50``,
``densenet121``. :data:`MIN_INPUT_SIZE` gives the smallest input each accepts (8×8
digits: every CIFAR-size network but airbench; 28×28: also ResNets; 32×32: all but
AlexNet).

Prediction depth (Baldock et al.) places k-NN probes on hidden representations;
:func:`feature_blocks` names, for each model, the modules after which a
representation is taken, and :func:`hidden_representations` collects them.
"""

from __future__ import annotations

import torch
from torch import nn

from raystats.errors import ConfigError
from raystats.models import cifar, fast, imagenet
from raystats.models.cifar import densenet_bc100, resnext29_4x64d, wrn16_4
from raystats.models.fast import airbench, recommended_recipe
from raystats.models.imagenet import IMAGENET_ARCHITECTURES, build_imagenet_model, torchvision_feature_blocks
from raystats.models.small import SmallCNN, mlp3

_CIFAR_BUILDERS = {
    "mlp3": mlp3,
    "cnn": SmallCNN,
    "wrn16_4": wrn16_4,
    "densenet_bc100": densenet_bc100,
    "resnext29_4x64d": resnext29_4x64d,
    "airbench": airbench,
}
CIFAR_ARCHITECTURES = tuple(_CIFAR_BUILDERS)
ARCHITECTURES = (*CIFAR_ARCHITECTURES, *IMAGENET_ARCHITECTURES)

MIN_INPUT_SIZE = {
    "mlp3": 1, "cnn": 1, **cifar.MIN_INPUT_SIZE, **fast.MIN_INPUT_SIZE, **imagenet.MIN_INPUT_SIZE,
}
"""Smallest height and width each architecture accepts, in pixels: the smallest side on
which every stride-2 layer still receives at least 2×2 (mlp3 and cnn: any)."""

__all__ = [
    "ARCHITECTURES", "CIFAR_ARCHITECTURES", "MIN_INPUT_SIZE", "build_model", "feature_blocks",
    "hidden_representations", "recommended_recipe",
]


def build_model(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A freshly initialised ``arch`` mapping (B, C, H, W) floats to (B, num_classes) logits.

    Initial weights come from torch's global generator; seed it (``torch.manual_seed``)
    for a reproducible model.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`.
    input_shape : tuple of int
        (C, H, W) of one input, e.g. (1, 8, 8) for digits, (1, 28, 28) for
        Fashion-MNIST, (3, 32, 32) for CIFAR.
    num_classes : int
        Number of logits, at least 2.

    Returns
    -------
    torch.nn.Module
        The model, in training mode, on the current default device (the CPU unless
        the caller set one, e.g. ``with torch.device("meta")``).

    Raises
    ------
    ConfigError
        For an unknown ``arch``, a malformed ``input_shape``, fewer than 2 classes, or
        an input smaller than ``MIN_INPUT_SIZE[arch]`` (the message names the
        CIFAR-size architectures that take it).

    Examples
    --------
    >>> model = build_model("cnn", (1, 28, 28), 10)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(f"arch={arch!r} is not accepted: expected one of {', '.join(ARCHITECTURES)}")
    input_shape = _checked_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes={num_classes!r} is not accepted: expected an integer ≥ 2")
    _check_input_size(arch, input_shape)
    if arch in IMAGENET_ARCHITECTURES:
        return build_imagenet_model(arch, input_shape, num_classes)
    return _CIFAR_BUILDERS[arch](input_shape, num_classes)


def _check_input_size(arch: str, input_shape: tuple[int, int, int]) -> None:
    height, width = input_shape[1:]
    minimum = MIN_INPUT_SIZE[arch]
    if min(height, width) < minimum:
        fitting = [name for name in CIFAR_ARCHITECTURES if MIN_INPUT_SIZE[name] <= min(height, width)]
        raise ConfigError(
            f"arch={arch!r} needs inputs of at least {minimum}×{minimum} pixels, got {height}×{width}: "
            f"resize the images or use a CIFAR-size architecture that takes them ({', '.join(fitting)})"
        )


def _checked_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(n) for n in input_shape)
        valid = len(shape) == 3 and min(shape) >= 1 and shape == tuple(input_shape)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(
            f"input_shape={input_shape!r} is not accepted: expected (channels, height, width), "
            f"three positive integers"
        )
    return shape


def feature_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules after each of which a hidden representation is taken, in forward order.

    Prediction depth (Baldock, Maennel & Neyshabur, 2021) places a k-NN probe on the
    representation after each layer or block; these are those points. The input and
    the logits are not in the list: a caller adds the input as depth 0 if it wants it,
    and the network's own prediction plays the role of the last layer.

    ==================  =====================================================  ======
    arch                modules                                                count
    ==================  =====================================================  ======
    mlp3                each hidden layer after its ReLU                       2
    cnn                 each conv block (after max-pool), the hidden dense     3
    wrn16_4             stem conv, each residual block                         7
    densenet_bc100      stem conv, each dense block and transition             6
    resnext29_4x64d     stem, each bottleneck block                            10
    airbench            each conv group                                        3
    alexnet, vgg11(_bn) each conv and hidden fc layer after its ReLU           7, 10
    resnet18, resnet50  stem (after max-pool), each residual block             9, 17
    densenet121         stem (after max-pool), each dense block and transition 8
    ==================  =====================================================  ======

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`build_model`.

    Returns
    -------
    list of torch.nn.Module
        Submodules of ``model``; register forward hooks on them, or use
        :func:`hidden_representations`.

    Raises
    ------
    ConfigError
        If ``model`` was not built by :func:`build_model`.
    """
    if hasattr(model, "feature_blocks"):
        return model.feature_blocks()
    blocks = torchvision_feature_blocks(model)
    if blocks is None:
        raise ConfigError(
            f"model of type {type(model).__name__} has no known probe points: expected a model "
            f"from build_model with arch in {', '.join(ARCHITECTURES)}"
        )
    return blocks


def hidden_representations(model: nn.Module, inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The flattened output of every :func:`feature_blocks` module, and the logits.

    Runs one forward pass without gradients in the model's current mode (call
    ``model.eval()`` first for inference-mode batch norm). Each representation is
    copied when its module returns, so in-place operations later in the network
    cannot change it.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`build_model`.
    inputs : torch.Tensor
        (B, C, H, W) floats.

    Returns
    -------
    representations : list of torch.Tensor
        One (B, D_l) tensor per probe point l, in forward order.
    logits : torch.Tensor
        (B, num_classes).
    """
    blocks = feature_blocks(model)
    captured: dict[int, torch.Tensor] = {}

    def keep(index: int):
        def hook(module, args, output):
            captured[index] = output.detach().flatten(1).clone()
        return hook

    handles = [block.register_forward_hook(keep(index)) for index, block in enumerate(blocks)]
    try:
        with torch.no_grad():
            logits = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return [captured[index] for index in range(len(blocks))], logits
