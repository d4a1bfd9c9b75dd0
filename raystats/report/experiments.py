"""Figures of the experiments on easiness: ablation, label corruption, held-out easiness,
compression.

Each figure function takes the table a sweep produced (:mod:`raystats.service.sweeps`)
and returns a :class:`matplotlib.figure.Figure`, built without pyplot (no global
figure registry, no display backend), like :mod:`raystats.report.figures`. The
``write_*`` functions read a sweep from the run store, draw it, and write the PNG next
to the sweep's results.parquet.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from raystats.errors import ConfigError
from raystats.report.figures import DPI, EASY_COLOR, HARD_COLOR, RANDOM_COLOR

# Normalized-easiness strategies solid, their Beta counterparts dashed in the same color.
STRATEGY_STYLES = {
    "easy": dict(color=EASY_COLOR, linestyle="-", marker="o"),
    "hard": dict(color=HARD_COLOR, linestyle="-", marker="s"),
    "random": dict(color=RANDOM_COLOR, linestyle="-", marker="^"),
    "beta_easy": dict(color=EASY_COLOR, linestyle="--", marker="o"),
    "beta_hard": dict(color=HARD_COLOR, linestyle="--", marker="s"),
    "beta_random": dict(color=RANDOM_COLOR, linestyle="--", marker="^"),
    "stepwise": dict(color="tab:blue", linestyle="-", marker="D"),
}
STRATEGY_LABELS = {
    "easy": "easy (normalized easiness)", "hard": "hard (normalized easiness)", "random": "random",
    "beta_easy": "Beta(3,1): mostly easy", "beta_hard": "Beta(1,3): mostly hard",
    "beta_random": "Beta(1,1): random", "stepwise": "stepwise (easy, easiness recomputed)",
}
FIGURE_FILES = {"ablation": "accuracy.png", "corrupt_labels": "accuracy.png", "heldout": "heldout.png"}


# ------------------------------------------------------------------------ summaries


def accuracy_by_ratio(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of test accuracy over seeds, per (strategy, ratio).

    The standard deviation is the sample one (ddof = 1); with a single seed it is 0 and
    no error bar is drawn.

    Returns
    -------
    DataFrame
        strategy, ratio, kept_size, mean, std, n_seeds.
    """
    grouped = results.groupby(["strategy", "ratio"])
    summary = grouped.agg(
        kept_size=("kept_size", "first"), mean=("test_accuracy", "mean"),
        std=("test_accuracy", "std"), n_seeds=("test_accuracy", "size"),
    ).reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    return summary


def binned_correctness(easiness: np.ndarray, correct: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Ensemble correctness in equal-count bins of easiness (low loss = easy first).

    Returns
    -------
    DataFrame
        bin, easiness_low, easiness_high, easiness_median, correct_mean, correct_sem, n.
    """
    easiness, correct = np.asarray(easiness, float), np.asarray(correct, float)
    order = np.argsort(easiness, kind="stable")
    chunks = [c for c in np.array_split(order, min(bins, max(1, len(order)))) if len(c)]
    rows = []
    for index, chunk in enumerate(chunks):
        values = correct[chunk]
        sem = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
        rows.append({
            "bin": index, "easiness_low": easiness[chunk].min(), "easiness_high": easiness[chunk].max(),
            "easiness_median": float(np.median(easiness[chunk])), "correct_mean": values.mean(),
            "correct_sem": sem, "n": len(chunk),
        })
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------- figures


def ablation_figure(results: pd.DataFrame, title: str,
                    x_label: str = "ablation ratio (fraction of training examples removed)",
                    kept_label: str = "training examples kept") -> Figure:
    """Test accuracy against ratio, one line per strategy, error bars = std over seeds.

    Parameters
    ----------
    results : DataFrame
        A sweep's results (strategy, ratio, kept_size, test_accuracy, one row per seed).
    title : str
    x_label, kept_label : str
        What the ratio means, and what the kept size on the top axis counts.

    Returns
    -------
    Figure
    """
    summary = accuracy_by_ratio(results)
    fig = Figure(figsize=(7.2, 4.8), dpi=DPI)
    ax = fig.subplots()
    strategies = [s for s in STRATEGY_STYLES if s in set(summary["strategy"])]
    strategies += sorted(set(summary["strategy"]) - set(strategies))
    ratios = sorted(set(summary["ratio"]))
    # Strategies share x positions; shift each a little so error bars stay apart.
    spread = (ratios[-1] - ratios[0]) or 1.0
    for index, strategy in enumerate(strategies):
        rows = summary[summary["strategy"] == strategy].sort_values("ratio")
        seeds = int(rows["n_seeds"].max())
        label = f"{STRATEGY_LABELS.get(strategy, strategy)} (n={seeds} seed{'s' if seeds > 1 else ''})"
        shift = (index - (len(strategies) - 1) / 2) * 0.006 * spread
        ax.errorbar(rows["ratio"] + shift, rows["mean"], yerr=rows["std"], capsize=3, markersize=5,
                    linewidth=1.5, label=label, **STRATEGY_STYLES.get(strategy, {}))
    ax.set_xticks(ratios)
    ax.set_xticklabels([f"{r:g}" for r in ratios])
    ax.set_xlabel(x_label)
    if "n_examples" in results and len(results):
        n = int(results["n_examples"].iloc[0])
        top = ax.secondary_xaxis("top")
        top.set_xticks(ratios)
        top.set_xticklabels([f"{round((1 - r) * n):,}" for r in ratios], fontsize=8)
        top.set_xlabel(kept_label, fontsize=8)
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def corruption_figure(results: pd.DataFrame, title: str) -> Figure:
    """Test accuracy against random-label rate, one line per strategy (Beta(3,1) relabels
    mostly easy examples, Beta(1,3) mostly hard, Beta(1,1) uniformly)."""
    return ablation_figure(results, title,
                           x_label="random-label rate (fraction of training labels replaced by a wrong one)",
                           kept_label="training examples with their true label")


def heldout_figure(table: pd.DataFrame, title: str, bins: int = 10) -> Figure:
    """Held-out easiness against how often an ensemble trained without the examples gets
    them right: every example (left, jittered) and equal-count easiness bins (right).

    Parameters
    ----------
    table : DataFrame
        :func:`raystats.service.sweeps.heldout_easiness`'s table: easiness (mean loss of
        the merged models, low = easy), ensemble_correct (fraction in [0, 1]), ensemble_size.
    """
    easiness = table["easiness"].to_numpy(float)
    correct = table["ensemble_correct"].to_numpy(float)
    size = int(table["ensemble_size"].max())
    rho = pd.Series(easiness).corr(pd.Series(correct), method="spearman")
    fig = Figure(figsize=(11, 4.4), dpi=DPI)
    left, right = fig.subplots(1, 2)
    # The ensemble fraction takes only size+1 values: jitter it so the points spread out.
    jitter = np.random.default_rng(0).uniform(-0.35, 0.35, len(correct)) / max(size, 1)
    left.scatter(np.maximum(easiness, 1e-6), correct + jitter, s=6, alpha=0.35, color="tab:blue", linewidths=0)
    left.set_xscale("log")
    left.set_xlabel("held-out easiness: mean loss when trained on (log; low = easy)")
    left.set_ylabel(f"fraction of {size} models trained without it that are correct")
    left.set_title(f"{len(table):,} held-out examples (Spearman ρ = {rho:.2f})", fontsize=10)
    left.grid(alpha=0.3)
    binned = binned_correctness(easiness, correct, bins)
    right.errorbar(binned["bin"] + 1, binned["correct_mean"], yerr=binned["correct_sem"], marker="o",
                   capsize=3, color="tab:blue")
    right.set_xticks(binned["bin"] + 1)
    right.set_xticklabels([f"{v:.2g}" for v in binned["easiness_median"]], rotation=45, fontsize=8)
    right.set_xlabel("easiness bin (equal counts, easiest first; median loss shown)")
    right.set_ylabel("mean ensemble correctness (± s.e.m.)")
    right.set_ylim(-0.02, 1.02)
    right.set_title("binned", fontsize=10)
    right.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def compression_figure(result, title: str) -> Figure:
    """Accuracy against kept size for the chosen strategy and random, the target size
    marked, and the extra random examples that buy the same accuracy.

    Parameters
    ----------
    result : raystats.service.sweeps.CompressionResult
    """
    gap, curves = result.gap, result.curves
    fig = Figure(figsize=(7.2, 4.8), dpi=DPI)
    ax = fig.subplots()
    for strategy in (result.strategy, "random"):
        rows = curves[curves["strategy"] == strategy].sort_values("kept_size")
        ax.errorbar(rows["kept_size"], rows["test_accuracy"], yerr=rows["std"].fillna(0.0), capsize=3,
                    markersize=5, label=STRATEGY_LABELS.get(strategy, strategy), **STRATEGY_STYLES.get(strategy, {}))
    ax.axvline(gap.target_size, color="black", linestyle=":", linewidth=1)
    ax.plot([gap.target_size], [gap.easiness_accuracy], marker="*", markersize=12, color="black", linestyle="none",
            label=f"target: {gap.target_size:,.0f} kept")
    if np.isfinite(gap.matching_random_size):
        ax.annotate("", xy=(gap.matching_random_size, gap.easiness_accuracy),
                    xytext=(gap.target_size, gap.easiness_accuracy),
                    arrowprops=dict(arrowstyle="->", color=RANDOM_COLOR, linestyle="--"))
        extra = f"random needs {gap.extra_random_examples:+,.0f} examples to match"
    else:
        extra = "random never matches within the measured sizes"
    ax.set_xlabel("kept size (training examples)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(f"{title}\naccuracy gap at target {100 * gap.accuracy_gap:+.2f} points; {extra}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes at the report's resolution."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------- writers


def write_sweep_figure(storage: str, run_id: str, sweep: str) -> str:
    """Draw a sweep's figure from its stored results; write it next to results.parquet.

    Returns
    -------
    str
        Where the PNG went: ``<run>/sweeps/<sweep>/accuracy.png`` (ablation, corruption)
        or ``heldout.png``.
    """
    from raystats.service.sweeps import sweep_results, sweep_settings, write_sweep_file

    settings = sweep_settings(storage, run_id, sweep)
    table = sweep_results(storage, run_id, sweep)
    if not len(table):
        raise ConfigError(f"sweep {sweep!r} of run {run_id!r} has no finished points to draw yet")
    kind = settings["kind"]
    if kind == "heldout":
        fig = heldout_figure(table, f"run {run_id}: held-out easiness ({settings['trials']} models trained with "
                                    f"them, {settings['epochs']:g} epoch(s)) vs. correctness of models trained without")
    else:
        n = int(table["n_examples"].iloc[0]) if len(table) else 0
        what = "ablation" if kind == "ablation" else "label corruption"
        epochs = settings["epochs"]
        title = (f"run {run_id}: {what} sweep '{sweep}'\n{n:,} training examples · {epochs:g} "
                 f"epoch{'' if epochs == 1 else 's'} per model · {settings['easiness_kind']}-form easiness "
                 f"at step {settings['easiness_step']}")
        fig = (ablation_figure if kind == "ablation" else corruption_figure)(table, title)
    return write_sweep_file(storage, run_id, sweep, FIGURE_FILES[kind], figure_png(fig))


def write_compression_figure(storage: str, run_id: str, sweep: str, result) -> str:
    """Draw a :class:`~raystats.service.sweeps.CompressionResult`; write compression.png."""
    from raystats.service.sweeps import write_sweep_file

    fig = compression_figure(result, f"run {run_id}: compression, '{result.strategy}' vs random (sweep '{sweep}')")
    return write_sweep_file(storage, run_id, sweep, "compression.png", figure_png(fig))


__all__ = [
    "FIGURE_FILES", "STRATEGY_LABELS", "STRATEGY_STYLES", "ablation_figure", "accuracy_by_ratio",
    "binned_correctness", "compression_figure", "corruption_figure", "figure_png", "heldout_figure",
    "write_compression_figure", "write_sweep_figure",
]
