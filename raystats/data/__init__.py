"""Data sets with stable example ids, and batched augmentation.

``load_dataset(name, root)`` returns uint8 images and int64 labels per split; an
example's id is its row index in the split. The augmentation functions work on float
tensors (N, C, H, W) on any device and draw randomness only from the generator passed.
"""

from raystats.data.augment import (
    augment,
    global_contrast_normalize,
    random_hflip,
    random_translate,
    to_float,
)
from raystats.data.datasets import DATASETS, Dataset, Split, load_dataset, load_run_dataset

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "augment",
    "global_contrast_normalize",
    "load_dataset",
    "load_run_dataset",
    "random_hflip",
    "random_translate",
    "to_float",
]
