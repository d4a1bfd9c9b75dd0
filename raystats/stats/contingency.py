"""Shallow versus deep: contingency tables of a deep model against a fixed shallow one.

Mangalam & Prabhu, "Do deep neural networks learn shallow learnable examples first?",
section 2.1 and Table 1. A shallow model M (RBF SVM or random forest, fitted once) and
a deep model D^(i) after i updates each classify the held-out examples; the table
counts the four outcomes. **Index order follows the paper: the first index is the DEEP
model's correctness, the second the SHALLOW model's**::

                      M incorrect   M correct
    D^(i) incorrect   T00           T01
    D^(i) correct     T10           T11

so T01 counts the examples the shallow model gets right and the deep model wrong.
From the table (N = T00 + T01 + T10 + T11)::

    Accuracy(D) = (T10 + T11) / N          Accuracy(M) = (T01 + T11) / N
    R+ = T11 / (T11 + T01)   accuracy of D on the examples M classifies correctly
    R- = T10 / (T10 + T00)   accuracy of D on the examples M classifies wrongly
    R  = R+ / R-             how many times more accurate D is on M-correct examples

and, since the two subsets partition the examples,
``Accuracy(D) = Accuracy(M)·R+ + (1 − Accuracy(M))·R-`` exactly. R = 1 throughout
training would mean the deep model does not care what the shallow one finds easy; the
paper sees R rise sharply early in training and decay back toward 1.

Counting is pure numpy. :func:`fit_shallow` fits the paper's shallow models with
scikit-learn, and says when it has to approximate the kernel SVM.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from raystats.errors import ConfigError

CELLS = ("T00", "T01", "T10", "T11")
RATIOS = ("deep_accuracy", "shallow_accuracy", "R_plus", "R_minus", "R")
SHALLOW_MODELS = ("svm", "forest")
LINEAR_SOLVERS = ("liblinear", "sgd")

# The paper's hyper-parameters (section 3.2).
SVM_C = 1.0
SVM_GAMMA = 0.1
FOREST_TREES = 20
SGD_EPOCHS = 5


def contingency(shallow_correct, deep_correct) -> dict[str, np.ndarray]:
    """The contingency table T of a deep model against a shallow one (Table 1).

    ``T_dm = #{i : deep correct on i == d, shallow correct on i == m}`` — first index
    the deep model, second the shallow model, as in the paper (module docstring).

    Parameters
    ----------
    shallow_correct : array_like of bool, (N,)
        Whether the shallow model M classifies each example correctly.
    deep_correct : array_like of bool, (..., N)
        Whether the deep model does; leading axes (steps, trials) are kept, so one call
        counts a whole run.

    Returns
    -------
    dict
        ``{"T00", "T01", "T10", "T11"}`` → int64 counts of shape ``deep_correct.shape[:-1]``
        (numpy scalars for a 1-D ``deep_correct``).

    Examples
    --------
    >>> shallow = np.array([1, 1, 0, 0, 1], bool)
    >>> deep = np.array([1, 0, 1, 0, 1], bool)
    >>> {cell: int(count) for cell, count in contingency(shallow, deep).items()}
    {'T00': 1, 'T01': 1, 'T10': 1, 'T11': 2}
    """
    shallow, deep = _check_correct(shallow_correct, deep_correct)
    both = np.count_nonzero(deep & shallow, axis=-1)
    deep_total = np.count_nonzero(deep, axis=-1)
    shallow_total = np.count_nonzero(shallow)
    n = shallow.shape[-1]
    t11 = both.astype(np.int64)
    t10 = (deep_total - both).astype(np.int64)       # deep right, shallow wrong
    t01 = (shallow_total - both).astype(np.int64)    # deep wrong, shallow right
    t00 = (n - deep_total - shallow_total + both).astype(np.int64)
    return {"T00": t00, "T01": t01, "T10": t10, "T11": t11}


def ratios(table) -> dict[str, np.ndarray]:
    """Accuracies, R+, R- and R = R+/R- from a contingency table (section 2.1.2).

    ``deep_accuracy = (T10+T11)/N``, ``shallow_accuracy = (T01+T11)/N``,
    ``R_plus = T11/(T11+T01)``, ``R_minus = T10/(T10+T00)``, ``R = R_plus/R_minus``.

    Degenerate cases follow IEEE division and are never an error: R_plus is NaN when
    the shallow model gets no example right (0/0), R_minus NaN when it gets every
    example right; R is +inf when R_minus = 0 < R_plus, NaN when both are 0 or either
    is NaN. The accuracies are NaN for an empty table.

    Parameters
    ----------
    table : mapping
        ``T00``, ``T01``, ``T10``, ``T11``: counts (scalars or arrays of one shape;
        floats allowed, e.g. counts averaged over trials).

    Returns
    -------
    dict
        ``deep_accuracy``, ``shallow_accuracy``, ``R_plus``, ``R_minus``, ``R`` →
        float64 arrays (or scalars) of the counts' shape.

    Examples
    --------
    >>> r = ratios({"T00": 3, "T01": 1, "T10": 1, "T11": 5})
    >>> float(r["R_plus"]), float(r["R_minus"]), float(r["R"])
    (0.8333333333333334, 0.25, 3.3333333333333335)
    """
    t00, t01, t10, t11 = (np.asarray(table[cell], dtype=np.float64) for cell in CELLS)
    n = t00 + t01 + t10 + t11
    with np.errstate(divide="ignore", invalid="ignore"):
        r_plus = t11 / (t11 + t01)
        r_minus = t10 / (t10 + t00)
        return {
            "deep_accuracy": (t10 + t11) / n,
            "shallow_accuracy": (t01 + t11) / n,
            "R_plus": r_plus,
            "R_minus": r_minus,
            "R": r_plus / r_minus,
        }


def contingency_over_steps(shallow_correct, deep_correct, steps=None) -> pd.DataFrame:
    """Counts and ratios of the deep model at every logged step, one row per (step, trial).

    Parameters
    ----------
    shallow_correct : array_like of bool, (N,)
        The fixed shallow model's correctness on the held-out examples.
    deep_correct : array_like of bool, (T, N) or (T, M, N)
        The deep model's correctness at T logged steps, for one model or each of M trials.
    steps : array_like of int, (T,), optional
        Update counts of the logged steps; default ``0 .. T-1``.

    Returns
    -------
    pandas.DataFrame
        Columns ``step, trial, T00, T01, T10, T11, n, deep_accuracy, shallow_accuracy,
        R_plus, R_minus, R``; T·M rows ordered by (step, trial); ``trial`` is 0 for a
        (T, N) input. :func:`trial_mean` averages the trials of each step.
    """
    deep = np.asarray(deep_correct)
    if deep.ndim == 2:
        deep = deep[:, None, :]
    if deep.ndim != 3:
        raise ConfigError(
            f"deep_correct has shape {deep.shape}: expected (steps, N) or (steps, trials, N)"
        )
    n_steps, n_trials = deep.shape[:2]
    steps = _check_steps(steps, n_steps)
    table = contingency(shallow_correct, deep)
    frame = pd.DataFrame({
        "step": np.repeat(steps, n_trials),
        "trial": np.tile(np.arange(n_trials, dtype=np.int64), n_steps),
        **{cell: table[cell].reshape(-1) for cell in CELLS},
    })
    return _with_ratios(frame)


def trial_mean(frame: pd.DataFrame) -> pd.DataFrame:
    """Average the trials of each step of :func:`contingency_over_steps`.

    The counts are averaged over the trials (floats) and the ratios derived from the
    averaged counts, so the accuracy identities hold on the mean rows too. Because every
    trial shares the shallow model, ``T11 + T01`` and ``T10 + T00`` are the same in every
    trial: the mean rows' R+ and R- equal the means of the trials' R+ and R-; their R
    is ``mean R+ / mean R-`` (not the mean of the trials' R, which a trial with R- ≈ 0
    would dominate).

    Returns
    -------
    pandas.DataFrame
        Columns ``step, n_trials, T00, T01, T10, T11, n`` and the ratios, one row per step.
    """
    grouped = frame.groupby("step", sort=True)
    mean = grouped[list(CELLS)].mean()
    mean.insert(0, "n_trials", grouped.size().astype(np.int64))
    return _with_ratios(mean.reset_index())


def shallow_right_deep_wrong(
    shallow_correct, deep_correct_final, example_ids=None, correct_below: float = 0.5
) -> np.ndarray:
    """Examples the shallow model classifies correctly and the trained deep model does not.

    The paper's "shallow-classifiable but not deep-classifiable" examples (T01 of the
    final table). For an ensemble of M trials an example counts as deep-wrong when the
    share of trials that classify it correctly is below ``correct_below``: the default
    0.5 means "a majority of the trials get it wrong" (a tie is not wrong); pass
    ``1 / M`` for "no trial gets it right". A single model (N,) is deep-wrong exactly
    where it is wrong, for any ``correct_below`` in (0, 1].

    Parameters
    ----------
    shallow_correct : array_like of bool, (N,)
    deep_correct_final : array_like of bool, (N,) or (M, N)
        Correctness of the fully trained deep model or of each trial.
    example_ids : array_like of int, (N,), optional
        Ids of the examples; default ``0 .. N-1``.
    correct_below : float, default 0.5
        In (0, 1].

    Returns
    -------
    numpy.ndarray
        int64 example ids, ascending in position.
    """
    shallow, deep = _check_correct(shallow_correct, deep_correct_final)
    if deep.ndim not in (1, 2):
        raise ConfigError(f"deep_correct_final has shape {deep.shape}: expected (N,) or (trials, N)")
    if not 0.0 < float(correct_below) <= 1.0:
        raise ConfigError(f"correct_below={correct_below!r} is out of range: expected 0 < correct_below <= 1")
    correct_share = deep.reshape(-1, deep.shape[-1]).mean(axis=0)
    chosen = np.flatnonzero(shallow & (correct_share < correct_below))
    if example_ids is None:
        return chosen.astype(np.int64)
    example_ids = np.asarray(example_ids)
    if example_ids.shape != shallow.shape:
        raise ConfigError(f"example_ids has shape {example_ids.shape}: expected {shallow.shape}")
    return example_ids[chosen].astype(np.int64)


class ShallowFit(NamedTuple):
    predictions: np.ndarray  # (N_test,) predicted labels
    description: str         # what was fitted, in words, including any approximation
    approximate: bool        # True when the kernel SVM was approximated


def fit_shallow(
    name: str,
    X_train,
    y_train,
    X_test,
    *,
    seed: int = 0,
    exact_svm_limit: int = 20_000,
    nystroem_components: int = 2000,
    linear_solver: str = "liblinear",
    n_jobs: int | None = None,
) -> ShallowFit:
    """Fit one of the paper's shallow models on flattened images and predict the test set.

    Mangalam & Prabhu, section 3.2:

    - ``"svm"``: RBF-kernel SVM with slack, C = 1.0, γ = 0.1 (``sklearn.svm.SVC``,
      one-vs-one). An exact kernel SVM costs O(N²) memory and roughly O(N²)–O(N³)
      time, hours for 60,000 images on two cores, so above ``exact_svm_limit``
      training examples it is **approximated**: a Nyström feature map of the same
      kernel, ``Nystroem(gamma=0.1, n_components=nystroem_components)``, followed by
      a linear SVM on those features, one-vs-rest. ``linear_solver="liblinear"``
      (default) solves it to convergence with ``LinearSVC(C=1.0)`` (squared hinge, in
      the primal); ``"sgd"`` runs 5 epochs of ``SGDClassifier(loss="hinge",
      alpha=1/(C·N_train))`` — the SVM's own hinge objective, not run to convergence.
      On Fashion-MNIST (60,000 images in [0, 1], 2 cores): Nyström ≈ 80 s, then
      liblinear ≈ 6 min and 82.3 % test accuracy, sgd ≈ 15 s and 81.8 %; the exact
      SVC takes ≈ 6 min on 10,000 images (79.9 %) and grows about quadratically.
      The result says it approximated in ``approximate`` and ``description``.
    - ``"forest"``: random forest, 20 trees, gini criterion, ``random_state=seed``.

    γ = 0.1 is on the scale of the features: pass pixels scaled to [0, 1] (with
    standardized 784-pixel images the kernel would be ≈ 0 between any two images).

    Parameters
    ----------
    name : {"svm", "forest"}
    X_train : array_like, (N_train, ...)
        Images or features; flattened to (N_train, D).
    y_train : array_like of int, (N_train,)
    X_test : array_like, (N_test, ...)
        Flattened to (N_test, D).
    seed : int, default 0
        Random state of the forest and of the Nyström sample.
    exact_svm_limit : int, default 20000
        Largest N_train fitted with the exact kernel SVM.
    nystroem_components : int, default 2000
        Rank of the kernel approximation (capped at N_train).
    linear_solver : {"liblinear", "sgd"}, default "liblinear"
        How the approximation's linear SVM is solved.
    n_jobs : int, optional
        Parallel jobs of the random forest.

    Returns
    -------
    ShallowFit
        ``predictions`` (N_test,), ``description`` (str), ``approximate`` (bool).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC, LinearSVC

    if linear_solver not in LINEAR_SOLVERS:
        raise ConfigError(
            f"linear_solver {linear_solver!r} is not known: expected one of {', '.join(LINEAR_SOLVERS)}"
        )
    if name not in SHALLOW_MODELS:
        raise ConfigError(f"shallow model {name!r} is not known: expected one of {', '.join(SHALLOW_MODELS)}")
    X_train, X_test = _flatten(X_train, "X_train"), _flatten(X_test, "X_test")
    y_train = np.asarray(y_train)
    if y_train.shape != (len(X_train),):
        raise ConfigError(f"y_train has shape {y_train.shape}: expected ({len(X_train)},)")
    if X_test.shape[1] != X_train.shape[1]:
        raise ConfigError(f"X_test has {X_test.shape[1]} features per example, X_train {X_train.shape[1]}")
    n_train = len(X_train)
    approximate = False
    if name == "forest":
        model = RandomForestClassifier(
            n_estimators=FOREST_TREES, criterion="gini", random_state=seed, n_jobs=n_jobs
        )
        description = (
            f"random forest (sklearn RandomForestClassifier, {FOREST_TREES} trees, gini, "
            f"random_state={seed}) on {n_train} examples"
        )
    elif n_train <= exact_svm_limit:
        model = SVC(kernel="rbf", C=SVM_C, gamma=SVM_GAMMA, cache_size=1000)
        description = (
            f"RBF SVM (sklearn SVC, C={SVM_C}, gamma={SVM_GAMMA}), exact kernel, on {n_train} examples"
        )
    else:
        approximate = True
        components = min(nystroem_components, n_train)
        if linear_solver == "liblinear":
            linear = LinearSVC(C=SVM_C, random_state=seed)
            solved = f"LinearSVC(C={SVM_C}, squared hinge, one-vs-rest)"
        else:
            alpha = 1.0 / (SVM_C * n_train)  # the SVM objective C·Σ hinge + ½‖w‖², divided by C·N
            linear = SGDClassifier(
                loss="hinge", alpha=alpha, max_iter=SGD_EPOCHS, tol=None, random_state=seed
            )
            solved = (
                f"SGDClassifier(hinge, alpha=1/(C*N)={alpha:.3g}, {SGD_EPOCHS} epochs, "
                f"one-vs-rest)"
            )
        model = make_pipeline(
            Nystroem(kernel="rbf", gamma=SVM_GAMMA, n_components=components, random_state=seed),
            linear,
        )
        description = (
            f"APPROXIMATE RBF SVM: Nystroem(gamma={SVM_GAMMA}, n_components={components}, "
            f"random_state={seed}) + {solved}, "
            f"because {n_train} training examples > exact_svm_limit={exact_svm_limit}"
        )
    model.fit(X_train, y_train)
    return ShallowFit(np.asarray(model.predict(X_test)), description, approximate)


def _with_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    frame["n"] = frame[list(CELLS)].sum(axis=1)
    for column, values in ratios(frame).items():
        frame[column] = values
    return frame


def _check_correct(shallow_correct, deep_correct) -> tuple[np.ndarray, np.ndarray]:
    shallow = _as_bool(shallow_correct, "shallow_correct")
    deep = _as_bool(deep_correct, "deep_correct")
    if shallow.ndim != 1:
        raise ConfigError(f"shallow_correct has shape {shallow.shape}: expected (N,)")
    if deep.ndim < 1 or deep.shape[-1] != shallow.shape[0]:
        raise ConfigError(
            f"deep_correct has shape {deep.shape}: expected (..., {shallow.shape[0]}), "
            "the last axis over the same examples as shallow_correct"
        )
    return shallow, deep


def _as_bool(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == bool:
        return array
    if array.dtype.kind in "iuf" and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ConfigError(f"{name} must hold booleans (or 0/1), got dtype {array.dtype}")


def _check_steps(steps, n_steps: int) -> np.ndarray:
    if steps is None:
        return np.arange(n_steps, dtype=np.int64)
    steps = np.asarray(steps)
    if steps.shape != (n_steps,):
        raise ConfigError(f"steps has shape {steps.shape}: expected ({n_steps},), one per logged step")
    return steps


def _flatten(X, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim < 2 or len(X) == 0:
        raise ConfigError(f"{name} has shape {X.shape}: expected (N, ...) with N >= 1")
    return X.reshape(len(X), -1)
