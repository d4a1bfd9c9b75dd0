"""Compression: an easiness-chosen subset of one size beside a random one.

    python jobs/compression.py --storage ./raystats-runs --run-id digits-cnn \
        --sweep ablation --target-ratio 0.5 --random-ratios 0.0,0.2,0.4

Reads an ablation sweep (python jobs/ablation.py ...), takes its best easiness strategy
(highest mean test accuracy over the ratios it shares with random, unless --strategy
says), and at the target kept size reports the accuracy gap to random and how many
extra random examples reach the same accuracy. --random-ratios first adds random grid
points to the sweep (same settings), so the random curve extends above the target.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.argtypes import csv_floats, positive_int  # noqa: E402
from raystats.errors import RaystatsError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--storage", default="./raystats-runs", help="run store: a folder or s3:// / gs:// URI")
    p.add_argument("--run-id", default="digits-cnn", help="the easiness run the sweep belongs to")
    p.add_argument("--sweep", default="ablation", help="the ablation sweep's name")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-ratio", type=float, default=None,
                        help="compare at kept size round((1 - ratio) · N); default 0.5")
    target.add_argument("--target-size", type=positive_int, default=None, help="compare at this kept size")
    p.add_argument("--strategy", default=None, help="easiness strategy to compare; default: the best")
    p.add_argument("--random-ratios", type=csv_floats, default=None,
                   help="first add random points at these ratios to the sweep")
    p.add_argument("--seeds", type=positive_int, default=None,
                   help="seeds of the added random points; default: as many as the sweep has")
    p.add_argument("--address", default=None, help="Ray cluster address; default: join or start one")
    p.add_argument("--quiet", action="store_true", help="no line per finished trial")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.target_ratio is None and args.target_size is None:
        args.target_ratio = 0.5
    try:
        from raystats.report.experiments import write_compression_figure
        from raystats.service.sweeps import compression, run_sweep, stored_config, sweep_results

        if args.random_ratios is not None:
            seeds = args.seeds or int(sweep_results(args.storage, args.run_id, args.sweep)["seed"].max() + 1)
            config = stored_config(args.storage, args.run_id, args.sweep, ("random",), args.random_ratios, seeds)
            run_sweep(config, args.storage, address=args.address, show_progress=not args.quiet)
        result = compression(args.storage, args.run_id, args.sweep, target_ratio=args.target_ratio,
                             target_size=args.target_size, strategy=args.strategy)
        figure = write_compression_figure(args.storage, args.run_id, args.sweep, result)
    except RaystatsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    gap = result.gap
    if math.isnan(gap.matching_random_size):
        match = ("random never reaches that accuracy within the sizes measured; add random points at lower "
                 "ratios (--random-ratios 0.0,0.1,...)")
    else:
        match = (f"random reaches it at {gap.matching_random_size:,.0f} examples: "
                 f"{gap.extra_random_examples:+,.0f} extra random examples")
    print(
        f"compression at kept size {gap.target_size:,.0f} ({result.strategy} vs random):\n"
        f"  test accuracy {result.strategy}: {gap.easiness_accuracy:.4f}   random: {gap.random_accuracy:.4f}   "
        f"gap: {100 * gap.accuracy_gap:+.2f} points\n"
        f"  {match}\n"
        f"results: {os.path.dirname(figure)}/compression.json\n"
        f"figure:  {figure}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
