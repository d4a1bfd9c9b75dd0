"""Easiness forms on matrices small enough to check by hand."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from raystats.errors import ConfigError
from raystats.stats import correct_counts, count_easiness, loss_easiness, trial_counts
from raystats.stats import dynamics, easiness, matching, sets

T, F = True, False


def test_loss_easiness_is_the_mean_over_trials():
    loss = np.array([[1.0, 2.0, 0.5], [3.0, 0.0, 0.5]], dtype=np.float32)
    # (1+3)/2, (2+0)/2, (0.5+0.5)/2
    assert loss_easiness(loss).tolist() == [2.0, 1.0, 0.5]


def test_loss_easiness_skips_absent_cells_and_gives_nan_without_trials():
    loss = np.array([[1.0, 2.0, 0.5], [3.0, 0.0, 0.5]], dtype=np.float32)
    present = np.array([[T, T, F], [F, T, F]])
    # example 0: trial 0 only -> 1.0; example 1: (2+0)/2; example 2: nobody
    values = loss_easiness(loss, present)
    assert values[:2].tolist() == [1.0, 1.0]
    assert np.isnan(values[2])
    assert values.dtype == np.float64


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
                  elements=st.floats(0, 20, width=32)))
def test_all_present_equals_no_mask_bit_for_bit(loss):
    present = np.ones(loss.shape, dtype=bool)
    assert np.array_equal(loss_easiness(loss), loss_easiness(loss, present), equal_nan=True)


def test_count_easiness_normalises_by_the_largest_count():
    correct = np.array([[1, 0, 1, 1], [1, 0, 0, 1], [0, 0, 1, 1]], dtype=bool)
    # c = [2, 0, 2, 3]; e = c / 3
    assert correct_counts(correct).tolist() == [2, 0, 2, 3]
    np.testing.assert_array_equal(count_easiness(correct), [2 / 3, 0.0, 2 / 3, 1.0])


def test_count_easiness_is_zero_when_nothing_is_correct():
    assert count_easiness(np.zeros((3, 4), dtype=bool)).tolist() == [0.0] * 4


def test_count_easiness_ignores_absent_cells():
    correct = np.array([[T, T, T], [T, F, T]])
    present = np.array([[T, F, F], [T, T, F]])
    # c = [2, 0 (the True is absent), 0]; example 2 has no trial -> NaN
    values = count_easiness(correct, present)
    assert values[:2].tolist() == [1.0, 0.0]
    assert np.isnan(values[2])
    assert trial_counts(present).tolist() == [2, 1, 0]


def test_shapes_are_checked():
    with pytest.raises(ConfigError, match="shape"):
        loss_easiness(np.zeros(3))
    with pytest.raises(ConfigError, match="present"):
        loss_easiness(np.zeros((2, 3)), np.ones((3, 2), dtype=bool))


@pytest.mark.parametrize("module", [easiness, sets, matching, dynamics])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"np": np})
    assert result.failed == 0 and result.attempted > 0
