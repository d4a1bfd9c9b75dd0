"""Shallow vs deep contingency: counts against a second computation, the paper's identities."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from raystats.errors import ConfigError
from raystats.stats.contingency import (
    contingency,
    contingency_over_steps,
    fit_shallow,
    ratios,
    shallow_right_deep_wrong,
    trial_mean,
)


def loop_table(shallow, deep) -> dict[str, int]:
    """T[deep][shallow] by walking the examples one by one (paper Table 1)."""
    table = {"T00": 0, "T01": 0, "T10": 0, "T11": 0}
    for m, d in zip(shallow, deep):
        table[f"T{int(d)}{int(m)}"] += 1
    return table


@st.composite
def paired(draw, leading=()):
    n = draw(st.integers(0, 40))
    shallow = draw(hnp.arrays(bool, n))
    deep = draw(hnp.arrays(bool, (*leading, n)))
    return shallow, deep


# ------------------------------------------------------------------------------ counts


def test_table_by_hand():
    # example:  0  1  2  3  4  5
    shallow = [1, 1, 0, 0, 1, 0]
    deep = [1, 0, 1, 0, 1, 0]
    table = contingency(np.array(shallow, bool), np.array(deep, bool))
    # T00: both wrong (3, 5); T01: deep wrong, shallow right (1);
    # T10: deep right, shallow wrong (2); T11: both right (0, 4).
    assert {cell: int(value) for cell, value in table.items()} == {"T00": 2, "T01": 1, "T10": 1, "T11": 2}


@given(paired())
@settings(max_examples=80, deadline=None)
def test_counts_match_a_loop_and_a_crosstab(case):
    shallow, deep = case
    table = {cell: int(value) for cell, value in contingency(shallow, deep).items()}
    assert table == loop_table(shallow, deep)
    crosstab = pd.crosstab(
        pd.Categorical(deep, categories=[False, True]),
        pd.Categorical(shallow, categories=[False, True]),
        dropna=False,
    )
    for d in (0, 1):
        for m in (0, 1):
            assert table[f"T{d}{m}"] == crosstab.iloc[d, m]
    assert sum(table.values()) == len(shallow)


@given(paired(leading=(3, 2)))
@settings(max_examples=50, deadline=None)
def test_leading_axes_are_counted_one_by_one(case):
    shallow, deep = case
    table = contingency(shallow, deep)
    for t in range(3):
        for m in range(2):
            expected = loop_table(shallow, deep[t, m])
            assert {cell: int(value[t, m]) for cell, value in table.items()} == expected


def test_accepts_zero_one_integers():
    table = contingency([1, 0, 1], [[1, 1, 0]])
    assert {cell: value.tolist() for cell, value in table.items()} == {"T00": [0], "T01": [1], "T10": [1], "T11": [1]}


def test_refuses_mismatched_or_non_boolean_inputs():
    with pytest.raises(ConfigError, match="last axis"):
        contingency(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ConfigError, match="booleans"):
        contingency(np.array([0, 2, 1]), np.ones(3, bool))
    with pytest.raises(ConfigError, match=r"expected \(N,\)"):
        contingency(np.ones((2, 3), bool), np.ones(3, bool))


# ------------------------------------------------------------------------------ ratios and identities


@given(paired())
@settings(max_examples=100, deadline=None)
def test_ratios_are_the_accuracies_of_the_paper(case):
    shallow, deep = case
    r = ratios(contingency(shallow, deep))
    n = len(shallow)
    if n == 0:
        assert math.isnan(r["deep_accuracy"]) and math.isnan(r["shallow_accuracy"])
        return
    # Exactly the same float divisions as counting the subsets directly.
    assert r["deep_accuracy"] == np.count_nonzero(deep) / n
    assert r["shallow_accuracy"] == np.count_nonzero(shallow) / n
    if shallow.any():  # R+ = accuracy of the deep model on the shallow-correct subset
        assert r["R_plus"] == np.count_nonzero(deep[shallow]) / np.count_nonzero(shallow)
    else:
        assert math.isnan(r["R_plus"])
    if (~shallow).any():  # R- = accuracy of the deep model on the shallow-incorrect subset
        assert r["R_minus"] == np.count_nonzero(deep[~shallow]) / np.count_nonzero(~shallow)
    else:
        assert math.isnan(r["R_minus"])
    # The total-probability identity Acc(D) = Acc(M)·R+ + (1 − Acc(M))·R-: to rounding
    # in floats, exactly in the rationals of the counts (an empty subset contributes 0).
    plus = 0.0 if math.isnan(r["R_plus"]) else r["R_plus"] * r["shallow_accuracy"]
    minus = 0.0 if math.isnan(r["R_minus"]) else r["R_minus"] * (1 - r["shallow_accuracy"])
    assert plus + minus == pytest.approx(r["deep_accuracy"], abs=1e-12)
    t = {cell: int(value) for cell, value in contingency(shallow, deep).items()}
    acc_m = Fraction(t["T01"] + t["T11"], n)
    plus = acc_m * Fraction(t["T11"], t["T11"] + t["T01"]) if t["T11"] + t["T01"] else 0
    minus = (1 - acc_m) * Fraction(t["T10"], t["T10"] + t["T00"]) if t["T10"] + t["T00"] else 0
    assert plus + minus == Fraction(t["T10"] + t["T11"], n)


def test_identity_holds_exactly_in_counts():
    shallow = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 1], bool)
    deep = np.array([1, 1, 0, 1, 0, 0, 0, 1, 1, 1], bool)
    t = contingency(shallow, deep)
    r = ratios(t)
    n = 10
    # Deep correct = (shallow-correct subset)·R+ + (shallow-wrong subset)·R-: 6 = 5·0.8 + 5·0.4.
    assert int(t["T11"]) + int(t["T10"]) == 6
    assert (t["T11"] + t["T01"]) * r["R_plus"] == 4.0 and (t["T10"] + t["T00"]) * r["R_minus"] == 2.0
    assert r["deep_accuracy"] == 6 / n and r["shallow_accuracy"] == 5 / n
    # In floats the identity holds to rounding (0.5·0.8 + 0.5·0.4 ≠ 0.6 in binary) ...
    assert r["deep_accuracy"] == pytest.approx(
        r["shallow_accuracy"] * r["R_plus"] + (1 - r["shallow_accuracy"]) * r["R_minus"], abs=1e-15
    )
    # ... and exactly in the rationals the counts define.
    acc_m, r_plus, r_minus = Fraction(5, 10), Fraction(4, 5), Fraction(2, 5)
    assert acc_m * r_plus + (1 - acc_m) * r_minus == Fraction(6, 10)
    assert r["R_plus"] == 4 / 5 and r["R_minus"] == 2 / 5 and r["R"] == 2.0


def test_degenerate_ratios_are_documented_values():
    # Shallow never wrong: R- = 0/0 = NaN, so R is NaN.
    r = ratios({"T00": 0, "T01": 2, "T10": 0, "T11": 3})
    assert r["R_plus"] == 0.6 and math.isnan(r["R_minus"]) and math.isnan(r["R"])
    # Deep right on no shallow-wrong example: R- = 0 < R+, R = +inf.
    r = ratios({"T00": 4, "T01": 1, "T10": 0, "T11": 3})
    assert r["R_minus"] == 0.0 and r["R"] == math.inf
    # Deep right nowhere: R+ = R- = 0, R = NaN.
    r = ratios({"T00": 4, "T01": 1, "T10": 0, "T11": 0})
    assert math.isnan(r["R"])
    # Empty table: everything NaN.
    assert all(math.isnan(value) for value in ratios({"T00": 0, "T01": 0, "T10": 0, "T11": 0}).values())


# ------------------------------------------------------------------------------ over steps


def test_over_steps_single_model():
    shallow = np.array([1, 1, 0, 0], bool)
    deep = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], bool)
    frame = contingency_over_steps(shallow, deep, steps=[0, 50, 100])
    assert frame["step"].tolist() == [0, 50, 100] and frame["trial"].tolist() == [0, 0, 0]
    assert frame[["T00", "T01", "T10", "T11"]].values.tolist() == [[2, 2, 0, 0], [2, 1, 0, 1], [1, 0, 1, 2]]
    assert frame["n"].tolist() == [4, 4, 4]
    assert frame["R_plus"].tolist() == [0.0, 0.5, 1.0]
    assert frame["R_minus"].tolist() == [0.0, 0.0, 0.5]
    assert math.isnan(frame["R"][0]) and frame["R"][1] == math.inf and frame["R"][2] == 2.0
    assert frame["shallow_accuracy"].tolist() == [0.5] * 3


@given(paired(leading=(4, 3)))
@settings(max_examples=40, deadline=None)
def test_over_steps_ensemble_rows_and_mean(case):
    shallow, deep = case
    frame = contingency_over_steps(shallow, deep, steps=[10, 20, 30, 40])
    assert len(frame) == 12
    for row in frame.itertuples():
        t, m = [10, 20, 30, 40].index(row.step), row.trial
        assert {c: getattr(row, c) for c in ("T00", "T01", "T10", "T11")} == loop_table(shallow, deep[t, m])
    mean = trial_mean(frame)
    assert mean["step"].tolist() == [10, 20, 30, 40] and (mean["n_trials"] == 3).all()
    for t in range(4):
        rows = frame[frame["step"] == (t + 1) * 10]
        for cell in ("T00", "T01", "T10", "T11"):
            assert mean[cell][t] == pytest.approx(rows[cell].mean())
        if shallow.any() and (~shallow).any():
            # The shallow model fixes the subsets: mean R± are the means of the trials' R±.
            assert mean["R_plus"][t] == pytest.approx(rows["R_plus"].mean())
            assert mean["R_minus"][t] == pytest.approx(rows["R_minus"].mean())
            assert mean["deep_accuracy"][t] == pytest.approx(rows["deep_accuracy"].mean())


def test_over_steps_refuses_bad_shapes():
    with pytest.raises(ConfigError, match="steps, N"):
        contingency_over_steps(np.ones(3, bool), np.ones(3, bool))
    with pytest.raises(ConfigError, match="one per logged step"):
        contingency_over_steps(np.ones(3, bool), np.ones((2, 3), bool), steps=[1, 2, 3])


# ------------------------------------------------------------------------------ shallow right, deep wrong


def test_shallow_right_deep_wrong_single_model():
    shallow = np.array([1, 1, 0, 1, 0], bool)
    deep = np.array([1, 0, 0, 0, 1], bool)
    assert shallow_right_deep_wrong(shallow, deep).tolist() == [1, 3]
    ids = np.array([10, 11, 12, 13, 14])
    assert shallow_right_deep_wrong(shallow, deep, example_ids=ids).tolist() == [11, 13]
    # It is the T01 cell.
    assert len(shallow_right_deep_wrong(shallow, deep)) == contingency(shallow, deep)["T01"]


def test_shallow_right_deep_wrong_ensemble():
    shallow = np.array([1, 1, 1, 1, 0], bool)
    # correct share per example: 1/4, 2/4, 0, 3/4, 0
    deep = np.array([[1, 1, 0, 1, 0], [0, 1, 0, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]], bool)
    assert shallow_right_deep_wrong(shallow, deep).tolist() == [0, 2]  # majority wrong
    assert shallow_right_deep_wrong(shallow, deep, correct_below=0.25).tolist() == [2]  # no trial right
    assert shallow_right_deep_wrong(shallow, deep, correct_below=1.0).tolist() == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="correct_below"):
        shallow_right_deep_wrong(shallow, deep, correct_below=0.0)


# ------------------------------------------------------------------------------ shallow models


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float64) / 16.0  # (N, 8, 8) in [0, 1]
    return train_test_split(images, data.target, test_size=0.25, random_state=0, stratify=data.target)


@pytest.mark.parametrize("name", ["svm", "forest"])
def test_shallow_models_learn_digits(digits, name):
    X_train, X_test, y_train, y_test = digits
    fit = fit_shallow(name, X_train, y_train, X_test, seed=0)
    assert not fit.approximate
    assert fit.predictions.shape == y_test.shape
    assert (fit.predictions == y_test).mean() > 0.8
    assert ("gamma=0.1" in fit.description) if name == "svm" else ("20 trees" in fit.description)


def test_svm_approximation_is_announced(digits):
    X_train, X_test, y_train, y_test = digits
    fit = fit_shallow("svm", X_train, y_train, X_test, exact_svm_limit=500, nystroem_components=400)
    assert fit.approximate
    assert "APPROXIMATE" in fit.description and "Nystroem" in fit.description
    assert f"{len(X_train)} training examples > exact_svm_limit=500" in fit.description
    assert (fit.predictions == y_test).mean() > 0.8


def test_svm_approximation_with_sgd_is_announced(digits):
    X_train, X_test, y_train, y_test = digits
    fit = fit_shallow(
        "svm", X_train, y_train, X_test, exact_svm_limit=500, nystroem_components=400, linear_solver="sgd"
    )
    assert fit.approximate and "SGDClassifier(hinge" in fit.description
    assert (fit.predictions == y_test).mean() > 0.8
    with pytest.raises(ConfigError, match="linear_solver"):
        fit_shallow("svm", X_train, y_train, X_test, linear_solver="lbfgs")


def test_forest_is_reproducible_from_the_seed(digits):
    X_train, X_test, y_train, _ = digits
    first = fit_shallow("forest", X_train, y_train, X_test, seed=3).predictions
    np.testing.assert_array_equal(first, fit_shallow("forest", X_train, y_train, X_test, seed=3).predictions)


def test_fit_shallow_refuses_unknown_models_and_shapes(digits):
    X_train, X_test, y_train, _ = digits
    with pytest.raises(ConfigError, match="not known"):
        fit_shallow("knn", X_train, y_train, X_test)
    with pytest.raises(ConfigError, match="y_train"):
        fit_shallow("forest", X_train, y_train[:-1], X_test)
    with pytest.raises(ConfigError, match="features"):
        fit_shallow("forest", X_train, y_train, X_test[:, :4])
