"""Command-line value types and flag groups shared by the jobs in ``jobs/``.

Each type refuses a bad value with one sentence that argparse prints as
``error: argument --flag: ...`` and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not an integer >= 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not an integer >= 0")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text} is not a number > 0")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1)")
    return value


def csv_strings(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give comma-separated names")
    return values


def csv_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in csv_strings(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def strength_grid(text: str) -> tuple[float, ...]:
    """Comma-separated numbers; an empty text is the empty grid (skip that pattern)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default="./raystats-runs", help="run store: a folder or s3:// / gs:// URI")


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help="Ray cluster address; default: join or start one")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def add_analysed_run_flags(p: argparse.ArgumentParser, analysis: str, log_every: bool = False) -> None:
    """The run an analysis job reads, or trains first when it is missing (raystats.service.analysis)."""
    from raystats.data import DATASETS
    from raystats.service.analysis import DEFAULT_RUNS, DEFAULT_TRAIN_EXAMPLES

    defaults = DEFAULT_RUNS[analysis]
    add_store_flags(p)
    p.add_argument("--run-id", default=None,
                   help=f"a finished run; trained first if missing; default: <dataset>-cnn-{analysis.replace('_', '-')}")
    p.add_argument("--dataset", default="digits", choices=DATASETS, help="for the run trained here")
    p.add_argument("--data-root", default=None, help="folder of the data set's files")
    p.add_argument("--trials", type=positive_int, default=defaults["trials"], help="trials of the run trained here")
    p.add_argument("--epochs", type=positive_float, default=defaults["epochs"], help="epochs of the run trained here")
    if log_every:
        p.add_argument("--log-every", type=positive_float, default=defaults["log_every"],
                       help="epochs between logged steps of the run trained here")
    p.add_argument("--train-examples", type=non_negative_int, default=DEFAULT_TRAIN_EXAMPLES,
                   help="random training examples of the run trained here (0: all)")
    p.add_argument("--seed", type=non_negative_int, default=0)
