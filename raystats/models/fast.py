"""A fast CIFAR-size network and its training recipe, after Keller Jordan's airbench.

airbench (github.com/KellerJordan/cifar10-airbench, ``airbench94.py``) reaches 94.01 %
CIFAR-10 test accuracy in 3.29 s on one A100 with a 1.97M-parameter network:

    conv 2×2 (whitening, 2·C·2² = 24 channels, no padding) → GELU
    → 3 × [conv3×3 → max-pool 2 → BN → GELU → conv3×3 → BN → GELU], widths 64/256/256
    → global max-pool → linear (no bias) → × 1/9

:class:`Airbench` is that network, for any channel count and class count. What it
keeps from airbench, and why airbench has it:

- The 2×2 first layer without padding (32 → 31, so the three 2×2 pools give 15, 7, 3):
  in airbench its filters are the eigenvectors ± of the training patches' covariance, a
  whitening that lets the rest learn fast; its width 2·C·k² is one filter per sign of
  each eigenvector.
- Batch norm with the scale fixed at 1 and only the shift learned
  (:class:`ShiftOnlyBatchNorm`), running-stat momentum 0.4 (airbench's 0.6 in its own
  convention): the convolutions before it are then scale-invariant, which is what lets
  the recipe's large learning rate work.
- Convolutions initialised like PyTorch's default plus an identity (Dirac) kernel on
  the first ``in_channels`` filters, so every layer starts by passing its input on.
- The output scale 1/9: logits start small, which with label smoothing keeps the first
  steps from saturating the softmax.

Where it departs from airbench (each costs some accuracy or speed; none changes the
architecture's shape or parameter count):

- No whitening from data: the first layer is an ordinary trainable convolution with
  bias, initialised like the others. airbench fixes its weights from the data and
  trains only its bias, for 3 epochs.
- Batch-norm epsilon is PyTorch's 1e-5, not 1e-12: a channel that is constant over
  a batch cannot then blow up in fp32 or under autocast.
- No fp16 weights, channels_last, lookahead (EMA of weights), test-time augmentation,
  alternating flips or 64× learning rate on the BN shifts: these belong to the training
  loop, not the network; :func:`recommended_recipe` names the ones a loop should add.

Parameters on CIFAR-10 (3×32×32, 10 classes): 1,971,640 = (3·4·24 + 24) whitening
+ ((24·64 + 64·64)·9 + 2·64) + ((64·256 + 256·256)·9 + 2·256) + (2·256·256·9 + 2·256)
+ 256·10 head (airbench: 1.97M). On 1×28×28 Fashion-MNIST the whitening layer has
8 channels: 1,962,152.
Inputs need H, W ≥ 9 (three 2×2 pools after the unpadded 2×2 layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raystats.errors import ConfigError

MIN_INPUT_SIZE = {"airbench": 9}
"""Smallest height and width :class:`Airbench` accepts: 9 → 8 → 4 → 2 → 1."""


class ShiftOnlyBatchNorm(nn.BatchNorm2d):
    """Batch norm whose scale is fixed at 1: only the shift ``bias`` is a parameter.

    airbench freezes the BN weights with ``requires_grad = False``; here the scale is a
    buffer of ones instead of a parameter, so every training path (the plain loop,
    ``torch.func``'s stacked ensembles, an optimizer over ``model.parameters()``)
    treats it the same way.
    """

    def __init__(self, num_features: int, momentum: float = 0.4, eps: float = 1e-5):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))
        # A fixed scale of ones as a buffer, not None: cuDNN's batch-norm backward with
        # bf16 channels_last inputs rejects a missing weight when a bias is given
        # (torch 2.11, H100: "invalid gradient at index 2").
        del self._parameters["weight"]
        self.register_buffer("weight", torch.ones(num_features))


class DiracConv2d(nn.Conv2d):
    """A convolution initialised like PyTorch's, with an identity kernel on the first
    ``in_channels`` filters and a zero bias (airbench's ``Conv``)."""

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        weight = self.weight.data
        nn.init.dirac_(weight[: weight.size(1)])


class ConvGroup(nn.Module):
    """conv3×3 → max-pool 2 → BN → GELU → conv3×3 → BN → GELU (airbench's ``ConvGroup``).

    Pooling right after the first convolution halves the cost of everything after it.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = DiracConv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = ShiftOnlyBatchNorm(out_channels)
        self.conv2 = DiracConv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = ShiftOnlyBatchNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))
        return F.gelu(self.norm2(self.conv2(x)))


class Airbench(nn.Module):
    """airbench94's network for (C, H, W) inputs and ``num_classes`` logits.

    See the module docstring for the layers, what each is for, and where this
    version departs from airbench.

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one input; H, W ≥ 9.
    num_classes : int
        Number of logits.
    widths : tuple of int, default (64, 256, 256)
        Channels of the three conv groups.
    output_scale : float, default 1/9
        Fixed factor on the logits.

    Examples
    --------
    >>> model = Airbench((3, 32, 32), 10)
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int,
        widths: tuple[int, int, int] = (64, 256, 256), output_scale: float = 1 / 9,
    ):
        super().__init__()
        channels, kernel = input_shape[0], 2
        whiten_width = 2 * channels * kernel**2
        self.whiten = DiracConv2d(channels, whiten_width, kernel, padding=0, bias=True)
        self.blocks = nn.Sequential(
            ConvGroup(whiten_width, widths[0]), ConvGroup(widths[0], widths[1]), ConvGroup(widths[1], widths[2])
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.output_scale = output_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.gelu(self.whiten(x)))
        return self.head(torch.flatten(self.pool(x), 1)) * self.output_scale

    def feature_blocks(self) -> list[nn.Module]:
        """The three conv groups, in order."""
        return list(self.blocks)


def airbench(input_shape: tuple[int, int, int], num_classes: int) -> Airbench:
    """A freshly initialised :class:`Airbench` with airbench94's widths (64, 256, 256)."""
    return Airbench(input_shape, num_classes)


# airbench94's hyperparameters, in its own units: learning rate and weight decay "per
# 1024 examples" with a summed loss, and a momentum-corrected step size.
_AIRBENCH_BATCH = 1024
_AIRBENCH_LR_PER_1024 = 11.5
_AIRBENCH_DECAY_PER_1024 = 0.0153
_AIRBENCH_MOMENTUM = 0.85


def recommended_recipe(arch: str) -> dict:
    """A training recipe for ``arch``, as a suggestion for the easiness job's flags.

    Only ``"airbench"`` has one: airbench94's, converted to a mean-reduced loss and
    PyTorch's coupled SGD weight decay. airbench sums the loss over the batch and
    divides its "per 1024 examples" rates (lr 11.5, decay 0.0153) by
    ``1024 · (1 + 1/(1 − momentum))``, Nesterov's steady-state step gain, so with a
    mean loss

        lr = 11.5 · batch_size / 1024 / (1 + 1/0.15) = 1.5 at batch size 1024,
        lr · weight_decay = 0.0153 · batch_size / 1024 / (1 + 1/0.15)  (its decay step),
        weight_decay = 0.0153 / 11.5 ≈ 0.00133 at any batch size.

    The keys named like :class:`raystats.config.RunConfig` fields (``batch_size``,
    ``epochs``, ``optimizer``, ``lr``, ``weight_decay``, ``augment``,
    ``translate_pixels``, ``flip``) can be passed as they are. The others describe
    what a training loop needs beyond those fields to follow airbench: ``momentum``
    and ``nesterov``, ``label_smoothing``, the ``lr_schedule`` (a triangle: from 0.2 ·
    lr up to lr over the first 23 % of updates, then linearly down to 0.07 · lr) and
    ``bias_lr_scale`` (64× learning rate, same decay step, for the BN shifts).
    airbench trains 9.9 epochs; 10 keeps per-epoch logging steps whole.

    Measured once (H100, torch 2.11, bf16 autocast, channels_last, batch 1024, one
    model): 207,000 training images/s on 3×32×32 (252,000 under ``torch.compile``).
    10 epochs of Fashion-MNIST with this recipe, translate 2 px and flip: 93.0 % test
    accuracy in 3 s, with or without ``bias_lr_scale`` (92.96 %, 93.04 %); with only the
    RunConfig keys in today's loop (momentum 0.9 without Nesterov, no smoothing, steps
    ÷10 at half and three quarters): 91.7 %. No CIFAR-10 figure yet: no copy of it was
    at hand.

    Parameters
    ----------
    arch : str
        The architecture, ``"airbench"``.

    Returns
    -------
    dict
        The recipe; a new dict on each call.

    Raises
    ------
    ConfigError
        For any other ``arch``: the studies' architectures use the job's defaults
        (momentum SGD 0.9, lr 0.1, weight decay 1e-4, steps ÷10 at the milestones).

    Examples
    --------
    >>> recipe = recommended_recipe("airbench")
    >>> recipe["batch_size"], recipe["lr"], recipe["momentum"], recipe["label_smoothing"]
    (1024, 1.5, 0.85, 0.2)
    """
    if arch != "airbench":
        raise ConfigError(
            f"arch={arch!r} has no recommended recipe: only 'airbench' has one; the studies' "
            "architectures use the job's defaults (momentum SGD 0.9, lr 0.1, weight decay 1e-4)"
        )
    step_gain = 1 + 1 / (1 - _AIRBENCH_MOMENTUM)
    lr = _AIRBENCH_LR_PER_1024 * _AIRBENCH_BATCH / 1024 / step_gain
    decay_step = _AIRBENCH_DECAY_PER_1024 * _AIRBENCH_BATCH / 1024 / step_gain
    return {
        "batch_size": _AIRBENCH_BATCH,
        "epochs": 10.0,
        "optimizer": "sgd",
        "lr": round(lr, 6),
        "weight_decay": round(decay_step / lr, 8),
        "augment": True,
        "translate_pixels": 2,
        "flip": True,
        "momentum": _AIRBENCH_MOMENTUM,
        "nesterov": True,
        "label_smoothing": 0.2,
        "lr_schedule": {"kind": "triangle", "start": 0.2, "peak_frac": 0.23, "end": 0.07},
        "bias_lr_scale": 64.0,
    }
