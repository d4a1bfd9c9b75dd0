"""Shallow vs deep: does a deep network learn what a shallow model can learn first?
(Mangalam & Prabhu)

    python jobs/shallow_vs_deep.py --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist

Fits an RBF SVM (C=1, γ=0.1) and a random forest (20 trees, gini) on the run's
flattened training images as parallel Ray tasks, and follows the run's deep model on
the test split at every logged step: contingency counts T00..T11 (first index deep,
second shallow), accuracies, R+, R- and R = R+/R-, per trial and trial mean; lists the
test examples the shallow model gets right and the trained ensemble wrong. Above
--exact-svm-limit training examples the SVM is a Nyström + linear-SVM approximation,
and the output says so. With --run-id of a finished run it uses that run; otherwise it
first trains one (2 trials, 2 epochs, logged every 0.1 epoch, on --train-examples random
training examples). Results and figures go to <storage>/<run-id>/analyses/shallow_vs_deep/.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.argtypes import add_analysed_run_flags, add_cluster_flags, non_negative_int  # noqa: E402
from raystats.errors import RaystatsError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    from raystats.stats.contingency import LINEAR_SOLVERS, SHALLOW_MODELS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_analysed_run_flags(p, "shallow_vs_deep", log_every=True)
    p.add_argument("--shallow", nargs="+", choices=SHALLOW_MODELS, default=list(SHALLOW_MODELS))
    p.add_argument("--exact-svm-limit", type=non_negative_int, default=20_000,
                   help="largest training set for the exact kernel SVM; above it: Nystroem + linear SVM")
    p.add_argument("--linear-solver", choices=LINEAR_SOLVERS, default="sgd",
                   help="solver of the approximate SVM's linear part")
    add_cluster_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from raystats.report.analyses import write_shallow_vs_deep_figures
        from raystats.service.analysis import default_run_config, ensure_run
        from raystats.service.shallow_vs_deep import shallow_vs_deep

        config = default_run_config("shallow_vs_deep", args.dataset, args.data_root, args.run_id,
                                    train_examples=args.train_examples or None, seed=args.seed,
                                    trials=args.trials, epochs=args.epochs, log_every=args.log_every)
        ensure_run(config, args.storage, address=args.address, show_progress=not args.quiet)
        mean = shallow_vs_deep(args.storage, config.run_id, shallow=tuple(args.shallow),
                               exact_svm_limit=args.exact_svm_limit, linear_solver=args.linear_solver,
                               seed=args.seed, address=args.address, data_root=args.data_root,
                               show_progress=not args.quiet)
        figures = write_shallow_vs_deep_figures(args.storage, config.run_id)
    except RaystatsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    columns = ["shallow", "approximate", "step", "epoch", "T00", "T01", "T10", "T11",
               "deep_accuracy", "shallow_accuracy", "R_plus", "R_minus", "R"]
    where = f"{args.storage}/{config.run_id}/analyses/shallow_vs_deep"
    print(
        f"contingency of the deep model (trial mean) against each shallow model:\n"
        f"{mean[columns].to_string(index=False, float_format=lambda v: f'{v:.3f}')}\n"
        f"results: {where}/contingency.parquet, contingency_mean.parquet, shallow_right_deep_wrong.parquet\n"
        f"figures: {', '.join(figures)}\n"
        f"query:   python -c \"import raystats; print(raystats.open({args.storage!r}).contingency({config.run_id!r}, shallow='svm'))\""
    )
    if mean["approximate"].any():
        print("NOTE: the RBF SVM was APPROXIMATED (Nystroem + linear SVM); see settings.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
