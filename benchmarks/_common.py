"""Shared pieces of the benchmark scripts: synthetic data sets and a null log sink."""

from __future__ import annotations

import hashlib
import os
import platform
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.data import Dataset, Split  # noqa: E402


def synthetic_dataset(n_train: int, n_test: int, shape=(3, 32, 32), classes: int = 10, seed: int = 0) -> Dataset:
    """Random uint8 images with random labels: the shape of CIFAR, none of its content.

    Throughput depends on shapes, not pixels; the GPU machine has no network and no
    CIFAR files, so speed is measured on these.
    """
    rng = np.random.default_rng(seed)

    def split(n):
        return Split(rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, classes, n).astype(np.int64))

    train, test = split(n_train), split(n_test)
    digest = hashlib.sha256(train.images[:64].tobytes()).hexdigest()
    return Dataset("synthetic", train, test, tuple(str(c) for c in range(classes)), digest)


def null_sink(*args, **kwargs) -> None:
    """A log sink that drops rows: measures training and evaluation, not storage."""


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()} CPU x{os.cpu_count()}, torch {torch.__version__}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
