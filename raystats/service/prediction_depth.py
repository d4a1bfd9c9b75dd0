"""Prediction depth on Ray (Baldock, Maennel & Neyshabur, 2021).

For each trained trial of a finished run (one Ray task per trial): take the
representation of every example after each probed layer — the input itself (layer
0, the study's convention), then every :func:`raystats.models.feature_blocks` module
— fit a k-NN probe per layer (k = 30) on a support set of training examples, and
take each example's prediction depth: the earliest layer from which every later
probe agrees with the network's own prediction (:mod:`raystats.stats.depth`). The
probes run batched in torch (one ``cdist`` + ``topk`` per batch of queries). Training
examples in the support set are probed leave-one-out (never their own neighbour).
An example whose last probe disagrees never settles: its depth is the number of
probed layers L, the "effective" depth, reported with ``settled = False``.

Depth is joined per example with the run's own statistics at its last logged step —
easiness (mean loss over the trials), consistency (share of all M trials that
classify it correctly: the study's consistency score, truly held-out on the test
split only), confidence (mean softmax probability of the label) — with accuracy
(share of the *probed* trials whose prediction is right; equal to consistency when
every trial is probed) and iteration learned (:meth:`Client.dynamics`).

Results: ``<run>/analyses/prediction_depth/`` — ``depth.parquet`` (per split, trial
and example), ``summary.parquet`` (per split and example, joined), ``settings.json``
and ``depth.png``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import ray
import torch
from torch import nn

from raystats.data import global_contrast_normalize, to_float
from raystats.errors import ConfigError
from raystats.models import feature_blocks
from raystats.service.analysis import (
    check_trials, finished_run, last_step_rows, load_trial_model, ray_resources, train_examples,
    write_settings, write_table,
)
from raystats.service.cluster import ensure_ray
from raystats.stats.depth import DEFAULT_K, collect_features, depth_from_features
from raystats.store import RunStore

NAME = "prediction_depth"
QUANTITIES = ("easiness", "consistency", "confidence", "accuracy", "iteration_learned")


def probe_points(model: nn.Module) -> tuple[nn.Module, list[nn.Module], list[str]]:
    """The model with an identity in front, the modules whose outputs are probed, their names.

    Layer 0 is the (preprocessed) input, seen as the output of the leading identity;
    then each feature block; the model itself comes last, for its logits.
    """
    wrapped = nn.Sequential(nn.Identity(), model)
    blocks = feature_blocks(model)
    names = ["input"] + [f"block{index + 1}" for index in range(len(blocks))]
    return wrapped, [wrapped[0], *blocks, model], names


@ray.remote
def _depth_of_trial(storage, run_id, config_dict, input_shape, num_classes, trial, train_ids,
                    train_images, train_labels, support_index, test_images, test_labels, k, max_dim, device):
    from raystats.config import RunConfig

    torch.set_num_threads(1)
    config = RunConfig.from_dict(config_dict)
    model = load_trial_model(RunStore(storage), run_id, config, input_shape, num_classes, trial, device)
    wrapped, points, _ = probe_points(model)

    def features(images):
        inputs = global_contrast_normalize(to_float(torch.tensor(images)))  # a copy: read-only input
        collected = collect_features(wrapped, points, inputs, max_dim=max_dim, out_device=device)
        return collected[:-1], collected[-1].argmax(dim=1).cpu().numpy()

    train_feats, train_pred = features(train_images)
    support_rows = torch.tensor(support_index, device=device)  # a copy: object-store arrays are read-only
    support = [layer[support_rows] for layer in train_feats]
    support_labels = torch.tensor(train_labels[support_index], device=device)
    support_ids = torch.tensor(train_ids[support_index], device=device)
    # Leave-one-out: a training example is never its own neighbour in the support set.
    train_depth = depth_from_features(
        support, support_labels, train_feats, train_pred, k=k, num_classes=num_classes,
        support_ids=support_ids, query_ids=torch.tensor(train_ids, device=device))
    results = {"train": (train_depth, train_pred)}
    if test_images is not None:
        test_feats, test_pred = features(test_images)
        results["test"] = (depth_from_features(support, support_labels, test_feats, test_pred, k=k,
                                               num_classes=num_classes), test_pred)
    return trial, {split: (r.depth, r.settled, pred) for split, (r, pred) in results.items()}


def prediction_depth(
    storage: str,
    run_id: str,
    k: int = DEFAULT_K,
    support_size: int | None = 10_000,
    trials=None,
    max_dim: int | None = 2048,
    seed: int = 0,
    device: str = "cpu",
    address: str | None = None,
    data_root: str | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Prediction depth of every train and test example of a run, joined with its statistics.

    Parameters
    ----------
    storage, run_id : str
        A finished easiness run (with ``--log-test`` for test depths).
    k : int, default 30
        Neighbours of each k-NN probe.
    support_size : int or None, default 10000
        Training examples the probes are fitted on: a random sample (``seed``) of the
        run's training examples, or all of them (None, or fewer than this).
    trials : iterable of int, optional
        Trials to probe, one Ray task each; default all.
    max_dim : int or None, default 2048
        Wider conv maps are average-pooled to at most this many values per example
        before the k-NN (:func:`~raystats.stats.depth.collect_features`); None: as is.
    device : {"cpu", "cuda"}

    Returns
    -------
    pandas.DataFrame
        ``summary``: one row per (split, example_id) with ``label, depth`` (mean over
        the probed trials), ``depth_median, settled_frac, n_layers`` and
        :data:`QUANTITIES`; also in ``<run>/analyses/prediction_depth/summary.parquet``.
    """
    store = RunStore(storage)
    info, config, dataset = finished_run(store, run_id, data_root)
    trials = check_trials(trials, config, run_id)
    train_ids, train_images, train_labels = train_examples(config, dataset)
    if support_size is not None and (isinstance(support_size, bool) or int(support_size) <= k):
        raise ConfigError(f"support_size={support_size!r} is too small: expected more than k={k} examples")
    n_support = len(train_ids) if support_size is None else min(int(support_size), len(train_ids))
    rng = np.random.default_rng([13, seed])
    support_index = np.sort(rng.choice(len(train_ids), size=n_support, replace=False))
    test_images = dataset.test.images if config.log_test else None
    ensure_ray(address)
    started = time.perf_counter()
    refs = [ray.put(a) for a in (train_ids, train_images, train_labels, support_index)]
    test_ref = ray.put(test_images) if test_images is not None else None
    pending = [
        _depth_of_trial.options(**ray_resources(device)).remote(
            store.storage, run_id, config.to_dict(), dataset.input_shape, dataset.num_classes, trial,
            *refs, test_ref, dataset.test.labels, k, max_dim, device)
        for trial in trials
    ]
    if show_progress:
        print(f"prediction depth: {len(trials)} trial(s), k={k}, {n_support:,} support examples, "
              f"{len(train_ids):,} train + {0 if test_images is None else len(test_images):,} test queries",
              flush=True)
    rows = []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        trial, per_split = ray.get(done[0])
        for split, (depth, settled, pred) in per_split.items():
            ids = train_ids if split == "train" else np.arange(len(pred))
            labels = train_labels if split == "train" else dataset.test.labels
            rows.append(pd.DataFrame({"split": split, "trial": trial, "example_id": ids, "label": labels,
                                      "depth": depth, "settled": settled, "pred": pred,
                                      "correct": pred == labels}))
        if show_progress:
            print(f"  trial {trial} probed ({len(trials) - len(pending)}/{len(trials)}) after "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    _, _, layer_names = probe_points(load_trial_model(store, run_id, config, dataset.input_shape,
                                                       dataset.num_classes, trials[0]))
    depth = pd.concat(rows, ignore_index=True).sort_values(["split", "trial", "example_id"], ignore_index=True)
    depth["n_layers"] = len(layer_names)
    summary = pd.concat([_summary(store, run_id, depth[depth["split"] == split], split)
                         for split in depth["split"].unique()], ignore_index=True)
    write_table(store, run_id, NAME, "depth", depth)
    write_table(store, run_id, NAME, "summary", summary)
    write_settings(store, run_id, NAME, {
        "k": k, "support_size": n_support, "trials": trials, "max_dim": max_dim, "seed": seed,
        "layers": layer_names, "n_layers": len(layer_names),
        "effective_depth": f"examples whose last probe disagrees with the network get depth {len(layer_names)} "
                           "(= the number of probed layers) and settled = False",
        "seconds": time.perf_counter() - started,
    })
    return summary


def _summary(store: RunStore, run_id: str, depth: pd.DataFrame, split: str) -> pd.DataFrame:
    """Per example: depth over the probed trials, joined with the run's statistics."""
    from raystats.client import OfflineClient

    grouped = depth.groupby("example_id")
    summary = pd.DataFrame({
        "label": grouped["label"].first(),
        "depth": grouped["depth"].mean(),
        "depth_median": grouped["depth"].median(),
        "settled_frac": grouped["settled"].mean(),
        "n_layers": grouped["n_layers"].first(),
        "accuracy": grouped["correct"].mean(),
    })
    last = last_step_rows(store, run_id, split).groupby("example_id")
    summary["easiness"] = last["loss"].mean()
    summary["consistency"] = last["correct"].mean()
    summary["confidence"] = last["p_true"].mean()
    dynamics = OfflineClient(store.storage).dynamics(run_id, split).set_index("example_id")
    summary["iteration_learned"] = dynamics["iteration_learned"].reindex(summary.index)
    summary = summary.reset_index()
    summary.insert(0, "split", split)
    return summary
