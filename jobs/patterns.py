"""Pattern removal: which patterns make an example easy (Kishida & Nakayama, section 6).

    python jobs/patterns.py --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist

Evaluates the trained trials of a run made with regular augmentation on inputs with
colour removed (α from 0 to 1), tiles shuffled (tile size 0.5/0.33/0.25) or high
frequencies masked (radius 0.1..1), computes easiness on them, and the matching rate of
their easy and hard sets with the regular ones (chance = --frac). With --run-id of a
finished run it uses that run; otherwise it first trains one (4 trials, 4 epochs,
--augment, on --train-examples random training examples). Results and figure go to
<storage>/<run-id>/analyses/patterns/.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.argtypes import add_analysed_run_flags, add_cluster_flags, fraction, strength_grid  # noqa: E402
from raystats.errors import RaystatsError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    from raystats.data.patterns import PATTERNS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_analysed_run_flags(p, "patterns")
    for name, pattern in PATTERNS.items():
        p.add_argument(f"--{name}", type=strength_grid, default=pattern.strengths,
                       help=f"{pattern.parameter} grid, comma-separated (empty: skip)")
    p.add_argument("--frac", type=fraction, default=0.1, help="easy/hard set size q (= chance level)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    add_cluster_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from raystats.report.analyses import write_pattern_figure
        from raystats.service.analysis import default_run_config, ensure_run
        from raystats.service.pattern_removal import pattern_removal

        config = default_run_config("patterns", args.dataset, args.data_root, args.run_id,
                                    train_examples=args.train_examples or None, seed=args.seed,
                                    trials=args.trials, epochs=args.epochs)
        ensure_run(config, args.storage, address=args.address, show_progress=not args.quiet)
        grid = {name: getattr(args, name) for name in ("color", "shuffle", "radial") if getattr(args, name)}
        matching = pattern_removal(args.storage, config.run_id, grid=grid, frac=args.frac, seed=args.seed,
                                   device=args.device, address=args.address, data_root=args.data_root,
                                   show_progress=not args.quiet)
        figure = write_pattern_figure(args.storage, config.run_id)
    except RaystatsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = matching.pivot_table(index=["pattern", "strength"], columns="which", values="matching_rate")
    print(
        f"matching rate with the regular easy/hard sets (chance {args.frac:g}):\n{table.to_string()}\n"
        f"results: {args.storage}/{config.run_id}/analyses/patterns/matching.parquet\n"
        f"figure:  {figure}\n"
        f"query:   python -c \"import raystats; print(raystats.open({args.storage!r}).pattern_matching({config.run_id!r}))\""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
