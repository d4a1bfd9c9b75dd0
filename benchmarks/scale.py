"""An ImageNet-1k easiness run, projected from rates measured in this run, and a scaled-down
run measured through the sharded aggregator actors on a local Ray cluster.

    python benchmarks/scale.py                      # about 2 minutes on 2 cores
    python benchmarks/scale.py --trials 4 --steps 4 # a longer measured run

Measured here, in this one run:

- bytes per log row and store write rate: real Parquet parts written with
  ``RunStore.write_log`` (all 12 columns, 1,000 classes, losses drawn like a trained
  model's);
- routing rate: ``ShardPlan.route`` cutting each part into the shards' id ranges, with
  the pieces freed after use as the log sink does, and with all of them kept;
- aggregation ingest rate: ``--rows`` (≥ 1 M) synthetic rows per (trial, step), routed
  and sent to K ``AggregatorShard`` actors (K from ``choose_shards`` and
  ``--shard-bytes``) on a ``ray.init(num_cpus=2)`` cluster with token authentication on;
  every trial of a step is in flight at once, as W training workers would send them.

Not measurable here: GPU training throughput. It comes from README's measured H100
figure (``benchmarks/fast_recipe.py``: 156,202 training images/s summed over 10 trials
of airbench on CIFAR-shaped 32×32 inputs). An ImageNet network at 224 px is far slower
per image, so this rate *over*-states how fast a GPU fleet makes rows: the keep-pace
ratio below is a pessimistic one, and the wall time at that rate is a lower bound (a
second line scales it by the 49× pixel count as a rough ImageNet estimate). One
evaluation image costs a forward pass, ≈ 0.33 of a training image (PERF_NOTES.md,
the FLOP floor of the per-example pass), so a GPU produces log rows at rate / 0.33
while it evaluates: the peak row rate the aggregators must absorb.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["RAY_AUTH_MODE"] = "token"  # token authentication stays on

import numpy as np  # noqa: E402
from _common import machine  # noqa: E402

from raystats.schema import make_log_table  # noqa: E402
from raystats.service.layout import (  # noqa: E402
    BYTES_PER_CELL, DEFAULT_SHARD_BYTES, ROWS_PER_PART, choose_shards,
)
from raystats.store import RunStore  # noqa: E402

IMAGENET_TRAIN, IMAGENET_TEST, IMAGENET_CLASSES = 1_281_167, 50_000, 1000
# Kishida & Nakayama train ImageNet-1k 200 epochs (lr / 10 at epochs 100, 150, 190).
IMAGENET_EPOCHS = 200
H100_IMAGES_PER_S = 156_202  # README: fast_recipe.py, H100, airbench, 32×32, 10 trials summed
EVAL_COST = 0.33  # evaluation image / training image (PERF_NOTES.md: FLOP floor)
PIXEL_RATIO = (224 * 224) / (32 * 32)  # 49


def realistic_rows(n: int, trial: int, step: int, rng, classes: int = IMAGENET_CLASSES):
    """One (trial, step) evaluation of ``n`` examples, sorted ids, values like a trained model's."""
    label = rng.integers(0, classes, n)
    correct = rng.random(n) < 0.75
    pred = np.where(correct, label, (label + 1) % classes)
    loss = np.where(correct, rng.exponential(0.1, n), rng.exponential(2.0, n) + 0.7).astype(np.float32)
    p_true = np.exp(-loss)
    return make_log_table(
        example_id=np.arange(n), trial=trial, step=step, epoch=step / 100, split="train", label=label,
        pred=pred, loss=loss, margin=np.log(p_true / (1 - p_true + 1e-6)), p_true=p_true,
        el2n=np.sqrt(2) * (1 - p_true),
    )


def parts_of(table):
    """The table cut into store parts of at most ROWS_PER_PART rows, as the log sink cuts it."""
    starts = range(0, table.num_rows, ROWS_PER_PART)
    return [(part, table.slice(start, ROWS_PER_PART)) for part, start in enumerate(starts)]


def measure_store(n: int, n_parts: int, folder: str) -> dict:
    """Bytes per row and write rate of real Parquet parts written by RunStore.write_log."""
    rng = np.random.default_rng(1)
    store = RunStore(folder)
    tables = [realistic_rows(n, trial, 100, rng) for trial in range(n_parts)]
    started = time.perf_counter()
    paths = [store.write_log("store-rates", table, trial, 100, 0) for trial, table in enumerate(tables)]
    seconds = time.perf_counter() - started
    rows = n * n_parts
    size = sum(os.path.getsize(path) for path in paths)
    return {"bytes_per_row": size / rows, "write_rows_per_s": rows / seconds}


def measure_aggregation(n: int, trials: int, steps: int, shard_bytes: int, folder: str) -> dict:
    """Rows/s through K AggregatorShard actors, K from choose_shards; checks what they hold.

    The shards are planned for ``steps + 1`` steps: step 0 (every trial) is sent first,
    untimed, so one-time costs (the actors' first Arrow arguments, the object store's
    first pages) are not counted against a long-lived service.
    """
    import ray

    from raystats.service.aggregator import start_aggregators
    from raystats.service.cluster import ensure_ray

    ensure_ray(None, num_cpus=2)
    plan = choose_shards({"train": n}, trials, steps + 1, shard_bytes)
    bound = plan.bytes_per_shard(trials, steps + 1)
    print(f"  {plan.n_shards} aggregator shards (budget {shard_bytes:,} B, bound {bound:,} B each); "
          f"building {trials * (steps + 1)} tables of {n:,} rows ...", flush=True)
    shards = start_aggregators(folder, "scale-bench", plan, trials, bound)
    ray.get([shard.describe.remote() for shard in shards])  # every actor up before timing
    rng = np.random.default_rng(2)
    routed, route_seconds, rows = [], 0.0, 0
    for step in range(steps + 1):
        step_parts = []
        for trial in range(trials):
            for part, table in parts_of(realistic_rows(n, trial, 100 * step, rng)):
                started = time.perf_counter()
                step_parts.append(((trial, 100 * step, part), plan.route("train", table)))
                route_seconds += time.perf_counter() - started
                rows += table.num_rows if step else 0
        routed.append(step_parts)
    print(f"  ingesting {rows:,} rows after a warm-up step, every trial of a step in flight ...", flush=True)
    seconds = []
    for step, step_parts in enumerate(routed):
        started = time.perf_counter()
        ray.get([shard.ingest.remote(key, "train", piece)
                 for key, pieces in step_parts for shard, piece in zip(shards, pieces)])
        seconds.append(time.perf_counter() - started)
        print(f"    step {step}{' (warm-up, untimed)' if step == 0 else ''}: {seconds[-1]:.2f} s, "
              f"{n * trials / seconds[-1] / 1e6:.1f} M rows/s", flush=True)
    steady = steady_route_rate(plan, realistic_rows(n, 0, 0, rng))
    described = ray.get([shard.describe.remote() for shard in shards])
    assert sum(d["rows"] for d in described) == rows + n * trials, "every row reached exactly one shard"
    assert all(d["nbytes"] <= bound for d in described), "a shard passed its memory bound"
    for shard in shards:
        ray.kill(shard)
    return {
        "shards": plan.n_shards, "bound": bound, "rows": rows,
        "nbytes": [d["nbytes"] for d in described],
        "ingest_rows_per_s": rows / sum(seconds[1:]),
        "route_rows_per_s": (rows + n * trials) / route_seconds, "steady_route_rows_per_s": steady,
    }


def steady_route_rate(plan, table, repeats: int = 7) -> float:
    """Rows/s of ``ShardPlan.route`` when each part's pieces are freed once sent, as in the
    log sink: Arrow's memory pool then reuses warm pages (median of ``repeats``)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _, part in parts_of(table):
            plan.route("train", part)
        seconds.append(time.perf_counter() - started)
    return table.num_rows / float(np.median(seconds))


def project(gpus: int, images_per_s: float, bytes_per_row: float, shard_bytes: int) -> dict:
    """The ImageNet-1k run: N = 1,281,167 (+ 50,000 test), M = 10, T = 200 logging steps."""
    trials, steps = 10, 200
    sizes = {"train": IMAGENET_TRAIN, "test": IMAGENET_TEST}
    rows = (IMAGENET_TRAIN + IMAGENET_TEST) * trials * steps
    plan = choose_shards(sizes, trials, steps, shard_bytes)
    fleet_train = gpus * images_per_s
    fleet_eval = fleet_train / EVAL_COST
    train_s = IMAGENET_EPOCHS * IMAGENET_TRAIN * trials / fleet_train
    eval_s = rows / fleet_eval
    return {
        "rows": rows, "bytes": rows * bytes_per_row, "shards": plan.n_shards,
        "shard_bytes": plan.bytes_per_shard(trials, steps),
        "state_bytes": (IMAGENET_TRAIN + IMAGENET_TEST) * trials * steps * BYTES_PER_CELL,
        "wall_s": train_s + eval_s, "train_s": train_s, "eval_s": eval_s,
        "peak_rows_per_s": fleet_eval, "mean_rows_per_s": rows / (train_s + eval_s),
    }


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=IMAGENET_TRAIN,
                        help="synthetic rows per (trial, step) of the measured run (>= 1,000,000)")
    parser.add_argument("--trials", type=int, default=4, help="M of the measured run")
    parser.add_argument("--steps", type=int, default=3, help="logged steps T of the measured run")
    parser.add_argument("--shard-bytes", type=int, default=48 << 20,
                        help="per-shard memory budget of the measured run (sets its K)")
    parser.add_argument("--store-parts", type=int, default=4, help="parts written to measure bytes/row")
    parser.add_argument("--gpus", type=int, default=8,
                        help="GPUs of the projected fleet (cluster.yaml: up to 8)")
    parser.add_argument("--gpu-images-per-s", type=float, default=H100_IMAGES_PER_S,
                        help="training images/s of one GPU, from README (not measurable here)")
    args = parser.parse_args(argv)
    if args.rows < 1_000_000:
        parser.error(f"--rows {args.rows:,} is too few: the measured run needs >= 1,000,000 rows per step")

    started = time.perf_counter()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as folder:
        print(f"measuring the store: {args.store_parts} parts x {ROWS_PER_PART:,} rows ...", flush=True)
        store = measure_store(ROWS_PER_PART, args.store_parts, folder)
        print("measuring aggregation through sharded actors ...", flush=True)
        aggregation = measure_aggregation(args.rows, args.trials, args.steps, args.shard_bytes, folder)
    imagenet = project(args.gpus, args.gpu_images_per_s, store["bytes_per_row"], DEFAULT_SHARD_BYTES)
    per_gpu_peak = args.gpu_images_per_s / EVAL_COST
    keep_pace = aggregation["ingest_rows_per_s"] / imagenet["peak_rows_per_s"]

    print(f"\nImageNet-1k run, projected: N = {IMAGENET_TRAIN:,} train + {IMAGENET_TEST:,} test, "
          f"M = 10 trials, T = 200 logging steps, {IMAGENET_EPOCHS} epochs, {args.gpus} GPUs")
    rows = [
        ("log rows", f"{imagenet['rows'] / 1e9:,.2f} G", "(N_train + N_test) x M x T"),
        ("bytes on disk", f"{imagenet['bytes'] / 1e9:,.1f} GB",
         f"rows x {store['bytes_per_row']:.2f} B/row (measured: zstd Parquet, 12 columns)"),
        ("aggregator shards K", f"{imagenet['shards']}",
         f"choose_shards, budget {DEFAULT_SHARD_BYTES / 2**30:.0f} GiB per shard"),
        ("actor memory per shard", f"{imagenet['shard_bytes'] / 1e9:,.2f} GB",
         f"bound: ceil(N/K) x M x T x {BYTES_PER_CELL} B; all shards {imagenet['state_bytes'] / 1e9:,.1f} GB"),
        ("wall time, README H100 rate", hours(imagenet["wall_s"]),
         f"train {hours(imagenet['train_s'])} + evaluate {hours(imagenet['eval_s'])}; a lower bound (32x32 rate)"),
        ("wall time, x49 pixels", hours(imagenet["wall_s"] * PIXEL_RATIO),
         "rough: cost scaled by 224^2 / 32^2 pixels"),
        ("fleet row rate, peak", f"{imagenet['peak_rows_per_s'] / 1e6:,.2f} M rows/s",
         f"{args.gpus} x {args.gpu_images_per_s:,.0f} images/s / {EVAL_COST} while evaluating"),
        ("fleet row rate, mean", f"{imagenet['mean_rows_per_s'] / 1e6:,.2f} M rows/s", "rows / wall time"),
    ]
    print_table(rows)

    print(f"\nMeasured on this machine ({aggregation['rows']:,} rows timed: {args.rows:,} per step x "
          f"M = {args.trials} x T = {args.steps}, after a warm-up step; {aggregation['shards']} shard "
          "actors, ray.init(num_cpus=2), token auth)")
    rows = [
        ("aggregation ingest", f"{aggregation['ingest_rows_per_s'] / 1e6:,.1f} M rows/s",
         f"send + ingest in {aggregation['shards']} AggregatorShard actors (routing: next line)"),
        ("shard state held", f"{max(aggregation['nbytes']) / 2**20:,.1f} MiB max",
         f"bound {aggregation['bound'] / 2**20:,.1f} MiB per shard, enforced"),
        ("routing, pieces freed", f"{aggregation['steady_route_rows_per_s'] / 1e6:,.1f} M rows/s",
         f"ShardPlan.route, one core, as in the sink: {per_gpu_peak / aggregation['steady_route_rows_per_s']:.1%}"
         " of a core per GPU at peak"),
        ("routing, pieces kept", f"{aggregation['route_rows_per_s'] / 1e6:,.1f} M rows/s",
         "the timed run's pieces, all kept: every copy touches new memory (slow on this VM)"),
        ("store write (one process)", f"{store['write_rows_per_s'] / 1e6:,.2f} M rows/s",
         f"{store['write_rows_per_s'] / per_gpu_peak:.1f}x one GPU's peak {per_gpu_peak / 1e6:.2f} M rows/s "
         "(each worker writes its own rows)"),
        ("KEEP-PACE RATIO", f"{keep_pace:,.2f}",
         f"ingest / fleet peak {imagenet['peak_rows_per_s'] / 1e6:,.2f} M rows/s; >= 1: aggregation keeps pace"),
    ]
    print_table(rows)
    print(f"\nwhole script {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f} "
          "at the end (2 cores shared with other jobs: rates here are lower bounds)")
    return 0 if keep_pace >= 1 else 1


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"  {'quantity':<{width[0]}}  {'value':>{width[1]}}  from")
    for name, value, source in rows:
        print(f"  {name:<{width[0]}}  {value:>{width[1]}}  {source}")


if __name__ == "__main__":
    sys.exit(main())
