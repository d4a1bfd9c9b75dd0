"""Shallow versus deep on Ray (Mangalam & Prabhu): does a deep network learn first what a
shallow model can learn?

The shallow models — RBF SVM (C = 1.0, γ = 0.1) and random forest (20 trees, gini) —
are fitted on the run's flattened training images (pixels in [0, 1]) as parallel Ray
tasks (:func:`raystats.stats.contingency.fit_shallow`; above ``exact_svm_limit``
training examples the SVM is the documented Nyström + linear-SVM approximation, and
the results and the output say so). The deep model is the run itself: its test-split
rows at every logged step (train it with a fine ``--log-every``, e.g. 0.1 epoch). At
each step and for each trial the contingency table T00..T11 (first index deep,
second shallow) and accuracies, R+, R-, R are recorded, and their trial mean.

Results: ``<run>/analyses/shallow_vs_deep/`` — ``shallow.parquet`` (each shallow
model's test predictions), ``contingency.parquet`` (per step and trial),
``contingency_mean.parquet`` (per step, trial mean), ``shallow_right_deep_wrong.parquet``
(test examples the shallow model gets right and the trained ensemble wrong),
``settings.json`` and one figure per shallow model.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import ray

from raystats.data import to_float
from raystats.errors import ConfigError, DataError
from raystats.service.analysis import finished_run, train_examples, write_settings, write_table
from raystats.service.cluster import ensure_ray
from raystats.stats.contingency import (
    SHALLOW_MODELS, contingency_over_steps, fit_shallow, shallow_right_deep_wrong, trial_mean,
)
from raystats.store import RunStore

NAME = "shallow_vs_deep"


@ray.remote(num_cpus=1)
def _fit(name, X_train, y_train, X_test, seed, exact_svm_limit, linear_solver):
    started = time.perf_counter()
    fit = fit_shallow(name, X_train, y_train, X_test, seed=seed, exact_svm_limit=exact_svm_limit,
                      linear_solver=linear_solver, n_jobs=1)
    return name, fit, time.perf_counter() - started


def flat_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, C, H, W) → float32 (N, C·H·W) in [0, 1], the scale γ = 0.1 assumes."""
    return to_float(images).reshape(len(images), -1).numpy()


def deep_test_correctness(store: RunStore, run_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The deep run's test-split correctness at every logged step.

    Returns
    -------
    steps : (T,) int64
    epochs : (T,) float64
    trials : (M,) int64
    correct : (T, M, N_test) bool, columns in example_id order 0..N_test-1
    """
    if not store.log_files(run_id):
        raise DataError(f"run {run_id!r} has no logged rows")
    frames = []
    for log_file, table in store.read_logs(run_id):
        if table.num_rows and table.column("split")[0].as_py() == "test":
            frames.append(table.select(["example_id", "trial", "step", "epoch", "correct"]).to_pandas())
    if not frames:
        raise ConfigError(
            f"run {run_id!r} logged no test rows; shallow vs deep compares on the test split: train "
            "the run with --log-test"
        )
    rows = pd.concat(frames, ignore_index=True)
    steps = np.sort(rows["step"].unique()).astype(np.int64)
    trials = np.sort(rows["trial"].unique()).astype(np.int64)
    n_test = int(rows["example_id"].max()) + 1
    correct = np.zeros((len(steps), len(trials), n_test), dtype=bool)
    seen = np.zeros_like(correct)
    s = np.searchsorted(steps, rows["step"].to_numpy())
    m = np.searchsorted(trials, rows["trial"].to_numpy())
    i = rows["example_id"].to_numpy()
    correct[s, m, i] = rows["correct"].to_numpy(bool)
    seen[s, m, i] = True
    if not seen.all():
        missing = np.argwhere(~seen.all(axis=2))[:3]
        raise DataError(
            f"run {run_id!r} lacks test rows at (step, trial) {[(int(steps[a]), int(trials[b])) for a, b in missing]}: "
            "every logged step needs every trial's test rows (is the run finished?)"
        )
    epochs = rows.groupby("step")["epoch"].first().reindex(steps).to_numpy(np.float64)
    return steps, epochs, trials, correct


def shallow_vs_deep(
    storage: str,
    run_id: str,
    shallow: tuple[str, ...] = SHALLOW_MODELS,
    exact_svm_limit: int = 20_000,
    linear_solver: str = "sgd",
    correct_below: float = 0.5,
    seed: int = 0,
    address: str | None = None,
    data_root: str | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Contingency of the run's deep model against each shallow model at every logged step.

    Parameters
    ----------
    storage, run_id : str
        A finished easiness run that logged its test split (``--log-test``), at a fine
        grain (``--log-every 0.1``).
    shallow : tuple of {"svm", "forest"}
    exact_svm_limit : int, default 20000
        Largest number of training examples for the exact kernel SVM; above it the SVM
        is approximated (Nyström + linear SVM), said in the output and in the results.
    linear_solver : {"sgd", "liblinear"}, default "sgd"
        Solver of the approximation's linear SVM (:func:`fit_shallow`).
    correct_below : float, default 0.5
        An example is "deep wrong" when fewer than this share of the trials classify it
        correctly at the last step.

    Returns
    -------
    pandas.DataFrame
        The trial-mean rows: ``shallow, approximate, step, epoch, n_trials, T00, T01,
        T10, T11, n, deep_accuracy, shallow_accuracy, R_plus, R_minus, R``.
    """
    shallow = tuple(dict.fromkeys(shallow))
    unknown = [name for name in shallow if name not in SHALLOW_MODELS]
    if unknown or not shallow:
        raise ConfigError(f"shallow models {list(shallow)}: expected some of {', '.join(SHALLOW_MODELS)}")
    store = RunStore(storage)
    info, config, dataset = finished_run(store, run_id, data_root)
    steps, epochs, trials, deep_correct = deep_test_correctness(store, run_id)
    _, images, labels = train_examples(config, dataset)
    test_labels = dataset.test.labels[: deep_correct.shape[2]]
    ensure_ray(address)
    started = time.perf_counter()
    X_train, X_test = ray.put(flat_pixels(images)), ray.put(flat_pixels(dataset.test.images))
    if "svm" in shallow and len(labels) > exact_svm_limit:
        print(f"NOTE: {len(labels):,} training examples > exact_svm_limit={exact_svm_limit:,}: the RBF SVM is "
              "APPROXIMATED (Nystroem kernel map + linear SVM); see settings.json", flush=True)
    if show_progress:
        print(f"fitting {', '.join(shallow)} on {len(labels):,} flattened training images as Ray tasks", flush=True)
    pending = [_fit.remote(name, X_train, labels, X_test, seed, exact_svm_limit, linear_solver) for name in shallow]
    fits = {}
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        name, fit, seconds = ray.get(done[0])
        fits[name] = fit
        if show_progress:
            accuracy = float(np.mean(fit.predictions == dataset.test.labels))
            print(f"  {name}: {fit.description}; test accuracy {accuracy:.4f} ({seconds:.0f} s)", flush=True)
    per_trial, mean, listed, predictions = [], [], [], []
    for name in shallow:
        fit = fits[name]
        shallow_correct = fit.predictions[: len(test_labels)] == test_labels
        frame = contingency_over_steps(shallow_correct, deep_correct, steps)
        frame["trial"] = trials[frame["trial"].to_numpy()]
        frame.insert(1, "epoch", np.repeat(epochs, len(trials)))
        averaged = trial_mean(frame.drop(columns="epoch"))
        averaged.insert(1, "epoch", epochs)
        for part in (frame, averaged):
            part.insert(0, "approximate", fit.approximate)
            part.insert(0, "shallow", name)
        per_trial.append(frame)
        mean.append(averaged)
        final = deep_correct[-1]
        chosen = shallow_right_deep_wrong(shallow_correct, final, correct_below=correct_below)
        listed.append(pd.DataFrame({
            "shallow": name, "example_id": chosen, "label": test_labels[chosen],
            "shallow_pred": fit.predictions[chosen], "deep_correct_frac": final[:, chosen].mean(axis=0),
        }))
        predictions.append(pd.DataFrame({
            "shallow": name, "example_id": np.arange(len(test_labels)), "label": test_labels,
            "pred": fit.predictions[: len(test_labels)], "correct": shallow_correct,
        }))
    mean_frame = pd.concat(mean, ignore_index=True)
    write_table(store, run_id, NAME, "shallow", pd.concat(predictions, ignore_index=True))
    write_table(store, run_id, NAME, "contingency", pd.concat(per_trial, ignore_index=True))
    write_table(store, run_id, NAME, "contingency_mean", mean_frame)
    write_table(store, run_id, NAME, "shallow_right_deep_wrong", pd.concat(listed, ignore_index=True))
    write_settings(store, run_id, NAME, {
        "shallow": {name: {"description": fits[name].description, "approximate": fits[name].approximate}
                    for name in shallow},
        "n_train": int(len(labels)), "n_test": int(len(test_labels)), "steps": steps.tolist(),
        "trials": trials.tolist(), "correct_below": correct_below, "exact_svm_limit": exact_svm_limit,
        "linear_solver": linear_solver, "seed": seed, "seconds": time.perf_counter() - started,
        "index_order": "T<deep><shallow>: T01 = deep wrong, shallow right",
    })
    return mean_frame
