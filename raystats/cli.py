"""The ``raystats`` command: query runs from a shell, offline or on a live cluster.

    raystats runs
    raystats easiness digits-cnn --top 10
    raystats easy digits-cnn --frac 0.1 --table
    raystats match digits-cnn digits-mlp3 --which hard
    raystats curve digits-cnn digits-mlp3
    raystats report digits-cnn --compare-with digits-mlp3

``--storage DIR`` (default ./raystats-runs) reads the run store and needs no cluster;
``--address auto`` asks the aggregators of a running Ray cluster. Either may be given
before or after the command. Errors print one line ``error: ...`` and exit with 2.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from tabulate import tabulate

from raystats.errors import ConfigError, RaystatsError

DEFAULT_STORAGE = "./raystats-runs"
KINDS = ("loss", "count")
SPLITS = ("train", "test")


def main(argv: list[str] | None = None) -> int:
    """Run the ``raystats`` command line; return the exit status (0, or 2 on an error)."""
    args = parser().parse_args(argv)
    try:
        client = _client(args)
        return args.handler(client, args)
    except RaystatsError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``raystats`` and its subcommands."""
    where = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's copy of the option must not overwrite a value given before it.
    where.add_argument("--storage", default=argparse.SUPPRESS,
                       help=f"run store, a folder or s3:// / gs:// URI (default: {DEFAULT_STORAGE})")
    where.add_argument("--address", default=argparse.SUPPRESS,
                       help="ask a running Ray cluster instead of the store, e.g. 'auto'")
    top = argparse.ArgumentParser(prog="raystats", parents=[where], description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    runs = commands.add_parser("runs", parents=[where], help="table of known runs")
    runs.set_defaults(handler=_runs)

    easiness = commands.add_parser("easiness", parents=[where], help="per-example easiness, easiest first")
    easiness.add_argument("run_id", metavar="RUN")
    _add_query_options(easiness, frac=False)
    easiness.add_argument("--top", type=_non_negative_int, default=20, help="rows to show; 0 shows all (default: 20)")
    easiness.set_defaults(handler=_easiness)

    for which in ("easy", "hard"):
        chosen = commands.add_parser(which, parents=[where], help=f"example ids of the {which} set")
        chosen.add_argument("run_id", metavar="RUN")
        _add_query_options(chosen)
        chosen.add_argument("--table", action="store_true", help="a table with label and easiness instead of ids")
        chosen.add_argument("--data-root", default=None, help="folder of the data set's files (for --table)")
        chosen.set_defaults(handler=_extreme_set, which=which)

    match = commands.add_parser("match", parents=[where], help="matching rate of two runs' sets, and chance")
    match.add_argument("run_a", metavar="RUN_A")
    match.add_argument("run_b", metavar="RUN_B")
    match.add_argument("--which", choices=("easy", "hard"), default="easy")
    _add_query_options(match)
    match.add_argument("--step-b", type=int, default=None, help="RUN_B's step (default: --step)")
    match.set_defaults(handler=_match)

    curve = commands.add_parser("curve", parents=[where], help="matching rate of two runs at every common step")
    curve.add_argument("run_a", metavar="RUN_A")
    curve.add_argument("run_b", metavar="RUN_B")
    curve.add_argument("--which", choices=("easy", "hard"), default="easy")
    _add_query_options(curve, step=False)
    curve.set_defaults(handler=_curve)

    report = commands.add_parser("report", parents=[where], help="write the HTML report of a run")
    report.add_argument("run_id", metavar="RUN")
    add_report_options(report)
    report.set_defaults(handler=_report)
    return top


def add_report_options(p: argparse.ArgumentParser) -> None:
    """The options of ``raystats report``, shared with ``jobs/report.py``."""
    p.add_argument("--compare-with", default=None, metavar="RUN", help="also draw matching rates against this run")
    p.add_argument("--out", default=None, help="report folder (default: <storage>/<run>/report)")
    p.add_argument("--frac", type=float, default=0.1, help="easy / hard set fraction q (default: 0.1)")
    p.add_argument("--data-root", default=None, help="folder of the data set's files, if moved")


def _add_query_options(p: argparse.ArgumentParser, frac: bool = True, step: bool = True) -> None:
    if frac:
        p.add_argument("--frac", type=float, default=0.1, help="set fraction q (default: 0.1)")
    if step:
        p.add_argument("--step", type=int, default=None, help="logging step (default: the last)")
    p.add_argument("--kind", choices=KINDS, default="loss", help="easiness form (default: loss)")
    p.add_argument("--split", choices=SPLITS, default="train", help="(default: train)")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not an integer >= 0")
    return value


def _client(args: argparse.Namespace):
    import raystats.client

    storage, address = getattr(args, "storage", None), getattr(args, "address", None)
    if storage is not None and address is not None:
        raise ConfigError("--storage and --address are not accepted together: give one, the store or the cluster")
    if address is not None:
        return raystats.client.connect(address)
    return raystats.client.open(storage or DEFAULT_STORAGE)


def _table(frame: pd.DataFrame) -> str:
    return tabulate(frame, headers="keys", showindex=False, floatfmt=".4g", missingval="-")


# ---- commands ---------------------------------------------------------------------------

def _runs(client, args) -> int:
    frame = client.runs()
    if frame.empty:
        print(f"no runs in {client!r}", file=sys.stderr)
        return 0
    print(_table(frame))
    return 0


def _easiness(client, args) -> int:
    frame = client.easiness(args.run_id, args.step, args.kind, args.split)
    frame = _easiest_first(frame[frame["n_trials"] > 0], args.kind)
    shown = frame if args.top == 0 else frame.head(args.top)
    step = args.step if args.step is not None else client.steps(args.run_id, args.split)[-1]
    print(f"{args.run_id}: {args.kind}-form easiness of {args.split} examples at step {step}, easiest first; "
          f"{len(shown)} of {len(frame)} shown", file=sys.stderr)
    print(_table(shown))
    return 0


def _extreme_set(client, args) -> int:
    pick = client.easy if args.which == "easy" else client.hard
    ids = pick(args.run_id, args.frac, args.step, args.kind, args.split)
    if not args.table:
        print("\n".join(str(int(i)) for i in ids))
        return 0
    frame = client.easiness(args.run_id, args.step, args.kind, args.split)
    frame = frame[frame["example_id"].isin(ids)]
    frame = _easiest_first(frame, args.kind)
    if args.which == "hard":
        frame = frame.iloc[::-1]
    print(_table(_with_labels(frame, client.info(args.run_id), args.split, args.data_root)))
    return 0


def _match(client, args) -> int:
    from raystats.stats import chance_level

    rate = client.matching_rate(args.run_a, args.run_b, args.which, args.frac, args.step, args.step_b,
                                args.kind, args.split)
    print(f"matching rate: {rate:.4f}")
    print(f"chance level:  {chance_level(args.frac):.4f}")
    return 0


def _curve(client, args) -> int:
    frame = client.matching_curve(args.run_a, args.run_b, args.which, args.frac, args.kind, args.split)
    print(_table(frame))
    return 0


def _report(client, args) -> int:
    from raystats.report import write_report

    print(write_report(client, args.run_id, out_dir=args.out, compare_with=args.compare_with,
                       frac=args.frac, data_root=args.data_root))
    return 0


# ---- helpers ------------------------------------------------------------------------------

def _easiest_first(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Rows sorted easiest first (low loss, high count), ties by example_id."""
    key = frame["easiness"].to_numpy(dtype=np.float64)
    order = np.lexsort((frame["example_id"].to_numpy(), key if kind == "loss" else -key))
    return frame.iloc[order].reset_index(drop=True)


def _with_labels(frame: pd.DataFrame, info: dict, split: str, data_root: str | None) -> pd.DataFrame:
    """``frame`` with each example's label (and class name, where it is not the label itself)."""
    from raystats.report import load_run_dataset

    dataset = load_run_dataset(info, data_root)
    labels = np.asarray(getattr(dataset, split).labels)[frame["example_id"].to_numpy()]
    columns = {"example_id": frame["example_id"].to_numpy(), "label": labels}
    names = [str(name) for name in dataset.classes]
    if names != [str(i) for i in range(len(names))]:
        columns["class"] = [names[label] for label in labels]
    columns.update(easiness=frame["easiness"].to_numpy(), n_trials=frame["n_trials"].to_numpy())
    return pd.DataFrame(columns)


if __name__ == "__main__":
    sys.exit(main())
