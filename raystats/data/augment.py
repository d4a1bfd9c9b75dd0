"""Batched image augmentation and preprocessing on float tensors (N, C, H, W).

The studies' recipe is translate by up to 4 pixels + horizontal flip, then global
contrast normalization. Augmentation is random and draws only from the
``torch.Generator`` it is given (on the tensor's device), so a trial's augmentation is
reproducible from its seed. Global contrast normalization is deterministic
preprocessing: it is applied after augmentation, and also to the un-augmented inputs
that per-example evaluation sees::

    x = global_contrast_normalize(augment(to_float(images), generator))

Every function works on any device and loops over no images in Python.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from raystats.errors import ConfigError


def to_float(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 images → float32 in [0, 1], on the same device.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        uint8, any shape (usually (N, C, H, W)).

    Returns
    -------
    torch.Tensor
        float32, ``images / 255``.
    """
    if images.dtype not in (torch.uint8, np.uint8):
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    if isinstance(images, np.ndarray):  # converting first also copes with read-only arrays
        return torch.from_numpy(images.astype(np.float32)).div_(255)
    return images.to(torch.float32).div_(255)


def global_contrast_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per image: (x − mean) / std, over all of its pixels and channels.

    Parameters
    ----------
    x : torch.Tensor
        float, (N, C, H, W).
    eps : float, default 1e-8
        Floor of the std, so a constant image maps to zeros instead of NaN.

    Returns
    -------
    torch.Tensor
        Same shape; every non-constant image has mean 0 and (population) std 1.
    """
    flat = x.reshape(len(x), -1)
    std, mean = torch.std_mean(flat, dim=1, correction=0, keepdim=True)
    return ((flat - mean) / std.clamp_min(eps)).reshape(x.shape)


def random_translate(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own integer (dy, dx), each uniform in [−pixels, pixels].

    ``out[n, :, i, j] = x[n, :, i − dy_n, j − dx_n]`` where that pixel exists, else 0:
    positive dy moves the content down, positive dx to the right.

    Parameters
    ----------
    x : torch.Tensor
        float, (N, C, H, W).
    pixels : int
        Largest shift, ≥ 0; 0 returns ``x`` unchanged.
    generator : torch.Generator
        On ``x``'s device; (dy, dx) are drawn from it, dy first, in one call.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.
    """
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
        raise ConfigError(f"translate pixels must be an int >= 0, got {pixels!r}")
    _check_generator(x, generator)
    if pixels == 0 or len(x) == 0:
        return x
    n, channels, height, width = x.shape
    shifts = torch.randint(-pixels, pixels + 1, (n, 2), generator=generator, device=x.device)
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    # Output pixel (i, j) reads padded pixel (i + pixels − dy, j + pixels − dx): two
    # gathers with broadcast (stride-0) indices, one per axis, instead of a loop.
    rows = torch.arange(height, device=x.device) + pixels - shifts[:, :1]  # (N, H)
    cols = torch.arange(width, device=x.device) + pixels - shifts[:, 1:]  # (N, W)
    rows = rows[:, None, :, None].expand(n, channels, height, padded.shape[3])
    x = padded.gather(2, rows)
    cols = cols[:, None, None, :].expand(n, channels, height, width)
    return x.gather(3, cols)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left–right with probability 0.5.

    Parameters
    ----------
    x : torch.Tensor
        (N, C, H, W).
    generator : torch.Generator
        On ``x``'s device; one uniform draw per image, flipped where it is < 0.5.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.
    """
    _check_generator(x, generator)
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment(
    x: torch.Tensor, generator: torch.Generator, translate_pixels: int = 4, flip: bool = True
) -> torch.Tensor:
    """The studies' training augmentation: random translation, then random horizontal flip.

    Parameters
    ----------
    x : torch.Tensor
        float, (N, C, H, W).
    generator : torch.Generator
        On ``x``'s device; translation draws from it first, then the flip.
    translate_pixels : int, default 4
        Largest shift of :func:`random_translate`; 0 turns translation off.
    flip : bool, default True
        Whether to apply :func:`random_hflip`.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``. Apply :func:`global_contrast_normalize` afterwards.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> augment(torch.rand(8, 3, 32, 32), g).shape
    torch.Size([8, 3, 32, 32])
    """
    x = random_translate(x, translate_pixels, generator)
    return random_hflip(x, generator) if flip else x


def _check_generator(x: torch.Tensor, generator: torch.Generator) -> None:
    if generator.device.type != x.device.type:
        raise ConfigError(
            f"the generator is on {generator.device}, the images on {x.device}; "
            "pass a torch.Generator(device=images.device)"
        )
