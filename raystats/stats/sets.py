"""Easy and hard sets: the fraction q of examples that are easiest / hardest.

Kishida & Nakayama take q = 10 %: the lowest loss-form easiness (or the highest
count-form easiness) are the easy examples, the opposite end the hard ones.

Rules every function here follows, so that the live, offline and sharded answers are
one answer:

- **size** ``K = max(1, round(q · N))`` with ``N`` the number of examples that have an
  easiness value (NaN = no trial logged it yet; such an example is never selected).
  ``round`` is Python's: halves go to the even neighbour. ``K = 0`` only when ``N = 0``.
- **ties** are broken by ``example_id``: among equal values the lower id is taken first,
  for the easy and for the hard set alike.
- **result** is the sorted array of example ids (int64).

Selection is one ``np.argpartition`` (O(N)) plus an exact pass over the values equal to
the boundary value; a full sort is ~7× slower at ImageNet size (PERF_NOTES.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from raystats.errors import ConfigError

KINDS = ("loss", "count")
WHICH = ("easy", "hard")


def set_size(n: int, frac: float) -> int:
    """``K = max(1, round(frac · n))`` for ``n > 0``, 0 for ``n = 0``.

    Raises
    ------
    ConfigError
        If ``frac`` is not a number in the open interval (0, 1).

    Examples
    --------
    >>> set_size(60000, 0.1), set_size(5, 0.1), set_size(1281167, 0.1)
    (6000, 1, 128117)
    """
    frac = check_frac(frac)
    if n < 0:
        raise ConfigError(f"n={n!r} is not accepted: expected a number of examples ≥ 0")
    return max(1, round(frac * n)) if n > 0 else 0


def check_frac(frac: object) -> float:
    """``frac`` as a float, or :class:`ConfigError` naming it unless it lies in (0, 1)."""
    if (
        isinstance(frac, bool)
        or not isinstance(frac, (int, float, np.integer, np.floating))
        or not 0 < frac < 1
    ):
        raise ConfigError(f"frac={frac!r} is not accepted: expected a fraction in (0, 1)")
    return float(frac)


def easy_set(easiness, frac: float, kind: str = "loss", example_ids=None) -> np.ndarray:
    """Ids of the ``K = max(1, round(frac · N))`` easiest examples, sorted.

    Easiest means the lowest values for the loss form (``kind="loss"``) and the highest
    for the count form (``kind="count"``). Ties go to the lower example_id; NaN values
    are never selected and do not count in ``N``.

    Parameters
    ----------
    easiness : (N,) float array
    frac : float in (0, 1)
    kind : {"loss", "count"}
    example_ids : (N,) int array, optional
        The id of each value; None means ``0 .. N-1``.

    Returns
    -------
    (K,) int64 array of example ids, ascending.

    Examples
    --------
    >>> easy_set(np.array([0.3, 0.1, 0.2, 0.1]), 0.5)
    array([1, 3])
    >>> easy_set(np.array([0.3, 0.1, 0.2, 0.1]), 0.5, kind="count")
    array([0, 2])
    """
    return _one_set(easiness, frac, kind, example_ids, largest=_check_kind(kind) == "count")


def hard_set(easiness, frac: float, kind: str = "loss", example_ids=None) -> np.ndarray:
    """Ids of the ``K`` hardest examples, sorted: highest loss form, lowest count form.

    Same size, tie and NaN rules as :func:`easy_set`.

    Examples
    --------
    >>> hard_set(np.array([0.3, 0.1, 0.2, 0.3]), 0.25)
    array([0])
    """
    return _one_set(easiness, frac, kind, example_ids, largest=_check_kind(kind) == "loss")


def easy_and_hard_sets(
    easiness, frac: float, kind: str = "loss", example_ids=None
) -> tuple[np.ndarray, np.ndarray]:
    """Both sets from one ``np.argpartition`` with ``kth=(K-1, N-K)``.

    Equal to ``(easy_set(...), hard_set(...))``; about half the cost of calling both.
    """
    kind = _check_kind(kind)
    values, ids = _finite(easiness, example_ids)
    k = set_size(len(values), frac)
    if k == 0:
        return _empty(), _empty()
    order = np.argpartition(values, (k - 1, len(values) - k))
    smallest = np.sort(ids[_take_smallest(values, ids, order, k)])
    largest = np.sort(ids[_take_largest(values, ids, order, k)])
    return (smallest, largest) if kind == "loss" else (largest, smallest)


def extremes(easiness, k: int, largest: bool, example_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest (or smallest) values and their ids, ties to the lower id.

    NaN values are skipped; fewer than ``k`` come back when fewer are finite. This is
    what one example-range shard returns so that a client can merge shards with
    :func:`merge_extremes`.

    Returns
    -------
    ids : (k,) int64 array, ascending
    values : (k,) float64 array, aligned with ``ids``
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ConfigError(f"k={k!r} is not accepted: expected an integer ≥ 0")
    values, ids = _finite(easiness, example_ids)
    k = min(int(k), len(values))
    if k == 0:
        return _empty(), np.empty(0, dtype=np.float64)
    chosen = _select(values, ids, k, largest)
    chosen = chosen[np.argsort(ids[chosen])]
    return ids[chosen], values[chosen]


def merge_extremes(
    parts: Iterable[tuple[np.ndarray, np.ndarray]], k: int, largest: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Merge shards' ``(ids, values)`` top-k lists into the global top-k.

    Exact: when every shard returns its own ``k`` best (:func:`extremes`, or
    ``LogAccumulator.easiest_k`` / ``hardest_k``) over disjoint id ranges, the ``k``
    best of their union — ties to the lower id — are the ``k`` best of all examples.

    Parameters
    ----------
    parts : iterable of (ids, values)
    k : int
    largest : bool
        True to keep the largest values, False the smallest.

    Returns
    -------
    ids : int64 array, ascending
    values : float64 array, aligned with ``ids``
    """
    parts = list(parts)
    if not parts:
        return _empty(), np.empty(0, dtype=np.float64)
    ids = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts])
    values = np.concatenate([np.asarray(p[1], dtype=np.float64) for p in parts])
    return extremes(values, k, largest, example_ids=ids)


def set_candidates(
    easiness, k: int, which: str, kind: str = "loss", example_ids=None
) -> tuple[np.ndarray, np.ndarray, int]:
    """What one example-range shard sends for an easy (or hard) set: its ``k`` best.

    ``easiness`` must order examples as the whole split does: the loss form itself, or
    for ``kind="count"`` the raw correct counts ``c_i`` (NaN where no trial logged the
    example) — ``c_i / max_j c_j`` divides every shard by the same global maximum, so
    raw counts rank exactly like the count form and no shard needs that maximum.

    Parameters
    ----------
    easiness : (N,) float array
    k : int
        An upper bound of the global set size, e.g. ``set_size(N_split, frac)``.
    which : {"easy", "hard"}
    kind : {"loss", "count"}
    example_ids : (N,) int array, optional

    Returns
    -------
    ids : int64 array, ascending
    values : float64 array, aligned with ``ids``
    n_finite : int
        How many of the shard's examples have a value; the client sums these to get the
        ``N`` of ``K = max(1, round(frac · N))``.
    """
    values, ids = _finite(easiness, example_ids)
    chosen = extremes(values, k, _largest(which, kind), example_ids=ids)
    return chosen[0], chosen[1], len(values)


def merge_set_candidates(candidates, frac: float, which: str, kind: str = "loss") -> np.ndarray:
    """The easy (or hard) set of a whole split from its shards' :func:`set_candidates`.

    ``K = max(1, round(frac · Σ n_finite))``; the ``K`` best of the union of the shards'
    candidates, ties to the lower example_id. Exact — equal to :func:`easy_set` /
    :func:`hard_set` on the concatenated easiness — when the shards own disjoint id
    ranges and each was asked for at least ``K`` (a shard with fewer values sends all).

    Raises
    ------
    ConfigError
        If a shard sent fewer than ``min(K, its n_finite)`` candidates: it was asked for
        too few, and the merged set would be wrong.

    Examples
    --------
    >>> shards = [set_candidates(np.array([0.3, 0.1]), 2, "easy", example_ids=np.array([0, 1])),
    ...           set_candidates(np.array([0.2, 0.1]), 2, "easy", example_ids=np.array([2, 3]))]
    >>> merge_set_candidates(shards, 0.5, "easy")
    array([1, 3])
    """
    candidates = list(candidates)
    k = set_size(sum(int(c[2]) for c in candidates), frac)
    for shard, (ids, _, n_finite) in enumerate(candidates):
        if len(ids) < min(k, int(n_finite)):
            raise ConfigError(
                f"shard {shard} sent {len(ids)} candidates for a set of {k}; each shard must "
                f"send its min(K, n_finite) = {min(k, int(n_finite))} best"
            )
    merged, _ = merge_extremes(((c[0], c[1]) for c in candidates), k, _largest(which, kind))
    return merged


# ---- selection ------------------------------------------------------------------------


def _one_set(easiness, frac, kind, example_ids, largest: bool) -> np.ndarray:
    values, ids = _finite(easiness, example_ids)
    k = set_size(len(values), frac)
    if k == 0:
        return _empty()
    return np.sort(ids[_select(values, ids, k, largest)])


def _select(values, ids, k: int, largest: bool) -> np.ndarray:
    """Positions of the k largest (or smallest) values, ties to the lower id; O(N)."""
    order = np.argpartition(values, len(values) - k if largest else k - 1)
    take = _take_largest if largest else _take_smallest
    return take(values, ids, order, k)


def _take_smallest(values, ids, order, k) -> np.ndarray:
    """Positions of the k smallest values, given ``order`` partitioned at position k-1.

    Everything strictly below the boundary value ``v = values[order[k-1]]`` sits in
    ``order[:k-1]``; the remaining places go to the lowest ids among all values == v
    (anywhere in the array: argpartition does not order ties).
    """
    boundary = values[order[k - 1]]
    head = order[: k - 1]
    below = head[values[head] < boundary]
    return _fill_ties(values, ids, below, boundary, k)


def _take_largest(values, ids, order, k) -> np.ndarray:
    """Positions of the k largest values, given ``order`` partitioned at position N-k."""
    n = len(values)
    boundary = values[order[n - k]]
    tail = order[n - k + 1 :]
    above = tail[values[tail] > boundary]
    return _fill_ties(values, ids, above, boundary, k)


def _fill_ties(values, ids, strict: np.ndarray, boundary, k: int) -> np.ndarray:
    """Positions ``strict`` plus those of the lowest ids among values equal to ``boundary``."""
    need = k - len(strict)
    tied = np.flatnonzero(values == boundary)
    if len(tied) > need:
        tied = tied[np.argpartition(ids[tied], need - 1)[:need]]
    return np.concatenate([strict, tied])


def _finite(easiness, example_ids) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 and their int64 ids, without the NaN entries."""
    values = np.asarray(easiness, dtype=np.float64)
    if values.ndim != 1:
        raise ConfigError(f"easiness has shape {values.shape}; expected one value per example")
    if example_ids is None:
        ids = np.arange(len(values), dtype=np.int64)
    else:
        ids = np.asarray(example_ids)
        if ids.shape != values.shape or not np.issubdtype(ids.dtype, np.integer):
            raise ConfigError(
                f"example_ids is a {ids.dtype} array of shape {ids.shape}; expected integer "
                f"ids of shape {values.shape}"
            )
        ids = ids.astype(np.int64, copy=False)
    missing = np.isnan(values)
    if missing.any():
        keep = ~missing
        values, ids = values[keep], ids[keep]
    return values, ids


def _largest(which: str, kind: str) -> bool:
    """Whether the set takes the largest values: easy by counts, or hard by losses."""
    if which not in WHICH:
        raise ConfigError(f"which={which!r} is not accepted: expected one of {WHICH}")
    return (which == "easy") == (_check_kind(kind) == "count")


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r} is not accepted: expected one of {KINDS}")
    return kind


def _empty() -> np.ndarray:
    return np.empty(0, dtype=np.int64)

