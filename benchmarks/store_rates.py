"""Run-store write and read rates (rows/s) and bytes per row, measured in one run.

    python benchmarks/store_rates.py --rows 2000000

Rows are realistic: losses drawn like a trained model's (mostly small, a heavy tail),
sorted example ids, one (trial, step) part per file as the service writes them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
from _common import machine

from raystats.schema import make_log_table
from raystats.store import RunStore


def realistic_rows(n: int, trial: int, step: int, rng) -> pa.Table:
    label = rng.integers(0, 10, n)
    correct = rng.random(n) < 0.9
    pred = np.where(correct, label, (label + 1) % 10)
    loss = np.where(correct, rng.exponential(0.05, n), rng.exponential(2.0, n) + 0.7)
    p_true = np.exp(-loss)
    return make_log_table(example_id=np.arange(n), trial=trial, step=step, epoch=step / 100, split="train",
                          label=label, pred=pred, loss=loss, margin=np.log(p_true / (1 - p_true + 1e-6)),
                          p_true=p_true, el2n=np.sqrt(2) * (1 - p_true))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows per part (one trial, one step)")
    p.add_argument("--parts", type=int, default=6)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    tables = [realistic_rows(args.rows, trial, 100, rng) for trial in range(args.parts)]
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(folder)
        started = time.perf_counter()
        paths = [store.write_log("bench", t, trial, 100, 0) for trial, t in enumerate(tables)]
        t_write = time.perf_counter() - started
        size = sum(os.path.getsize(path) for path in paths)
        started = time.perf_counter()
        read = [store.read_log(path) for path in paths]
        t_read = time.perf_counter() - started
    rows = args.rows * args.parts
    assert sum(t.num_rows for t in read) == rows
    print(f"machine: {machine()}")
    print(f"{args.parts} parts x {args.rows:,} rows, all 12 log columns, zstd + delta/byte-stream-split encodings")
    print(f"write {rows / t_write:>14,.0f} rows/s  (validate + encode + atomic rename)")
    print(f"read  {rows / t_read:>14,.0f} rows/s  (decode + validate)")
    print(f"size  {size / rows:>14.2f} bytes/row")


if __name__ == "__main__":
    main()
