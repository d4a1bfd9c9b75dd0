"""How a run's examples are cut into log parts and aggregator shards.

Parts: a (trial, step) evaluation is written as parts of at most ROWS_PER_PART rows
(or the run's rows_per_part);
train parts come first (0 .. P-1), test parts after them (P ..), and a part never
holds two splits. Shards: aggregator k owns the contiguous example-id range
[k·N/K, (k+1)·N/K) of each split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raystats.errors import ConfigError, SchemaError

ROWS_PER_PART = 1 << 20
# Dense state per (step, trial, example): loss, margin, p_true, el2n (float32) + correct
# + present (1 byte each) = 18 bytes; see raystats.stats.accumulator.
BYTES_PER_CELL = 18
DEFAULT_SHARD_BYTES = 2 << 30


def train_parts(n_train: int, rows_per_part: int | None = None) -> int:
    return max(1, math.ceil(n_train / (rows_per_part or ROWS_PER_PART)))


def part_ranges(
    split: str, n_rows: int, n_train: int, rows_per_part: int | None = None
) -> list[tuple[int, int, int]]:
    """(part, start row, stop row) for one split's rows of a (trial, step) evaluation.

    The keys depend only on the split, the row counts and ``rows_per_part`` (None:
    ROWS_PER_PART), never on which worker evaluates a part: with a trial trained over G
    workers, rank r writes parts r, r+G, ... and a part rewritten after a restart
    replaces itself. Small ``rows_per_part`` values give G workers parts to share on
    small data sets.
    """
    size = rows_per_part or ROWS_PER_PART
    first = 0 if split == "train" else train_parts(n_train, size)
    return [
        (first + index, start, min(start + size, n_rows))
        for index, start in enumerate(range(0, max(n_rows, 1), size))
    ]


@dataclass(frozen=True)
class ShardPlan:
    """Aggregator shard k owns ids [k·N/K, (k+1)·N/K) of each split (N per split).

    Parameters
    ----------
    n_shards : int
        K, the number of aggregator shards.
    sizes : dict
        Number of examples N of each logged split, e.g. ``{"train": 60000, "test": 10000}``.
    """

    n_shards: int
    sizes: dict  # split -> number of examples

    def range(self, split: str, shard: int) -> tuple[int, int]:
        """``(start, stop)``: the example ids of ``split`` that shard ``shard`` owns."""
        n = self._size(split)
        return (shard * n // self.n_shards, (shard + 1) * n // self.n_shards)

    def shard_bytes(self, shard: int, n_trials: int, n_steps: int) -> int:
        """Dense state of one shard once every step is logged: Σ_split n_k · M · T · 18 B."""
        owned = sum(stop - start for start, stop in (self.range(s, shard) for s in self.sizes))
        return owned * n_trials * n_steps * BYTES_PER_CELL

    def bytes_per_shard(self, n_trials: int, n_steps: int) -> int:
        """The memory bound of the plan: the largest :meth:`shard_bytes` of its shards.

        Floor-division ranges differ by at most one id, and the last shard's range of
        every split has the larger size ⌈N/K⌉, so the last shard is the largest.
        """
        return self.shard_bytes(self.n_shards - 1, n_trials, n_steps)

    def route(self, split: str, table: pa.Table) -> list[pa.Table]:
        """Each shard's rows of one log part: entry k holds the rows whose ids shard k owns.

        Vectorised (a binary search of the shard boundaries in the sorted ids, or one
        mask per shard when the ids are unsorted); every entry is a compact copy, maybe
        empty, so a shard is sent its own rows and nothing else. A part wholly inside one
        shard's range is passed on as it is.

        Raises
        ------
        SchemaError
            If an example_id lies outside ``[0, N)`` of ``split``: no shard owns it.
        """
        n = self._size(split)
        ids = table.column("example_id").to_numpy()
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            bad = ids[(ids < 0) | (ids >= n)]
            raise SchemaError(
                f"{split} rows have example_ids {bad[:5].tolist()} outside [0, {n}); "
                f"the {self.n_shards} aggregator shards own exactly the ids 0..{n - 1}"
            )
        starts = np.array([self.range(split, k)[0] for k in range(self.n_shards)] + [n])
        if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
            cuts = np.searchsorted(ids, starts)
            return [_compact(table, int(a), int(b)) for a, b in zip(cuts, cuts[1:])]
        owner = np.searchsorted(starts, ids, side="right") - 1
        return [table.filter(pa.array(owner == k)) for k in range(self.n_shards)]

    def _size(self, split: str) -> int:
        if split not in self.sizes:
            raise ConfigError(
                f"split={split!r} is not aggregated by this run: expected one of {sorted(self.sizes)}"
            )
        return int(self.sizes[split])


def choose_shards(
    sizes: dict, n_trials: int, n_steps: int, shard_bytes: int | None = None
) -> ShardPlan:
    """The fewest shards K whose dense state stays at or under ``shard_bytes`` each.

    A shard holds 18 bytes per (example, trial, logged step) of its ranges, so with
    ``total = Σ_split N · M · T · 18`` it starts from ``K = ⌈total / shard_bytes⌉`` and
    takes the smallest K whose largest shard (ranges differ by one example) fits.

    Raises
    ------
    ConfigError
        If ``shard_bytes`` (None: ``DEFAULT_SHARD_BYTES``) is not a positive integer, or
        is smaller than one example of every split needs (``len(splits) · M · T · 18`` B).

    Examples
    --------
    >>> plan = choose_shards({"train": 1281167, "test": 50000}, 10, 200)
    >>> plan.n_shards, plan.bytes_per_shard(10, 200) <= DEFAULT_SHARD_BYTES
    (23, True)
    """
    shard_bytes = DEFAULT_SHARD_BYTES if shard_bytes is None else shard_bytes
    if isinstance(shard_bytes, bool) or not isinstance(shard_bytes, (int, np.integer)) or shard_bytes < 1:
        raise ConfigError(f"shard_bytes={shard_bytes!r} is not accepted: expected an integer ≥ 1")
    cell = n_trials * n_steps * BYTES_PER_CELL
    if cell * len(sizes) > shard_bytes:
        raise ConfigError(
            f"shard_bytes={shard_bytes:,} is not accepted: one example of each of the splits "
            f"{sorted(sizes)} needs {cell * len(sizes):,} bytes ({n_trials} trials × {n_steps} "
            f"steps × {BYTES_PER_CELL} B); expected at least that"
        )
    # The largest shard holds Σ_split ⌈N/K⌉ examples, which only falls as K grows:
    # binary search from the lower bound ⌈total / shard_bytes⌉ to one example per shard.
    low = max(1, math.ceil(sum(sizes.values()) * cell / shard_bytes))
    high = max(low, *sizes.values())
    while low < high:
        middle = (low + high) // 2
        if ShardPlan(middle, sizes).bytes_per_shard(n_trials, n_steps) <= shard_bytes:
            high = middle
        else:
            low = middle + 1
    return ShardPlan(low, dict(sizes))


def _compact(table: pa.Table, start: int, stop: int) -> pa.Table:
    """Rows ``start:stop`` as a table of their own buffers.

    A slice shares its parent's buffers, and pickling a sliced column sends the whole
    buffer (ARROW-10739): Ray would ship the full part to every shard. Concatenating the
    slice's batches copies just its rows (about 4 ms for a 1M-row part cut 23 ways).
    """
    if start == 0 and stop == table.num_rows:
        return table
    if start == stop:
        return table.schema.empty_table()
    piece = pa.concat_batches(table.slice(start, stop - start).to_batches())
    return pa.Table.from_batches([piece])
