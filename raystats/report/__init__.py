"""The HTML report of one run: example grids, averaged images, easiness histograms,
matching rates over training and the training-dynamics data map.

:func:`write_report` asks a client (offline or live) for the numbers, draws them with
the plain-data functions of :mod:`raystats.report.figures`, and writes PNG files plus
one ``index.html`` into ``<storage>/<run_id>/report/`` (or ``out_dir``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

import raystats
from raystats.data import load_run_dataset
from raystats.errors import ConfigError
from raystats.report.figures import (
    data_map_figure,
    display_image,
    easiness_histogram,
    example_grid,
    matching_figure,
    mean_image_grid,
    save_figure,
)
from raystats.report.html import Section, render_page, write_page
from raystats.stats import chance_level, check_frac, easy_set, hard_set, set_size

__all__ = [
    "Section", "data_map_figure", "display_image", "easiness_histogram", "example_grid", "load_run_dataset",
    "matching_figure", "mean_image_grid", "per_class_extremes", "per_class_sets",
    "render_page", "save_figure", "write_page", "write_report",
]

K_PER_CLASS = 8
MAX_CLASSES = 20  # rows of an image grid; more classes (CIFAR-100) would be unreadable
RANDOM_SEED = 0


@dataclass(frozen=True)
class _RunData:
    """Everything the report draws, gathered before a single file is written."""

    info: dict
    steps: list
    loss: pd.DataFrame   # example_id, easiness, n_trials: logged examples at the last step
    count: pd.DataFrame
    dynamics: pd.DataFrame
    panels: dict         # matching_figure panels


def write_report(client, run_id: str, out_dir: str | None = None, compare_with: str | None = None,
                 frac: float = 0.1, data_root: str | None = None) -> str:
    """Write the figures and the HTML page of one run; return the path of index.html.

    Parameters
    ----------
    client : raystats.client.Client
        ``raystats.client.open(storage)`` or ``raystats.client.connect()``.
    run_id : str
    out_dir : str, optional
        Local folder for the report. Default: ``<storage>/<run_id>/report/``, which
        needs a local storage; for a URI storage (s3://, gs://) pass ``out_dir``.
    compare_with : str, optional
        A second run of the same data set: its matching rate over steps is drawn too.
    frac : float
        The easy / hard set fraction q.
    data_root : str, optional
        Folder of the data set's files, when it is not where the run found them.

    Returns
    -------
    str
        Path of the written ``index.html``.

    Raises
    ------
    RaystatsError
        An unknown run, a bad ``frac``, runs of different data sets, a data set whose
        fingerprint differs from the run's, or a storage the report cannot be written to.
    """
    frac = check_frac(frac)
    info = client.info(run_id)
    out_dir = _report_dir(client, info, run_id, out_dir)
    dataset = load_run_dataset(info, data_root)
    data = _gather(client, run_id, info, compare_with, frac)
    os.makedirs(out_dir, exist_ok=True)
    sections = _draw_all(data, dataset, run_id, compare_with, frac, out_dir)
    title = f"raystats report: {run_id}"
    return write_page(os.path.join(out_dir, "index.html"), title, _facts(data, compare_with, frac), sections)


# ---- choosing examples ------------------------------------------------------------------

def per_class_extremes(example_ids: np.ndarray, labels: np.ndarray, easiness: np.ndarray, k: int):
    """The ``k`` easiest and ``k`` hardest examples of each class by loss-form easiness.

    Ties go to the lower example_id, as for the easy and hard sets.

    Parameters
    ----------
    example_ids, labels, easiness : (N,) arrays
        Loss-form easiness (low = easy) of each example and its class.
    k : int

    Returns
    -------
    easiest, hardest : dict class → (ids, values)
        Ids in drawing order (easiest first / hardest first) and their easiness.

    Examples
    --------
    >>> easiest, hardest = per_class_extremes(np.arange(4), np.array([0, 0, 1, 1]),
    ...                                       np.array([0.5, 0.1, 0.2, 0.9]), 1)
    >>> easiest[0][0], hardest[1][0]
    (array([1]), array([3]))
    """
    easiest, hardest = {}, {}
    for label in np.unique(labels):
        ids, values = example_ids[labels == label], easiness[labels == label]
        up = np.lexsort((ids, values))[:k]
        down = np.lexsort((ids, -values))[:k]
        easiest[int(label)] = (ids[up], values[up])
        hardest[int(label)] = (ids[down], values[down])
    return easiest, hardest


def per_class_sets(example_ids: np.ndarray, labels: np.ndarray, easiness: np.ndarray,
                   frac: float, seed: int = RANDOM_SEED) -> dict:
    """Easy, random and hard sets of each class, all of size ``set_size(N_class, frac)``.

    Within class c, the easy (hard) set is the fraction ``frac`` of its examples with the
    lowest (highest) loss-form easiness; the random set is a seeded sample of the class
    of the same size.

    Returns
    -------
    dict class → {"easy": ids, "random": ids, "hard": ids}
    """
    rng = np.random.default_rng(seed)
    sets = {}
    for label in np.unique(labels):
        ids, values = example_ids[labels == label], easiness[labels == label]
        easy = easy_set(values, frac, kind="loss", example_ids=ids)
        sample = np.sort(rng.choice(ids, size=len(easy), replace=False))
        sets[int(label)] = {"easy": easy, "random": sample, "hard": hard_set(values, frac, kind="loss", example_ids=ids)}
    return sets


def _thresholds(frame: pd.DataFrame, frac: float, kind: str) -> tuple[float, float]:
    """(easy, hard) boundary values: the last easiness value inside each set."""
    values = frame["easiness"].to_numpy()
    ids = frame["example_id"].to_numpy()
    by_id = pd.Series(values, index=ids)
    easy = by_id[easy_set(values, frac, kind=kind, example_ids=ids)]
    hard = by_id[hard_set(values, frac, kind=kind, example_ids=ids)]
    if kind == "loss":
        return float(easy.max()), float(hard.min())
    return float(easy.min()), float(hard.max())


# ---- gathering --------------------------------------------------------------------------

def _report_dir(client, info: dict, run_id: str, out_dir: str | None) -> str:
    if out_dir is not None:
        if "://" in str(out_dir):
            raise ConfigError(f"out_dir={out_dir!r} is not accepted: the report is written to a local folder")
        return os.path.abspath(os.path.expanduser(str(out_dir)))
    store = getattr(client, "store", None)
    storage = store.storage if store is not None else info.get("storage")
    if storage is None or "://" in str(storage):
        raise ConfigError(
            f"run {run_id!r} is stored at {storage or 'an unknown storage'}, not in a local folder: "
            "pass out_dir (--out) to say where the report goes"
        )
    from raystats.store import RunStore

    return os.path.join(RunStore(storage).run_dir(run_id), "report")


def _logged(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of examples some trial logged (a run on a subset leaves the rest empty)."""
    keep = (frame["n_trials"] > 0) & np.isfinite(frame["easiness"].to_numpy(dtype=np.float64))
    return frame[keep].reset_index(drop=True)


def _gather(client, run_id: str, info: dict, compare_with: str | None, frac: float) -> _RunData:
    steps = client.steps(run_id)
    loss = _logged(client.easiness(run_id, kind="loss"))
    count = _logged(client.easiness(run_id, kind="count"))
    dynamics = client.dynamics(run_id)
    dynamics = dynamics[dynamics["example_id"].isin(loss["example_id"])]
    panels = _matching_panels(client, run_id, info, compare_with, frac, steps)
    return _RunData(info, steps, loss, count, dynamics, panels)


def _matching_panels(client, run_id, info, compare_with, frac, steps) -> dict:
    last = steps[-1]
    trials = int(info["config"]["trials"])
    panels = {}
    for which in ("easy", "hard"):
        curves = {}
        if trials >= 2:
            curves["trial halves of this run (self-agreement)"] = pd.DataFrame({
                "step": steps,
                "matching_rate": [client.self_agreement(run_id, which, frac, step) for step in steps],
            })
        curves[f"this run at its last step ({last})"] = pd.DataFrame({
            "step": steps,
            "matching_rate": [client.matching_rate(run_id, run_id, which, frac, step, last) for step in steps],
        })
        if compare_with is not None:
            curves[f"run {compare_with} at the same step"] = client.matching_curve(run_id, compare_with, which, frac)
        panels[f"{which} sets (q = {frac:g})"] = curves
    return panels


# ---- drawing ----------------------------------------------------------------------------

def _draw_all(data: _RunData, dataset, run_id, compare_with, frac, out_dir) -> list[Section]:
    ids = data.loss["example_id"].to_numpy()
    values = data.loss["easiness"].to_numpy(dtype=np.float64)
    labels = np.asarray(dataset.train.labels)[ids]
    classes = [label for label in np.unique(labels)][:MAX_CLASSES]
    names = [str(dataset.classes[c]) for c in classes]
    shown = "" if len(classes) == dataset.num_classes else f" Only the first {len(classes)} classes are shown."
    last = data.steps[-1]
    sections = []

    easiest, hardest = per_class_extremes(ids, labels, values, K_PER_CLASS)
    for name, chosen, order in (("easiest", easiest, "lowest"), ("hardest", hardest, "highest")):
        fig = example_grid(dataset.train.images, [chosen[c][0] for c in classes], [chosen[c][1] for c in classes],
                           names, f"{run_id}: the {K_PER_CLASS} {name} training examples of each class",
                           f"mean loss over trials at step {last} under each image")
        save_figure(fig, os.path.join(out_dir, f"{name}.png"))
        sections.append(Section(
            f"The {name} examples of each class", f"{name}.png",
            f"One row per class (by the data set's label), the {K_PER_CLASS} training examples with the "
            f"{order} loss-form easiness (mean cross-entropy over the {data.info['config']['trials']} trials) "
            f"at the last logged step {last}, {name} first; the number under each image is that easiness." + shown,
        ))

    sets = per_class_sets(ids, labels, values, frac)
    kinds = ("easy", "random", "hard")
    means = [[_mean_image(dataset.train.images, sets[c][kind]) for c in classes] for kind in kinds]
    counts = [[len(sets[c][kind]) for c in classes] for kind in kinds]
    fig = mean_image_grid(means, kinds, names, counts, f"{run_id}: averaged images of easy, random and hard examples")
    save_figure(fig, os.path.join(out_dir, "averaged.png"))
    sections.append(Section(
        "Averaged images of easy, random and hard examples", "averaged.png",
        f"Pixel-wise mean image of each class's easy set (the {frac:.0%} of the class with the lowest loss-form "
        f"easiness at step {last}), of a random sample of the class of the same size (seed {RANDOM_SEED}), and of "
        "its hard set (the highest); n is the number of images averaged (Kishida & Nakayama, Fig. 2)." + shown,
    ))

    fig = easiness_histogram(values, data.count["easiness"].to_numpy(dtype=np.float64),
                             _thresholds(data.loss, frac, "loss"), _thresholds(data.count, frac, "count"),
                             frac, f"{run_id}: easiness of {len(ids):,} training examples at step {last}")
    save_figure(fig, os.path.join(out_dir, "histogram.png"))
    sections.append(Section(
        "Easiness distribution", "histogram.png",
        f"Left: loss form, mean cross-entropy over the trials (low = easy), log-scaled counts. Right: count form, "
        f"trials that classify the example correctly divided by the largest such count (high = easy). Dashed lines "
        f"and colors mark the easy and hard sets of fraction q = {frac:g} (ties broken by example_id).",
    ))

    versus = f" and against run {compare_with}" if compare_with is not None else ""
    fig = matching_figure(data.panels, chance_level(frac), f"{run_id}: matching rate over training{versus}")
    save_figure(fig, os.path.join(out_dir, "matching.png"))
    other = f", and against the sets of run {compare_with} at the same step" if compare_with is not None else ""
    halves = ("between the sets of two disjoint halves of the trials (how reproducible the sets are with this "
              "many trials), " if int(data.info["config"]["trials"]) >= 2 else "")
    sections.append(Section(
        "Matching rate over training", "matching.png",
        "Matching rate |A ∩ B| / max(|A|, |B|) of easy (left) and hard (right) sets at each logged step: "
        f"{halves}against this run's own sets at its last step {last}{other}. The dotted line is the chance "
        "level q of two random sets.",
    ))

    fig = data_map_figure(data.dynamics["confidence"], data.dynamics["variability"], data.dynamics["correctness"],
                          f"{run_id}: data map over {len(data.steps)} logged steps")
    save_figure(fig, os.path.join(out_dir, "data_map.png"))
    sections.append(Section(
        "Training-dynamics data map", "data_map.png",
        "Dataset cartography (Swayamdipta et al.): per example, the mean (confidence) and standard deviation "
        "(variability) of the probability of its label over the logged steps, colored by the fraction of logged "
        "steps it was classified correctly; each averaged over the trials. Only as fine as the logging schedule.",
    ))
    return sections


def _mean_image(images: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
    if len(ids) == 0:
        return None
    return images[ids].astype(np.float64).mean(axis=0)


# ---- facts ------------------------------------------------------------------------------

def _facts(data: _RunData, compare_with: str | None, frac: float) -> list[tuple[str, object]]:
    info, config, dataset = data.info, data.info["config"], data.info["dataset"]
    steps = data.steps
    logged = ", ".join(map(str, steps)) if len(steps) <= 12 else f"{steps[0]} … {steps[-1]} ({len(steps)} steps)"
    n = len(data.loss)
    facts = [
        ("run", info["run_id"]),
        ("status", info.get("status")),
        ("data set", f"{dataset['name']}: {dataset['n_train']:,} train / {dataset['n_test']:,} test examples, "
                     f"{len(dataset.get('classes', []))} classes (fingerprint {str(dataset.get('fingerprint'))[:12]})"),
        ("architecture", config.get("arch")),
        ("trials (M)", config.get("trials")),
        ("training", f"{config.get('epochs')} epochs, {config.get('optimizer')}, batch {config.get('batch_size')}, "
                     f"augmentation {'on' if config.get('augment') else 'off'}"),
        ("logged steps", logged),
        ("examples with easiness", f"{n:,}"),
        ("set fraction q", f"{frac:g} (K = {set_size(n, frac):,} examples per set)"),
    ]
    chance = f"(chance {chance_level(frac):.3f})"
    for which in ("easy", "hard"):
        curves = data.panels[f"{which} sets (q = {frac:g})"]
        for label, curve in curves.items():
            if not len(curve) or label.startswith("this run"):
                continue
            row = curve.iloc[-1]
            against = "trial halves (self-agreement)" if label.startswith("trial halves") else compare_with
            facts.append((f"{which}-set matching rate at step {int(row['step'])}, {against}",
                          f"{row['matching_rate']:.3f} {chance}"))
    facts.append(("generated", f"{time.strftime('%Y-%m-%d %H:%M:%S')} by raystats {raystats.__version__}"))
    return facts

