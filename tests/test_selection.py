"""Selection tested as statistics: exact sizes, uniformity, orientation, Beta means.

Every random test uses a fixed seed, so it is deterministic; its tolerance is still
set from the number of draws (a few standard errors, or a chi-square p-value), so a
different seed would pass too.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from raystats.errors import ConfigError
from raystats.stats.selection import (
    BETA_PARAMETERS,
    STRATEGIES,
    compression_gap,
    corrupt_labels,
    easiness_position,
    kept_size,
    removed_size,
    select,
    select_by_beta,
    select_by_normalized_easiness,
    stepwise_plan,
    stepwise_step,
)

ONE_SHOT = tuple(s for s in STRATEGIES if s != "stepwise")


def exponential_losses(n: int, seed: int = 0) -> np.ndarray:
    """Distinct, loss-like values (mean cross-entropies are positive and right-skewed)."""
    return np.random.default_rng(seed).exponential(scale=0.7, size=n)


def mean_removed_position(strategy, easiness, ratio, draws, seed, kind="loss"):
    position = easiness_position(easiness, kind)
    rng = np.random.default_rng(seed)
    means = [position[select(strategy, easiness, ratio, rng, kind)[0]].mean() for _ in range(draws)]
    return float(np.mean(means)), float(np.std(means, ddof=1) / np.sqrt(draws))


# ------------------------------------------------------------------------------ sizes


def test_kept_size_is_the_rounded_formula():
    assert kept_size(10, 0.3) == 7
    assert kept_size(1797, 0.3) == round(0.7 * 1797) == 1258
    assert kept_size(0, 0.5) == 0
    assert kept_size(7, 0.0) == 7
    assert removed_size(10, 0.3) == 3
    assert removed_size(1797, 0.9) == 1797 - round(0.1 * 1797)


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1, float("nan"), float("inf"), True, "0.3", None])
def test_ratio_outside_unit_interval_is_refused_naming_the_value(ratio):
    with pytest.raises(ConfigError, match=r"\[0, 1\)") as info:
        kept_size(10, ratio)
    assert repr(ratio) in str(info.value)
    with pytest.raises(ConfigError):
        select("random", np.zeros(10), ratio, rng=0)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 300),
    ratio=st.floats(0.0, 1.0, exclude_max=True),
    strategy=st.sampled_from(ONE_SHOT),
    kind=st.sampled_from(["loss", "count"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_strategy_keeps_exactly_round_one_minus_ratio_times_n(n, ratio, strategy, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "loss":
        easiness = rng.exponential(size=n)
    else:  # count form: few distinct values, many ties, zeros and ones
        easiness = rng.integers(0, 4, size=n) / 3.0
    example_ids = rng.permutation(10 * n + 1)[:n]
    removed, kept = select(strategy, easiness, ratio, rng, kind, example_ids)
    assert len(kept) == round((1 - ratio) * n)
    assert len(removed) == n - len(kept)
    assert np.all(np.diff(removed) > 0) and np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([removed, kept])), np.sort(example_ids))


@pytest.mark.parametrize("strategy", ONE_SHOT)
def test_ratio_zero_removes_nothing(strategy):
    removed, kept = select(strategy, exponential_losses(50), 0.0, rng=3)
    assert removed.size == 0
    np.testing.assert_array_equal(kept, np.arange(50))


# ---------------------------------------------------------------- random is uniform


def test_random_removes_each_example_equally_often():
    n, ratio, draws = 40, 0.25, 4000
    k = removed_size(n, ratio)
    losses = exponential_losses(n)
    rng = np.random.default_rng(11)
    counts = np.zeros(n)
    for _ in range(draws):
        counts[select("random", losses, ratio, rng)[0]] += 1
    expected, p = draws * k / n, k / n
    # Each count is Binomial(draws, k/n); the without-replacement covariance makes
    # sum (c - E)^2 / (E (1 - p)) approximately chi-square with n - 1 dof.
    statistic = np.sum((counts - expected) ** 2) / (expected * (1 - p))
    assert scipy_stats.chi2.sf(statistic, n - 1) > 1e-3


@pytest.mark.parametrize("strategy", ["random", "beta_random"])
def test_random_strategies_remove_at_mean_position_one_half(strategy):
    mean, standard_error = mean_removed_position(strategy, exponential_losses(500), 0.1, 300, seed=5)
    assert abs(mean - 0.5) < 4 * standard_error + 1e-3


# -------------------------------------------------------------------- orientation


@pytest.mark.parametrize("kind", ["loss", "count"])
@pytest.mark.parametrize("family", [("easy", "random", "hard"), ("beta_easy", "beta_random", "beta_hard")])
def test_easy_removes_easier_examples_than_random_than_hard(kind, family):
    rng = np.random.default_rng(2)
    if kind == "loss":
        easiness = exponential_losses(400, seed=2)
    else:
        easiness = rng.integers(0, 11, size=400) / 10.0
    # In the loss form a larger value is harder, in the count form easier.
    hardness = easiness if kind == "loss" else -easiness
    means = []
    for strategy in family:
        removed = [select(strategy, easiness, 0.3, rng, kind)[0] for _ in range(100)]
        means.append(np.mean([hardness[ids].mean() for ids in removed]))
    assert means[0] < means[1] < means[2]


def test_first_removal_has_probability_normalized_easiness():
    """One removal from four: frequencies match p_i = s_i / sum_j s_j (chi-square)."""
    losses = np.array([0.05, 0.4, 1.0, 2.5])
    draws = 20000
    for strategy, score in [("easy", np.exp(-losses)), ("hard", 1 - np.exp(-losses))]:
        rng = np.random.default_rng(7)
        counts = np.zeros(4)
        for _ in range(draws):
            counts[select_by_normalized_easiness(losses, 0.25, strategy, rng)[0]] += 1
        expected = draws * score / score.sum()
        assert scipy_stats.chisquare(counts, expected).pvalue > 1e-3


def test_two_removals_follow_successive_sampling():
    """Gumbel-top-k against the closed form P{i, j} = p_i p_j / (1 - p_i) + p_j p_i / (1 - p_j)."""
    easiness = np.array([0.1, 0.3, 0.6, 1.0])  # count form, easy: s = e
    p = easiness / easiness.sum()
    pairs = list(itertools.combinations(range(4), 2))
    exact = np.array([p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j]) for i, j in pairs])
    assert np.isclose(exact.sum(), 1.0)
    rng, draws = np.random.default_rng(8), 20000
    counts = dict.fromkeys(pairs, 0)
    for _ in range(draws):
        removed, _ = select("easy", easiness, 0.5, rng, kind="count")
        counts[tuple(removed)] += 1
    observed = np.array([counts[pair] for pair in pairs])
    assert scipy_stats.chisquare(observed, draws * exact).pvalue > 1e-3


def test_zero_weights_are_taken_only_after_every_positive_one():
    # numpy's choice(replace=False, p=...) raises here: 3 nonzero weights, 5 draws.
    easiness = np.array([0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    zero_counts = np.zeros(10)
    for _ in range(600):
        removed, _ = select("easy", easiness, 0.5, rng, kind="count")
        assert {1, 3, 6} <= set(removed.tolist())
        zero_counts[removed] += 1
    zeros = easiness == 0
    # The two remaining draws fall uniformly on the seven zero-weight examples.
    assert scipy_stats.chisquare(zero_counts[zeros]).pvalue > 1e-3


def test_hard_never_removes_a_zero_loss_example_while_others_remain():
    losses = np.array([0.0, 0.0, 0.3, 0.8, 2.0, 0.0])
    for seed in range(50):
        removed, _ = select("hard", losses, 0.5, seed)
        np.testing.assert_array_equal(removed, [2, 3, 4])


# ------------------------------------------------------------------------- Beta means


@pytest.mark.parametrize("strategy", ["beta_easy", "beta_hard", "beta_random"])
def test_beta_removes_at_the_distribution_mean_for_small_ratios(strategy):
    a, b = BETA_PARAMETERS[strategy]
    mean, standard_error = mean_removed_position(strategy, exponential_losses(1000), 0.05, 300, seed=13)
    # At ratio 0.05 without replacement shifts the mean toward 1/2 by ~0.006 for
    # Beta(3, 1) (docstring of select_by_beta); the standard error is ~0.0015.
    assert abs(mean - a / (a + b)) < 0.015
    assert standard_error < 0.003


@pytest.mark.parametrize("a, b", [(3.0, 1.0), (1.0, 3.0), (2.0, 5.0)])
def test_single_beta_removal_has_exactly_the_discretized_beta_mean(a, b):
    n, draws = 100, 6000
    losses = exponential_losses(n, seed=4)
    position = easiness_position(losses)
    weight = position ** (a - 1) * (1 - position) ** (b - 1)
    exact = np.sum(position * weight) / np.sum(weight)
    assert abs(exact - a / (a + b)) < 1e-3  # midpoint rule
    rng = np.random.default_rng(21)
    drawn = np.array([position[select_by_beta(losses, 0.01, a, b, rng)[0]][0] for _ in range(draws)])
    variance = np.sum((position - exact) ** 2 * weight) / np.sum(weight)
    assert abs(drawn.mean() - exact) < 4 * np.sqrt(variance / draws)


def test_beta_matches_draw_and_redraw_on_collision():
    """Second method: x ~ Beta(a, b), remove the example in x's 1/N bin, redraw if taken."""
    n, ratio, draws, a, b = 200, 0.3, 300, 3.0, 1.0
    k = removed_size(n, ratio)
    losses = exponential_losses(n, seed=9)
    position = easiness_position(losses)
    rng = np.random.default_rng(17)
    ours = [position[select_by_beta(losses, ratio, a, b, rng)[0]].mean() for _ in range(draws)]
    reference = []
    for _ in range(draws):
        taken: set[int] = set()
        while len(taken) < k:
            taken.add(min(int(rng.beta(a, b) * n), n - 1))
        reference.append((np.array(sorted(taken)) + 0.5).mean() / n)
    standard_error = np.sqrt(np.var(ours, ddof=1) / draws + np.var(reference, ddof=1) / draws)
    assert abs(np.mean(ours) - np.mean(reference)) < 4 * standard_error
    assert 0.70 < np.mean(ours) < 0.74  # pulled from 0.75 toward 0.5 at ratio 0.3


def test_beta_gives_tied_examples_the_same_chance():
    # Count form: ids 0..49 all tie at e = 1. Breaking ties by id would make Beta(3, 1)
    # favour low ids; with shared positions each tied example is removed equally often.
    easiness = np.concatenate([np.ones(50), np.linspace(0, 0.9, 50)])
    rng = np.random.default_rng(31)
    counts = np.zeros(100)
    for _ in range(2000):
        counts[select("beta_easy", easiness, 0.1, rng, kind="count")[0]] += 1
    assert scipy_stats.chisquare(counts[:50]).pvalue > 1e-3
    assert counts[:50].mean() > 3 * counts[50:].mean()


# ------------------------------------------------------------------ positions, ids


def test_easiness_position_by_hand():
    np.testing.assert_allclose(easiness_position([0.3, 0.1, 0.2], "loss"), [0.5 / 3, 2.5 / 3, 1.5 / 3])
    np.testing.assert_allclose(
        easiness_position([1.0, 1.0, 0.0, 0.5], "count"), [3 / 4, 3 / 4, 0.5 / 4, 1.5 / 4]
    )


@given(st.lists(st.integers(0, 5), min_size=1, max_size=60))
def test_easiness_positions_average_one_half_and_reverse_with_orientation(values):
    count = np.array(values) / 5.0
    position = easiness_position(count, "count")
    assert np.isclose(position.mean(), 0.5)
    assert np.all((position > 0) & (position < 1))
    # The loss form orders the other way: the same numbers read as losses mirror.
    np.testing.assert_allclose(easiness_position(count, "loss"), 1 - position)


def test_example_ids_map_positions_to_ids():
    losses = exponential_losses(30)
    ids = np.random.default_rng(1).permutation(np.arange(1000, 1030)).astype(np.int32)
    for strategy in ONE_SHOT:
        removed_positions, _ = select(strategy, losses, 0.4, 5)
        removed, kept = select(strategy, losses, 0.4, 5, example_ids=ids)
        np.testing.assert_array_equal(removed, np.sort(ids[removed_positions]))
        assert set(kept.tolist()) == set(ids.tolist()) - set(removed.tolist())


@pytest.mark.parametrize("strategy", ONE_SHOT)
def test_same_seed_same_selection(strategy):
    losses = exponential_losses(200)
    first = select(strategy, losses, 0.3, 42)
    second = select(strategy, losses, 0.3, np.random.default_rng(42))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], select(strategy, losses, 0.3, 43)[0])


# ------------------------------------------------------------------------ bad input


def test_unknown_strategy_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match="'easiest'") as info:
        select("easiest", np.zeros(5), 0.2, 0)
    for name in STRATEGIES:
        assert name in str(info.value)


def test_stepwise_is_not_one_shot():
    with pytest.raises(ConfigError, match="stepwise_plan"):
        select("stepwise", np.zeros(5), 0.2, 0)


@pytest.mark.parametrize(
    "easiness, kind, example_ids, match",
    [
        ([0.1, float("nan")], "loss", None, "NaN"),
        ([0.1, -0.5], "loss", None, ">= 0"),
        ([0.1, 1.5], "count", None, r"\[0, 1\]"),
        ([[0.1, 0.2]], "loss", None, "1-d"),
        ([0.1, 0.2], "margin", None, "'margin'"),
        ([0.1, 0.2], "loss", [1], "one id per value"),
        ([0.1, 0.2], "loss", [3, 3], "repeated"),
    ],
)
def test_bad_easiness_is_refused(easiness, kind, example_ids, match):
    with pytest.raises(ConfigError, match=match):
        select("easy", easiness, 0.5, 0, kind, example_ids)


def test_rng_must_be_given():
    with pytest.raises(ConfigError, match="reproducible"):
        select("random", np.zeros(5), 0.2, None)


@pytest.mark.parametrize("a, b", [(0.0, 1.0), (1.0, -2.0), (float("inf"), 1.0)])
def test_beta_parameters_must_be_positive(a, b):
    with pytest.raises(ConfigError, match="Beta parameter"):
        select_by_beta(np.zeros(5), 0.2, a, b, 0)


# ------------------------------------------------------------------------- stepwise


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 5000), ratio=st.floats(0.0, 1.0, exclude_max=True))
def test_stepwise_plan_removes_a_tenth_of_what_remains_and_ends_at_the_target(n, ratio):
    plan = stepwise_plan(n, ratio)
    target = kept_size(n, ratio)
    if target == n:
        assert plan == []
        return
    assert plan[-1] == target
    previous = [n] + plan[:-1]
    for before, after in zip(previous, plan):
        assert after < before
        if after != target:  # a full step: 10% of the remaining, at least one example
            assert after == min(before - 1, round(0.9 * before))


def test_stepwise_plan_by_hand():
    assert stepwise_plan(1000, 0.3) == [900, 810, 729, 700]
    assert stepwise_plan(1000, 0.1) == [900]
    assert stepwise_plan(1000, 0.0) == []
    assert stepwise_plan(5, 0.5) == [4, 3, 2]
    with pytest.raises(ConfigError, match="step_frac"):
        stepwise_plan(100, 0.5, step_frac=1.0)


def test_stepwise_steps_follow_the_plan_and_remove_mostly_easy_examples():
    n = 500
    losses = exponential_losses(n, seed=6)
    rng = np.random.default_rng(6)
    remaining, all_removed = np.arange(n), []
    for size in stepwise_plan(n, 0.5):
        # A real run retrains here; reusing the original losses keeps the test pure.
        removed, kept = stepwise_step(losses[remaining], remaining, size, rng, "loss")
        assert len(kept) == size and set(removed) | set(kept) == set(remaining)
        all_removed.append(removed)
        remaining = kept
    removed_losses = losses[np.concatenate(all_removed)]
    assert removed_losses.mean() < losses[remaining].mean()
    assert len(remaining) == kept_size(n, 0.5)
    with pytest.raises(ConfigError, match="next_kept_size"):
        stepwise_step(losses[:10], np.arange(10), 11, rng)


# ------------------------------------------------------------------ corrupted labels


def test_corrupt_labels_never_keeps_the_true_label_and_is_uniform_over_the_others():
    labels = np.full(5000, 3, dtype=np.int16)
    labels[:1000] = np.arange(1000) % 5
    ids = np.arange(1000, 5000)
    original = labels.copy()
    new_labels, changes = corrupt_labels(labels, ids, num_classes=5, rng=0)
    np.testing.assert_array_equal(labels, original)  # input untouched
    assert new_labels.dtype == labels.dtype
    np.testing.assert_array_equal(new_labels[:1000], labels[:1000])
    assert np.all(new_labels[ids] != 3)
    counts = np.bincount(new_labels[ids], minlength=5)
    assert counts[3] == 0
    assert scipy_stats.chisquare(counts[[0, 1, 2, 4]]).pvalue > 1e-3
    assert changes == [(int(i), int(new_labels[i])) for i in ids]


def test_corrupt_labels_changes_every_label_for_two_classes():
    labels = np.array([0, 1, 1, 0])
    new_labels, changes = corrupt_labels(labels, [3, 0, 1], 2, np.random.default_rng(0))
    np.testing.assert_array_equal(new_labels, [1, 0, 1, 1])
    assert changes == [(0, 1), (1, 0), (3, 1)]


@pytest.mark.parametrize(
    "labels, ids, num_classes, match",
    [
        ([0, 1], [0], 1, "at least 2"),
        ([0, 5], [0], 3, r"\[0, 3\)"),
        ([0, 1], [2], 2, "example ids"),
        ([0, 1], [1, 1], 2, "repeated"),
    ],
)
def test_corrupt_labels_refuses_bad_input(labels, ids, num_classes, match):
    with pytest.raises(ConfigError, match=match):
        corrupt_labels(np.array(labels), np.array(ids), num_classes, 0)


# ---------------------------------------------------------------------- compression


def test_compression_gap_by_hand():
    sizes = [250, 500, 750, 1000]
    gap = compression_gap(sizes, [0.80, 0.90, 0.93, 0.95], sizes, [0.70, 0.85, 0.92, 0.95], 500)
    assert gap.easiness_accuracy == pytest.approx(0.90)
    assert gap.random_accuracy == pytest.approx(0.85)
    assert gap.accuracy_gap == pytest.approx(0.05)
    # Random reaches 0.90 between 500 (0.85) and 750 (0.92): 500 + 0.05 / 0.07 * 250.
    assert gap.matching_random_size == pytest.approx(500 + 250 * 5 / 7)
    assert gap.extra_random_examples == pytest.approx(250 * 5 / 7)


def test_compression_gap_averages_seeds_and_interpolates_the_target():
    gap = compression_gap(
        [100, 100, 200, 200], [0.6, 0.8, 0.8, 1.0],  # means 0.7 and 0.9
        [100, 200, 300], [0.5, 0.7, 0.9],
        150,
    )
    assert gap.easiness_accuracy == pytest.approx(0.8)
    assert gap.random_accuracy == pytest.approx(0.6)
    assert gap.matching_random_size == pytest.approx(250)
    assert gap.extra_random_examples == pytest.approx(100)


def test_compression_gap_takes_the_first_crossing_and_nan_when_never_matched():
    noisy = compression_gap([100, 400], [0.9, 0.95], [100, 200, 300, 400], [0.8, 0.9, 0.85, 0.95], 100)
    assert noisy.matching_random_size == pytest.approx(200)
    never = compression_gap([100, 200], [0.99, 0.995], [100, 200], [0.8, 0.9], 100)
    assert np.isnan(never.matching_random_size) and np.isnan(never.extra_random_examples)
    already = compression_gap([100, 200], [0.7, 0.8], [50, 200], [0.75, 0.9], 100)
    assert already.accuracy_gap < 0 and already.extra_random_examples == pytest.approx(-50)


def test_compression_gap_refuses_a_target_outside_the_curves():
    with pytest.raises(ConfigError, match="target_size 50"):
        compression_gap([100, 200], [0.8, 0.9], [100, 200], [0.7, 0.9], 50)
    with pytest.raises(ConfigError, match="one length"):
        compression_gap([100, 200], [0.8], [100, 200], [0.7, 0.9], 150)
