"""Easy and hard sets: size, tie-breaking by example_id, NaN, sharded merge."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raystats.errors import ConfigError
from raystats.stats import (
    easy_and_hard_sets,
    easy_set,
    extremes,
    hard_set,
    merge_extremes,
    set_size,
)


def test_set_size():
    assert set_size(60000, 0.1) == 6000
    assert set_size(1281167, 0.1) == 128117  # 128116.7
    assert set_size(10, 0.25) == 2  # round(2.5): halves go to even
    assert set_size(10, 0.35) == 4  # round(3.5)
    assert set_size(5, 0.1) == 1  # round(0.5) = 0, at least one
    assert set_size(0, 0.1) == 0


@pytest.mark.parametrize("frac", [0, 1, -0.1, 1.5, True, math.nan, "0.1", None])
def test_frac_outside_the_open_interval_is_refused_by_name(frac):
    with pytest.raises(ConfigError, match=f"frac={frac!r}".replace("(", r"\(")):
        easy_set(np.arange(10.0), frac)


def test_loss_form_easy_is_low_and_hard_is_high():
    values = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0])
    # K = 3: lowest 0.1 (id 1), 0.2 (id 5), 0.3 (id 3); highest 1.0 (9), 0.9 (2), 0.8 (6)
    assert easy_set(values, 0.3).tolist() == [1, 3, 5]
    assert hard_set(values, 0.3).tolist() == [2, 6, 9]
    assert easy_set(values, 0.3, kind="count").tolist() == [2, 6, 9]
    assert hard_set(values, 0.3, kind="count").tolist() == [1, 3, 5]


def test_ties_at_the_boundary_go_to_the_lower_id_in_both_sets():
    values = np.array([2.0, 1.0, 1.0, 1.0, 3.0, 0.0])
    # K = 3. easy: 0 (id 5), then two of the 1s (ids 1, 2, 3) -> 1, 2
    assert easy_set(values, 0.5).tolist() == [1, 2, 5]
    # hard: 3 (id 4), 2 (id 0), then one of the 1s -> id 1
    assert hard_set(values, 0.5).tolist() == [0, 1, 4]


def test_ties_use_the_given_example_ids():
    values = np.array([2.0, 1.0, 1.0, 1.0, 3.0, 0.0])
    ids = np.array([50, 10, 40, 20, 30, 60])
    # easy: 0 (id 60) + the 1s with the two lowest ids among 10, 40, 20 -> 10, 20
    assert easy_set(values, 0.5, example_ids=ids).tolist() == [10, 20, 60]
    # hard: 3 (id 30), 2 (id 50), the 1 with the lowest id -> 10
    assert hard_set(values, 0.5, example_ids=ids).tolist() == [10, 30, 50]


def test_nan_is_never_selected_and_does_not_count_in_n():
    values = np.array([np.nan, 0.2, np.nan, 0.1, 0.3])
    # 3 finite values, K = round(1.5) = 2
    assert easy_set(values, 0.5).tolist() == [1, 3]
    assert hard_set(values, 0.5).tolist() == [1, 4]
    assert easy_set(np.full(4, np.nan), 0.5).tolist() == []


def test_count_form_with_many_ties():
    values = np.array([1.0, 1.0, 0.5, 1.0, 0.0, 0.5, 1.0])
    # easy (high): four 1.0 at ids 0, 1, 3, 6 -> K = round(2.1) = 2 -> 0, 1
    assert easy_set(values, 0.3, kind="count").tolist() == [0, 1]
    # hard (low): 0.0 (id 4), then the 0.5 with the lower id (2)
    assert hard_set(values, 0.3, kind="count").tolist() == [2, 4]


def test_unknown_kind_is_refused():
    with pytest.raises(ConfigError, match="kind='mean'"):
        easy_set(np.arange(3.0), 0.5, kind="mean")


def _reference(values, ids, k, largest):
    """Full sort by (value, id) — the definition, at O(N log N)."""
    keep = ~np.isnan(values)
    values, ids = values[keep], ids[keep]
    order = np.lexsort((ids, -values if largest else values))[:k]
    return np.sort(ids[order])


values_strategy = st.lists(
    st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(-5, 5), st.just(math.nan)),
    min_size=0, max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(values_strategy, st.floats(0.01, 0.99), st.sampled_from(["loss", "count"]), st.randoms())
def test_sets_equal_a_full_sort_by_value_then_id(values, frac, kind, rnd):
    values = np.array(values, dtype=np.float64)
    ids = np.array(rnd.sample(range(1000), len(values)), dtype=np.int64)
    k = set_size(int((~np.isnan(values)).sum()), frac)
    low, high = _reference(values, ids, k, False), _reference(values, ids, k, True)
    easy, hard = (low, high) if kind == "loss" else (high, low)
    assert easy_set(values, frac, kind, ids).tolist() == easy.tolist()
    assert hard_set(values, frac, kind, ids).tolist() == hard.tolist()
    both = easy_and_hard_sets(values, frac, kind, ids)
    assert both[0].tolist() == easy.tolist() and both[1].tolist() == hard.tolist()


@settings(max_examples=200, deadline=None)
@given(values_strategy, st.integers(0, 20), st.booleans(), st.lists(st.integers(1, 59), max_size=4))
def test_merging_shard_extremes_equals_the_single_answer(values, k, largest, cuts):
    values = np.array(values, dtype=np.float64)
    ids = np.arange(len(values)) + 7
    bounds = [0, *sorted(c for c in set(cuts) if c < len(values)), len(values)]
    parts = [extremes(values[a:b], k, largest, ids[a:b]) for a, b in zip(bounds, bounds[1:])]
    merged_ids, merged_values = merge_extremes(parts, k, largest)
    single_ids, single_values = extremes(values, k, largest, ids)
    expected = _reference(values, ids, k, largest).tolist()
    assert merged_ids.tolist() == single_ids.tolist() == expected
    np.testing.assert_array_equal(merged_values, single_values)
    np.testing.assert_array_equal(single_values, values[single_ids - 7])


def test_extremes_returns_ids_ascending_with_aligned_values():
    ids, values = extremes(np.array([0.3, 0.1, 0.2, 0.1]), 3, largest=False)
    assert ids.tolist() == [1, 2, 3] and values.tolist() == [0.1, 0.2, 0.1]
    assert merge_extremes([], 3, largest=True)[0].tolist() == []
    with pytest.raises(ConfigError, match="k=-1"):
        extremes(np.arange(3.0), -1, largest=True)
