"""Pattern removal: take colour, structure or high frequencies out of images.

Kishida & Nakayama (long version, section 6; after Jo & Bengio, 2018) ask which
patterns make an example easy by computing easiness on inputs from which one pattern
was removed, and comparing the easy (hard) sets with the regular ones by matching rate:

========  ==============================================  ===========================
pattern   transform                                       strength (1 = unchanged)
========  ==============================================  ===========================
color     X_α = α·X + (1 − α)·grey, grey = channel mean    α ∈ [0, 1]
shuffle   cut into tiles of relative size s, permute       s ∈ (0, 1]
radial    keep Fourier frequencies within radius r         r ∈ (0, 1], of the
                                                           half-diagonal of the spectrum
========  ==============================================  ===========================

For every pattern a smaller strength removes more, and strength 1 returns the input,
so one axis serves every figure. The transforms are batched torch functions on float
images (N, C, H, W), on any device, with no Python loop over images; the only random
one (shuffle) draws from the ``torch.Generator`` it is given. Apply them to the float
images in [0, 1] — ``apply_pattern(name, to_float(images), s, g)`` — and global
contrast normalization afterwards, as evaluation does for regular inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from raystats.errors import ConfigError


@dataclass(frozen=True)
class Pattern:
    """One pattern-removal experiment: its strength parameter and default grid."""

    name: str
    parameter: str                  # the name of the strength in the study
    strengths: tuple[float, ...]    # default grid, strongest removal first
    random: bool                    # whether the transform draws from a generator


PATTERNS: dict[str, Pattern] = {
    "color": Pattern("color", "alpha", (0.0, 0.25, 0.5, 0.75, 1.0), random=False),
    "shuffle": Pattern("shuffle", "tile_frac", (0.25, 0.33, 0.5), random=True),
    "radial": Pattern("radial", "radius", (0.1, 0.2, 0.4, 0.7, 1.0), random=False),
}


def remove_color(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Interpolate every channel toward grey: X_α = α·X + (1 − α)·grey.

    ``grey = (1/C) Σ_c X_c`` is the mean over the channels, broadcast back to all C of
    them (Kishida & Nakayama, eq. 3, with R, G, B; the text's "(R+G+B)/2" is a typo for
    the mean). α = 1 returns the image, α = 0 the grey picture. A 1-channel image is its
    own grey, so the transform is the identity for every α.

    Parameters
    ----------
    x : torch.Tensor
        float, (N, C, H, W).
    alpha : float
        In [0, 1].

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.

    Examples
    --------
    >>> x = torch.tensor([[[[0.0]], [[0.3]], [[0.9]]]])
    >>> remove_color(x, 0.0).flatten().tolist()
    [0.4000000059604645, 0.4000000059604645, 0.4000000059604645]
    """
    _check_images(x)
    alpha = _check_strength("alpha", alpha, allow_zero=True)
    if alpha == 1.0 or x.shape[1] == 1:
        return x.clone()
    grey = x.mean(dim=1, keepdim=True)
    return torch.lerp(grey.expand_as(x), x, alpha)


def tiles_per_side(tile_frac: float) -> int:
    """Tiles along each side for a relative tile size: n = round(1 / tile_frac).

    0.5 → 2 (2×2 tiles), 0.33 → 3, 0.25 → 4, 1 → 1 (the image unchanged).
    """
    tile_frac = _check_strength("tile_frac", tile_frac, allow_zero=False)
    return max(1, round(1.0 / tile_frac))


def shuffle_tiles(x: torch.Tensor, tile_frac: float, generator: torch.Generator) -> torch.Tensor:
    """Cut each image into n×n tiles and put them back in a random order of its own.

    ``n = round(1 / tile_frac)`` tiles per side (0.5 → 2×2, 0.33 → 3×3, 0.25 → 4×4), each
    ``h = H // n`` by ``w = W // n`` pixels. When n does not divide the side, the tiles
    cover the top-left ``n·h × n·w`` pixels and the remainder strip (the last ``H mod n``
    rows and ``W mod n`` columns) stays where it is: 28 px with 3 tiles gives 9-px tiles
    over 27 px and leaves the last row and column in place. Every image gets its own
    uniform permutation of its n² tiles (the identity among them, with probability
    1/(n²)!), drawn as the argsort of n² uniforms per image.

    Parameters
    ----------
    x : torch.Tensor
        float, (N, C, H, W).
    tile_frac : float
        Relative tile size s in (0, 1], as in the study ("0.33: the tile is 33 % of the
        image"); 1 returns the image unchanged.
    generator : torch.Generator
        On ``x``'s device; one call draws the N·n² uniforms, whatever n is.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``; each image's pixel values are a permutation of its own.

    Raises
    ------
    ConfigError
        If ``tile_frac`` is out of range, or asks for more tiles than pixels per side.
    """
    _check_images(x)
    _check_generator(x, generator)
    n = tiles_per_side(tile_frac)
    count, channels, height, width = x.shape
    if n > min(height, width):
        raise ConfigError(
            f"tile_frac={tile_frac!r} asks for {n} tiles per side of a {height}×{width} "
            f"image; use tile_frac >= {1 / min(height, width):.3g}"
        )
    order = torch.rand(count, n * n, generator=generator, device=x.device).argsort(dim=1)
    if n == 1 or count == 0:
        return x.clone()
    h, w = height // n, width // n
    # (N, C, n·h, n·w) → (N, n², C, h, w): tile t = (row t // n, column t % n).
    tiles = x[:, :, : n * h, : n * w].reshape(count, channels, n, h, n, w)
    tiles = tiles.permute(0, 2, 4, 1, 3, 5).reshape(count, n * n, channels, h, w)
    # Output tile t is input tile order[t]: one gather along the tile axis.
    shuffled = tiles.gather(1, order[:, :, None, None, None].expand_as(tiles))
    shuffled = shuffled.reshape(count, n, n, channels, h, w).permute(0, 3, 1, 4, 2, 5)
    out = x.clone()
    out[:, :, : n * h, : n * w] = shuffled.reshape(count, channels, n * h, n * w)
    return out


def radial_mask(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Low-pass: keep only the 2-D Fourier frequencies within ``radius`` of the centre.

    With the spectrum F = fftshift(fft2(X)) over (H, W), the zero frequency sits at
    index (H // 2, W // 2) and the mask is (Kishida & Nakayama, section 6, after Jo &
    Bengio, 2018)::

        M_r[i, j] = 1  if ‖(i, j) − (H // 2, W // 2)‖₂ ≤ r · ρ,  else 0,
        ρ = ‖(H // 2, W // 2)‖₂, the distance to the farthest frequency (half-diagonal),

    and the output is Re(ifft2(ifftshift(M_r · F))). The study gives r in pixels of
    the spectrum; here r is relative to ρ so one grid fits every image size: r = 1 keeps
    every frequency (the image comes back up to float rounding) and r < 1 / ρ keeps
    only the zero frequency (each channel becomes its mean). The mask is symmetric
    under f → −f, so the inverse transform is real up to rounding.

    Parameters
    ----------
    x : torch.Tensor
        float, (N, C, H, W).
    radius : float
        r in (0, 1].

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.
    """
    _check_images(x)
    radius = _check_strength("radius", radius, allow_zero=False)
    height, width = x.shape[-2:]
    rows = torch.arange(height, device=x.device, dtype=torch.float64) - height // 2
    cols = torch.arange(width, device=x.device, dtype=torch.float64) - width // 2
    distance = torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)
    farthest = math.hypot(height // 2, width // 2)
    # A relative tolerance keeps r = 1 from dropping the corner to float rounding.
    keep = distance <= radius * farthest * (1 + 1e-9)
    spectrum = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    spectrum = spectrum * keep.to(spectrum.real.dtype)
    out = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real
    return out.to(x.dtype)


def apply_pattern(
    name: str, x: torch.Tensor, strength: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Remove pattern ``name`` at ``strength`` from a batch of images.

    Parameters
    ----------
    name : str
        A key of :data:`PATTERNS`: "color" (strength α), "shuffle" (tile size s) or
        "radial" (radius r).
    x : torch.Tensor
        float, (N, C, H, W).
    strength : float
        The pattern's parameter; 1 returns the images unchanged, smaller removes more.
    generator : torch.Generator, optional
        On ``x``'s device; required by "shuffle", ignored by the others.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(4, 3, 8, 8, generator=g)
    >>> [torch.allclose(apply_pattern(name, x, 1.0, g), x, atol=1e-6) for name in PATTERNS]
    [True, True, True]
    >>> apply_pattern("shuffle", x, 0.5, g).shape
    torch.Size([4, 3, 8, 8])
    """
    if name not in PATTERNS:
        raise ConfigError(f"pattern {name!r} is not known: expected one of {', '.join(PATTERNS)}")
    if name == "color":
        return remove_color(x, strength)
    if name == "radial":
        return radial_mask(x, strength)
    if generator is None:
        raise ConfigError("pattern 'shuffle' draws tile orders: pass a torch.Generator")
    return shuffle_tiles(x, strength, generator)


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ConfigError(f"expected float images of shape (N, C, H, W), got {shape}")


def _check_strength(parameter: str, value: float, allow_zero: bool) -> float:
    low = "0 <=" if allow_zero else "0 <"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (0.0 <= number <= 1.0) or (number == 0.0 and not allow_zero):
        raise ConfigError(f"{parameter}={value!r} is out of range: expected {low} {parameter} <= 1")
    return number


def _check_generator(x: torch.Tensor, generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"expected a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ConfigError(
            f"the generator is on {generator.device}, the images on {x.device}; "
            "pass a torch.Generator(device=images.device)"
        )
