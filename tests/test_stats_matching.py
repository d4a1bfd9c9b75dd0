"""Matching rate |A ∩ B| / max(|A|, |B|), its chance level, self-agreement and curves."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raystats.errors import ConfigError
from raystats.stats import chance_level, matching_curve, matching_rate, self_agreement, set_size


def test_matching_rate_by_hand():
    assert matching_rate(np.array([1, 2, 3, 4]), np.array([3, 4, 5])) == 2 / 4
    assert matching_rate([0, 1], list(range(8))) == 2 / 8
    assert matching_rate([5, 6], [6, 5]) == 1.0
    assert matching_rate([1, 2], [3, 4]) == 0.0


def test_empty_sets_match_nothing():
    assert matching_rate([], []) == 0.0
    assert matching_rate([1, 2], np.array([], dtype=np.int64)) == 0.0


def test_repeated_ids_count_once():
    assert matching_rate([1, 1, 2], [1, 2]) == 1.0


def test_unbounded_and_negative_ids_take_the_sorting_path():
    assert matching_rate([10**12, 5], [5]) == 0.5
    assert matching_rate([-3, 4, 9], [4, -3]) == 2 / 3


def test_non_integer_ids_are_refused():
    with pytest.raises(ConfigError, match="integer"):
        matching_rate(np.array([0.5, 1.0]), np.array([1, 2]))


id_sets = st.lists(st.integers(0, 200), max_size=40)


@settings(max_examples=200, deadline=None)
@given(id_sets, id_sets, st.sampled_from([0, 10**10, -500]))
def test_matching_rate_properties(a, b, shift):
    a, b = np.array(a, dtype=np.int64) + shift, np.array(b, dtype=np.int64) + shift
    rate = matching_rate(a, b)
    assert rate == matching_rate(b, a)
    assert 0.0 <= rate <= 1.0
    sa, sb = set(a.tolist()), set(b.tolist())
    expected = len(sa & sb) / max(len(sa), len(sb)) if sa or sb else 0.0
    assert rate == expected
    if len(a):
        assert matching_rate(a, a) == 1.0


@pytest.mark.parametrize("frac", [0.1, 0.25])
def test_random_sets_match_at_chance(frac):
    rng = np.random.default_rng(7)
    n, draws = 1000, 2000
    k = set_size(n, frac)
    rates = [
        matching_rate(rng.choice(n, k, replace=False), rng.choice(n, k, replace=False))
        for _ in range(draws)
    ]
    # E[rate] = K/N; one rate's std is ~0.03, so the mean of 2000 is within ~0.001.
    assert chance_level(frac, n) == k / n
    assert abs(np.mean(rates) - chance_level(frac)) < 0.004


def test_chance_level():
    assert chance_level(0.1) == 0.1
    assert chance_level(0.1, 5) == 1 / 5  # K = 1 of 5
    with pytest.raises(ConfigError, match="frac=2"):
        chance_level(2)


def test_self_agreement_compares_two_halves_of_the_trials():
    # M = 3: trials 0, 1 against trial 2. N = 4, frac 0.25 -> K = 1.
    loss = np.array([[0, 1, 2, 3], [0, 1, 2, 3], [1, 0, 2, 3]], dtype=np.float32)
    # half A mean [0, 1, 2, 3]: easy {0}, hard {3}; half B: easy {1}, hard {3}
    assert self_agreement(loss, 0.25, which="easy") == 0.0
    assert self_agreement(loss, 0.25, which="hard") == 1.0
    correct = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 1]], dtype=bool)
    # half A: c = [2, 1, 0, 0] -> easy {0}, hard {2}; half B: c = [1, 1, 0, 1] -> easy {0}, hard {2}
    assert self_agreement(correct, 0.25, which="easy", kind="count") == 1.0
    assert self_agreement(correct, 0.25, which="hard", kind="count") == 1.0


def test_self_agreement_needs_two_trials():
    with pytest.raises(ConfigError, match="at least 2 trials"):
        self_agreement(np.zeros((1, 5)), 0.2)
    with pytest.raises(ConfigError, match="which='medium'"):
        self_agreement(np.zeros((2, 5)), 0.2, which="medium")


def test_matching_curve_over_common_steps():
    a = {0: np.array([0.0, 1, 2, 3]), 10: np.array([0.0, 1, 2, 3]), 20: np.array([3.0, 2, 1, 0])}
    b = {10: np.array([0.0, 5, 6, 7]), 20: np.array([0.0, 5, 6, 7]), 30: np.array([0.0, 1, 2, 3])}
    # K = 2 of 4. step 10: A easy {0, 1}, B easy {0, 1} -> 1; step 20: A {2, 3}, B {0, 1} -> 0
    steps, rates = matching_curve(a, b, 0.5)
    assert steps.tolist() == [10, 20] and rates.tolist() == [1.0, 0.0]
    # hard sets: step 10: {2, 3} and {2, 3} -> 1; step 20: A {0, 1}, B {2, 3} -> 0
    assert matching_curve(a, b, 0.5, which="hard")[1].tolist() == [1.0, 0.0]
