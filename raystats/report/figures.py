"""The report's figures, each a function of plain arrays or DataFrames.

Nothing here knows about clients, stores or Ray: a figure function takes the numbers it
draws and returns a :class:`matplotlib.figure.Figure`. The figures are built without
pyplot, so no global figure registry or display backend is involved and they can be
drawn from any thread or worker.

Images come in the data set's layout, uint8 ``(C, H, W)``: one channel is drawn with a
gray colormap, three channels are transposed to ``(H, W, C)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

DPI = 110
EASY_COLOR = "tab:green"
HARD_COLOR = "tab:red"
RANDOM_COLOR = "tab:gray"
_CELL_INCHES = 0.95  # one image cell of a grid; readable at DPI for 8×8 up to 64×64 images


def display_image(image: np.ndarray) -> tuple[np.ndarray, dict]:
    """An image in ``(C, H, W)`` as an array ``imshow`` draws, with its keyword arguments.

    Parameters
    ----------
    image : (C, H, W) array
        uint8 pixels, or float pixels on the same 0..255 scale (a mean image).

    Returns
    -------
    array : (H, W) or (H, W, 3) array
    kwargs : dict
        ``cmap="gray"`` with the 0..255 range for one channel; nothing for RGB, whose
        floats are scaled to 0..1 as ``imshow`` expects.

    Examples
    --------
    >>> array, kwargs = display_image(np.zeros((1, 8, 8), np.uint8))
    >>> array.shape, kwargs["cmap"]
    ((8, 8), 'gray')
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected an image of shape (C, H, W), got shape {image.shape}")
    if image.shape[0] == 3:
        rgb = np.transpose(image, (1, 2, 0))
        if rgb.dtype != np.uint8:
            rgb = np.clip(rgb / 255.0, 0.0, 1.0)
        return rgb, {}
    # One channel (or an unusual count, of which the first is shown): gray, fixed range so
    # that a faint mean image looks faint instead of being stretched to full contrast.
    return image[0], {"cmap": "gray", "vmin": 0, "vmax": 255}


def example_grid(
    images: np.ndarray,
    rows: Sequence[np.ndarray],
    values: Sequence[np.ndarray],
    row_names: Sequence[str],
    title: str,
    value_label: str = "",
) -> Figure:
    """A grid of example images: one row per class, its examples left to right.

    Parameters
    ----------
    images : (N, C, H, W) array
        The split's images; ``images[example_id]`` is drawn.
    rows : sequence of int arrays
        Example ids of each row, in the order to draw them (at most k each).
    values : sequence of float arrays
        The value printed small under each image, aligned with ``rows``.
    row_names : sequence of str
        The name written left of each row (the class).
    title : str
    value_label : str
        What the small numbers are, added to the title.

    Returns
    -------
    Figure
    """
    n_rows = max(1, len(rows))
    k = max([len(r) for r in rows] + [1])
    fig = Figure(figsize=(1.2 + k * _CELL_INCHES, 0.7 + n_rows * (_CELL_INCHES + 0.2)), dpi=DPI)
    axes = fig.subplots(n_rows, k, squeeze=False)
    for r, (ids, row_values) in enumerate(zip(rows, values)):
        for c in range(k):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(ids):
                ax.set_axis_off()
                continue
            array, kwargs = display_image(images[int(ids[c])])
            ax.imshow(array, interpolation="nearest", **kwargs)
            ax.set_xlabel(f"{row_values[c]:.3g}", fontsize=7, labelpad=2)
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r, 0].set_ylabel(row_names[r], rotation=0, ha="right", va="center", fontsize=10, labelpad=8)
        if len(ids) == 0:
            axes[r, 0].set_axis_on()
            axes[r, 0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=8, transform=axes[r, 0].transAxes)
    fig.suptitle(f"{title}\n({value_label})" if value_label else title, fontsize=11)
    fig.subplots_adjust(left=0.6 / fig.get_figwidth() + 0.02, right=0.99, top=1 - 0.6 / fig.get_figheight(),
                        bottom=0.02, wspace=0.08, hspace=0.35)
    return fig


def mean_image_grid(
    means: Sequence[Sequence[np.ndarray | None]],
    set_names: Sequence[str],
    class_names: Sequence[str],
    counts: Sequence[Sequence[int]],
    title: str,
) -> Figure:
    """Averaged images: one row per example set, one column per class.

    Kishida & Nakayama, Fig. 2: the mean image of the easy examples of a class looks
    like a clean prototype, the mean of the hard ones is blurred; a random sample of the
    same size sits between them for reference.

    Parameters
    ----------
    means : rows × columns of (C, H, W) float arrays or None
        ``means[s][c]`` is the pixel-wise mean of set ``s`` restricted to class ``c``;
        None when that set has no example of the class.
    set_names : sequence of str
        Row names, e.g. ``("easy", "random", "hard")``.
    class_names : sequence of str
        Column names.
    counts : rows × columns of int
        Number of images averaged in each cell, printed under it.
    title : str

    Returns
    -------
    Figure
    """
    n_sets, n_classes = len(set_names), len(class_names)
    fig = Figure(figsize=(1.3 + n_classes * _CELL_INCHES, 0.9 + n_sets * (_CELL_INCHES + 0.35)), dpi=DPI)
    axes = fig.subplots(n_sets, n_classes, squeeze=False)
    for s in range(n_sets):
        for c in range(n_classes):
            ax = axes[s, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if means[s][c] is None:
                ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=8, transform=ax.transAxes)
            else:
                array, kwargs = display_image(means[s][c])
                ax.imshow(array, interpolation="nearest", **kwargs)
            ax.set_xlabel(f"n={counts[s][c]}", fontsize=7, labelpad=2)
            if s == 0:
                ax.set_title(class_names[c], fontsize=10)
        axes[s, 0].set_ylabel(set_names[s], rotation=0, ha="right", va="center", fontsize=10, labelpad=8)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.8 / fig.get_figwidth() + 0.02, right=0.99, top=1 - 0.75 / fig.get_figheight(),
                        bottom=0.04, wspace=0.08, hspace=0.45)
    return fig


def easiness_histogram(
    loss: np.ndarray,
    count: np.ndarray,
    loss_thresholds: tuple[float, float],
    count_thresholds: tuple[float, float],
    frac: float,
    title: str,
) -> Figure:
    """Distribution of both easiness forms, with the easy and hard set boundaries.

    Parameters
    ----------
    loss : (N,) float array
        Loss-form easiness (mean cross-entropy over trials; low = easy).
    count : (N,) float array
        Count-form easiness ``c_i / max_j c_j`` (high = easy).
    loss_thresholds : (easy, hard)
        The largest loss in the easy set and the smallest loss in the hard set.
    count_thresholds : (easy, hard)
        The smallest count easiness in the easy set and the largest in the hard set.
    frac : float
        The set fraction q, for the legend.
    title : str

    Returns
    -------
    Figure
    """
    fig = Figure(figsize=(11, 4.2), dpi=DPI)
    left, right = fig.subplots(1, 2)
    percent = f"{frac:.0%}" if frac * 100 == round(frac * 100) else f"{frac:.1%}"

    loss = np.asarray(loss, dtype=np.float64)
    left.hist(loss, bins=60, color="tab:blue", alpha=0.8)
    easy, hard = loss_thresholds
    left.axvspan(loss.min(), easy, color=EASY_COLOR, alpha=0.12)
    left.axvspan(hard, loss.max(), color=HARD_COLOR, alpha=0.12)
    left.axvline(easy, color=EASY_COLOR, linestyle="--", label=f"easy set (lowest {percent}): loss ≤ {easy:.3g}")
    left.axvline(hard, color=HARD_COLOR, linestyle="--", label=f"hard set (highest {percent}): loss ≥ {hard:.3g}")
    left.set_yscale("log")
    left.set_xlabel("loss-form easiness: mean cross-entropy over trials (low = easy)")
    left.set_ylabel("examples (log scale)")
    left.set_title("loss form")
    left.legend(fontsize=8, loc="upper right")

    count = np.asarray(count, dtype=np.float64)
    levels, numbers = np.unique(count, return_counts=True)
    width = 0.8 * (np.diff(levels).min() if len(levels) > 1 else 0.1)
    colors = [
        EASY_COLOR if level >= count_thresholds[0] else HARD_COLOR if level <= count_thresholds[1] else "tab:blue"
        for level in levels
    ]
    right.bar(levels, numbers, width=width, color=colors, alpha=0.85)
    right.axvline(count_thresholds[0], color=EASY_COLOR, linestyle="--",
                  label=f"easy set (highest {percent}): ≥ {count_thresholds[0]:.3g}")
    right.axvline(count_thresholds[1], color=HARD_COLOR, linestyle="--",
                  label=f"hard set (lowest {percent}): ≤ {count_thresholds[1]:.3g}")
    right.set_xlabel("count-form easiness: correct trials / max over examples (high = easy)")
    right.set_ylabel("examples")
    right.set_title("count form")
    right.legend(fontsize=8, loc="upper left")

    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def matching_figure(
    panels: Mapping[str, Mapping[str, pd.DataFrame]],
    chance: float,
    title: str,
) -> Figure:
    """Matching rate over training steps, one panel per set kind, against chance.

    Parameters
    ----------
    panels : mapping of panel title → mapping of curve label → DataFrame
        Each DataFrame has columns ``step`` and ``matching_rate``; e.g.
        ``{"easy sets": {"trial halves": df, ...}, "hard sets": {...}}``.
    chance : float
        Expected rate of two random sets of the same fraction (q), drawn dashed.
    title : str

    Returns
    -------
    Figure
    """
    fig = Figure(figsize=(5.5 * max(1, len(panels)), 4.2), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(panels)), sharey=True))
    for ax, (name, curves) in zip(axes, panels.items()):
        for label, curve in curves.items():
            ax.plot(curve["step"], curve["matching_rate"], marker="o", markersize=4, label=label)
        ax.axhline(chance, color="black", linestyle=":", label=f"chance (q = {chance:.3g})")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("step (parameter updates)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("matching rate |A ∩ B| / max(|A|, |B|)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def data_map_figure(
    confidence: np.ndarray,
    variability: np.ndarray,
    correctness: np.ndarray,
    title: str,
    max_points: int = 20_000,
    seed: int = 0,
) -> Figure:
    """Dataset cartography (Swayamdipta et al.): confidence against variability.

    Parameters
    ----------
    confidence : (N,) float array
        Mean probability of the label over logged steps (averaged over trials).
    variability : (N,) float array
        Standard deviation of that probability over logged steps.
    correctness : (N,) float array
        Fraction of logged steps at which the example was classified correctly.
    title : str
    max_points : int
        Draw at most this many examples, a seeded random sample of them, so that a
        million-example map stays legible and quick.
    seed : int

    Returns
    -------
    Figure
    """
    confidence, variability, correctness = (np.asarray(a, dtype=np.float64) for a in
                                            (confidence, variability, correctness))
    keep = np.flatnonzero(np.isfinite(confidence) & np.isfinite(variability) & np.isfinite(correctness))
    shown = len(keep)
    if shown > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_points, replace=False))
    fig = Figure(figsize=(7, 5.5), dpi=DPI)
    ax = fig.subplots()
    points = ax.scatter(variability[keep], confidence[keep], c=correctness[keep], cmap="viridis",
                        vmin=0, vmax=1, s=9, alpha=0.7, linewidths=0)
    fig.colorbar(points, ax=ax, label="correctness (fraction of logged steps correct)")
    ax.set_xlabel("variability (std of p(label) over logged steps)")
    ax.set_ylabel("confidence (mean p(label) over logged steps)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=-0.005)
    regions = {"easy-to-learn": (0.02, 0.96, "top"), "hard-to-learn": (0.02, 0.04, "bottom"),
               "ambiguous": (0.98, 0.5, "center")}
    for name, (x, y, va) in regions.items():
        ax.text(x, y, name, transform=ax.transAxes, ha="right" if x > 0.5 else "left", va=va,
                fontsize=9, color="dimgray", style="italic")
    sample = f" (random {len(keep):,} of {shown:,})" if len(keep) < shown else f" ({shown:,} examples)"
    ax.set_title(title + sample, fontsize=11)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str) -> str:
    """Write ``fig`` as a PNG at the report's resolution and return ``path``."""
    fig.savefig(path, dpi=DPI, format="png")
    return path
