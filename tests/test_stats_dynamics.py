"""Training dynamics on sequences written out by hand."""

import numpy as np
import pytest

from raystats.errors import ConfigError
from raystats.stats import (
    area_under_margin,
    data_map,
    el2n_score,
    forgetting_events,
    iteration_learned,
)

T, F = True, False


def column(*values, dtype=bool):
    """One trial, one example: a (T, 1, 1) array."""
    return np.array(values, dtype=dtype)[:, None, None]


def test_one_forgetting_event_and_learned_at_index_3():
    correct = column(0, 1, 0, 1, 1)
    steps = [0, 10, 20, 30, 40]
    assert forgetting_events(correct).per_trial.tolist() == [[1]]
    assert iteration_learned(correct, steps).per_trial.tolist() == [[30.0]]  # steps[3]


def test_trials_and_examples():
    # (T=4, M=2, N=3), written per trial and example as sequences over steps
    sequences = {
        (0, 0): [1, 1, 1, 1], (0, 1): [1, 0, 1, 0], (0, 2): [0, 0, 0, 0],
        (1, 0): [0, 1, 1, 1], (1, 1): [0, 0, 1, 1], (1, 2): [0, 0, 0, 0],
    }
    correct = np.zeros((4, 2, 3), dtype=bool)
    for (m, i), seq in sequences.items():
        correct[:, m, i] = seq
    steps = np.array([5, 10, 15, 20])

    learned = iteration_learned(correct, steps)
    np.testing.assert_array_equal(learned.per_trial, [[5, np.nan, np.nan], [10, 15, np.nan]])
    np.testing.assert_array_equal(learned.mean, [7.5, 15, np.nan])  # over trials that learned

    forgetting = forgetting_events(correct)
    assert forgetting.per_trial.tolist() == [[0, 2, 0], [0, 0, 0]]
    assert forgetting.mean.tolist() == [0.0, 1.0, 0.0]
    assert forgetting.never_learned.tolist() == [F, F, T]
    assert forgetting.never_learned_per_trial.tolist() == [[F, F, T], [F, F, T]]


def test_absent_steps_are_skipped():
    # logged: 1, (absent), 0, 1 -> one event between the 1st and 3rd logged steps
    correct = column(1, 1, 0, 1)
    present = column(T, F, T, T)
    assert forgetting_events(correct, present).per_trial.tolist() == [[1]]
    # logged: 0, 1, (absent 0): the last *logged* step is correct -> learned at steps[1]
    correct, present = column(0, 1, 0), column(T, T, F)
    assert iteration_learned(correct, [1, 2, 3], present).per_trial.tolist() == [[2.0]]
    # nothing logged: NaN, no events, mean NaN
    learned = iteration_learned(column(1, 1), [1, 2], column(F, F))
    assert np.isnan(learned.mean[0])
    assert np.isnan(forgetting_events(column(1, 1), column(F, F)).mean[0])


def test_data_map_by_hand():
    # trial 0: p_true 0.2 0.4 0.6 0.8 -> mean 0.5, var (0.09+0.01+0.01+0.09)/4 = 0.05
    # trial 1: p_true 0.5 x4 -> mean 0.5, std 0; correct 0 0 1 1 and 1 1 1 1
    p_true = np.array([[0.2, 0.5], [0.4, 0.5], [0.6, 0.5], [0.8, 0.5]])[:, :, None]
    correct = np.array([[0, 1], [0, 1], [1, 1], [1, 1]], dtype=bool)[:, :, None]
    result = data_map(p_true, correct)
    np.testing.assert_allclose(result.confidence, [0.5])
    np.testing.assert_allclose(result.variability, [np.sqrt(0.05) / 2])
    np.testing.assert_allclose(result.correctness, [0.75])


def test_area_under_margin_by_hand():
    margin = np.array([[1.0, 2.0], [-1.0, 2.0], [3.0, 2.0]])[:, :, None]
    assert area_under_margin(margin).tolist() == [1.5]  # (1 + 2) / 2
    present = np.array([[T, T], [F, T], [T, T]])[:, :, None]
    assert area_under_margin(margin, present).tolist() == [2.0]  # ((1+3)/2 + 2) / 2


def test_el2n_by_hand():
    el2n = np.array([[0.2, 1.0], [0.4, 1.2]])
    np.testing.assert_allclose(el2n_score(el2n), [0.3, 1.1])
    present = np.array([[T, F], [T, F]])
    result = el2n_score(el2n, present)
    assert result[0] == pytest.approx(0.3) and np.isnan(result[1])


def test_shapes_and_steps_are_checked():
    with pytest.raises(ConfigError, match="steps, trials, examples"):
        forgetting_events(np.zeros((3, 4), dtype=bool))
    with pytest.raises(ConfigError, match="ascending"):
        iteration_learned(column(1, 1), [2, 1])
