"""Augmentation: each output checked against a second, brute-force computation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from raystats.data import augment, global_contrast_normalize, random_hflip, random_translate, to_float
from raystats.errors import ConfigError


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n=16, channels=3, height=7, width=6, seed=0) -> torch.Tensor:
    """Random positive images: no two shifts or flips of one image coincide."""
    return torch.rand(n, channels, height, width, generator=generator(seed)) + 0.1


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """out[:, i, j] = image[:, i − dy, j − dx] where that pixel exists, else 0."""
    out = np.zeros_like(image)
    height, width = image.shape[1:]
    for i in range(height):
        for j in range(width):
            if 0 <= i - dy < height and 0 <= j - dx < width:
                out[:, i, j] = image[:, i - dy, j - dx]
    return out


def find_shifts(x: torch.Tensor, out: torch.Tensor, pixels: int) -> list[list[tuple[int, int]]]:
    """For each image, every (dy, dx) in [−pixels, pixels]² that explains the output."""
    found = []
    for image, result in zip(x.numpy(), out.numpy()):
        found.append([
            (dy, dx)
            for dy in range(-pixels, pixels + 1) for dx in range(-pixels, pixels + 1)
            if np.array_equal(shifted(image, dy, dx), result)
        ])
    return found


# ------------------------------------------------------------------------------ to_float


def test_to_float_maps_uint8_to_unit_interval():
    raw = torch.tensor([[0, 1, 128, 255]], dtype=torch.uint8)
    out = to_float(raw)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[0, 1 / 255, 128 / 255, 1.0]]))


def test_to_float_takes_read_only_numpy_without_warning():
    array = np.array([[0, 51, 255]], dtype=np.uint8)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_float(array)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.2, 1.0]]))


def test_to_float_refuses_floats():
    with pytest.raises(TypeError, match="uint8"):
        to_float(torch.zeros(2, 1, 3, 3))


# --------------------------------------------------------------------------------- GCN


def test_gcn_gives_each_image_mean_zero_std_one():
    x = images(n=8) * torch.arange(1, 9).reshape(8, 1, 1, 1) + torch.arange(8).reshape(8, 1, 1, 1)
    out = global_contrast_normalize(x)
    flat = out.reshape(8, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1, correction=0), torch.ones(8), atol=1e-5, rtol=0)


def test_gcn_is_per_image_and_ignores_affine_changes():
    x = images(n=4)
    scaled = x * torch.tensor([1.0, 3.0, 0.5, 10.0]).reshape(4, 1, 1, 1) - 2.0
    torch.testing.assert_close(global_contrast_normalize(scaled), global_contrast_normalize(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(global_contrast_normalize(x[1:2]), global_contrast_normalize(x)[1:2])


def test_gcn_of_a_constant_image_is_zero_not_nan():
    out = global_contrast_normalize(torch.full((2, 3, 4, 4), 0.7))
    assert torch.equal(out, torch.zeros_like(out))


# ----------------------------------------------------------------------------- flip


def test_hflip_flips_a_subset_exactly():
    x = images(n=64)
    out = random_hflip(x, generator(1))
    flipped = torch.tensor([torch.equal(o, torch.flip(i, dims=[-1])) for i, o in zip(x, out)])
    kept = torch.tensor([torch.equal(o, i) for i, o in zip(x, out)])
    assert torch.all(flipped ^ kept)  # every image is exactly one of the two
    assert 0 < int(flipped.sum()) < 64


def test_hflip_twice_with_the_same_generator_state_is_identity():
    x = images(n=32)
    assert torch.equal(random_hflip(random_hflip(x, generator(5)), generator(5)), x)


def test_hflip_rate_is_one_half():
    x = torch.arange(2).float().reshape(1, 1, 1, 2).repeat(4000, 1, 1, 1)
    out = random_hflip(x, generator(2))
    rate = float((out[:, 0, 0, 0] == 1).float().mean())
    assert 0.46 < rate < 0.54  # 4,000 draws: std of the rate is 0.008


# ------------------------------------------------------------------------- translate


def test_translate_zero_pixels_is_identity():
    x = images()
    assert torch.equal(random_translate(x, 0, generator(0)), x)


def test_translate_each_image_is_one_shift_within_range():
    x = images(n=40)
    out = random_translate(x, 2, generator(3))
    assert out.shape == x.shape
    matches = find_shifts(x, out, 2)
    assert all(len(m) == 1 for m in matches)


def test_translate_covers_every_shift_including_the_extremes():
    x = images(n=400, channels=1, height=5, width=5)
    out = random_translate(x, 1, generator(4))
    seen = {m[0] for m in find_shifts(x, out, 1)}
    assert seen == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def test_translate_larger_than_the_image_zero_fills():
    x = images(n=200, channels=1, height=2, width=2)
    out = random_translate(x, 3, generator(6))
    assert all(find_shifts(x, out, 3))  # a shift past the edge leaves zeros, which many shifts explain
    assert any(torch.equal(o, torch.zeros_like(o)) for o in out)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4), channels=st.integers(1, 3), height=st.integers(1, 6),
    width=st.integers(1, 6), pixels=st.integers(0, 3), seed=st.integers(0, 2**31),
)
def test_translate_is_a_shift_for_any_shape(n, channels, height, width, pixels, seed):
    x = images(n, channels, height, width, seed=seed % 1000)
    out = random_translate(x, pixels, generator(seed))
    assert out.shape == x.shape
    assert all(find_shifts(x, out, pixels))


def test_translate_refuses_negative_pixels():
    with pytest.raises(ConfigError, match="-1"):
        random_translate(images(), -1, generator(0))


# ------------------------------------------------------------------ augment, seeds


def test_augment_is_reproducible_from_the_seed():
    x = images(n=32)
    a = augment(x, generator(7))
    assert torch.equal(a, augment(x, generator(7)))
    assert not torch.equal(a, augment(x, generator(8)))


def test_augment_is_translate_then_flip_from_one_generator():
    x = images(n=32)
    expected = random_hflip(random_translate(x, 4, g := generator(9)), g)
    assert torch.equal(augment(x, generator(9)), expected)
    assert torch.equal(augment(x, generator(9), translate_pixels=0, flip=False), x)


def test_augment_leaves_its_input_alone():
    x = images(n=8)
    before = x.clone()
    augment(x, generator(10))
    assert torch.equal(x, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_on_cuda_matches_the_reference_shift():
    x = images(n=16).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    out = augment(x, g, translate_pixels=2, flip=False)
    assert out.device == x.device
    assert all(len(m) == 1 for m in find_shifts(x.cpu(), out.cpu(), 2))
    with pytest.raises(ConfigError, match="generator"):
        augment(x, generator(0))
