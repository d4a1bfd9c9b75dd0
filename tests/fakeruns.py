"""A small, real run store built without a cluster: run.json plus Parquet logs.

The logs are fabricated but consistent: each example has a difficulty (its distance
from its class's mean image, as a rank in [0, 1]); at every step each trial draws
random logits and adds to the label's logit a strength that grows with training and
shrinks with difficulty. Loss, prediction, margin, p_true and el2n are then computed
from those logits exactly as the evaluation does, so every column agrees with the others
and easy examples are the prototypical ones, as in the studies.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from raystats.config import RunConfig
from raystats.data import load_dataset
from raystats.schema import make_log_table
from raystats.store import RunStore

BATCH_SIZE = 64


def difficulty(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank in [0, 1] of each image's distance from the mean image of its class."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    distance = np.empty(len(images))
    for label in np.unique(labels):
        rows = labels == label
        distance[rows] = np.linalg.norm(flat[rows] - flat[rows].mean(axis=0), axis=1)
    return np.argsort(np.argsort(distance)) / max(1, len(images) - 1)


def fake_metrics(labels: np.ndarray, hardness: np.ndarray, progress: float, num_classes: int,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-example metrics of one trial at one step, from fabricated logits.

    ``progress`` in (0, 1] is the share of training done; ``hardness`` in [0, 1].
    """
    n = len(labels)
    logits = rng.normal(0.0, 1.0, (n, num_classes))
    strength = 7.0 * progress * (1.3 - hardness) - 1.0 + rng.normal(0.0, 0.8, n)
    logits[np.arange(n), labels] += strength
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    p_true = probabilities[np.arange(n), labels]
    others = logits.copy()
    others[np.arange(n), labels] = -np.inf
    one_hot = np.eye(num_classes)[labels]
    return {
        "pred": logits.argmax(axis=1),
        "loss": -np.log(np.maximum(p_true, 1e-30)),
        "margin": logits[np.arange(n), labels] - others.max(axis=1),
        "p_true": p_true,
        "el2n": np.linalg.norm(probabilities - one_hot, axis=1),
    }


def run_info(config: RunConfig, dataset) -> dict:
    """run.json of a fabricated run, shaped like the one the easiness job writes."""
    steps_per_epoch = math.ceil(len(dataset.train.labels) / config.batch_size)
    epochs = int(config.epochs)
    return {
        "config": config.to_dict(),
        "dataset": {
            "name": dataset.name, "fingerprint": dataset.fingerprint,
            "n_train": int(len(dataset.train.labels)), "n_test": int(len(dataset.test.labels)),
            "classes": list(dataset.classes), "input_shape": list(dataset.input_shape),
        },
        "schedule": {
            "steps_per_epoch": steps_per_epoch, "total_steps": steps_per_epoch * epochs,
            "log_steps": [steps_per_epoch * (e + 1) for e in range(epochs)],
        },
        "status": "finished",
    }


def write_fake_run(storage: str, run_id: str, dataset=None, *, arch: str = "cnn", trials: int = 3,
                   epochs: int = 3, seed: int = 0) -> dict:
    """Write a finished run of ``trials`` × ``epochs`` logging steps over digits (train rows only).

    Returns the stored run.json.
    """
    dataset = dataset if dataset is not None else load_dataset("digits")
    config = RunConfig(run_id=run_id, dataset=dataset.name, arch=arch, trials=trials,
                       epochs=float(epochs), log_every=1.0, batch_size=BATCH_SIZE, log_test=False, seed=seed)
    store = RunStore(storage)
    info = store.create_run(run_id, run_info(config, dataset))
    labels = np.asarray(dataset.train.labels)
    hardness = difficulty(dataset.train.images, labels)
    example_ids = np.arange(len(labels))
    log_steps = info["schedule"]["log_steps"]
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial])
        for step in log_steps:
            metrics = fake_metrics(labels, hardness, step / log_steps[-1], dataset.num_classes, rng)
            table = make_log_table(example_id=example_ids, trial=trial, step=step,
                                   epoch=step / info["schedule"]["steps_per_epoch"], split="train",
                                   label=labels, **metrics)
            store.write_log(run_id, table, trial, step, part=0)
    return info


@pytest.fixture(scope="session")
def fake_store(tmp_path_factory) -> str:
    """A storage folder with two finished digits runs: digits-cnn and digits-mlp3."""
    storage = str(tmp_path_factory.mktemp("raystats-runs"))
    dataset = load_dataset("digits")
    write_fake_run(storage, "digits-cnn", dataset, arch="cnn", seed=0)
    write_fake_run(storage, "digits-mlp3", dataset, arch="mlp3", seed=1)
    return storage
