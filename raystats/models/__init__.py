"""Architectures of the reference studies, built for a data set's input shape and classes."""

from __future__ import annotations

from torch import nn

from raystats.errors import ConfigError
from raystats.models.small import SmallCNN, mlp3

_BUILDERS = {
    "mlp3": mlp3,
    "cnn": SmallCNN,
}
ARCHITECTURES = tuple(_BUILDERS)


def build_model(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A freshly initialised ``arch`` mapping (B, C, H, W) floats to (B, num_classes) logits."""
    if arch not in _BUILDERS:
        raise ConfigError(f"arch={arch!r} is not accepted: expected one of {ARCHITECTURES}")
    return _BUILDERS[arch](tuple(input_shape), num_classes)
