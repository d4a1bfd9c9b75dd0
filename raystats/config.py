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
    use_gpu: bool = False
    ensemble: str = "auto"
    compile: bool = False
    corrupt_labels: tuple[tuple[int, int], ...] = ()
    subset: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        validate_run_id(self.run_id)
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
            self.weight_decay is None or (_number(self.weight_decay) and self.weight_decay >= 0),
            "weight_decay", self.weight_decay, "a number >= 0",
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


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _positive(value: object) -> bool:
    return _number(value) and value > 0 and value != float("inf")


def _check(ok: bool, name: str, value: object, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not accepted: expected {accepted}")
