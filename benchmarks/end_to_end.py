"""End to end: a 10-trial easiness run on Ray, examples logged per second, in one run.

    python benchmarks/end_to_end.py                             # digits, local 2-CPU cluster
    python benchmarks/end_to_end.py --dataset fashion-mnist --epochs 1

Starts a local Ray cluster, runs the real job (Ray Train workers, store, aggregator
shards), and prints rows logged per second of wall time, with the fixed start-up cost
(cluster, worker group) measured separately by a 1-trial, 1-update run.
"""

from __future__ import annotations

import argparse
import tempfile

from _common import machine

from raystats.config import RunConfig
from raystats.service.cluster import ensure_ray
from raystats.service.easiness import run_easiness


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--arch", default="cnn")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--log-every", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    # A cluster of our own (address="local"), never one another process left in /tmp/ray.
    ensure_ray(None, num_cpus=args.workers)
    with tempfile.TemporaryDirectory() as storage:
        base = dict(dataset=args.dataset, arch=args.arch, workers=args.workers)
        startup = run_easiness(RunConfig(run_id="startup", trials=1, epochs=1e-6, log_test=False, **base),
                               storage, show_progress=False)
        summary = run_easiness(RunConfig(run_id="bench", trials=args.trials, epochs=args.epochs,
                                         log_every=args.log_every, **base), storage, show_progress=False)
    rate = summary.examples_logged / summary.seconds
    print(f"machine: {machine()}, Ray cluster of {args.workers} CPUs")
    print(f"{args.trials} trials of {args.arch} on {args.dataset}, {args.epochs} epochs, logging every "
          f"{args.log_every} epoch(s) at steps {list(summary.log_steps)}")
    print(f"rows logged            {summary.examples_logged:>12,}")
    print(f"wall time              {summary.seconds:>12.1f} s (start-up of a run alone: {startup.seconds:.1f} s)")
    print(f"examples logged per s  {rate:>12,.0f} (excluding start-up: "
          f"{summary.examples_logged / max(summary.seconds - startup.seconds, 1e-9):,.0f})")


if __name__ == "__main__":
    main()
