"""How a run's examples are cut into log parts and aggregator shards.

Parts: a (trial, step) evaluation is written as parts of at most ROWS_PER_PART rows;
train parts come first (0 .. P-1), test parts after them (P ..), and a part never
holds two splits. Shards: aggregator k owns the contiguous example-id range
[k·N/K, (k+1)·N/K) of each split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ROWS_PER_PART = 1 << 20
# Dense state per (step, trial, example): loss, margin, p_true, el2n (float32) + correct
# + present (1 byte each) = 18 bytes; see raystats.stats.accumulator.
BYTES_PER_CELL = 18
DEFAULT_SHARD_BYTES = 2 << 30


def train_parts(n_train: int) -> int:
    return max(1, math.ceil(n_train / ROWS_PER_PART))


def part_ranges(split: str, n_rows: int, n_train: int) -> list[tuple[int, int, int]]:
    """(part, start row, stop row) for one split's rows of a (trial, step) evaluation."""
    first = 0 if split == "train" else train_parts(n_train)
    return [
        (first + index, start, min(start + ROWS_PER_PART, n_rows))
        for index, start in enumerate(range(0, max(n_rows, 1), ROWS_PER_PART))
    ]


@dataclass(frozen=True)
class ShardPlan:
    """Aggregator shard k owns ids [bounds[k], bounds[k+1]) of each split."""

    n_shards: int
    sizes: dict  # split -> number of examples

    def range(self, split: str, shard: int) -> tuple[int, int]:
        n = self.sizes[split]
        return (shard * n // self.n_shards, (shard + 1) * n // self.n_shards)

    def bytes_per_shard(self, n_trials: int, n_steps: int) -> int:
        largest = max(self.range(s, 0)[1] - self.range(s, 0)[0] for s in self.sizes)
        return largest * n_trials * n_steps * BYTES_PER_CELL * len(self.sizes)


def choose_shards(
    sizes: dict, n_trials: int, n_steps: int, shard_bytes: int = DEFAULT_SHARD_BYTES
) -> ShardPlan:
    """The fewest shards K whose dense state stays under ``shard_bytes`` each."""
    total = sum(sizes.values()) * n_trials * n_steps * BYTES_PER_CELL
    return ShardPlan(max(1, math.ceil(total / shard_bytes)), dict(sizes))
