"""One trial's training loop and the vectorized ensemble, without Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raystats.config import RunConfig
from raystats.data import load_dataset
from raystats.train.ensemble import train_ensemble
from raystats.train.evaluate import per_example_metrics
from raystats.train.trial import Schedule, TrialData, train_trial

CPU = torch.device("cpu")


class Rows:
    """A log sink that keeps every row in memory, keyed by (trial, step, split)."""

    def __init__(self):
        self.rows = {}

    def __call__(self, trial, step, epoch, split, example_ids, labels, metrics):
        self.rows[(trial, step, split)] = {k: np.array(v) for k, v in metrics.items()} | {
            "example_id": np.array(example_ids), "epoch": epoch}


class MemoryCheckpoints:
    def __init__(self, saved=None):
        self.saved = dict(saved or {})
        self.history = []

    def save(self, owner, payload):
        self.saved[owner] = payload
        self.history.append((owner, payload))

    def load(self, owner):
        return self.saved.get(owner)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def small_config(**changes) -> RunConfig:
    values = dict(run_id="t", dataset="digits", arch="cnn", trials=3, epochs=1.0, log_every=0.5,
                  batch_size=64, log_test=True, augment=True, translate_pixels=1)
    return RunConfig(**(values | changes))


def test_schedule_counts_updates_and_logging_steps():
    schedule = Schedule.from_config(RunConfig(epochs=2, log_every=0.5, batch_size=10), n_train=100)
    assert (schedule.steps_per_epoch, schedule.total_steps) == (10, 20)
    assert schedule.log_steps == (5, 10, 15, 20)
    odd = Schedule.from_config(RunConfig(epochs=1, log_every=0.3, batch_size=10), n_train=95)
    assert odd.log_steps == (3, 6, 9, 10)  # the last update is always logged
    assert odd.epoch(5) == 0.5


def test_per_example_metrics_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 2])
    m = per_example_metrics(logits, labels)
    probs = torch.softmax(logits, 1)
    assert torch.allclose(m["loss"], -torch.log(probs[[0, 1], [0, 2]]))
    assert m["pred"].tolist() == [0, 1]
    assert torch.allclose(m["margin"], torch.tensor([2.0, -2.0]))
    assert torch.allclose(m["p_true"], probs[[0, 1], [0, 2]])
    one_hot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    assert torch.allclose(m["el2n"], (probs - one_hot).norm(dim=1))


def test_trial_is_reproducible_and_resumes_exactly(digits):
    config = small_config()
    data = TrialData.build(digits, config, CPU)
    first, checkpoints = Rows(), MemoryCheckpoints()
    train_trial(config, data, 1, CPU, first, checkpoints)
    again = Rows()
    train_trial(config, data, 1, CPU, again)
    schedule = Schedule.from_config(config, len(data.train_labels))
    last = schedule.log_steps[-1]
    for key in first.rows:
        assert np.array_equal(first.rows[key]["loss"], again.rows[key]["loss"])
    # resume from the first logging step's checkpoint: later rows are identical
    owner, payload = checkpoints.history[0]
    resumed = Rows()
    train_trial(config, data, 1, CPU, resumed, MemoryCheckpoints({owner: payload}))
    assert (1, schedule.log_steps[0], "train") not in resumed.rows
    assert np.array_equal(resumed.rows[(1, last, "train")]["loss"], first.rows[(1, last, "train")]["loss"])
    # another trial is a different model
    other = Rows()
    train_trial(config, data, 2, CPU, other)
    assert not np.array_equal(other.rows[(2, last, "train")]["loss"], first.rows[(1, last, "train")]["loss"])


def test_training_learns_digits(digits):
    config = small_config(epochs=6, augment=False)
    rows = Rows()
    train_trial(config, TrialData.build(digits, config, CPU), 0, CPU, rows)
    last = max(step for _, step, _ in rows.rows)
    test = rows.rows[(0, last, "test")]
    accuracy = np.mean(test["pred"] == digits.test.labels)
    assert accuracy > 0.9, accuracy


def test_subset_and_corrupted_labels(digits):
    subset = tuple(range(0, 1437, 3))
    config = small_config(subset=subset, corrupt_labels=((0, 5), (3, 1)), log_test=False)
    data = TrialData.build(digits, config, CPU)
    assert data.train_ids.tolist() == list(subset)
    assert data.train_labels[0].item() == 5 and data.train_labels[1].item() == 1
    rows = Rows()
    train_trial(config, data, 0, CPU, rows)
    assert all(split == "train" for _, _, split in rows.rows)
    assert np.array_equal(next(iter(rows.rows.values()))["example_id"], np.array(subset))


def _loop_and_ensemble(digits, config):
    data = TrialData.build(digits, config, CPU)
    loop = Rows()
    for trial in (0, 1, 2):
        train_trial(config, data, trial, CPU, loop)
    stacked = Rows()
    train_ensemble(config, data, [0, 1, 2], CPU, stacked)
    assert loop.rows.keys() == stacked.rows.keys()
    return loop.rows, stacked.rows


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_vectorized_ensemble_equals_the_loop(digits, optimizer):
    # 8 updates: long enough to exercise momentum, BN running stats and augmentation;
    # short enough that float summation-order noise has not been amplified by SGD.
    config = small_config(optimizer=optimizer, epochs=8 / 23, log_every=4 / 23)
    loop, stacked = _loop_and_ensemble(digits, config)
    for key, expected in loop.items():
        got = stacked[key]
        for column in ("loss", "margin", "p_true", "el2n"):
            np.testing.assert_allclose(got[column], expected[column], rtol=1e-4, atol=1e-5)
        assert np.array_equal(got["pred"], expected["pred"]) or np.mean(got["pred"] == expected["pred"]) > 0.999


def test_vectorized_ensemble_gives_the_loops_easy_set_after_an_epoch(digits):
    from raystats.stats import easy_set, loss_easiness, matching_rate

    loop, stacked = _loop_and_ensemble(digits, small_config(epochs=1.0, log_every=1.0))
    last = max(step for _, step, _ in loop)
    sets = [easy_set(loss_easiness(np.stack([rows[(t, last, "train")]["loss"] for t in (0, 1, 2)])), 0.1)
            for rows in (loop, stacked)]
    assert matching_rate(*sets) > 0.95


def test_ensemble_resumes_exactly(digits):
    config = small_config(augment=False)
    data = TrialData.build(digits, config, CPU)
    full, checkpoints = Rows(), MemoryCheckpoints()
    train_ensemble(config, data, [0, 2], CPU, full, checkpoints)
    owner, payload = checkpoints.history[0]
    resumed = Rows()
    train_ensemble(config, data, [0, 2], CPU, resumed, MemoryCheckpoints({owner: payload}))
    last = max(step for _, step, _ in full.rows)
    for trial in (0, 2):
        assert np.array_equal(resumed.rows[(trial, last, "train")]["loss"], full.rows[(trial, last, "train")]["loss"])
