"""What the three "what makes examples easy" analyses share: their place in the run store,
Parquet tables written atomically, the trained trials they read, and the runs they train.

Layout of one analysis's results (never pickle: Parquet tables and one JSON file)::

    <storage>/<run_id>/analyses/<name>/settings.json     what was computed, and how
    <storage>/<run_id>/analyses/<name>/<table>.parquet   the result tables
    <storage>/<run_id>/analyses/<name>/<figure>.png      figures drawn from the tables

``name`` is one of :data:`ANALYSES`. Every table is written through
:meth:`RunStore.write_bytes`, so a reader sees the old file or the new, never half.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from raystats.config import RunConfig
from raystats.data import Dataset, load_dataset, load_run_dataset
from raystats.errors import ConfigError, DataError, StoreError
from raystats.models import build_model
from raystats.store import RunStore

# analysis name → the job that makes its results (named in "not found" errors).
ANALYSES = {
    "patterns": "jobs/patterns.py",
    "shallow_vs_deep": "jobs/shallow_vs_deep.py",
    "prediction_depth": "jobs/prediction_depth.py",
}


class AnalysisNotFoundError(StoreError, KeyError):
    """A query asked for analysis results that no job has written yet."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def analysis_path(store: RunStore, run_id: str, name: str) -> str:
    if name not in ANALYSES:
        raise ConfigError(f"analysis {name!r} is not known: expected one of {', '.join(ANALYSES)}")
    return f"{store.run_dir(run_id)}/analyses/{name}"


def write_table(store: RunStore, run_id: str, name: str, table: str, frame: pd.DataFrame) -> str:
    """Write ``frame`` as ``analyses/<name>/<table>.parquet`` (zstd, atomic); return the path."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, compression="zstd")
    path = f"{analysis_path(store, run_id, name)}/{table}.parquet"
    store.write_bytes(path, buffer.getvalue())
    return path


def read_table(store: RunStore, run_id: str, name: str, table: str) -> pd.DataFrame:
    """A stored result table; a clear error naming the job when it is not there."""
    path = f"{analysis_path(store, run_id, name)}/{table}.parquet"
    if store.fs.get_file_info(path).type.name != "File":
        store.read_run(run_id)  # an unknown run says so first, with the known runs
        raise AnalysisNotFoundError(
            f"run {run_id!r} has no {name} results ({path} is missing); make them with "
            f"`python {ANALYSES[name]} --storage {store.storage} --run-id {run_id}`"
        )
    return pd.read_parquet(io.BytesIO(store.read_bytes(path)))


def write_settings(store: RunStore, run_id: str, name: str, settings: dict) -> None:
    settings = dict(settings, analysis=name, run_id=run_id, written=time.time())
    path = f"{analysis_path(store, run_id, name)}/settings.json"
    store.write_bytes(path, json.dumps(settings, indent=2, default=_plain).encode())


def read_settings(store: RunStore, run_id: str, name: str) -> dict:
    path = f"{analysis_path(store, run_id, name)}/settings.json"
    if store.fs.get_file_info(path).type.name != "File":
        store.read_run(run_id)
        raise AnalysisNotFoundError(
            f"run {run_id!r} has no {name} results; make them with "
            f"`python {ANALYSES[name]} --storage {store.storage} --run-id {run_id}`"
        )
    return json.loads(store.read_bytes(path))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# ------------------------------------------------------------------------- finished runs


def finished_run(store: RunStore, run_id: str, data_root: str | None = None) -> tuple[dict, RunConfig, Dataset]:
    """A finished run's info, config and data set (checked against its fingerprint).

    ``data_root`` None: the run's own ``data_root``.
    """
    info = store.read_run(run_id)  # RunNotFoundError names the known runs
    config = RunConfig.from_dict(info["config"])
    if info["status"] != "finished":
        raise ConfigError(
            f"run {run_id!r} is {info['status']}, not finished; finish it first "
            f"(python jobs/easiness.py --run-id {run_id} --storage {store.storage} --resume)"
        )
    dataset = load_run_dataset(dict(info, run_id=run_id), data_root)
    return info, config, dataset


def train_examples(config: RunConfig, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's training examples as it trained on them: ids, uint8 images, labels.

    Applies the run's subset and label corruption exactly as
    :meth:`raystats.train.trial.TrialData.build` does.
    """
    labels = dataset.train.labels.copy()
    for example_id, new_label in config.corrupt_labels:
        labels[example_id] = new_label
    ids = np.arange(len(labels)) if config.subset is None else np.sort(np.asarray(config.subset))
    ids = ids.astype(np.int64)
    return ids, np.ascontiguousarray(dataset.train.images[ids]), labels[ids]


def load_trial_model(store: RunStore, run_id: str, config: RunConfig, input_shape, num_classes: int,
                     trial: int, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Trial ``trial``'s trained model, from the run's checkpoints, in eval mode.

    A run trained one trial at a time keeps ``checkpoints/trial=<m>/latest.pt``; a run
    trained as vmap-ed ensembles keeps one file per worker's group of trials
    (``ensemble-<m>-<m'>...``), from which the trial's weights are taken.
    """
    from raystats.train.ensemble import StackedEnsemble

    model = build_model(config.arch, tuple(input_shape), num_classes)
    path = store.checkpoint_path(run_id, int(trial))
    if store.fs.get_file_info(path).type.name == "File":
        state = torch.load(io.BytesIO(store.read_bytes(path)), map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        return model.to(device).eval()
    group, path = _ensemble_checkpoint(store, run_id, trial)
    if path is None:
        raise StoreError(
            f"run {run_id!r} has no checkpoint of trial {trial} (looked for trial={trial}/ and "
            f"ensemble-*/ under {store.run_dir(run_id)}/checkpoints); analyses need the trained "
            "trials' checkpoints"
        )
    ensemble = StackedEnsemble([build_model(config.arch, tuple(input_shape), num_classes) for _ in group])
    state = torch.load(io.BytesIO(store.read_bytes(path)), map_location="cpu", weights_only=True)
    ensemble.load_state_dict(state["model"])
    model.load_state_dict(ensemble.trial_state_dict(group.index(trial)))
    return model.to(device).eval()


def _ensemble_checkpoint(store: RunStore, run_id: str, trial: int) -> tuple[list[int], str | None]:
    """The vmap-ed group checkpoint holding ``trial``: ``ensemble-<m>-<m'>...``, if any."""
    import pyarrow.fs as pafs

    folder = f"{store.run_dir(run_id)}/checkpoints"
    if store.fs.get_file_info(folder).type != pafs.FileType.Directory:
        return [], None
    for entry in store.fs.get_file_info(pafs.FileSelector(folder)):
        name = entry.base_name
        if name.startswith("ensemble-") and name[9:].replace("-", "").isdigit():
            group = [int(t) for t in name[9:].split("-")]
            path = store.checkpoint_path(run_id, name)
            if trial in group and store.fs.get_file_info(path).type == pafs.FileType.File:
                return group, path
    return [], None


def check_trials(trials, config: RunConfig, run_id: str) -> list[int]:
    """Trials to analyse: all of the run's (None) or the given ones, checked."""
    if trials is None:
        return list(range(config.trials))
    trials = sorted({int(t) for t in trials})
    if not trials or trials[0] < 0 or trials[-1] >= config.trials:
        raise ConfigError(f"trials={trials!r}: run {run_id!r} has trials 0..{config.trials - 1}")
    return trials


def last_step_rows(store: RunStore, run_id: str, split: str) -> pd.DataFrame:
    """Every trial's rows of ``split`` at the run's last logged step."""
    files = store.log_files(run_id)
    if not files:
        raise DataError(f"run {run_id!r} has no logged rows")
    last = max(f.step for f in files)
    tables = [table.to_pandas() for _, table in store.read_logs(run_id, steps={last})]
    rows = pd.concat(tables, ignore_index=True)
    rows = rows[rows["split"].astype(str) == split]
    if rows.empty:
        raise DataError(f"run {run_id!r} logged no {split} rows at its last step {last}")
    return rows


# ------------------------------------------------------------------------ training its run


def subset_ids(n_train: int, n_examples: int | None, seed: int) -> tuple[int, ...] | None:
    """A sorted random subset of ``n_examples`` training ids (None: all examples)."""
    if n_examples is None or n_examples >= n_train:
        return None
    rng = np.random.default_rng([7, seed])
    return tuple(int(i) for i in np.sort(rng.choice(n_train, size=n_examples, replace=False)))


def ensure_run(config: RunConfig, storage: str, address: str | None = None, show_progress: bool = True) -> dict:
    """The finished run ``config.run_id``: reused when the store has it, else trained now.

    A stored run under that id is used as it is when finished (its own config wins; a
    different config is not retrained), resumed when unfinished.
    """
    from raystats.service.easiness import run_easiness

    store = RunStore(storage)
    if store.exists(config.run_id):
        info = store.read_run(config.run_id)
        if info["status"] == "finished":
            print(f"using the finished run {config.run_id!r} in {store.storage}", flush=True)
            return info
        print(f"resuming run {config.run_id!r} ({info['status']})", flush=True)
        run_easiness(config, storage, address=address, resume=True, show_progress=show_progress)
    else:
        print(
            f"training run {config.run_id!r}: {config.trials} trial(s) of {config.arch} on {config.dataset}"
            f"{'' if config.subset is None else f' ({len(config.subset):,} training examples)'}, "
            f"{config.epochs:g} epoch(s), logging every {config.log_every:g} epoch(s)"
            f"{', with augmentation' if config.augment else ''}", flush=True,
        )
        summary = run_easiness(config, storage, address=address, show_progress=show_progress)
        print(f"run {config.run_id!r} {summary.status} in {summary.seconds:.0f} s", flush=True)
    return store.read_run(config.run_id)


def ray_resources(device: str) -> dict:
    """Resources of one analysis task: one CPU, or one GPU when asked to run there."""
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r} is not accepted: expected 'cpu' or 'cuda'")
    return {"num_cpus": 1, "num_gpus": 1 if device == "cuda" else 0}


# What each analysis trains when no finished run is given: small enough to finish on a
# 2-core machine in minutes on Fashion-MNIST (a random subset of the training set).
DEFAULT_RUNS = {
    "patterns": dict(trials=4, epochs=4.0, log_every=1.0, augment=True, log_test=False),
    "shallow_vs_deep": dict(trials=2, epochs=2.0, log_every=0.1, augment=False, log_test=True),
    "prediction_depth": dict(trials=2, epochs=4.0, log_every=0.5, augment=False, log_test=True),
}
DEFAULT_TRAIN_EXAMPLES = 5000


def default_run_config(analysis: str, dataset: str, data_root: str | None = None, run_id: str | None = None,
                       arch: str = "cnn", train_examples: int | None = DEFAULT_TRAIN_EXAMPLES,
                       seed: int = 0, **changes) -> RunConfig:
    """The run ``analysis`` trains for itself: :data:`DEFAULT_RUNS` on a training subset.

    ``changes`` (trials, epochs, log_every, ...) override the defaults; None values are ignored.
    """
    if analysis not in DEFAULT_RUNS:
        raise ConfigError(f"analysis {analysis!r} is not known: expected one of {', '.join(DEFAULT_RUNS)}")
    n_train = len(load_dataset(dataset, data_root).train.labels)
    values = dict(DEFAULT_RUNS[analysis], **{k: v for k, v in changes.items() if v is not None})
    return RunConfig(
        run_id=run_id or f"{dataset}-{arch}-{analysis.replace('_', '-')}", dataset=dataset, data_root=data_root,
        arch=arch, seed=seed, subset=subset_ids(n_train, train_examples, seed), **values,
    )
