"""Pattern removal on Ray: which patterns make an example easy (Kishida & Nakayama, sec. 6).

Take a finished easiness run trained with regular augmentation; evaluate each of its
trained trials on inputs from which one pattern was removed (colour, tile order,
high frequencies — :mod:`raystats.data.patterns`), at every strength of a grid;
compute loss-form easiness over the trials on those inputs; and compare its easy and
hard sets with the regular ones by matching rate ``|A ∩ B| / max(|A|, |B|)``. Chance
for random sets of fraction q is q. At strength 1 every transform is the identity,
so the matching rate there is 1.

Each (trial, pattern) pair is one Ray task: it loads the trial's checkpoint once and
evaluates every strength of that pattern; the images travel once through the object
store. The regular easiness is computed the same way (same code, same batches), not
read from the logs, so strength 1 reproduces it bit for bit.

Results: ``<run>/analyses/patterns/`` — ``matching.parquet`` (one row per pattern,
strength and set), ``easiness.parquet`` (per example, pattern and strength),
``settings.json`` and the figure ``matching.png``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import ray
import torch

from raystats.data import global_contrast_normalize, to_float
from raystats.data.patterns import PATTERNS, apply_pattern
from raystats.errors import ConfigError
from raystats.service.analysis import (
    check_trials, finished_run, load_trial_model, ray_resources, train_examples, write_settings,
    write_table,
)
from raystats.service.cluster import ensure_ray
from raystats.stats import chance_level, check_frac, easy_set, hard_set, loss_easiness, matching_rate
from raystats.store import RunStore
from raystats.train.evaluate import evaluate_examples
from raystats.train.trial import seed_for

NAME = "patterns"
REGULAR = "regular"
EVAL_BATCH = 256
_SHUFFLE_SEED = 11


def default_grid() -> dict[str, tuple[float, ...]]:
    """The study's grid: colour α 0..1, tiles of 0.5/0.33/0.25, radius 0.1..1."""
    return {name: pattern.strengths for name, pattern in PATTERNS.items()}


def _check_grid(grid: dict | None) -> dict[str, tuple[float, ...]]:
    grid = default_grid() if grid is None else grid
    checked = {}
    for name, strengths in grid.items():
        if name not in PATTERNS:
            raise ConfigError(f"pattern {name!r} is not known: expected one of {', '.join(PATTERNS)}")
        values = tuple(sorted({float(s) for s in strengths}))
        zero_ok = name == "color"
        if not values or values[0] < 0 or (values[0] == 0 and not zero_ok) or values[-1] > 1.0:
            raise ConfigError(f"strengths {list(strengths)} of {name!r} must lie in "
                              f"{'[0, 1]' if zero_ok else '(0, 1]'}")
        checked[name] = values
    if not checked:
        raise ConfigError("the pattern grid is empty: give at least one pattern with strengths")
    return checked


@ray.remote
def _evaluate_trial(storage, run_id, config_dict, input_shape, num_classes, trial, images, labels,
                    pattern, strengths, seed, device):
    """One trial on one pattern at every strength: per-example loss and correctness."""
    from raystats.config import RunConfig

    torch.set_num_threads(1)
    config = RunConfig.from_dict(config_dict)
    model = load_trial_model(RunStore(storage), run_id, config, input_shape, num_classes, trial, device)
    images = torch.tensor(images, device=device)  # a copy: object-store arrays are read-only
    labels = torch.tensor(labels, device=device)
    out = {}
    for index, strength in enumerate(strengths):
        # The same generator seed for every trial: all trials see the same shuffled images.
        generator = torch.Generator(device=device).manual_seed(seed_for(seed, _SHUFFLE_SEED, index))

        def preprocess(batch, strength=strength, generator=generator):
            x = to_float(batch)
            if pattern != REGULAR:
                x = apply_pattern(pattern, x, strength, generator)
            return global_contrast_normalize(x)

        metrics = evaluate_examples(model, images, labels, EVAL_BATCH, preprocess)
        out[strength] = (metrics["loss"].astype(np.float32), metrics["pred"] == labels.cpu().numpy())
    return trial, pattern, out


def pattern_removal(
    storage: str,
    run_id: str,
    grid: dict[str, tuple[float, ...]] | None = None,
    frac: float = 0.1,
    trials=None,
    seed: int = 0,
    device: str = "cpu",
    address: str | None = None,
    data_root: str | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Matching rate of easy/hard sets on pattern-removed inputs with the regular ones.

    Parameters
    ----------
    storage, run_id : str
        A finished easiness run, ideally trained with ``--augment`` (the study's setting);
        its trial checkpoints are evaluated.
    grid : dict, optional
        pattern → strengths; default :func:`default_grid`.
    frac : float, default 0.1
        Size q of the easy and hard sets; the chance level of the matching rate.
    trials : iterable of int, optional
        Trials to evaluate; default all.
    seed : int
        Seeds the tile orders of "shuffle" (shared by all trials).
    device : {"cpu", "cuda"}

    Returns
    -------
    pandas.DataFrame
        Columns ``pattern, parameter, strength, which, frac, matching_rate, chance,
        accuracy, regular_accuracy, n_examples, n_trials``; also written to
        ``<run>/analyses/patterns/matching.parquet``.
    """
    frac = check_frac(frac)
    grid = _check_grid(grid)
    store = RunStore(storage)
    info, config, dataset = finished_run(store, run_id, data_root)
    trials = check_trials(trials, config, run_id)
    ids, images, labels = train_examples(config, dataset)
    if not config.augment:
        print(f"note: run {run_id!r} was trained without augmentation; the study removes patterns "
              "from a run trained with regular augmentation (--augment)", flush=True)
    if dataset.input_shape[0] == 1 and "color" in grid:
        print("note: the images have one channel, so colour removal is the identity at every α "
              "(matching rate 1 throughout)", flush=True)
    ensure_ray(address)
    started = time.perf_counter()
    images_ref, labels_ref = ray.put(images), ray.put(labels)
    tasks = [(REGULAR, (1.0,))] + list(grid.items())
    pending = [
        _evaluate_trial.options(**ray_resources(device)).remote(
            store.storage, run_id, config.to_dict(), dataset.input_shape, dataset.num_classes, trial,
            images_ref, labels_ref, pattern, strengths, seed, device)
        for trial in trials for pattern, strengths in tasks
    ]
    losses: dict[tuple[str, float], dict[int, np.ndarray]] = {}
    correct: dict[tuple[str, float], dict[int, np.ndarray]] = {}
    total = len(pending)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        trial, pattern, out = ray.get(done[0])
        for strength, (loss, right) in out.items():
            losses.setdefault((pattern, strength), {})[trial] = loss
            correct.setdefault((pattern, strength), {})[trial] = right
        if show_progress:
            print(f"patterns: {total - len(pending)}/{total} (trial, pattern) evaluations done "
                  f"(trial {trial}, {pattern}) after {time.perf_counter() - started:.0f} s", flush=True)
    easiness_rows, matching_rows = [], []
    regular = _easiness(losses[(REGULAR, 1.0)], trials)
    regular_sets = {"easy": easy_set(regular, frac, example_ids=ids), "hard": hard_set(regular, frac, example_ids=ids)}
    regular_accuracy = float(np.mean([correct[(REGULAR, 1.0)][t].mean() for t in trials]))
    for (pattern, strength), per_trial in sorted(losses.items()):
        values = _easiness(per_trial, trials)
        accuracy = np.mean([correct[(pattern, strength)][t] for t in trials], axis=0)
        easiness_rows.append(pd.DataFrame({
            "pattern": pattern, "strength": strength, "example_id": ids, "easiness": values,
            "correct_frac": accuracy,
        }))
        if pattern == REGULAR:
            continue
        for which, pick in (("easy", easy_set), ("hard", hard_set)):
            chosen = pick(values, frac, example_ids=ids)
            matching_rows.append({
                "pattern": pattern, "parameter": PATTERNS[pattern].parameter, "strength": strength,
                "which": which, "frac": frac, "matching_rate": matching_rate(chosen, regular_sets[which]),
                "chance": chance_level(frac), "accuracy": float(accuracy.mean()),
                "regular_accuracy": regular_accuracy, "n_examples": len(ids), "n_trials": len(trials),
            })
    matching = pd.DataFrame(matching_rows)
    write_table(store, run_id, NAME, "easiness", pd.concat(easiness_rows, ignore_index=True))
    write_table(store, run_id, NAME, "matching", matching)
    write_settings(store, run_id, NAME, {
        "grid": {k: list(v) for k, v in grid.items()}, "frac": frac, "trials": trials, "seed": seed,
        "easiness": "loss form (mean cross-entropy over the trials), computed on the run's training examples",
        "trained_with_augmentation": bool(config.augment), "seconds": time.perf_counter() - started,
    })
    return matching


def _easiness(per_trial: dict[int, np.ndarray], trials: list[int]) -> np.ndarray:
    return loss_easiness(np.stack([per_trial[t] for t in trials]))
