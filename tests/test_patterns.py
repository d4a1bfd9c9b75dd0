"""Pattern removal, tested as transforms: identities, end points, invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from raystats.data.patterns import (
    PATTERNS,
    apply_pattern,
    radial_mask,
    remove_color,
    shuffle_tiles,
    tiles_per_side,
)
from raystats.errors import ConfigError


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n=6, channels=3, height=12, width=12, seed=0, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(n, channels, height, width, generator=generator(seed), dtype=dtype)


# ------------------------------------------------------------------------------ color


def test_color_alpha_one_is_identity():
    x = images()
    assert torch.equal(remove_color(x, 1.0), x)


def test_color_alpha_zero_is_grey():
    x = images()
    out = remove_color(x, 0.0)
    mean = x.mean(dim=1)
    for channel in range(3):
        torch.testing.assert_close(out[:, channel], mean)


@given(alpha=st.floats(0.0, 1.0))
@settings(max_examples=30, deadline=None)
def test_color_is_the_interpolation_formula(alpha):
    x = images(n=2, height=4, width=5, dtype=torch.float64)
    grey = x.numpy().mean(axis=1, keepdims=True)
    expected = alpha * x.numpy() + (1 - alpha) * grey
    np.testing.assert_allclose(remove_color(x, alpha).numpy(), expected, atol=1e-12)
    # Colour removal never changes the grey picture.
    np.testing.assert_allclose(remove_color(x, alpha).numpy().mean(axis=1, keepdims=True), grey, atol=1e-12)


def test_color_on_one_channel_is_identity_for_every_alpha():
    x = images(channels=1)
    for alpha in (0.0, 0.3, 1.0):
        assert torch.equal(remove_color(x, alpha), x)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "a", True])
def test_color_refuses_alpha_out_of_range(alpha):
    with pytest.raises(ConfigError, match="alpha"):
        remove_color(images(), alpha)


# ------------------------------------------------------------------------------ shuffle


def tiles_of(image: np.ndarray, n: int) -> list[np.ndarray]:
    """The n×n tiles of one (C, H, W) image, in row-major order, by slicing."""
    h, w = image.shape[1] // n, image.shape[2] // n
    return [image[:, r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(n) for c in range(n)]


@pytest.mark.parametrize("tile_frac, n", [(1.0, 1), (0.5, 2), (0.33, 3), (0.25, 4), (0.2, 5)])
def test_tiles_per_side(tile_frac, n):
    assert tiles_per_side(tile_frac) == n


@pytest.mark.parametrize("tile_frac", [0.5, 0.33, 0.25])
@pytest.mark.parametrize("size", [(12, 12), (28, 28), (13, 10)])
def test_shuffle_permutes_tiles(tile_frac, size):
    height, width = size
    x = images(n=8, height=height, width=width, seed=1)
    out = shuffle_tiles(x, tile_frac, generator(2))
    n = tiles_per_side(tile_frac)
    h, w = height // n, width // n
    for image, result in zip(x.numpy(), out.numpy()):
        # The pixel multiset of every image is kept.
        np.testing.assert_array_equal(np.sort(image, axis=None), np.sort(result, axis=None))
        # Each output tile is an input tile, each input tile used once.
        before, after = tiles_of(image, n), tiles_of(result, n)
        used = []
        for tile in after:
            matches = [k for k, source in enumerate(before) if np.array_equal(source, tile)]
            assert len(matches) == 1
            used.append(matches[0])
        assert sorted(used) == list(range(n * n))
        # The remainder strip (rows and columns past n·h, n·w) stays in place.
        np.testing.assert_array_equal(result[:, n * h:, :], image[:, n * h:, :])
        np.testing.assert_array_equal(result[:, :, n * w:], image[:, :, n * w:])


def test_shuffle_gives_each_image_its_own_order():
    x = images(n=1).expand(64, -1, -1, -1).contiguous()
    out = shuffle_tiles(x, 0.5, generator(3))
    distinct = {tuple(image.flatten().tolist()) for image in out}
    assert len(distinct) > 10  # 4! = 24 orders; 64 draws hit many of them


def test_shuffle_is_reproducible_from_the_seed():
    x = images()
    assert torch.equal(shuffle_tiles(x, 0.25, generator(5)), shuffle_tiles(x, 0.25, generator(5)))
    assert not torch.equal(shuffle_tiles(x, 0.25, generator(5)), shuffle_tiles(x, 0.25, generator(6)))


def test_shuffle_with_one_tile_is_identity():
    x = images()
    assert torch.equal(shuffle_tiles(x, 1.0, generator()), x)


def test_shuffle_refuses_more_tiles_than_pixels():
    with pytest.raises(ConfigError, match="tiles per side"):
        shuffle_tiles(images(height=3, width=3), 0.25, generator())


def test_shuffle_refuses_a_seed_in_place_of_a_generator():
    with pytest.raises(ConfigError, match="Generator"):
        shuffle_tiles(images(), 0.5, 0)


# ------------------------------------------------------------------------------ radial


@pytest.mark.parametrize("size", [(8, 8), (28, 28), (9, 7), (32, 32)])
def test_radial_largest_radius_keeps_the_image(size):
    x = images(height=size[0], width=size[1])
    torch.testing.assert_close(radial_mask(x, 1.0), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(8, 8), (28, 28), (9, 7)])
def test_radial_tiny_radius_keeps_only_the_mean(size):
    x = images(height=size[0], width=size[1], dtype=torch.float64)
    out = radial_mask(x, 1e-6)
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(out, mean.expand_as(x), atol=1e-12, rtol=0)


def test_radial_is_the_masked_spectrum():
    """Against numpy's FFT with the mask written out in pixels of the spectrum."""
    x = images(n=2, height=10, width=8, dtype=torch.float64)
    radius = 0.4
    height, width = 10, 8
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rho = np.hypot(height // 2, width // 2)
    mask = np.hypot(i - height // 2, j - width // 2) <= radius * rho
    spectrum = np.fft.fftshift(np.fft.fft2(x.numpy()), axes=(-2, -1)) * mask
    expected = np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(-2, -1))).real
    np.testing.assert_allclose(radial_mask(x, radius).numpy(), expected, atol=1e-12)


def test_radial_removes_more_energy_at_smaller_radius():
    x = images(n=4, height=16, width=16, dtype=torch.float64)
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    energy = [radial_mask(centred, r).pow(2).sum().item() for r in (0.1, 0.2, 0.4, 0.7, 1.0)]
    assert energy == sorted(energy)
    assert energy[-1] == pytest.approx(centred.pow(2).sum().item())


@pytest.mark.parametrize("radius", [0.0, -1.0, 1.01])
def test_radial_refuses_radius_out_of_range(radius):
    with pytest.raises(ConfigError, match="radius"):
        radial_mask(images(), radius)


# ------------------------------------------------------------------------------ registry


def test_patterns_registry_holds_the_study_grids():
    assert PATTERNS["color"].strengths == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert sorted(PATTERNS["shuffle"].strengths) == [0.25, 0.33, 0.5]
    assert PATTERNS["radial"].strengths == (0.1, 0.2, 0.4, 0.7, 1.0)
    assert [name for name, pattern in PATTERNS.items() if pattern.random] == ["shuffle"]


@pytest.mark.parametrize("name", list(PATTERNS))
def test_apply_pattern_runs_every_default_strength(name):
    x = images(height=28, width=28)
    for strength in PATTERNS[name].strengths:
        out = apply_pattern(name, x, strength, generator())
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


def test_apply_pattern_dispatches():
    x = images()
    assert torch.equal(apply_pattern("color", x, 0.5), remove_color(x, 0.5))
    assert torch.equal(apply_pattern("radial", x, 0.3), radial_mask(x, 0.3))
    assert torch.equal(apply_pattern("shuffle", x, 0.5, generator(1)), shuffle_tiles(x, 0.5, generator(1)))


def test_apply_pattern_refuses_unknown_names_and_missing_generators():
    with pytest.raises(ConfigError, match="not known"):
        apply_pattern("blur", images(), 0.5)
    with pytest.raises(ConfigError, match="Generator"):
        apply_pattern("shuffle", images(), 0.5)


def test_transforms_refuse_non_image_tensors():
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        remove_color(torch.rand(3, 8, 8), 0.5)
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        radial_mask(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 0.5)
