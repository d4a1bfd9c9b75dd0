"""Ablation sweep on Ray Tune: remove examples chosen by easiness, retrain, test.

    python jobs/ablation.py --storage ./raystats-runs --run-id digits-cnn \
        --strategies easy,hard,random --ratios 0.1,0.3,0.5,0.7,0.9 --seeds 3 --epochs 1

Reads the easiness of a finished run (python jobs/easiness.py ...), and for every
ratio × strategy × seed removes round(ratio · N) training examples, trains one model
of the run's architecture and recipe on the rest (one CPU per Tune trial), and
records its test accuracy. Results go to <storage>/<run-id>/sweeps/<sweep-name>/;
running the same command again resumes without retraining finished points, and more
seeds or ratios extend the sweep.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.argtypes import csv_floats, csv_strings, positive_float, positive_int  # noqa: E402
from raystats.errors import RaystatsError  # noqa: E402


def parser(kind: str, doc: str) -> argparse.ArgumentParser:
    from raystats.service.sweeps import DEFAULT_RATIOS, DEFAULT_STRATEGIES, STRATEGIES_BY_KIND

    rate = "ablation ratios" if kind == "ablation" else "random-label rates"
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--storage", default="./raystats-runs", help="run store: a folder or s3:// / gs:// URI")
    p.add_argument("--run-id", default="digits-cnn", help="the finished easiness run")
    p.add_argument("--strategies", type=csv_strings, default=DEFAULT_STRATEGIES[kind],
                   help=f"comma-separated, from {','.join(STRATEGIES_BY_KIND[kind])}")
    p.add_argument("--ratios", type=csv_floats, default=DEFAULT_RATIOS,
                   help=f"comma-separated {rate}, each in [0, 1)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..S-1 per (strategy, ratio)")
    p.add_argument("--epochs", type=positive_float, default=None, help="epochs per model; default: the run's")
    p.add_argument("--sweep-name", default=None, help=f"folder under <run>/sweeps/; default: {kind}")
    p.add_argument("--easiness-kind", choices=("loss", "count"), default="loss",
                   help="easiness form that ranks the examples")
    p.add_argument("--easiness-step", type=positive_int, default=None, help="run's logging step; default: last")
    p.add_argument("--dataset", default=None, help="refuse the run unless it is over this data set")
    p.add_argument("--data-root", default=None, help="folder of the data set's files; default: the run's")
    if kind == "ablation":
        p.add_argument("--stepwise-trials", type=positive_int, default=3,
                       help="stepwise: models that recompute easiness between steps (M')")
        p.add_argument("--stepwise-frac", type=positive_float, default=0.1,
                       help="stepwise: fraction of the remaining examples removed per step")
        p.add_argument("--stepwise-epochs", type=positive_float, default=None,
                       help="stepwise: epochs of the recomputing models; default: --epochs")
    p.add_argument("--max-concurrent", type=positive_int, default=None,
                   help="trials at once; default: one per free CPU of the cluster")
    p.add_argument("--address", default=None, help="Ray cluster address; default: join or start one")
    p.add_argument("--quiet", action="store_true", help="no line per finished trial")
    return p


def sweep_main(kind: str, doc: str, argv: list[str] | None = None) -> int:
    """Parse flags, run the sweep, draw its figure, print where everything is."""
    args = parser(kind, doc).parse_args(argv)
    try:
        from raystats.report.experiments import accuracy_by_ratio, write_sweep_figure
        from raystats.service.sweeps import SweepConfig, run_sweep

        stepwise = dict(stepwise_trials=args.stepwise_trials, stepwise_frac=args.stepwise_frac,
                        stepwise_epochs=args.stepwise_epochs) if kind == "ablation" else {}
        config = SweepConfig(
            run_id=args.run_id, kind=kind, name=args.sweep_name, strategies=args.strategies,
            ratios=args.ratios, seeds=args.seeds, epochs=args.epochs, easiness_kind=args.easiness_kind,
            easiness_step=args.easiness_step, dataset=args.dataset, data_root=args.data_root,
            max_concurrent_trials=args.max_concurrent, **stepwise,
        )
        summary = run_sweep(config, args.storage, address=args.address, show_progress=not args.quiet)
        figure = write_sweep_figure(args.storage, args.run_id, summary.sweep)
    except RaystatsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = accuracy_by_ratio(summary.table)
    cells = table.assign(cell=[f"{m:.4f} ± {s:.4f}" for m, s in zip(table["mean"], table["std"])])
    pivot = cells.pivot(index="strategy", columns="ratio", values="cell")
    print(
        f"sweep {summary.sweep} of run {summary.run_id}: trained {summary.trained} grid points, "
        f"{summary.skipped} were already done, in {summary.seconds:.1f} s\n"
        f"test accuracy (mean ± std over seeds) by {'ratio' if kind == 'ablation' else 'random-label rate'}:\n"
        f"{pivot.to_string()}\n"
        f"results: {summary.results_path} ({len(summary.table)} rows)\n"
        f"figure:  {figure}\n"
        f"query:   python -c \"from raystats.service.sweeps import sweep_results; "
        f"print(sweep_results({args.storage!r}, {summary.run_id!r}, {summary.sweep!r}))\""
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return sweep_main("ablation", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
