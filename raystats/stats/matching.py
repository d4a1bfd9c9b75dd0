"""Matching rate between example sets (Kishida & Nakayama, eq. 2).

``M_AB = |A ∩ B| / max(|A|, |B|)`` compares two sets of example ids: the easy sets of
two architectures, of two steps of one run, of two halves of the trials, or of regular
against pattern-removed inputs. For two random sets of fraction q of N examples the
expected rate is ``K / N ≈ q`` (:func:`chance_level`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from raystats.errors import ConfigError
from raystats.stats.easiness import count_easiness, loss_easiness
from raystats.stats.sets import check_frac, easy_set, hard_set, set_size

WHICH = ("easy", "hard")

# Bounded ids take the boolean-mask path (0.24 ms at ImageNet size, PERF_NOTES.md, against
# 61 ms for np.intersect1d). Masks stay cheap while they are not much longer than the sets.
_MASK_SLACK = 64
_MASK_MIN = 1 << 20


def matching_rate(a, b) -> float:
    """Share of examples two sets have in common: ``|A ∩ B| / max(|A|, |B|)``.

    Kishida & Nakayama, eq. 2. Chance level for two random sets of fraction q is q.
    The inputs are treated as sets: a repeated id counts once.

    Parameters
    ----------
    a, b : 1-D integer arrays of example ids

    Returns
    -------
    float in [0, 1]
        0.0 when both sets are empty (they share nothing; defined so that a matching
        curve over steps with no logged examples yet stays a curve of numbers).

    Examples
    --------
    >>> matching_rate(np.array([1, 2, 3, 4]), np.array([3, 4, 5]))
    0.5
    """
    a, b = _as_ids(a, "a"), _as_ids(b, "b")
    if len(a) == 0 or len(b) == 0:
        return 0.0
    low = min(a.min(), b.min())
    high = max(a.max(), b.max())
    if low >= 0 and high < max(_MASK_MIN, _MASK_SLACK * (len(a) + len(b))):
        in_a = np.zeros(high + 1, dtype=bool)
        in_b = np.zeros(high + 1, dtype=bool)
        in_a[a] = True
        in_b[b] = True
        size_a, size_b = np.count_nonzero(in_a), np.count_nonzero(in_b)
        common = np.count_nonzero(in_a & in_b)
    else:
        a, b = np.unique(a), np.unique(b)
        size_a, size_b = len(a), len(b)
        common = len(np.intersect1d(a, b, assume_unique=True))
    return float(common / max(size_a, size_b))


def chance_level(frac: float, n: int | None = None) -> float:
    """Expected matching rate of two independent random sets of fraction ``frac``.

    Both sets have ``K = set_size(n, frac)`` of ``n`` examples; ``E|A ∩ B| = K² / n``,
    so the expected rate is ``K / n``, which is ``frac`` up to the rounding of K. With
    ``n=None`` the rate is ``frac`` itself.
    """
    frac = check_frac(frac)
    if n is None:
        return frac
    if n <= 0:
        raise ConfigError(f"n={n!r} is not accepted: expected a number of examples > 0")
    return set_size(n, frac) / n


def self_agreement(
    values, frac: float, which: str = "easy", kind: str = "loss", present=None
) -> float:
    """Matching rate between the sets of two disjoint halves of the trials.

    Trials ``0 .. ⌈M/2⌉-1`` give one easiness (and set), trials ``⌈M/2⌉ .. M-1`` the
    other; the rate says how reproducible the sets are with about M/2 trials.

    Parameters
    ----------
    values : (M, N) array
        Losses (``kind="loss"``) or correctness (``kind="count"``) of one step.
    frac : float in (0, 1)
    which : {"easy", "hard"}
    kind : {"loss", "count"}
    present : (M, N) bool array, optional

    Raises
    ------
    ConfigError
        If there are fewer than 2 trials.
    """
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] < 2:
        raise ConfigError(
            f"values has shape {values.shape}; self-agreement needs a (trials, examples) "
            "matrix with at least 2 trials"
        )
    pick = _pick(which)
    easiness = _easiness_function(kind)
    half = (values.shape[0] + 1) // 2
    sets = []
    for rows in (slice(0, half), slice(half, None)):
        mask = None if present is None else np.asarray(present)[rows]
        sets.append(pick(easiness(values[rows], mask), frac, kind=kind))
    return matching_rate(*sets)


def matching_curve(
    easiness_a_by_step: Mapping[int, np.ndarray],
    easiness_b_by_step: Mapping[int, np.ndarray],
    frac: float,
    which: str = "easy",
    kind: str = "loss",
) -> tuple[np.ndarray, np.ndarray]:
    """Matching rate of two runs' sets at every step both have.

    Each mapping takes a logging step to an (N,) easiness array indexed by example_id
    (one data set, so position i is example i in both).

    Returns
    -------
    steps : (S,) int64 array, ascending — the steps present in both mappings
    rates : (S,) float64 array
    """
    pick = _pick(which)
    check_frac(frac)
    steps = np.array(sorted(set(easiness_a_by_step) & set(easiness_b_by_step)), dtype=np.int64)
    rates = np.array(
        [
            matching_rate(
                pick(easiness_a_by_step[step], frac, kind=kind),
                pick(easiness_b_by_step[step], frac, kind=kind),
            )
            for step in steps
        ],
        dtype=np.float64,
    )
    return steps, rates


def _as_ids(ids, name: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ConfigError(
            f"{name} is a {ids.dtype} array of shape {ids.shape}; expected a 1-D array of "
            "integer example ids"
        )
    return ids.astype(np.int64, copy=False)


def _pick(which: str):
    if which not in WHICH:
        raise ConfigError(f"which={which!r} is not accepted: expected one of {WHICH}")
    return easy_set if which == "easy" else hard_set


def _easiness_function(kind: str):
    if kind == "loss":
        return loss_easiness
    if kind == "count":
        return count_easiness
    raise ConfigError(f"kind={kind!r} is not accepted: expected one of ('loss', 'count')")
