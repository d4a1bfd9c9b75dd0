"""Held-out easiness: train with the test examples merged in, compare with an ensemble.

    python jobs/heldout.py --storage ./raystats-runs --run-id digits-cnn --trials 3

Trains --trials models (Tune trials, one CPU each) of the run's architecture and recipe
on the training set merged with the test examples (or a random --n-heldout of them),
takes each test example's loss easiness under those models, and sets it beside the
fraction of the run's own trials — trained without it — that classify it correctly.
Results and figure go to <storage>/<run-id>/sweeps/<name>/; running the same command
again reuses the merged models already trained.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.argtypes import positive_float, positive_int  # noqa: E402
from raystats.errors import RaystatsError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--storage", default="./raystats-runs", help="run store: a folder or s3:// / gs:// URI")
    p.add_argument("--run-id", default="digits-cnn", help="a finished easiness run that logged its test split")
    p.add_argument("--trials", type=positive_int, default=3, help="merged models to train")
    p.add_argument("--n-heldout", type=positive_int, default=None,
                   help="hold out a random sample of this many test examples; default: all")
    p.add_argument("--epochs", type=positive_float, default=None, help="default: the run's")
    p.add_argument("--seed", type=int, default=0, help="draws the held-out sample")
    p.add_argument("--name", default="heldout", help="folder under <run>/sweeps/")
    p.add_argument("--data-root", default=None, help="folder of the data set's files; default: the run's")
    p.add_argument("--address", default=None, help="Ray cluster address; default: join or start one")
    p.add_argument("--quiet", action="store_true", help="no line per finished model")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from raystats.report.experiments import binned_correctness, write_sweep_figure
        from raystats.service.sweeps import heldout_easiness, sweep_path

        table = heldout_easiness(args.storage, args.run_id, trials=args.trials, n_heldout=args.n_heldout,
                                 epochs=args.epochs, name=args.name, seed=args.seed, address=args.address,
                                 show_progress=not args.quiet, data_root=args.data_root)
        figure = write_sweep_figure(args.storage, args.run_id, args.name)
    except RaystatsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rho = table["easiness"].corr(table["ensemble_correct"], method="spearman")
    binned = binned_correctness(table["easiness"].to_numpy(), table["ensemble_correct"].to_numpy(), bins=5)
    print(
        f"held-out easiness of {len(table):,} test examples from {args.trials} merged models; ensemble of "
        f"{int(table['ensemble_size'].max())} run trials\n"
        f"Spearman correlation (easiness vs ensemble correctness): {rho:.3f} (negative: low loss = often right)\n"
        f"{binned[['easiness_low', 'easiness_high', 'correct_mean', 'n']].to_string(index=False)}\n"
        f"results: {sweep_path(args.storage, args.run_id, args.name)}/results.parquet\n"
        f"figure:  {figure}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
