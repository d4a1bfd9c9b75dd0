"""Experiments on a finished easiness run, swept with Ray Tune.

Kishida & Nakayama use easiness to decide which training examples to drop or to
relabel, retrain, and measure test accuracy. This module runs those experiments as
Ray Tune grids over a finished easiness run:

``ablation``
    ratio × strategy × seed: remove ``N - kept_size(N, ratio)`` examples chosen by the
    strategy (:mod:`raystats.stats.selection`), train one model on the rest, report its
    test accuracy. Strategies: ``easy`` / ``hard`` / ``random`` (normalized easiness),
    ``beta_easy`` / ``beta_hard`` / ``beta_random`` (Beta(3,1) / Beta(1,3) / Beta(1,1)
    over easiness ranks) and ``stepwise`` (see below).
``corrupt_labels``
    the same grid, but the selected examples keep their place in the training set with
    a random wrong label (:func:`~raystats.stats.selection.corrupt_labels`); the x-axis is
    the random-label rate. Default strategies ``beta_easy``, ``beta_hard``, ``beta_random``.
held-out easiness (:func:`heldout_easiness`)
    train M' models with the test examples merged into the training pool, take the
    test examples' loss easiness, and set it beside the fraction of the run's own M
    trials (trained without them) that classify each one correctly.
compression (:func:`compression`)
    at a kept size, the best easiness strategy of an ablation sweep beside ``random``:
    accuracy gap and the extra random examples needed to match
    (:func:`~raystats.stats.selection.compression_gap`).

Where results live
------------------
::

    <storage>/<run_id>/sweeps/<sweep>/sweep.json          settings every grid point shares
    <storage>/<run_id>/sweeps/<sweep>/rows/<point>.json   one finished grid point (written by its trial)
    <storage>/<run_id>/sweeps/<sweep>/results.parquet     every finished point, rewritten as trials finish
    <storage>/<run_id>/sweeps/<sweep>/tune/attempt-*/     Ray Tune's own experiment folders
    <storage>/<run_id>/sweeps/<sweep>/stepwise/...        kept sets of stepwise chains (reused on resume)

Resuming
--------
A grid point is done when its row file exists: the trial writes it (atomically, via
the run store) before it reports to Tune. Running a sweep again runs a fresh Tune
experiment over only the points without a row file, so an interrupted sweep — driver
killed, cluster restarted, machine rebooted — never redoes a finished trial, and a
sweep can be extended (more seeds, more ratios) under the same name. We chose this
over ``Tuner.restore``: a restore cannot add grid points, it unpickles the experiment
state (so the folder must be trusted), and its state is snapshotted periodically, so
trials that finished after the last snapshot would train again. A point interrupted
mid-training restarts from scratch (one small model); a ``stepwise`` chain restarts
from its last finished step.

Each Tune trial trains in-process on one CPU with one torch thread
(``tune.with_resources(..., {"cpu": 1})``), so a 2-core machine runs two at once and
a cluster runs as many as it has CPUs. A trial is one grid point, except that the
``stepwise`` points of one seed share a trial: their chains coincide up to each
ratio's last step, so one walk down the chain serves every ratio of the seed.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import socket
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from ray import tune

import raystats
from raystats.config import RunConfig, validate_run_id
from raystats.data import Dataset
from raystats.errors import ConfigError, DataError, RaystatsError, StoreError
from raystats.service.analysis import finished_run, last_step_rows
from raystats.service.cluster import ensure_ray
from raystats.stats import loss_easiness
from raystats.stats.selection import (
    STRATEGIES,
    CompressionGap,
    compression_gap,
    corrupt_labels,
    kept_size,
    select,
    stepwise_plan,
    stepwise_step,
)
from raystats.store import RunStore
from raystats.train.trial import TrialData, seed_for, train_trial

KINDS = ("ablation", "corrupt_labels")
STRATEGIES_BY_KIND = {
    "ablation": STRATEGIES,
    # A relabeled example stays in the training set, so there is nothing to recompute
    # between steps: stepwise has no corruption counterpart in the studies.
    "corrupt_labels": tuple(s for s in STRATEGIES if s != "stepwise"),
}
DEFAULT_STRATEGIES = {
    "ablation": ("easy", "hard", "random"),
    "corrupt_labels": ("beta_easy", "beta_hard", "beta_random"),
}
DEFAULT_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)
EASINESS_KINDS = ("loss", "count")

CPUS_PER_TRIAL = 1
MAX_FAILURES = 2  # a trial whose worker is lost is retried up to twice, then reported
CPU = torch.device("cpu")

# Salts keep the seeds of the sweep's models apart from the easiness run's trials
# (seed_for(run seed, trial, ...)), so sweep seed 0 is not the run's trial 0 again.
_TRAIN, _SELECT, _STEPWISE, _HELDOUT = 0x5EED0001, 0x5EED0002, 0x5EED0003, 0x5EED0004

RESULT_COLUMNS = [
    "sweep", "kind", "strategy", "ratio", "seed", "n_examples", "kept_size", "n_changed",
    "n_trained", "test_accuracy", "test_loss", "epochs", "stepwise_steps", "models_trained",
    "seconds", "finished_at", "hostname", "pid",
]


# -------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SweepConfig:
    """One Tune grid over a finished easiness run: ratio × strategy × seed.

    Parameters
    ----------
    run_id : str
        The finished easiness run whose easiness chooses the examples.
    kind : {"ablation", "corrupt_labels"}
        Remove the selected examples, or give them a random wrong label.
    name : str, optional
        Folder of the sweep under ``<run>/sweeps/``; default: ``kind``. Running a sweep
        again under its name resumes it, and may add seeds, ratios or strategies.
    strategies : tuple of str
        Selection strategies (:data:`STRATEGIES_BY_KIND`).
    ratios : tuple of float
        Ablation (or random-label) ratios, each in [0, 1).
    seeds : int
        Seeds 0 .. seeds-1; a seed fixes both the selection and the model's training.
    epochs : float, optional
        Training length of each model; default: the easiness run's.
    easiness_kind : {"loss", "count"}
        Which easiness form ranks the examples.
    easiness_step : int, optional
        Logging step of the run to read easiness at; default: its last.
    dataset : str, optional
        The data set the sweep is meant for; refused unless it is the run's.
    data_root : str, optional
        Folder of the data set's files; default: the run's ``data_root``.
    stepwise_trials : int
        M', the trials that recompute easiness between stepwise steps.
    stepwise_frac : float
        Fraction of the remaining examples one stepwise step removes.
    stepwise_epochs : float, optional
        Training length of those recomputations; default: ``epochs``.
    max_concurrent_trials : int, optional
        Cap on trials running at once; default: as many as the cluster's CPUs allow.
    """

    run_id: str
    kind: str = "ablation"
    name: str | None = None
    strategies: tuple[str, ...] | None = None
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    seeds: int = 3
    epochs: float | None = None
    easiness_kind: str = "loss"
    easiness_step: int | None = None
    dataset: str | None = None
    data_root: str | None = None
    stepwise_trials: int = 3
    stepwise_frac: float = 0.1
    stepwise_epochs: float | None = None
    max_concurrent_trials: int | None = None

    def __post_init__(self) -> None:
        validate_run_id(self.run_id)
        _choice("kind", self.kind, KINDS)
        validate_sweep_name(self.sweep_name)
        strategies = DEFAULT_STRATEGIES[self.kind] if self.strategies is None else tuple(self.strategies)
        if not strategies:
            raise ConfigError("strategies is empty: give at least one strategy")
        for strategy in strategies:
            if strategy not in STRATEGIES_BY_KIND[self.kind]:
                extra = " (stepwise retrains between removals; it has no label-corruption form)" \
                    if strategy == "stepwise" else ""
                raise ConfigError(
                    f"unknown {self.kind} strategy {strategy!r}{extra}; expected one of "
                    f"{', '.join(STRATEGIES_BY_KIND[self.kind])}"
                )
        object.__setattr__(self, "strategies", tuple(dict.fromkeys(strategies)))
        ratios = tuple(self.ratios) if not isinstance(self.ratios, numbers.Real) else (self.ratios,)
        if not ratios:
            raise ConfigError("ratios is empty: give at least one ratio in [0, 1)")
        for ratio in ratios:
            if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= float(ratio) < 1.0:
                raise ConfigError(f"ratio {ratio!r} is not accepted: every ratio must be a number in [0, 1)")
        object.__setattr__(self, "ratios", tuple(sorted({float(r) for r in ratios})))
        _whole("seeds", self.seeds, 1)
        _whole("stepwise_trials", self.stepwise_trials, 1)
        for name in ("epochs", "stepwise_epochs"):
            value = getattr(self, name)
            if value is not None and not _positive(value):
                raise ConfigError(f"{name}={value!r} is not accepted: expected a number of epochs > 0")
        if not _positive(self.stepwise_frac) or not self.stepwise_frac < 1:
            raise ConfigError(f"stepwise_frac={self.stepwise_frac!r} is not accepted: expected a fraction in (0, 1)")
        _choice("easiness_kind", self.easiness_kind, EASINESS_KINDS)
        if self.easiness_step is not None:
            _whole("easiness_step", self.easiness_step, 1)
        if self.max_concurrent_trials is not None:
            _whole("max_concurrent_trials", self.max_concurrent_trials, 1)

    @property
    def sweep_name(self) -> str:
        return self.name if self.name is not None else self.kind

    def points(self) -> list[dict]:
        """Every grid point, strategy-major: ``{"strategy", "ratio", "seed"}``."""
        return [
            {"strategy": strategy, "ratio": ratio, "seed": seed}
            for strategy in self.strategies for ratio in self.ratios for seed in range(self.seeds)
        ]


def validate_sweep_name(name: object) -> str:
    """A sweep name becomes a folder, so it follows the run_id rule."""
    try:
        return validate_run_id(name)
    except ConfigError:
        raise ConfigError(
            f"sweep name {name!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        ) from None


def stored_config(storage: str, run_id: str, sweep: str, strategies: tuple[str, ...],
                  ratios: tuple[float, ...], seeds: int) -> SweepConfig:
    """A config that extends an existing sweep with more grid points and its stored settings."""
    settings = sweep_settings(storage, run_id, sweep)
    if settings["kind"] not in KINDS:
        raise ConfigError(f"sweep {sweep!r} is a {settings['kind']} sweep, not one of {', '.join(KINDS)}")
    return SweepConfig(
        run_id=run_id, kind=settings["kind"], name=sweep, strategies=strategies, ratios=ratios, seeds=seeds,
        epochs=settings["epochs"], easiness_kind=settings["easiness_kind"],
        easiness_step=settings["easiness_step"], stepwise_trials=settings.get("stepwise_trials", 3),
        stepwise_frac=settings.get("stepwise_frac", 0.1), stepwise_epochs=settings.get("stepwise_epochs"),
    )


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep call did, and where its results are."""

    run_id: str
    sweep: str
    kind: str
    path: str             # the sweep's folder in the run store
    results_path: str     # results.parquet
    trained: int          # grid points trained by this call
    skipped: int          # grid points already finished before this call
    seconds: float
    table: pd.DataFrame = field(repr=False)  # every finished point of the sweep


# -------------------------------------------------------------------- reading results


def sweep_path(storage: str, run_id: str, sweep: str) -> str:
    """``<storage>/<run_id>/sweeps/<sweep>`` as the run store spells it."""
    return f"{RunStore(storage).run_dir(run_id)}/sweeps/{validate_sweep_name(sweep)}"


def sweeps(storage: str, run_id: str) -> list[str]:
    """Names of the run's sweeps that have settings stored, sorted."""
    store = RunStore(storage)
    store.read_run(run_id)  # a missing run is a RunNotFoundError, not an empty list
    folder = f"{store.run_dir(run_id)}/sweeps"
    if store.fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    names = []
    for entry in store.fs.get_file_info(pafs.FileSelector(folder)):
        if entry.type == pafs.FileType.Directory and _is_file(store, f"{entry.path}/sweep.json"):
            names.append(entry.base_name)
    return sorted(names)


def sweep_settings(storage: str, run_id: str, sweep: str) -> dict:
    """The sweep.json of a sweep: kind and the settings its grid points share."""
    store = RunStore(storage)
    path = f"{sweep_path(storage, run_id, sweep)}/sweep.json"
    if not _is_file(store, path):
        store.read_run(run_id)
        raise StoreError(
            f"run {run_id!r} has no sweep {sweep!r} in {storage}; its sweeps: {sweeps(storage, run_id) or 'none'}"
        )
    return json.loads(store.read_bytes(path))


def sweep_results(storage: str, run_id: str, sweep: str) -> pd.DataFrame:
    """Every finished grid point of a sweep, one row each.

    Columns (:data:`RESULT_COLUMNS`): ratio, strategy, seed, kept_size (examples left
    out of the selection: kept, or left with their label), n_changed (removed or
    relabeled), n_trained (examples the model trained on), test_accuracy, test_loss,
    and bookkeeping (epochs, seconds, finished_at, hostname, pid). Read from the row
    files, so a point that finished after the last rewrite of results.parquet is there.
    For a held-out sweep, the per-example table of :func:`heldout_easiness`.
    """
    settings = sweep_settings(storage, run_id, sweep)
    if settings["kind"] == "heldout":
        store = RunStore(storage)
        return pd.read_parquet(io.BytesIO(store.read_bytes(f"{sweep_path(storage, run_id, sweep)}/results.parquet")))
    return _collect_rows(RunStore(storage), sweep_path(storage, run_id, sweep))


# ------------------------------------------------------------------- the grid sweep


def run_sweep(config: SweepConfig, storage: str, address: str | None = None,
              show_progress: bool = True) -> SweepSummary:
    """Run (or resume) an ablation or label-corruption sweep on Ray Tune.

    Everything that can be refused is refused before a cluster is touched: a missing
    run, one that has not finished, one over another data set (by name or by the
    fingerprint of the files found here), easiness missing for some example, and
    settings that differ from those the sweep was started with.

    Returns
    -------
    SweepSummary
        With ``table``: every finished grid point, including earlier calls'.
    """
    plan = _prepare(config, storage)
    store = plan.store
    done = _finished_keys(store, plan.path)
    pending = [p for p in config.points() if _point_key(p) not in done]
    started = time.perf_counter()
    if pending:
        ensure_ray(address)
        _write_settings(store, plan.path, plan.settings)
        _tune_points(_sweep_trial, plan.shared, _tune_units(pending), len(pending), store, plan.path,
                     config.max_concurrent_trials, show_progress)
    table = _write_results(store, plan.path)
    return SweepSummary(
        config.run_id, config.sweep_name, config.kind, store.uri(plan.path),
        store.uri(f"{plan.path}/results.parquet"), len(pending),
        len(config.points()) - len(pending), time.perf_counter() - started, table,
    )


@dataclass(frozen=True)
class _Shared:
    """What every trial of a sweep reads; put in the object store once (with_parameters)."""

    storage: str
    path: str
    sweep: str
    kind: str
    settings: dict
    run_config: dict
    dataset: Dataset
    example_ids: np.ndarray
    easiness: np.ndarray


@dataclass(frozen=True)
class _Plan:
    store: RunStore
    path: str
    settings: dict
    shared: _Shared


def _prepare(config: SweepConfig, storage: str) -> _Plan:
    store = RunStore(storage)
    info, run_config, dataset = _finished_run(store, config.run_id, config.dataset, config.data_root)
    if run_config.subset is not None or run_config.corrupt_labels:
        raise ConfigError(
            f"run {config.run_id!r} trained on a subset or on corrupted labels; sweeps start from an "
            "easiness run over the whole, clean training set"
        )
    client = raystats.open(storage)
    step = client.steps(config.run_id)[-1] if config.easiness_step is None else config.easiness_step
    frame = client.easiness(config.run_id, step=step, kind=config.easiness_kind)
    n = int(info["dataset"]["n_train"])
    logged = frame["n_trials"].to_numpy() > 0
    if len(frame) != n or not logged.all():
        raise DataError(
            f"run {config.run_id!r} has easiness at step {step} for {int(logged.sum())} of its {n} training "
            "examples; a sweep needs every example's easiness"
        )
    epochs = float(config.epochs if config.epochs is not None else run_config.epochs)
    settings = {
        "kind": config.kind, "run_id": config.run_id, "fingerprint": dataset.fingerprint,
        "easiness_kind": config.easiness_kind, "easiness_step": int(step), "epochs": epochs,
    }
    if "stepwise" in config.strategies:  # only then do they shape any result
        settings.update(
            stepwise_trials=config.stepwise_trials, stepwise_frac=float(config.stepwise_frac),
            stepwise_epochs=float(config.stepwise_epochs if config.stepwise_epochs is not None else epochs),
        )
    path = sweep_path(storage, config.run_id, config.sweep_name)
    _check_settings(store, path, config.sweep_name, settings)
    store.check_writable()
    shared = _Shared(
        storage=store.storage, path=path, sweep=config.sweep_name, kind=config.kind, settings=settings,
        run_config=run_config.to_dict(), dataset=dataset,
        example_ids=frame["example_id"].to_numpy(np.int64), easiness=frame["easiness"].to_numpy(np.float64),
    )
    return _Plan(store, path, settings, shared)


def _finished_run(store: RunStore, run_id: str, dataset_name: str | None,
                  data_root: str | None) -> tuple[dict, RunConfig, Dataset]:
    """The run's info, config and data set, after every check a sweep needs."""
    info = store.read_run(run_id)  # RunNotFoundError names the known runs
    if dataset_name is not None and dataset_name != info["dataset"]["name"]:
        raise DataError(
            f"run {run_id!r} is an easiness run over {info['dataset']['name']!r}, not {dataset_name!r}; "
            "give a run over the sweep's data set"
        )
    return finished_run(store, run_id, data_root)


_OPTIONAL_SETTINGS = ("stepwise_trials", "stepwise_frac", "stepwise_epochs")


def _check_settings(store: RunStore, path: str, name: str, settings: dict) -> None:
    """A sweep's points are comparable only when they share these settings.

    The stepwise settings are stored once a stepwise point is asked for; before that a
    sweep may be extended with stepwise under any of them.
    """
    stored = _stored_settings(store, path)
    if stored is None:
        return
    changed = sorted(
        k for k in set(stored) | set(settings)
        if (k in stored and k in settings and stored[k] != settings[k])
        or ((k in stored) != (k in settings) and k not in _OPTIONAL_SETTINGS)
    )
    if changed:
        what = ", ".join(f"{k}={stored.get(k)!r} (now {settings.get(k)!r})" for k in changed)
        raise ConfigError(
            f"sweep {name!r} of run {settings['run_id']!r} was started with {what}; give the same settings "
            "to resume or extend it, or a new sweep name"
        )


def _stored_settings(store: RunStore, path: str) -> dict | None:
    if not _is_file(store, f"{path}/sweep.json"):
        return None
    stored = json.loads(store.read_bytes(f"{path}/sweep.json"))
    stored.pop("created", None)
    return stored


def _write_settings(store: RunStore, path: str, settings: dict) -> None:
    stored = _stored_settings(store, path)
    if stored is None or not set(settings) <= set(stored):
        merged = dict(stored or {}, **settings, created=time.time())
        store.write_bytes(f"{path}/sweep.json", json.dumps(merged, indent=2).encode())


# --------------------------------------------------------------------- Tune plumbing


def _tune_units(points: list[dict]) -> list[dict]:
    """Grid points as Tune trials: one each, except that the stepwise points of a seed
    form one trial, which walks the seed's chain once and finishes its ratios in
    ascending order (run as separate trials, two ratios would recompute the chain's
    common steps side by side)."""
    units = [p for p in points if p["strategy"] != "stepwise"]
    seeds = sorted({p["seed"] for p in points if p["strategy"] == "stepwise"})
    for seed in seeds:
        ratios = sorted(p["ratio"] for p in points if p["strategy"] == "stepwise" and p["seed"] == seed)
        units.append({"strategy": "stepwise", "seed": seed, "ratios": ratios})
    return units


def _unit_points(unit: dict) -> list[dict]:
    if "ratios" in unit:
        return [{"strategy": unit["strategy"], "ratio": r, "seed": unit["seed"]} for r in unit["ratios"]]
    return [unit]


def _tune_points(trainable, shared, units: list[dict], n_points: int, store: RunStore, path: str,
                 max_concurrent: int | None, show_progress: bool) -> None:
    """One Tune experiment, a trial per unit; raise if any trial failed."""
    attempt = time.strftime("attempt-%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, shared=shared), {"cpu": CPUS_PER_TRIAL}),
        param_space={"unit": tune.grid_search(units)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            # One actor per CPU for the whole sweep: torch is imported and the data set
            # unpacked once per actor, not once per grid point (~3 s each on 2 cores).
            reuse_actors=True,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            # Tune's own per-trial tables are long; _ResultsWriter prints one line a point.
            name=attempt, storage_path=store.uri(f"{path}/tune"), verbose=0,
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            callbacks=[_ResultsWriter(store.storage, path, n_points, show_progress)],
        ),
    )
    grid = tuner.fit()
    if grid.errors:
        first = grid.errors[0]
        raise RaystatsError(
            f"{len(grid.errors)} of {len(units)} sweep trials failed (finished points are kept; run the "
            f"same command again to retry the rest); first error: {type(first).__name__}: {first}"
        )


def _trial_name(trial) -> str:
    unit = trial.config["unit"]
    return f"stepwise_seed={unit['seed']}" if "ratios" in unit else _point_key(unit)


class _ResultsWriter(tune.Callback):
    """Rewrite results.parquet each time a grid point finishes (on the driver, one at a
    time), and print one line per point."""

    def __init__(self, storage: str, path: str, total: int, show_progress: bool):
        self.storage, self.path, self.total, self.show = storage, path, total, show_progress
        self.done, self.started = 0, time.perf_counter()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        _write_results(RunStore(self.storage), self.path)
        self.done += 1
        if self.show:
            print(f"[{self.done}/{self.total}] {_describe(result)} "
                  f"({time.perf_counter() - self.started:.0f} s into this sweep)", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self.show:
            print(f"failed: {_trial_name(trial)} (see {trial.path})", flush=True)


def _describe(row: dict) -> str:
    if "trial" in row:
        return f"merged model {row['trial']}: {row.get('n_trained', 0):,} examples ({row.get('seconds', 0):.1f} s)"
    return (f"{row['strategy']} ratio {row['ratio']:g} seed {row['seed']}: kept {row.get('kept_size', 0):,}, "
            f"test accuracy {row.get('test_accuracy', float('nan')):.4f} ({row.get('seconds', 0):.1f} s)")


def _point_key(point: dict) -> str:
    """A file-name-safe name of a grid point; ratio by repr, so 0.3 and 0.30000001 differ."""
    if "trial" in point:
        return f"trial={int(point['trial'])}"
    return f"{point['strategy']}_ratio={float(point['ratio'])!r}_seed={int(point['seed'])}"


def _row_path(path: str, point: dict) -> str:
    return f"{path}/rows/{_point_key(point)}.json"


def _finished_keys(store: RunStore, path: str) -> set[str]:
    folder = f"{path}/rows"
    if store.fs.get_file_info(folder).type != pafs.FileType.Directory:
        return set()
    return {
        entry.base_name[: -len(".json")]
        for entry in store.fs.get_file_info(pafs.FileSelector(folder))
        if entry.type == pafs.FileType.File and entry.base_name.endswith(".json")
        and not entry.base_name.startswith(".")
    }


def _collect_rows(store: RunStore, path: str) -> pd.DataFrame:
    rows = [json.loads(store.read_bytes(f"{path}/rows/{key}.json")) for key in sorted(_finished_keys(store, path))]
    if not rows:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    table = pd.DataFrame(rows)
    columns = [c for c in RESULT_COLUMNS if c in table.columns] + [c for c in table.columns if c not in RESULT_COLUMNS]
    sort_by = [c for c in ("strategy", "ratio", "seed", "trial") if c in table.columns]
    return table[columns].sort_values(sort_by).reset_index(drop=True)


def _write_results(store: RunStore, path: str) -> pd.DataFrame:
    table = _collect_rows(store, path)
    if len(table):
        _write_parquet(store, f"{path}/results.parquet", table)
    return table


def _write_parquet(store: RunStore, path: str, table: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), buffer)
    store.write_bytes(path, buffer.getvalue())


# ------------------------------------------------------------------ one grid point


def _sweep_trial(params: dict, shared: _Shared) -> None:
    """Tune trainable of ablation / corruption sweeps: for each grid point of the unit,
    select, train one model, test it, store the row, report it."""
    torch.set_num_threads(CPUS_PER_TRIAL)  # one thread per Tune CPU: trials never oversubscribe
    store = RunStore(shared.storage)
    for point in _unit_points(params["unit"]):
        row_path = _row_path(shared.path, point)
        if _is_file(store, row_path):  # finished by an earlier attempt: train nothing
            continue
        row = _train_point(shared, store, point["strategy"], float(point["ratio"]), int(point["seed"]))
        store.write_bytes(row_path, json.dumps(row).encode())  # durable before Tune hears of it
        tune.report(row)


def _train_point(shared: _Shared, store: RunStore, strategy: str, ratio: float, seed: int) -> dict:
    started = time.perf_counter()
    run_config = RunConfig.from_dict(shared.run_config)
    models, steps = 1, 0
    if strategy == "stepwise":
        kept, steps, models = _stepwise_kept(shared, store, ratio, seed)
        changed = np.setdiff1d(shared.example_ids, kept)
    else:
        rng = np.random.default_rng([_SELECT, seed, zlib.crc32(strategy.encode()), _ratio_code(ratio)])
        changed, kept = select(strategy, shared.easiness, ratio, rng, shared.settings["easiness_kind"],
                               shared.example_ids)
    epochs = shared.settings["epochs"]
    # One training seed per sweep seed, whatever the strategy and ratio: at one seed,
    # strategies differ only in the examples they train on.
    config = run_config.replace(epochs=epochs, log_every=epochs, trials=1, log_test=True,
                                seed=seed_for(_TRAIN, run_config.seed, seed))
    if shared.kind == "ablation":
        config = config.replace(subset=tuple(int(i) for i in kept))
    else:
        relabel = np.random.default_rng([_SELECT, seed, zlib.crc32(strategy.encode()), _ratio_code(ratio), 1])
        _, changes = corrupt_labels(shared.dataset.train.labels, changed, shared.dataset.num_classes, relabel)
        config = config.replace(corrupt_labels=tuple(changes))
    data = TrialData.build(shared.dataset, config, CPU)
    _, test_labels, test_metrics = _train_and_log(config, data, trial=0)["test"]
    return {
        "sweep": shared.sweep, "kind": shared.kind, "strategy": strategy, "ratio": ratio, "seed": seed,
        "n_examples": len(shared.easiness), "kept_size": int(len(kept)), "n_changed": int(len(changed)),
        "n_trained": int(len(data.train_labels)),
        "test_accuracy": float(np.mean(test_metrics["pred"] == test_labels)),
        "test_loss": float(np.mean(test_metrics["loss"])), "epochs": float(epochs),
        "stepwise_steps": int(steps), "models_trained": int(models),
        "seconds": time.perf_counter() - started, "finished_at": time.time(),
        "hostname": socket.gethostname(), "pid": os.getpid(),
    }


def _train_and_log(config: RunConfig, data: TrialData, trial: int) -> dict:
    """Train one trial; return the rows of its last logging step, by split.

    ``log_every == epochs`` makes the last update the only logging step. train_trial
    always evaluates the training rows there too (~0.6 of an epoch's time on CPU);
    a sweep's test accuracy needs only the test rows, stepwise needs both.
    """
    rows = {}

    def keep_last(trial, step, epoch, split, example_ids, labels, metrics):
        rows[split] = (example_ids, labels, metrics)

    train_trial(config, data, trial, CPU, keep_last)
    return rows


def _ratio_code(ratio: float) -> int:
    return int(round(ratio * 1e9))


# ----------------------------------------------------------------------- stepwise


def stepwise_cost(n: int, ratio: float, trials: int = 3, step_frac: float = 0.1) -> dict:
    """What one ``stepwise`` grid point trains, in models and in examples × epochs.

    Step k removes ``step_frac`` of the n_k remaining examples (by the run's easiness
    for k = 0, then by easiness recomputed from ``trials`` fresh models trained on the
    n_k examples left). Reaching ``ratio`` takes S = len(stepwise_plan(n, ratio))
    steps, hence ``trials · (S - 1)`` easiness models plus the final model, which see

        trials · Σ_{k=1}^{S-1} n_k + n_S  examples per epoch,

    with n_k ≈ n (1 - step_frac)^k. In whole-training-set equivalents, for M' = 3 and
    10 % steps: 8.0 n at ratio 0.3, 13 n at 0.5, 19 n at 0.7, 24 n at 0.9 (64 models) —
    against 0.7 n, 0.5 n, 0.3 n, 0.1 n for a one-shot strategy. Chains are cached per
    seed, so the ratios of one seed share their common steps, and a sweep over several
    ratios costs about its largest ratio's chain per seed.

    Examples
    --------
    >>> stepwise_cost(1000, 0.3)["models"]
    10
    """
    sizes = stepwise_plan(n, ratio, step_frac)
    recomputed = sizes[:-1]
    return {
        "steps": len(sizes),
        "models": trials * len(recomputed) + 1,
        "examples_per_epoch": trials * int(sum(recomputed)) + (sizes[-1] if sizes else n),
    }


def _stepwise_kept(shared: _Shared, store: RunStore, ratio: float, seed: int) -> tuple[np.ndarray, int, int]:
    """Run (or resume) seed ``seed``'s stepwise chain down to ``ratio``; return the kept ids.

    The chain of one seed is the same for every target ratio up to the last, clamped
    step (stepwise_plan), so each step's kept set and recomputed easiness are stored
    under the seed, the step index and its size, and a later ratio or a resumed trial
    starts from the furthest stored step.
    """
    settings = shared.settings
    sizes = stepwise_plan(len(shared.easiness), ratio, settings["stepwise_frac"])
    remaining, easiness, kind = shared.example_ids, shared.easiness, settings["easiness_kind"]
    models = 1
    for k, size in enumerate(sizes):
        stem = f"{shared.path}/stepwise/seed={seed}/k={k}-n={size}"
        if _is_file(store, f"{stem}/kept.npy"):
            remaining = _load_array(store, f"{stem}/kept.npy")
        else:
            rng = np.random.default_rng([_STEPWISE, seed, k])
            _, remaining = stepwise_step(easiness, remaining, size, rng, kind)
            store.write_bytes(f"{stem}/kept.npy", _array_bytes(remaining))
        if k == len(sizes) - 1:
            break
        if _is_file(store, f"{stem}/easiness.npy"):
            easiness = _load_array(store, f"{stem}/easiness.npy")
        else:
            easiness = _recompute_easiness(shared, remaining, seed, k)
            store.write_bytes(f"{stem}/easiness.npy", _array_bytes(easiness))
            models += settings["stepwise_trials"]
        kind = "loss"
    return remaining, len(sizes), models


def _recompute_easiness(shared: _Shared, remaining: np.ndarray, seed: int, k: int) -> np.ndarray:
    """Loss easiness of the remaining examples from M' fresh models trained on them alone."""
    settings = shared.settings
    epochs = settings["stepwise_epochs"]
    config = RunConfig.from_dict(shared.run_config).replace(
        subset=tuple(int(i) for i in remaining), trials=settings["stepwise_trials"], epochs=epochs,
        log_every=epochs, log_test=False, seed=seed_for(_STEPWISE, seed, k),
    )
    data = TrialData.build(shared.dataset, config, CPU)
    assert np.array_equal(data.train_ids, remaining)  # both sorted: rows line up with ids
    loss = np.stack([_train_and_log(config, data, m)["train"][2]["loss"] for m in range(config.trials)])
    return loss_easiness(loss)


# -------------------------------------------------------------------- held-out easiness


HELDOUT_COLUMNS = ["example_id", "label", "easiness", "n_trials", "ensemble_correct", "ensemble_size"]


def heldout_easiness(
    storage: str,
    run_id: str,
    trials: int = 3,
    n_heldout: int | None = None,
    epochs: float | None = None,
    name: str = "heldout",
    seed: int = 0,
    address: str | None = None,
    show_progress: bool = True,
    data_root: str | None = None,
) -> pd.DataFrame:
    """Easiness of held-out (test) examples, beside an ensemble's correctness on them.

    Longer version of Kishida & Nakayama (validation easiness): ``trials`` models are
    trained, with the run's recipe, on the training set merged with the held-out
    examples; a held-out example's easiness is its mean cross-entropy over those models
    at their last update (loss form, low = easy). Its ensemble correctness is the
    fraction of the run's own M trials — trained without it — that classify it
    correctly at the run's last logged step. The merged models are Tune trials (one
    CPU each), resumable like a sweep.

    Parameters
    ----------
    storage, run_id : str
        A finished easiness run that logged its test split.
    trials : int
        Merged models to train (M').
    n_heldout : int, optional
        Hold out a random sample of this many test examples (drawn from ``seed``);
        default: every test example.
    epochs : float, optional
        Training length of the merged models; default: the run's.
    name : str
        Folder of the results under ``<run>/sweeps/``.

    Returns
    -------
    DataFrame
        :data:`HELDOUT_COLUMNS`: test example_id, its label, easiness (mean loss over
        the merged models), n_trials, ensemble_correct (fraction in [0, 1]) and
        ensemble_size (M). Also written to ``<run>/sweeps/<name>/results.parquet``.
    """
    store = RunStore(storage)
    _whole("trials", trials, 1)
    validate_sweep_name(name)
    info, run_config, dataset = _finished_run(store, run_id, None, data_root)
    if not run_config.log_test:
        raise ConfigError(
            f"run {run_id!r} did not log its test split (--no-log-test), so no ensemble correctness is "
            "known for held-out examples; use a run made with --log-test"
        )
    if run_config.subset is not None or run_config.corrupt_labels:
        raise ConfigError(f"run {run_id!r} trained on a subset or on corrupted labels; use a whole, clean run")
    n_test = len(dataset.test.labels)
    if n_heldout is not None:
        _whole("n_heldout", n_heldout, 1)
        if n_heldout > n_test:
            raise ConfigError(f"n_heldout={n_heldout} exceeds the {n_test} test examples of {dataset.name!r}")
    heldout = _heldout_ids(n_test, n_heldout, seed)
    epochs = float(epochs if epochs is not None else run_config.epochs)
    if not _positive(epochs):
        raise ConfigError(f"epochs={epochs!r} is not accepted: expected a number of epochs > 0")
    settings = {"kind": "heldout", "run_id": run_id, "fingerprint": dataset.fingerprint, "trials": trials,
                "n_heldout": len(heldout), "epochs": epochs, "seed": seed}
    path = sweep_path(storage, run_id, name)
    _check_settings(store, path, name, settings)
    store.check_writable()
    ensemble = _ensemble_correctness(store, run_id, heldout)
    done = _finished_keys(store, path)
    pending = [{"trial": m} for m in range(trials) if _point_key({"trial": m}) not in done]
    if pending:
        ensure_ray(address)
        _write_settings(store, path, settings)
        shared = _Shared(storage=store.storage, path=path, sweep=name, kind="heldout", settings=settings,
                         run_config=run_config.to_dict(), dataset=dataset, example_ids=heldout,
                         easiness=np.empty(0))
        _tune_points(_heldout_trial, shared, pending, len(pending), store, path, None, show_progress)
    loss = np.stack([
        pd.read_parquet(io.BytesIO(store.read_bytes(f"{path}/losses/trial={m}.parquet")))["loss"].to_numpy()
        for m in range(trials)
    ])
    table = pd.DataFrame({
        "example_id": heldout, "label": dataset.test.labels[heldout], "easiness": loss_easiness(loss),
        "n_trials": trials, "ensemble_correct": ensemble["ensemble_correct"].to_numpy(),
        "ensemble_size": ensemble["ensemble_size"].to_numpy(),
    })
    _write_parquet(store, f"{path}/results.parquet", table)
    return table


def _heldout_ids(n_test: int, n_heldout: int | None, seed: int) -> np.ndarray:
    if n_heldout is None or n_heldout == n_test:
        return np.arange(n_test, dtype=np.int64)
    rng = np.random.default_rng([_HELDOUT, seed])
    return np.sort(rng.choice(n_test, size=n_heldout, replace=False)).astype(np.int64)


def _ensemble_correctness(store: RunStore, run_id: str, heldout: np.ndarray) -> pd.DataFrame:
    """Fraction of the run's trials correct on each held-out test example, at its last step."""
    rows = last_step_rows(store, run_id, "test")
    last = int(rows["step"].iloc[0])
    grouped = rows.groupby("example_id")["correct"].agg(["mean", "size"]).reindex(heldout)
    if grouped["size"].isna().any():
        raise DataError(f"run {run_id!r} lacks test rows for some held-out examples at its last step {last}")
    return pd.DataFrame({"ensemble_correct": grouped["mean"].to_numpy(float),
                         "ensemble_size": grouped["size"].to_numpy(int)}, index=heldout)


def _heldout_trial(params: dict, shared: _Shared) -> None:
    """Tune trainable: one model on train ∪ held-out, the held-out rows' losses to the store."""
    torch.set_num_threads(CPUS_PER_TRIAL)
    point = params["unit"]
    store = RunStore(shared.storage)
    row_path = _row_path(shared.path, point)
    if _is_file(store, row_path):  # finished by an earlier attempt
        return
    started = time.perf_counter()
    trial, settings, dataset = int(point["trial"]), shared.settings, shared.dataset
    heldout = shared.example_ids
    n_train = len(dataset.train.labels)
    epochs = settings["epochs"]
    run_config = RunConfig.from_dict(shared.run_config)
    config = run_config.replace(trials=settings["trials"], epochs=epochs, log_every=epochs, log_test=False,
                                seed=seed_for(_HELDOUT, run_config.seed, settings["seed"]))
    # Held-out example j trains as id n_train + j: ids stay unique in the merged pool.
    data = TrialData(
        train_images=torch.as_tensor(np.concatenate([dataset.train.images, dataset.test.images[heldout]])),
        train_labels=torch.as_tensor(np.concatenate([dataset.train.labels, dataset.test.labels[heldout]])),
        train_ids=np.concatenate([np.arange(n_train), n_train + heldout]),
        test_images=None, test_labels=None, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
    )
    ids, labels, metrics = _train_and_log(config, data, trial)["train"]
    merged = ids >= n_train
    losses = pd.DataFrame({"example_id": ids[merged] - n_train, "loss": metrics["loss"][merged],
                           "correct": metrics["pred"][merged] == labels[merged]})
    _write_parquet(store, f"{shared.path}/losses/trial={trial}.parquet", losses)
    row = {"sweep": shared.sweep, "kind": "heldout", "trial": trial, "n_trained": int(len(ids)),
           "n_heldout": int(merged.sum()), "epochs": float(epochs),
           "heldout_train_accuracy": float(losses["correct"].mean()),
           "seconds": time.perf_counter() - started, "finished_at": time.time(),
           "hostname": socket.gethostname(), "pid": os.getpid()}
    store.write_bytes(row_path, json.dumps(row).encode())
    tune.report(row)


# -------------------------------------------------------------------------- compression


@dataclass(frozen=True)
class CompressionResult:
    """The easiness-chosen subset of one kept size beside a random one."""

    strategy: str          # the best easiness strategy of the sweep
    gap: CompressionGap
    curves: pd.DataFrame   # strategy, kept_size, test_accuracy (mean over seeds), std, n_seeds

    def to_dict(self) -> dict:
        gap = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vars(self.gap).items()}
        return {"strategy": self.strategy, **gap}


def best_strategy(results: pd.DataFrame) -> str:
    """The non-random strategy with the highest mean test accuracy over the ratios it
    shares with ``random`` (ratio 0, where every strategy keeps everything, left out)."""
    strategies = sorted(set(results["strategy"]) - {"random"})
    if "random" not in set(results["strategy"]) or not strategies:
        raise ConfigError(
            "compression compares an easiness strategy with random: the sweep needs strategy 'random' "
            f"and at least one other; it has {sorted(set(results['strategy'])) or 'none'}"
        )
    random_ratios = set(results.loc[results["strategy"] == "random", "ratio"]) - {0.0}
    scores = {}
    for strategy in strategies:
        rows = results[(results["strategy"] == strategy) & results["ratio"].isin(random_ratios)]
        if len(rows):
            scores[strategy] = rows.groupby("ratio")["test_accuracy"].mean().mean()
    if not scores:
        raise ConfigError("no easiness strategy shares a ratio > 0 with random; add random points at those ratios")
    return max(scores, key=lambda s: (scores[s], s))


def compression_from_results(results: pd.DataFrame, target_size: int,
                             strategy: str | None = None) -> CompressionResult:
    """Compression at ``target_size`` from an ablation sweep's results table.

    The easiness curve is ``strategy`` (default :func:`best_strategy`), the other is
    ``random``; each is test accuracy against kept size, averaged over seeds, read by
    :func:`~raystats.stats.selection.compression_gap`.
    """
    if strategy is None:
        strategy = best_strategy(results)
    curves = (
        results.groupby(["strategy", "kept_size"])["test_accuracy"]
        .agg(test_accuracy="mean", std="std", n_seeds="size").reset_index()
    )
    chosen = results[results["strategy"] == strategy]
    random = results[results["strategy"] == "random"]
    if not len(chosen) or not len(random):
        raise ConfigError(f"the sweep has no rows of strategy {strategy!r} or of 'random'")
    gap = compression_gap(chosen["kept_size"], chosen["test_accuracy"], random["kept_size"],
                          random["test_accuracy"], target_size)
    return CompressionResult(strategy, gap, curves[curves["strategy"].isin([strategy, "random"])].reset_index(drop=True))


def compression(storage: str, run_id: str, sweep: str = "ablation", target_ratio: float | None = None,
                target_size: int | None = None, strategy: str | None = None) -> CompressionResult:
    """Compression at a target kept size, read from an ablation sweep of the run.

    Give ``target_ratio`` (kept size ``round((1 - ratio) · N)``) or ``target_size``.
    The result is also written to ``<run>/sweeps/<sweep>/compression.json``.
    """
    settings = sweep_settings(storage, run_id, sweep)
    if settings["kind"] != "ablation":
        raise ConfigError(f"sweep {sweep!r} is a {settings['kind']} sweep; compression reads an ablation sweep")
    results = sweep_results(storage, run_id, sweep)
    if not len(results):
        raise ConfigError(f"sweep {sweep!r} of run {run_id!r} has no finished points yet")
    n = int(results["n_examples"].iloc[0])
    if (target_ratio is None) == (target_size is None):
        raise ConfigError("give exactly one of target_ratio and target_size")
    target = kept_size(n, target_ratio) if target_ratio is not None else _whole("target_size", target_size, 1)
    result = compression_from_results(results, target, strategy)
    store = RunStore(storage)
    store.write_bytes(f"{sweep_path(storage, run_id, sweep)}/compression.json",
                      json.dumps(result.to_dict(), indent=2).encode())
    return result


# ------------------------------------------------------------------------------ helpers


def write_sweep_file(storage: str, run_id: str, sweep: str, filename: str, data: bytes) -> str:
    """Write a file (a figure) into the sweep's folder; return where it went."""
    if "/" in filename or filename.startswith("."):
        raise ConfigError(f"filename {filename!r} must be a plain file name")
    store = RunStore(storage)
    path = f"{sweep_path(storage, run_id, sweep)}/{filename}"
    store.write_bytes(path, data)
    return store.uri(path)


def _array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _load_array(store: RunStore, path: str) -> np.ndarray:
    return np.load(io.BytesIO(store.read_bytes(path)), allow_pickle=False)


def _is_file(store: RunStore, path: str) -> bool:
    return store.fs.get_file_info(path).type == pafs.FileType.File


def _choice(name: str, value: object, accepted: tuple) -> None:
    if value not in accepted:
        raise ConfigError(f"{name}={value!r} is not accepted: expected one of {', '.join(accepted)}")


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name}={value!r} is not accepted: expected an integer >= {minimum}")
    return int(value)


def _positive(value: object) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)) and float(value) > 0)


__all__ = [
    "CompressionResult", "DEFAULT_RATIOS", "DEFAULT_STRATEGIES", "HELDOUT_COLUMNS", "KINDS",
    "RESULT_COLUMNS", "STRATEGIES_BY_KIND", "SweepConfig", "SweepSummary", "best_strategy",
    "compression", "compression_from_results", "heldout_easiness", "run_sweep", "stepwise_cost",
    "stored_config", "sweep_path", "sweep_results", "sweep_settings", "sweeps", "validate_sweep_name", "write_sweep_file",
]
