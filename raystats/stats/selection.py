"""Which examples an ablation removes, or a corruption relabels, chosen by easiness.

Pure numpy. Every selection takes an explicit random source (a seed or a
``np.random.Generator``), so a sweep trial is reproducible from its seed, and every
selection returns ``(removed_ids, kept_ids)``: two sorted integer arrays of example ids
that partition the input, with ``len(kept_ids) == kept_size(N, ratio)`` exactly.

Strategies of the reference studies
-----------------------------------
``easy``, ``hard``, ``random``
    Kishida & Nakayama, sec. 3.5: "we first normalize easiness e_i by dividing each
    e_i by sum_j e_j ... We randomly select which to ablate by using the normalized
    easiness." See :func:`select_by_normalized_easiness` for the easy score used in
    each orientation.
``beta_easy``, ``beta_hard``, ``beta_random``
    The longer version, sec. 5 (ablation and corrupted labels): "we sort training
    examples according to easiness and decide which to discard by beta distribution":
    Beta(3, 1) mostly easy, Beta(1, 3) mostly hard, Beta(1, 1) random. See
    :func:`select_by_beta`. (Its corrupted-labels paragraph lists Beta(1, 1) for "hard"
    and Beta(1, 3) for "random"; we read that as a slip and use the ablation mapping,
    which its Figure 4 caption confirms: "hard" processes low-easiness examples.)
``stepwise``
    sec. 3.5: remove 10% of the easy examples, recompute easiness on what is left,
    repeat until the target ratio. It retrains between steps, so this module gives
    only the plan (:func:`stepwise_plan`) and one step (:func:`stepwise_step`).

Both easiness forms are accepted: ``kind="loss"`` (mean cross-entropy, low = easy)
and ``kind="count"`` (c_i / max_j c_j in [0, 1], high = easy).

Sampling without replacement
----------------------------
"Chance of removal proportional to w_i" is read as successive sampling: the first
removed example is drawn with probability w_i / sum_j w_j, the next with the same rule
among those left, and so on until ``removed_size`` are drawn (what
``Generator.choice(replace=False, p=w/sum(w))`` does). We draw it in one vectorized
step with the Gumbel-top-k trick (Vieira 2014; Kool, van Hoof & Welling 2019): the k
largest keys ``log w_i + G_i``, G_i ~ Gumbel(0, 1) i.i.d., are distributed exactly as
k successive draws. Unlike ``choice``, it cannot fail when fewer than k weights are
nonzero: zero-weight examples come last, in uniformly random order, which is the
limit of giving them a common weight eps -> 0.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from raystats.errors import ConfigError

STRATEGIES = ("easy", "hard", "random", "beta_easy", "beta_hard", "beta_random", "stepwise")
"""Every ablation / corruption strategy; all but ``stepwise`` are one-shot (:func:`select`)."""

BETA_PARAMETERS = {"beta_easy": (3.0, 1.0), "beta_hard": (1.0, 3.0), "beta_random": (1.0, 1.0)}
"""(a, b) of the Beta distribution each ``beta_*`` strategy draws removals from."""

_KINDS = ("loss", "count")

# float32 cross-entropy computed as logsumexp(z) - z_label can land a rounding error
# below zero; anything further below is not a loss.
_LOSS_ROUNDING = 1e-5


# ---------------------------------------------------------------------------- sizes


def kept_size(n: int, ratio: float) -> int:
    """Number of examples an ablation at ``ratio`` keeps: ``round((1 - ratio) * n)``.

    Python's ``round`` (half to even) on the float product, literally the formula of
    the issue, so a caller computing it the same way always agrees.

    Parameters
    ----------
    n : int
        Number of examples before the ablation, ``n >= 0``.
    ratio : float
        Ablation (or random-label) ratio in [0, 1).

    Raises
    ------
    ConfigError
        If ``ratio`` is not in [0, 1) or ``n`` is not a non-negative integer.

    Examples
    --------
    >>> kept_size(1797, 0.3)
    1258
    >>> kept_size(10, 0.0)
    10
    """
    n = _check_count(n, "n")
    ratio = _check_ratio(ratio)
    return int(round((1.0 - ratio) * n))


def removed_size(n: int, ratio: float) -> int:
    """Number of examples an ablation at ``ratio`` removes: ``n - kept_size(n, ratio)``."""
    return _check_count(n, "n") - kept_size(n, ratio)


# ----------------------------------------------------------------- one-shot selection


def select_by_normalized_easiness(
    easiness: np.ndarray,
    ratio: float,
    strategy: str,
    rng: np.random.Generator | int,
    kind: str = "loss",
    example_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove examples with chance proportional to their normalized easiness.

    Kishida & Nakayama, sec. 3.5. Each example gets a nonnegative score s_i oriented
    by the strategy, is normalized to p_i = s_i / sum_j s_j, and ``removed_size(N,
    ratio)`` examples are drawn without replacement by successive sampling with
    probabilities p (module docstring). The scores are

    ============  ==========================  ===========================
    strategy      kind="loss" (mean CE l_i)   kind="count" (e_i in [0,1])
    ============  ==========================  ===========================
    ``easy``      u_i = exp(-l_i)             u_i = e_i
    ``hard``      1 - u_i = 1 - exp(-l_i)     1 - e_i
    ``random``    1                           1
    ============  ==========================  ===========================

    Why these: for the count form the paper's easiness already points "high = easy",
    so ``easy`` is its literal rule p_i = e_i / sum_j e_j, and ``hard`` is the same rule
    on the reverse orientation 1 - e_i. For the loss form we first map the loss onto the
    same [0, 1] "high = easy" scale with u_i = exp(-l_i): since l_i is the mean over the
    M trials of -log p_m(t_i), u_i is the geometric mean over the trials of the
    probability given to the true label, a per-example quantity that does not depend on
    the other examples (unlike max_j l_j - l_i, which one mislabeled outlier with a huge
    loss would flatten). ``hard`` then uses 1 - u_i, which is l_i - l_i^2/2 + ... ~ l_i
    for small losses, i.e. the paper's literal e_i / sum_j e_j on loss, but bounded by 1
    so a handful of very high-loss (often mislabeled) examples cannot take every draw.
    The two orientations are complementary (s_easy + s_hard = 1), so in both forms an
    example's ``easy`` and ``hard`` weights sum to the same constant.

    Parameters
    ----------
    easiness : (N,) array
        Easiness of each example, in the form ``kind``.
    ratio : float
        Fraction of the N examples to remove, in [0, 1).
    strategy : {"easy", "hard", "random"}
    rng : numpy.random.Generator or int
        Random source, or a seed for one.
    kind : {"loss", "count"}
    example_ids : (N,) int array, optional
        Id of each entry of ``easiness``; default ``arange(N)``.

    Returns
    -------
    removed_ids, kept_ids : sorted int arrays
        ``len(kept_ids) == kept_size(N, ratio)``; together they are ``example_ids``.

    Examples
    --------
    >>> loss = np.array([0.01, 0.02, 3.0, 4.0])
    >>> removed, kept = select_by_normalized_easiness(loss, 0.5, "easy", rng=0)
    >>> len(removed), len(kept)
    (2, 2)
    """
    easiness, example_ids = _check_easiness(easiness, kind, example_ids)
    log_weight = _normalized_easiness_log_weight(easiness, strategy, kind)
    return _successive_sample(log_weight, removed_size(len(easiness), ratio), rng, example_ids)


def select_by_beta(
    easiness: np.ndarray,
    ratio: float,
    a: float,
    b: float,
    rng: np.random.Generator | int,
    kind: str = "loss",
    example_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank examples by easiness and draw which to remove from Beta(a, b) over the ranks.

    Longer version of Kishida & Nakayama, sec. 5: Beta(3, 1) removes mostly easy
    examples, Beta(1, 3) mostly hard ones, Beta(1, 1) uniformly at random.

    Each example sits at its easiness position x_i in (0, 1), 1 = easiest
    (:func:`easiness_position`: x = (r + 1/2) / N with r the rank from the hardest,
    r = N - 1 the easiest). Removals are successive draws with weights

        w_i = f_{a,b}(x_i) = x_i^(a-1) (1 - x_i)^(b-1) / B(a, b),

    the Beta density at the example's position, so "Beta mass near 1" means "easy".
    Equivalently, up to evaluating the density at the middle of each example's 1/N bin
    instead of integrating over it: draw x ~ Beta(a, b), remove the example whose bin
    contains x, and draw again whenever that example is already removed.

    What holds exactly: the first removed example's position has mean
    sum_i x_i w_i / sum_i w_i = a / (a + b) + O(1/N^2) (midpoint rule), and
    Beta(1, 1) removes a uniformly random subset. The removed set's mean position
    tends to a / (a + b) as the ratio goes to 0 and drifts toward 1/2 as it grows,
    because without replacement the same easiest examples cannot be removed twice:
    for Beta(3, 1) and N = 1000 it is ~0.745 at ratio 0.05, ~0.72 at 0.3, ~0.69 at 0.5,
    and 1/2 when everything is removed.

    Parameters
    ----------
    easiness : (N,) array
        Easiness of each example, in the form ``kind``.
    ratio : float
        Fraction to remove, in [0, 1).
    a, b : float
        Beta parameters, both > 0.
    rng : numpy.random.Generator or int
    kind : {"loss", "count"}
    example_ids : (N,) int array, optional

    Returns
    -------
    removed_ids, kept_ids : sorted int arrays
    """
    easiness, example_ids = _check_easiness(easiness, kind, example_ids)
    a, b = _check_beta_parameter(a, "a"), _check_beta_parameter(b, "b")
    position = easiness_position(easiness, kind)
    # Log density up to the constant -log B(a, b), which the normalization cancels;
    # in logs so extreme (a, b) cannot underflow every weight to zero.
    log_weight = (a - 1.0) * np.log(position) + (b - 1.0) * np.log1p(-position)
    return _successive_sample(log_weight, removed_size(len(easiness), ratio), rng, example_ids)


def select(
    strategy: str,
    easiness: np.ndarray,
    ratio: float,
    rng: np.random.Generator | int,
    kind: str = "loss",
    example_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One-shot selection by strategy name: ``(removed_ids, kept_ids)``.

    ``easy`` / ``hard`` / ``random`` go to :func:`select_by_normalized_easiness`;
    ``beta_easy`` / ``beta_hard`` / ``beta_random`` to :func:`select_by_beta` with
    Beta(3, 1) / Beta(1, 3) / Beta(1, 1). For label corruption, the "removed" ids are
    the ones to relabel (:func:`corrupt_labels`).

    Raises
    ------
    ConfigError
        For an unknown strategy, and for ``stepwise``, which retrains between steps
        (use :func:`stepwise_plan` and :func:`stepwise_step`).
    """
    if strategy in ("easy", "hard", "random"):
        return select_by_normalized_easiness(easiness, ratio, strategy, rng, kind, example_ids)
    if strategy in BETA_PARAMETERS:
        a, b = BETA_PARAMETERS[strategy]
        return select_by_beta(easiness, ratio, a, b, rng, kind, example_ids)
    if strategy == "stepwise":
        raise ConfigError(
            "strategy 'stepwise' retrains between steps and cannot be selected in one shot; "
            "use stepwise_plan() and stepwise_step()"
        )
    raise ConfigError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


# ------------------------------------------------------------------------- stepwise


def stepwise_plan(n: int, target_ratio: float, step_frac: float = 0.1) -> list[int]:
    """Kept sizes after each step of a stepwise ablation down to ``target_ratio``.

    Kishida & Nakayama, sec. 3.5 / Fig. 4: "every time 'stepwise' ablates 10% of easy
    examples ... and re-calculate[s] easiness until reaching the target ablation ratio".
    We read the 10% as of the examples that remain (as the issue states):

        n_0 = n,   n_{k+1} = max(target, min(n_k - 1, round((1 - step_frac) * n_k))),

    stopping at the first step that reaches ``target = kept_size(n, target_ratio)``, so
    the last entry is exactly the target. Every step removes at least one example (for
    tiny n_k, rounding would otherwise keep all of them). Reaching ratio rho takes about
    log(1 - rho) / log(1 - step_frac) steps (22 for rho = 0.9), each a retraining.

    Parameters
    ----------
    n : int
        Examples before the first step.
    target_ratio : float
        Final ablation ratio, in [0, 1).
    step_frac : float
        Fraction of the remaining examples each step removes, in (0, 1).

    Returns
    -------
    list of int
        Strictly decreasing kept sizes, one per step; empty when nothing is removed.

    Examples
    --------
    >>> stepwise_plan(1000, 0.3)
    [900, 810, 729, 700]
    """
    target = kept_size(n, target_ratio)
    if isinstance(step_frac, bool) or not isinstance(step_frac, numbers.Real) or not 0 < step_frac < 1:
        raise ConfigError(f"step_frac must be a number in (0, 1); got {step_frac!r}")
    sizes, current = [], int(n)
    while current > target:
        current = max(target, min(current - 1, int(round((1.0 - step_frac) * current))))
        sizes.append(current)
    return sizes


def stepwise_step(
    easiness_of_remaining: np.ndarray,
    remaining_ids: np.ndarray,
    next_kept_size: int,
    rng: np.random.Generator | int,
    kind: str = "loss",
) -> tuple[np.ndarray, np.ndarray]:
    """One stepwise step: remove easy examples until ``next_kept_size`` remain.

    Draws ``len(remaining_ids) - next_kept_size`` removals by the ``easy`` rule of
    :func:`select_by_normalized_easiness`, from easiness recomputed on the remaining
    examples (a new easiness run on the subset).

    Returns
    -------
    removed_ids, kept_ids : sorted int arrays
        ``len(kept_ids) == next_kept_size``.
    """
    easiness, remaining_ids = _check_easiness(easiness_of_remaining, kind, remaining_ids)
    next_kept_size = _check_count(next_kept_size, "next_kept_size")
    if next_kept_size > len(easiness):
        raise ConfigError(
            f"next_kept_size {next_kept_size} exceeds the {len(easiness)} remaining examples; "
            "expected a size from stepwise_plan()"
        )
    log_weight = _normalized_easiness_log_weight(easiness, "easy", kind)
    return _successive_sample(log_weight, len(easiness) - next_kept_size, rng, remaining_ids)


# ------------------------------------------------------------------ label corruption


def corrupt_labels(
    labels: np.ndarray,
    ids: np.ndarray,
    num_classes: int,
    rng: np.random.Generator | int,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Give each selected example a random wrong label.

    Longer version of Kishida & Nakayama, sec. 5 (after Zhang et al. 2017): the new
    label of example i is uniform over the num_classes - 1 classes other than its
    current one, drawn as (y_i + k_i) mod C with k_i uniform on {1, ..., C - 1}.

    Parameters
    ----------
    labels : (N,) int array
        Labels indexed by example_id; not modified.
    ids : int array
        Example ids to corrupt (for example the removed ids of :func:`select`); unique.
    num_classes : int
        C >= 2.
    rng : numpy.random.Generator or int

    Returns
    -------
    new_labels : (N,) array
        A copy of ``labels`` (same dtype) with the selected entries replaced.
    changes : list of (example_id, new_label)
        One pair per corrupted example, in increasing example_id.
    """
    labels = np.asarray(labels)
    num_classes = _check_count(num_classes, "num_classes")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2 to draw a wrong label; got {num_classes}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(
            f"labels must be a 1-d integer array; got shape {labels.shape}, dtype {labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"labels must lie in [0, {num_classes}); got range [{labels.min()}, {labels.max()}]"
        )
    ids = np.sort(_check_ids(ids, "ids"))
    if ids.size and (ids[0] < 0 or ids[-1] >= len(labels)):
        raise ConfigError(
            f"ids must be example ids in [0, {len(labels)}); got range [{ids[0]}, {ids[-1]}]"
        )
    generator = _generator(rng)
    shift = generator.integers(1, num_classes, size=ids.size)
    new_labels = labels.copy()
    new_labels[ids] = (labels[ids].astype(np.int64) + shift) % num_classes
    return new_labels, [(int(i), int(new_labels[i])) for i in ids]


# ---------------------------------------------------------------------- compression


@dataclass(frozen=True)
class CompressionGap:
    """How much an easiness-chosen subset of ``target_size`` is worth over a random one.

    Attributes
    ----------
    target_size : float
        Kept size compared.
    easiness_accuracy, random_accuracy : float
        Accuracy of each curve at ``target_size`` (linear interpolation).
    accuracy_gap : float
        ``easiness_accuracy - random_accuracy``.
    matching_random_size : float
        Smallest kept size at which the random curve reaches ``easiness_accuracy``; NaN
        if it never does within the sizes measured.
    extra_random_examples : float
        ``matching_random_size - target_size``: how many more random examples buy the
        same accuracy (negative if random needs fewer); NaN when never matched.
    """

    target_size: float
    easiness_accuracy: float
    random_accuracy: float
    accuracy_gap: float
    matching_random_size: float
    extra_random_examples: float


def compression_gap(
    easiness_sizes: np.ndarray,
    easiness_accuracy: np.ndarray,
    random_sizes: np.ndarray,
    random_accuracy: np.ndarray,
    target_size: float,
) -> CompressionGap:
    """Accuracy gap at a kept size, and the extra random examples needed to close it.

    Kishida & Nakayama, sec. 3.5: on ImageNet-1k "the difference in accuracy between
    'random' and 'stepwise' is around 1.1% at 0.3 ablation ratio. It is approximately
    worth extra 100k images to achieve the comparable accuracy in 'random'."

    Each curve is accuracy against kept size; repeated sizes (one row per seed) are
    averaged first, then the curve is read piecewise linearly. With a* the easiness
    curve's accuracy at ``target_size``, the matching random size is the smallest size
    s at which the random curve's linear interpolation reaches a* (the first crossing,
    so a noisy, non-monotone random curve is read conservatively), and the extra random
    examples are s - target_size.

    Parameters
    ----------
    easiness_sizes, easiness_accuracy : 1-d arrays of the same length
        Kept sizes and test accuracies of the subsets chosen by easiness.
    random_sizes, random_accuracy : 1-d arrays of the same length
        The same for random subsets.
    target_size : float
        Kept size to compare at; must lie within both curves' size ranges.

    Returns
    -------
    CompressionGap

    Examples
    --------
    >>> gap = compression_gap([500, 1000], [0.90, 0.95], [500, 1000], [0.85, 0.95], 500)
    >>> round(gap.accuracy_gap, 6), round(gap.extra_random_examples, 6)
    (0.05, 250.0)
    """
    easiness_sizes, easiness_accuracy = _mean_curve(easiness_sizes, easiness_accuracy, "easiness")
    random_sizes, random_accuracy = _mean_curve(random_sizes, random_accuracy, "random")
    target = float(target_size)
    for name, sizes in (("easiness", easiness_sizes), ("random", random_sizes)):
        if not sizes[0] <= target <= sizes[-1]:
            raise ConfigError(
                f"target_size {target_size!r} lies outside the {name} curve's sizes "
                f"[{sizes[0]:g}, {sizes[-1]:g}]; pick a size both curves measured"
            )
    easy_acc = float(np.interp(target, easiness_sizes, easiness_accuracy))
    random_acc = float(np.interp(target, random_sizes, random_accuracy))
    match = _first_crossing(random_sizes, random_accuracy, easy_acc)
    return CompressionGap(
        target_size=target,
        easiness_accuracy=easy_acc,
        random_accuracy=random_acc,
        accuracy_gap=easy_acc - random_acc,
        matching_random_size=match,
        extra_random_examples=match - target,
    )


# ------------------------------------------------------------------------- positions


def easiness_position(easiness: np.ndarray, kind: str = "loss") -> np.ndarray:
    """Each example's place in the easiness order, scaled into (0, 1); 1 = easiest.

    x_i = (r_i + 1/2) / N, with r_i the 0-based rank from the hardest example
    (r = N - 1 for the easiest). Tied examples share the mean rank of their group, so
    the position, and with it any chance of removal drawn from it, never depends on
    example_id: with the count form most examples tie (it takes only M + 1 values), and
    breaking those ties by id would favour low ids, which in class-sorted datasets
    (image folders) means favouring some classes. The mean of x over all examples is
    exactly 1/2 with or without ties.

    Parameters
    ----------
    easiness : (N,) array
    kind : {"loss", "count"}
        ``loss``: low = easy; ``count``: high = easy.
    """
    easiness, _ = _check_easiness(easiness, kind, None)
    easy_score = -easiness if kind == "loss" else easiness
    values, inverse, counts = np.unique(easy_score, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts
    mean_rank = first_rank + (counts - 1) / 2.0
    return (mean_rank[inverse] + 0.5) / len(easiness)


# -------------------------------------------------------------------------- helpers


def _normalized_easiness_log_weight(easiness: np.ndarray, strategy: str, kind: str) -> np.ndarray:
    """log s_i of the table in select_by_normalized_easiness (-inf for a zero weight)."""
    with np.errstate(divide="ignore"):
        if strategy == "random":
            return np.zeros(len(easiness))
        if kind == "loss":
            loss = np.maximum(easiness, 0.0)
            if strategy == "easy":
                return -loss  # log exp(-l), exact with no underflow for large l
            if strategy == "hard":
                return np.log(-np.expm1(-loss))  # log(1 - exp(-l)), accurate for small l
        else:
            if strategy == "easy":
                return np.log(easiness)
            if strategy == "hard":
                return np.log1p(-easiness)
    raise ConfigError(f"unknown normalized-easiness strategy {strategy!r}; expected easy, hard or random")


def _successive_sample(
    log_weight: np.ndarray, k: int, rng: np.random.Generator | int, example_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel-top-k: the k largest log w_i + G_i are k successive draws proportional to w."""
    generator = _generator(rng)
    gumbel = generator.gumbel(size=len(log_weight))
    key = log_weight + gumbel
    # Zero weights give key -inf; lexsort orders them among themselves by their Gumbel
    # noise, i.e. uniformly at random, so they fill any draws the positive weights
    # cannot.
    order = np.lexsort((gumbel, key))
    removed = order[len(order) - k:]
    mask = np.zeros(len(log_weight), dtype=bool)
    mask[removed] = True
    return np.sort(example_ids[mask]), np.sort(example_ids[~mask])


def _first_crossing(sizes: np.ndarray, accuracy: np.ndarray, level: float) -> float:
    """Smallest s where the piecewise-linear curve through (sizes, accuracy) reaches level."""
    reached = np.flatnonzero(accuracy >= level)
    if reached.size == 0:
        return float("nan")
    j = reached[0]
    if j == 0:
        return float(sizes[0])
    s0, s1, a0, a1 = sizes[j - 1], sizes[j], accuracy[j - 1], accuracy[j]
    return float(s0 + (level - a0) / (a1 - a0) * (s1 - s0))


def _mean_curve(sizes, accuracy, name: str) -> tuple[np.ndarray, np.ndarray]:
    sizes, accuracy = np.asarray(sizes, dtype=float), np.asarray(accuracy, dtype=float)
    if sizes.ndim != 1 or sizes.shape != accuracy.shape or sizes.size == 0:
        raise ConfigError(
            f"the {name} curve needs two 1-d arrays of one length; "
            f"got shapes {sizes.shape} and {accuracy.shape}"
        )
    if not (np.all(np.isfinite(sizes)) and np.all(np.isfinite(accuracy))):
        raise ConfigError(f"the {name} curve holds NaN or infinite values")
    unique_sizes, inverse = np.unique(sizes, return_inverse=True)
    mean_accuracy = np.bincount(inverse, weights=accuracy) / np.bincount(inverse)
    return unique_sizes, mean_accuracy


def _check_easiness(easiness, kind: str, example_ids) -> tuple[np.ndarray, np.ndarray]:
    if kind not in _KINDS:
        raise ConfigError(f"unknown easiness kind {kind!r}; expected one of {', '.join(_KINDS)}")
    easiness = np.asarray(easiness, dtype=float)
    if easiness.ndim != 1:
        raise ConfigError(
            f"easiness must be a 1-d array, one value per example; got shape {easiness.shape}"
        )
    if not np.all(np.isfinite(easiness)):
        raise ConfigError(
            f"easiness holds {int(np.sum(~np.isfinite(easiness)))} NaN or infinite values; "
            "every example needs a finite easiness"
        )
    if kind == "loss" and easiness.size and easiness.min() < -_LOSS_ROUNDING:
        raise ConfigError(
            f"loss-form easiness must be >= 0 (a cross-entropy); got minimum {easiness.min()!r}"
        )
    if kind == "count" and easiness.size and (easiness.min() < 0 or easiness.max() > 1):
        raise ConfigError(
            f"count-form easiness must lie in [0, 1] (c_i / max_j c_j); "
            f"got range [{easiness.min()!r}, {easiness.max()!r}]"
        )
    if example_ids is None:
        return easiness, np.arange(len(easiness))
    example_ids = _check_ids(example_ids, "example_ids")
    if len(example_ids) != len(easiness):
        raise ConfigError(
            f"example_ids has {len(example_ids)} entries but easiness has {len(easiness)}; "
            "expected one id per value"
        )
    return easiness, example_ids


def _check_ids(ids, name: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size == 0:
        return ids.astype(np.int64).reshape(0)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"{name} must be a 1-d integer array; got shape {ids.shape}, dtype {ids.dtype}")
    if len(np.unique(ids)) != len(ids):
        raise ConfigError(f"{name} holds repeated ids; expected each example once")
    return ids


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= float(ratio) < 1.0:
        raise ConfigError(f"ratio must be a number in [0, 1); got {ratio!r}")
    return float(ratio)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer; got {value!r}")
    return int(value)


def _check_beta_parameter(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ConfigError(f"Beta parameter {name} must be a number > 0; got {value!r}")
    if not np.isfinite(float(value)):
        raise ConfigError(f"Beta parameter {name} must be finite; got {value!r}")
    return float(value)


def _generator(rng) -> np.random.Generator:
    # No default: a selection nobody can reproduce would make a sweep's trials
    # incomparable across resumptions.
    if rng is None:
        raise ConfigError(
            "rng is None; pass a seed or a numpy.random.Generator so the selection is reproducible"
        )
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or not isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        raise ConfigError(f"rng must be a numpy.random.Generator or an integer seed; got {rng!r}")
    return np.random.default_rng(rng)
