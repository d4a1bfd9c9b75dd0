"""Run configuration: one frozen dataclass, validated once at the edge, written to run.json."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from raystats.errors import ConfigError

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OPTIMIZERS = ("sgd", "adamw")
ENSEMBLE_MODES = ("auto", "loop", "vmap")


def validate_run_id(run_id: object) -> str:
    """Return ``run_id`` if it matches ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``; else raise.

    The pattern keeps path separators, ``..`` prefixes and empty names out of the
    store, so a run_id can be joined to a storage path safely.
    """
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        raise ConfigError(
            f"run_id {run_id!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return run_id


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines an easiness run's rows.

    Two runs with equal configs (and the same data set fingerprint) produce the same
    logs, which is what lets a resubmitted job resume instead of starting over.
    """

    run_id: str = "digits-cnn"
    dataset: str = "digits"
    data_root: str | None = None
    arch: str = "cnn"
    trials: int = 10
    epochs: float = 10.0
    log_every: float = 1.0
    batch_size: int = 64
    eval_batch_size: int | None = None
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    milestones: tuple[float, ...] = (0.5, 0.75)
    augment: bool = False
    translate_pixels: int = 4
    flip: bool = True
    log_test: bool = True
    seed: int = 0
    workers: int = 2
    # G workers train one trial together (DDP); W/G trials train concurrently.
    workers_per_trial: int = 1
    use_gpu: bool = False
    ensemble: str = "auto"
    compile: bool = False
    corrupt_labels: tuple[tuple[int, int], ...] = ()
    subset: tuple[int, ...] | None = None
    # Rows per Parquet log part; None: raystats.service.layout.ROWS_PER_PART.
    rows_per_part: int | None = None
    # Memory bound of one aggregator shard in bytes: K is the fewest shards that fit;
    # None: raystats.service.layout.DEFAULT_SHARD_BYTES (2 GiB).
    shard_bytes: int | None = None

    def __post_init__(self) -> None:
        validate_run_id(self.run_id)
        _check_names(self.dataset, self.arch)
        _check(self.data_root is None or (isinstance(self.data_root, str) and self.data_root != ""),
               "data_root", self.data_root, "a folder path, or None for the default place")
        _check(isinstance(self.trials, int) and self.trials >= 1, "trials", self.trials, "an integer >= 1")
        _check(_positive(self.epochs), "epochs", self.epochs, "a number > 0")
        _check(_positive(self.log_every), "log_every", self.log_every, "a number of epochs > 0")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(
            self.eval_batch_size is None
            or (isinstance(self.eval_batch_size, int) and self.eval_batch_size >= 1),
            "eval_batch_size", self.eval_batch_size, "an integer >= 1",
        )
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        _check(self.lr is None or _positive(self.lr), "lr", self.lr, "a number > 0")
        _check(
            self.weight_decay is None
            or (_number(self.weight_decay) and 0 <= self.weight_decay < float("inf")),
            "weight_decay", self.weight_decay, "a finite number >= 0",
        )
        _check(
            all(_number(m) and 0 < m < 1 for m in self.milestones),
            "milestones", self.milestones, "fractions of training in (0, 1)",
        )
        _check(
            isinstance(self.translate_pixels, int) and self.translate_pixels >= 0,
            "translate_pixels", self.translate_pixels, "an integer >= 0",
        )
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _check(isinstance(self.workers, int) and self.workers >= 1, "workers", self.workers, "an integer >= 1")
        _check(self.ensemble in ENSEMBLE_MODES, "ensemble", self.ensemble, f"one of {ENSEMBLE_MODES}")
        for name in ("augment", "flip", "log_test", "use_gpu", "compile"):
            _check(isinstance(getattr(self, name), bool), name, getattr(self, name), "True or False")
        _check(
            self.subset is None or (len(self.subset) > 0 and all(_index(i) for i in self.subset)),
            "subset", _short(self.subset), "None (every example) or a non-empty list of example ids >= 0",
        )
        _check(
            all(len(pair) == 2 and _index(pair[0]) and _index(pair[1]) for pair in self.corrupt_labels),
            "corrupt_labels", _short(self.corrupt_labels), "(example_id, new label) pairs of integers >= 0",
        )
        _check(
            _count(self.workers_per_trial), "workers_per_trial", self.workers_per_trial, "an integer >= 1"
        )
        _check(
            self.workers % self.workers_per_trial == 0, "workers", self.workers,
            f"a multiple of workers_per_trial={self.workers_per_trial} (each trial group has "
            f"exactly that many workers), e.g. {self.workers_per_trial * (self.workers // self.workers_per_trial + 1)}",
        )
        _check(
            self.workers_per_trial == 1 or self.ensemble != "vmap", "ensemble", self.ensemble,
            "'auto' or 'loop' with workers_per_trial > 1: a vmap ensemble trains several "
            "trials in one process, a trial group spreads one trial over several",
        )
        _check(self.rows_per_part is None or _count(self.rows_per_part), "rows_per_part", self.rows_per_part,
               "an integer >= 1, or None for the default")
        _check(self.shard_bytes is None or _count(self.shard_bytes), "shard_bytes", self.shard_bytes,
               "a number of bytes >= 1 per aggregator shard, or None for the default (2 GiB)")

    @property
    def learning_rate(self) -> float:
        """The studies' default: 0.1 for momentum SGD, 1e-3 for AdamW."""
        if self.lr is not None:
            return self.lr
        return 0.1 if self.optimizer == "sgd" else 1e-3

    @property
    def decay(self) -> float:
        """The studies' default weight decay: 1e-4 for SGD, 0.05 for AdamW."""
        if self.weight_decay is not None:
            return self.weight_decay
        return 1e-4 if self.optimizer == "sgd" else 0.05

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Rebuild a config from run.json, refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"run config has unknown keys {unknown}; known keys are {sorted(known)}")
        values = dict(values)
        for name in ("milestones", "subset"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        if values.get("corrupt_labels"):
            values["corrupt_labels"] = tuple(tuple(pair) for pair in values["corrupt_labels"])
        return cls(**values)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def _check_names(dataset: object, arch: object) -> None:
    """Unknown names fail here, before a run touches the store or the cluster."""
    from raystats.data import DATASETS  # imported late: they import torch
    from raystats.models import ARCHITECTURES

    _check(dataset in DATASETS, "dataset", dataset, f"one of {DATASETS}")
    _check(arch in ARCHITECTURES, "arch", arch, f"one of {ARCHITECTURES}")


def _index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(values: object) -> object:
    """A long tuple cut for an error message."""
    if isinstance(values, tuple) and len(values) > 6:
        return f"({', '.join(map(repr, values[:6]))}, ... {len(values)} items)"
    return values


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive(value: object) -> bool:
    return _number(value) and value > 0 and value != float("inf")


def _check(ok: bool, name: str, value: object, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not accepted: expected {accepted}")
