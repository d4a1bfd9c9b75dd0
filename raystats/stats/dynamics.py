"""Training-dynamics scores from the per-example logs of every logged step.

Inputs are dense (T, M, N) arrays — logged steps × trials × examples — with the (T,)
vector of logged steps, ascending, and an optional (T, M, N) bool ``present`` mask
(None = every cell logged). Absent cells are skipped: "consecutive" steps are
consecutive *logged* steps of that trial and example. Each score is computed per trial
and then averaged over the trials that logged the example; an example no trial logged
gets NaN.

These scores come from other studies than easiness, and are only as fine as the logging
schedule: an event between two logged steps is invisible.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from raystats.errors import ConfigError
from raystats.stats.easiness import _count_true


class IterationLearned(NamedTuple):
    per_trial: np.ndarray  # (M, N) float64: step learned, NaN if not learned
    mean: np.ndarray       # (N,) float64: mean over the trials that learned it


class ForgettingEvents(NamedTuple):
    per_trial: np.ndarray        # (M, N) int64: correct → incorrect transitions
    mean: np.ndarray             # (N,) float64: mean over trials that logged the example
    never_learned: np.ndarray    # (N,) bool: correct at no logged step of any trial
    never_learned_per_trial: np.ndarray  # (M, N) bool


class DataMap(NamedTuple):
    confidence: np.ndarray   # (N,) mean p_true over steps
    variability: np.ndarray  # (N,) population std of p_true over steps
    correctness: np.ndarray  # (N,) fraction of steps correct


def iteration_learned(correct, steps, present=None) -> IterationLearned:
    """The first logged step from which the example stays classified correctly.

    For trial m, ``learned_m(i) = s_t`` for the smallest t such that example i is
    correct at every logged step ``s_t, s_{t+1}, …`` up to the last one; NaN when it is
    incorrect at the last logged step (not learned yet). The mean is over the trials
    that learned the example (NaN when none did).

    Examples
    --------
    >>> correct = np.array([0, 1, 0, 1, 1], bool)[:, None, None]
    >>> iteration_learned(correct, [0, 10, 20, 30, 40]).mean
    array([30.])
    """
    correct, present, steps = _check(correct, present, steps, "correct")
    n_steps = correct.shape[0]
    per_trial = np.full(correct.shape[1:], np.nan, dtype=np.float64)
    # Walk backwards: a cell stays "learned since s_t" while every later logged cell is
    # correct; the first logged incorrect cell (from the end) closes it for good.
    still_open = np.ones(correct.shape[1:], dtype=bool)
    for t in range(n_steps - 1, -1, -1):
        logged = present[t] if present is not None else True
        good = still_open & logged & correct[t]
        per_trial[good] = steps[t]
        still_open &= ~(logged & ~correct[t])
    learned = ~np.isnan(per_trial)
    total = np.where(learned, per_trial, 0.0).sum(axis=0)
    return IterationLearned(per_trial, _divide(total, _count_true(learned)))


def forgetting_events(correct, present=None) -> ForgettingEvents:
    """Forgetting events (Toneva et al.): correct → incorrect between consecutive steps.

    Per trial, ``F_m(i) = #{t : correct at logged step t-1, incorrect at logged step t}``;
    the mean is over the trials that logged the example. Examples never classified
    correctly at any logged step are flagged ``never_learned``: Toneva et al. count them
    among the forgettable ones, though they have 0 events.

    Examples
    --------
    >>> forgetting_events(np.array([0, 1, 0, 1, 1], bool)[:, None, None]).mean
    array([1.])
    """
    correct, present, _ = _check(correct, present, None, "correct")
    shape = correct.shape[1:]
    events = np.zeros(shape, dtype=np.int64)
    previous = np.zeros(shape, dtype=bool)  # correct at the last logged step seen
    ever_correct = np.zeros(shape, dtype=bool)
    for t in range(correct.shape[0]):
        now = correct[t] if present is None else correct[t] & present[t]
        logged = True if present is None else present[t]
        events += previous & logged & ~now
        previous = now if present is None else np.where(logged, now, previous)
        ever_correct |= now
    seen = _trials_seen(correct, present)
    mean = _divide(np.where(seen, events, 0).sum(axis=0), _count_true(seen))
    return ForgettingEvents(events, mean, ~ever_correct.any(axis=0), ~ever_correct)


def data_map(p_true, correct, present=None) -> DataMap:
    """Dataset-cartography coordinates (Swayamdipta et al.), averaged over trials.

    Per trial m over its logged steps t (``T_m`` of them):
    confidence ``μ_m = (1/T_m) Σ_t p_true``, variability
    ``σ_m = sqrt((1/T_m) Σ_t (p_true − μ_m)²)`` (population std, as in the paper), and
    correctness ``(1/T_m) Σ_t correct``. Each is then averaged over the trials that
    logged the example — the paper has one run; averaging the per-run coordinates
    keeps their meaning (std is not pooled across trials).
    """
    p_true, present, _ = _check(p_true, present, None, "p_true")
    correct, _, _ = _check(correct, present, None, "correct")
    counts = _step_counts(p_true, present)
    mean = _divide(_sum_over_steps(p_true, present), counts)
    squares = (p_true.astype(np.float64) - mean) ** 2
    variability = np.sqrt(_divide(_sum_over_steps(squares, present), counts))
    correctness = _divide(_sum_over_steps(correct, present), counts)
    return DataMap(
        _mean_over_trials(mean), _mean_over_trials(variability), _mean_over_trials(correctness)
    )


def area_under_margin(margin, present=None) -> np.ndarray:
    """Area under the margin (Pleiss et al.), averaged over trials.

    ``AUM_m(i) = (1/T_m) Σ_t margin_t(i)``, margin = logit of the label minus the largest
    other logit; low (negative) AUM flags likely mislabeled examples. Mean over trials.
    """
    margin, present, _ = _check(margin, present, None, "margin")
    per_trial = _divide(_sum_over_steps(margin, present), _step_counts(margin, present))
    return _mean_over_trials(per_trial)


def el2n_score(el2n, present=None) -> np.ndarray:
    """EL2N (Paul et al.) at one step: ``(1/M) Σ_m ‖softmax(f(x_i; W_m)) − onehot(y_i)‖₂``.

    Takes the (M, N) matrix of one logged step (the paper scores early in training);
    the mean is over the trials that logged the example.
    """
    el2n = np.asarray(el2n)
    if el2n.ndim != 2:
        raise ConfigError(f"el2n has shape {el2n.shape}; expected a (trials, examples) matrix")
    if present is None:
        counts = np.full(el2n.shape[1], el2n.shape[0])
        return _divide(el2n.sum(axis=0, dtype=np.float64), counts)
    present = np.asarray(present, dtype=bool)
    total = np.sum(el2n, axis=0, dtype=np.float64, where=present)
    return _divide(total, _count_true(present))


# ---- helpers ---------------------------------------------------------------------------


def _check(values, present, steps, name):
    values = np.asarray(values)
    if values.ndim != 3:
        raise ConfigError(
            f"{name} has shape {values.shape}; expected a (steps, trials, examples) array"
        )
    if present is not None:
        present = np.asarray(present)
        if present.shape != values.shape or present.dtype != np.bool_:
            raise ConfigError(
                f"present is a {present.dtype} array of shape {present.shape}; expected bool "
                f"of shape {values.shape}"
            )
    if steps is not None:
        steps = np.asarray(steps)
        if steps.shape != (values.shape[0],) or np.any(np.diff(steps) <= 0):
            raise ConfigError(
                f"steps {steps.tolist()} are not {values.shape[0]} ascending logged steps"
            )
    return values, present, steps


def _sum_over_steps(values, present) -> np.ndarray:
    if present is None:
        return values.sum(axis=0, dtype=np.float64)
    return np.sum(values, axis=0, dtype=np.float64, where=present)


def _step_counts(values, present) -> np.ndarray:
    if present is None:
        return np.full(values.shape[1:], values.shape[0], dtype=np.int64)
    return _count_true(present)


def _trials_seen(values, present) -> np.ndarray:
    """(M, N) bool: the trial logged the example at some step."""
    if present is None:
        return np.full(values.shape[1:], values.shape[0] > 0)
    return present.any(axis=0)


def _mean_over_trials(per_trial: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of the non-NaN entries (NaN where all are NaN)."""
    known = ~np.isnan(per_trial)
    return _divide(np.where(known, per_trial, 0.0).sum(axis=0), _count_true(known))


def _divide(total, counts) -> np.ndarray:
    total = np.asarray(total, dtype=np.float64)
    out = np.full(total.shape, np.nan, dtype=np.float64)
    np.divide(total, counts, out=out, where=np.asarray(counts) > 0)
    return out
