"""Per-example easiness from the (trials × examples) matrix of one logging step.

Two forms, both from Kishida & Nakayama (DESIGN.md, "The statistics"):

- loss form, ``e_i^T = (1/M) Σ_m CE(t_i, f(x_i; W_m^T))`` — low = easy;
- count form, ``e_i = c_i / max_j c_j`` with ``c_i`` the number of trials that
  classify ``x_i`` correctly — high = easy.

Every function takes an (M, N) matrix, trials along axis 0 and examples along axis 1,
and an optional boolean ``present`` matrix of the same shape marking the cells that
were logged. Absent cells are ignored; ``present=None`` means every cell is present.
"""

from __future__ import annotations

import numpy as np

from raystats.errors import ConfigError


def trial_counts(present: np.ndarray) -> np.ndarray:
    """Number of trials that logged each example: ``n_i = Σ_m present[m, i]``.

    Parameters
    ----------
    present : (M, N) bool array

    Returns
    -------
    (N,) int64 array
    """
    return _count_true(_as_matrix(present, "present"))


def loss_easiness(loss: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Loss-form easiness: the mean cross-entropy over the trials, low = easy.

    ``e_i^T = (1/n_i) Σ_{m present} loss[m, i]``, where ``n_i`` is the number of trials
    that logged example ``i`` (``n_i = M`` when every cell is present, which is
    Kishida & Nakayama's eq. 1). Sums are taken in float64, trial by trial in order.

    Parameters
    ----------
    loss : (M, N) float array
        Cross-entropy of example ``i`` under trial ``m`` at one logging step.
    present : (M, N) bool array, optional
        Cells that were logged; None means all of them.

    Returns
    -------
    (N,) float64 array
        NaN for an example that no trial has logged yet.

    Examples
    --------
    >>> loss_easiness(np.array([[1.0, 4.0], [3.0, 0.0]]))
    array([2., 2.])
    >>> loss_easiness(np.array([[1.0, 4.0], [3.0, 0.0]]), np.array([[True, False], [True, False]]))
    array([ 2., nan])
    """
    loss = _as_matrix(loss, "loss")
    if present is not None and _check_present(present, loss).all():
        present = None  # the masked sum costs 1.5× the plain one (20 ms vs 14 ms, ImageNet size)
    if present is None:
        return loss.sum(axis=0, dtype=np.float64) / loss.shape[0] if loss.shape[0] else _nans(loss)
    total = np.sum(loss, axis=0, dtype=np.float64, where=present)
    return _divide(total, trial_counts(present))


def correct_counts(correct: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """``c_i``: the number of trials that classify example ``i`` correctly.

    Absent cells count as not correct. Summing ``c_i`` over example-range shards needs
    no normalisation, which is why shards report it rather than ``e_i``.

    Returns
    -------
    (N,) int64 array
    """
    correct = _as_matrix(correct, "correct").astype(bool, copy=False)
    if present is not None:
        correct = correct & _check_present(present, correct)
    return _count_true(correct)


def count_easiness(correct: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Count-form easiness ``e_i = c_i / max_j c_j``, high = easy.

    Kishida & Nakayama (longer version), eq. 1: ``c_i`` is the number of trials that
    classify ``x_i`` correctly after the given training length, so ``0 ≤ e_i ≤ 1``.
    When no example is classified correctly by any trial (``max_j c_j = 0``) every
    ``e_i`` is 0. An example that no trial has logged yet gets NaN, so that it is never
    mistaken for a hard one.

    Parameters
    ----------
    correct : (M, N) bool array
    present : (M, N) bool array, optional

    Returns
    -------
    (N,) float64 array

    Examples
    --------
    >>> count_easiness(np.array([[True, False, True], [True, False, False]]))
    array([1. , 0. , 0.5])
    """
    counts = correct_counts(correct, present)
    return normalize_counts(counts, None if present is None else trial_counts(present))


def normalize_counts(counts: np.ndarray, n_trials: np.ndarray | None = None) -> np.ndarray:
    """``e_i = c_i / max_j c_j`` from raw correct counts; NaN where ``n_trials == 0``.

    Shards of an example range report raw ``c_i``; the client concatenates them and
    normalises once, which gives exactly :func:`count_easiness` of the whole matrix.
    """
    counts = np.asarray(counts)
    top = counts.max() if counts.size else 0
    values = counts / top if top > 0 else np.zeros(counts.shape, dtype=np.float64)
    if n_trials is not None:
        values[np.asarray(n_trials) == 0] = np.nan
    return values


def _as_matrix(values, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2:
        raise ConfigError(
            f"{name} has shape {values.shape}; expected a (trials, examples) matrix"
        )
    return values


def _check_present(present, values: np.ndarray) -> np.ndarray:
    present = np.asarray(present)
    if present.shape != values.shape or present.dtype != np.bool_:
        raise ConfigError(
            f"present is a {present.dtype} array of shape {present.shape}; expected a bool "
            f"array of shape {values.shape}"
        )
    return present


def _count_true(mask: np.ndarray) -> np.ndarray:
    """Sums over axis 0 of a bool array as int64.

    Summed as bytes in the narrowest unsigned type that holds M: 10× faster than
    ``count_nonzero(axis=0)`` at ImageNet size (0.9 ms against 9.3 ms for 10 × 1.28 M).
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    rows = mask.shape[0]
    dtype = np.uint8 if rows < 2**8 else np.uint16 if rows < 2**16 else np.int64
    return mask.view(np.uint8).sum(axis=0, dtype=dtype).astype(np.int64)


def _divide(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``total / counts`` with NaN where ``counts == 0``."""
    out = np.full(total.shape, np.nan, dtype=np.float64)
    np.divide(total, counts, out=out, where=counts > 0)
    return out


def _nans(matrix: np.ndarray) -> np.ndarray:
    return np.full(matrix.shape[1], np.nan, dtype=np.float64)
