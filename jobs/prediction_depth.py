"""Prediction depth: how deep in the network an example's prediction is made
(Baldock, Maennel & Neyshabur, 2021).

    python jobs/prediction_depth.py --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist

For each trained trial of the run (one Ray task each), fits k-NN probes (k=30) on the
representations after the input and each block, using a support set of training
examples, and takes every train and test example's prediction depth: the earliest layer
from which every later probe agrees with the network's prediction (examples whose last
probe disagrees get the "effective" depth L, marked not settled). Joins depth with
easiness, consistency, confidence, accuracy and iteration learned. With --run-id of a
finished run it uses that run; otherwise it first trains one (2 trials, 4 epochs, on
--train-examples random training examples). Results and figure go to
<storage>/<run-id>/analyses/prediction_depth/.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.argtypes import add_analysed_run_flags, add_cluster_flags, non_negative_int, positive_int  # noqa: E402
from raystats.errors import RaystatsError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_analysed_run_flags(p, "prediction_depth")
    p.add_argument("--k", type=positive_int, default=30, help="neighbours of each k-NN probe")
    p.add_argument("--support-size", type=non_negative_int, default=10_000,
                   help="training examples the probes are fitted on (0: all of the run's)")
    p.add_argument("--max-dim", type=non_negative_int, default=2048,
                   help="pool wider conv maps to at most this many values per example (0: no pooling)")
    p.add_argument("--probe-trials", type=non_negative_int, nargs="+", default=None, help="trials to probe; default all")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    add_cluster_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from raystats.report.analyses import write_depth_figure
        from raystats.service.analysis import default_run_config, ensure_run
        from raystats.service.prediction_depth import QUANTITIES, prediction_depth

        config = default_run_config("prediction_depth", args.dataset, args.data_root, args.run_id,
                                    train_examples=args.train_examples or None, seed=args.seed,
                                    trials=args.trials, epochs=args.epochs)
        ensure_run(config, args.storage, address=args.address, show_progress=not args.quiet)
        summary = prediction_depth(args.storage, config.run_id, k=args.k, support_size=args.support_size or None,
                                   trials=args.probe_trials, max_dim=args.max_dim or None, seed=args.seed,
                                   device=args.device, address=args.address, data_root=args.data_root,
                                   show_progress=not args.quiet)
        figure = write_depth_figure(args.storage, config.run_id)
    except RaystatsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    binned = summary.assign(depth=summary["depth"].round().astype(int))
    table = binned.groupby(["split", "depth"])[list(QUANTITIES)].mean().assign(
        examples=binned.groupby(["split", "depth"]).size())
    n_layers = int(summary["n_layers"].max())
    print(
        f"mean of each statistic per prediction depth (depth {n_layers} = never settled, the effective depth):\n"
        f"{table.to_string(float_format=lambda v: f'{v:.3f}')}\n"
        f"results: {args.storage}/{config.run_id}/analyses/prediction_depth/summary.parquet, depth.parquet\n"
        f"figure:  {figure}\n"
        f"query:   python -c \"import raystats; print(raystats.open({args.storage!r}).prediction_depth({config.run_id!r}, split='test'))\""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
