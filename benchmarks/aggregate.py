"""How fast the LogAccumulator ingests log rows and answers easiness queries.

    python benchmarks/aggregate.py                 # both sizes, < 3 minutes on 2 cores
    python benchmarks/aggregate.py --no-imagenet   # Fashion-MNIST size only

Prints ratios measured in this one run, next to this machine's memory copy rate:

- copy rate: ``np.copyto`` of a large float32 array (best of several); a *record* is one
  4-byte float32, so records/s = bytes/s ÷ 4.
- ingest rate: log rows per second through ``LogAccumulator.ingest``. One row writes
  its 5 value columns (loss, margin, p_true, el2n as float32, correct as bool) plus its
  present flag: 18 bytes of state. The ratio ingest/copy divides rows/s by the copy's
  records/s, so a row counts as one record although it moves 4.5× the bytes.
  "cold" ingests into a fresh accumulator (its pages are touched for the first time);
  "warm" delivers the same tables again under new keys into allocated state; "bare"
  copies the same columns into the same state with np.copyto and no checks at all —
  the floor for this layout. On a VM whose host reclaims freed memory, first touch of
  new memory is slow and varies from run to run: cold figures measure the machine as
  much as the code.
  Tables are built with ``raystats.schema.make_log_table`` beforehand, outside the
  timing, and cut into parts of at most 2^20 rows as the run store writes them.
- query: easiness at one step + easy and hard sets + a matching rate between two
  steps' easy sets, on one core (numpy runs these single-threaded).

Sizes: Fashion-MNIST (N = 60,000, M = 10, T = 30) and ImageNet-1k (N = 1,281,167,
M = 10, T = 3 by default: fewer logged steps keep the tables (~1.3 GB) and the state
(~0.7 GB) in memory and the run within time; rates per row do not depend on T).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from raystats.schema import make_log_table  # noqa: E402
from raystats.stats import LogAccumulator, easy_and_hard_sets, easy_set, matching_rate  # noqa: E402

PART_ROWS = 1 << 20  # rows per Parquet part, as raystats.service.layout.ROWS_PER_PART
BYTES_PER_ROW = 4 * 4 + 1 + 1  # four float32 columns, correct, present


def copy_rate(n_bytes: int, repeats: int) -> float:
    """Best bytes/s of np.copyto between two pre-touched float32 arrays."""
    source = np.random.default_rng(0).random(n_bytes // 4, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    return len(source) * 4 / best_time(lambda: np.copyto(target, source), repeats)


def first_touch_rate(n_bytes: int) -> float:
    """Bytes/s of allocating and filling memory this process has not used before.

    New state pays this once per page. On a VM whose host reclaims freed guest memory
    it is far below the copy rate, which is why cold and warm ingest are both shown.
    """
    start = time.perf_counter()
    np.zeros(n_bytes // 4, dtype=np.float32).fill(1.0)
    return n_bytes / (time.perf_counter() - start)


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def make_tables(n: int, trials: int, steps: int, seed: int = 0) -> list[tuple[tuple, object]]:
    """(key, table) parts of a run, in arrival order (step by step, trial by trial)."""
    rng = np.random.default_rng(seed)
    example_id = np.arange(n, dtype=np.int32)
    label = rng.integers(0, 10, n).astype(np.int16)
    parts = []
    for step in range(steps):
        for trial in range(trials):
            loss = rng.exponential(1.0, n).astype(np.float32)
            pred = np.where(rng.random(n) < 0.7, label, (label + 1) % 10).astype(np.int16)
            table = make_log_table(
                example_id=example_id, trial=trial, step=step * 100, epoch=float(step),
                split="train", label=label, pred=pred, loss=loss,
                margin=rng.normal(size=n).astype(np.float32),
                p_true=np.exp(-loss), el2n=rng.random(n, dtype=np.float32),
            )
            for part, start in enumerate(range(0, n, PART_ROWS)):
                parts.append(((trial, step * 100, part), table.slice(start, PART_ROWS)))
    return parts


def ingest_rates(parts, n: int, trials: int) -> tuple[float, float, LogAccumulator]:
    """Rows/s into a fresh accumulator (cold) and into allocated state (warm)."""
    rows = sum(table.num_rows for _, table in parts)
    accumulator = LogAccumulator(n, trials)
    start = time.perf_counter()
    for key, table in parts:
        accumulator.ingest(table, key)
    cold = rows / (time.perf_counter() - start)
    warm_times = []
    for attempt in range(2):
        start = time.perf_counter()
        for key, table in parts:
            accumulator.ingest(table, (*key, "again", attempt))
        warm_times.append(time.perf_counter() - start)
    return cold, rows / min(warm_times), accumulator


def bare_copy_rate(parts, accumulator: LogAccumulator, repeats: int) -> float:
    """Rows/s of copying just the value columns of every part into the same state.

    The floor of ingest on this layout: the same bytes moved with no checks and no
    bookkeeping (each part's rows are one contiguous id run here, so it is a plain copy).
    """
    jobs = []
    for (trial, step, _), table in parts:
        batch = table.combine_chunks().to_batches()[0]
        first = int(batch.column(0)[0].as_py())
        target = slice(first, first + batch.num_rows)
        matrices = accumulator._matrices[step]  # noqa: SLF001 - a benchmark of the layout itself
        sources = [batch.column(name).to_numpy() for name in ("loss", "margin", "p_true", "el2n")]
        jobs.append((matrices, trial, target, sources, batch.column("correct")))

    def copy_all():
        for matrices, trial, target, sources, correct in jobs:
            for name, source in zip(("loss", "margin", "p_true", "el2n"), sources):
                np.copyto(matrices[name][trial, target], source)
            packed = np.frombuffer(correct.buffers()[1], np.uint8)
            bits = np.unpackbits(packed, count=len(correct) + correct.offset, bitorder="little")
            matrices["correct"][trial, target] = bits[correct.offset :].view(bool)
            matrices["present"][trial, target] = True

    rows = sum(table.num_rows for _, table in parts)
    return rows / best_time(copy_all, max(2, repeats // 2))


def query_times(accumulator: LogAccumulator, frac: float, repeats: int) -> dict[str, float]:
    """Seconds (best of ``repeats``) for easiness, both sets, and one matching rate."""
    steps = accumulator.steps()
    first, last = steps[0], steps[-1]
    other_easy = easy_set(accumulator.easiness(first)[1], frac)

    def easiness():
        return accumulator.easiness(last, "loss")

    ids, values, _ = easiness()
    easy, hard = easy_and_hard_sets(values, frac, "loss", ids)
    times = {
        "easiness": best_time(easiness, repeats),
        "easy+hard sets": best_time(lambda: easy_and_hard_sets(values, frac, "loss", ids), repeats),
        "matching rate": best_time(lambda: matching_rate(easy, other_easy), repeats),
    }

    def whole_query():
        ids, values, _ = accumulator.easiness(last, "loss")
        easy, hard = easy_and_hard_sets(values, frac, "loss", ids)
        return matching_rate(easy, other_easy)

    times["total"] = best_time(whole_query, repeats)
    return times


def run_size(name: str, n: int, trials: int, steps: int, copy_records: float, args) -> list[str]:
    start = time.perf_counter()
    parts = make_tables(n, trials, steps)
    built = time.perf_counter() - start
    cold, warm, accumulator = ingest_rates(parts, n, trials)
    bare = bare_copy_rate(parts, accumulator, args.repeats)
    del parts
    queries = query_times(accumulator, args.frac, args.repeats)
    lines = [
        f"{name}: N={n:,} M={trials} T={steps} ({n * trials * steps / 1e6:.1f} M rows; "
        f"tables built in {built:.1f} s, not timed; state {accumulator.nbytes / 2**20:,.0f} MiB)",
        f"  {'':<26}{'M rows/s':>9}{'ingest/copy':>13}{'(bytes)':>9}{'vs bare':>9}",
    ]
    for label, rate in (("ingest, cold (new state)", cold), ("ingest, warm", warm),
                        ("bare column copy", bare)):
        lines.append(
            f"  {label:<26}{rate / 1e6:9.1f}{rate / copy_records:13.3f}"
            f"{rate * BYTES_PER_ROW / 4 / copy_records:9.2f}{rate / bare:9.2f}"
        )
    lines += [f"  {label:<26}{seconds * 1e3:9.2f} ms" for label, seconds in queries.items()]
    if args.dynamics and n <= 100_000:
        seconds = best_time(accumulator.dynamics, 1)
        lines.append(f"  {'dynamics() over all steps':<26}{seconds * 1e3:9.0f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60_000, help="examples of the small size")
    parser.add_argument("--trials", type=int, default=10, help="M, trials per run")
    parser.add_argument("--steps", type=int, default=30, help="T, logged steps of the small size")
    parser.add_argument("--imagenet-n", type=int, default=1_281_167)
    parser.add_argument("--imagenet-steps", type=int, default=3,
                        help="T at ImageNet size (kept small for memory and time)")
    parser.add_argument("--no-imagenet", action="store_true", help="skip the ImageNet size")
    parser.add_argument("--frac", type=float, default=0.1, help="easy/hard set fraction q")
    parser.add_argument("--repeats", type=int, default=5, help="best-of repeats for timings")
    parser.add_argument("--copy-mib", type=int, default=256, help="array size of the copy test")
    parser.add_argument("--no-dynamics", dest="dynamics", action="store_false",
                        help="skip timing dynamics() at the small size")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    touch_bytes = first_touch_rate(args.copy_mib << 20)
    copy_bytes = copy_rate(args.copy_mib << 20, args.repeats)
    copy_records = copy_bytes / 4
    print(f"memory copy (np.copyto, {args.copy_mib} MiB float32, best of {args.repeats}): "
          f"{copy_bytes / 1e9:.1f} GB/s = {copy_records / 1e9:.2f} G records/s "
          "(record = one 4-byte loss)")
    print(f"first touch of new memory (np.zeros + fill, {args.copy_mib} MiB): "
          f"{touch_bytes / 1e9:.1f} GB/s")
    print("ingest/copy: rows/s over the copy's records/s (a row, with its 5 value columns and "
          "present flag = 18 bytes of state, counts as ONE record);\n(bytes): the same in bytes "
          "of state written (18 per row vs 4 per record); vs bare: over a plain copy of the "
          "same columns\n")
    for line in run_size("Fashion-MNIST size", args.n, args.trials, args.steps, copy_records, args):
        print(line)
    if not args.no_imagenet:
        print()
        for line in run_size("ImageNet size", args.imagenet_n, args.trials, args.imagenet_steps,
                             copy_records, args):
            print(line)
    print(f"\nwhole script: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
