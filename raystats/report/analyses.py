"""Figures of the "what makes examples easy" analyses: pattern removal, shallow vs deep,
prediction depth.

Each ``*_figure`` function takes the stored result tables and returns a
:class:`matplotlib.figure.Figure` built without pyplot; each ``write_*`` function reads
a run's results from the store, draws them and writes the PNG beside them, under
``<run>/analyses/<name>/``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from raystats.report.experiments import figure_png
from raystats.report.figures import EASY_COLOR, HARD_COLOR

PATTERN_LABELS = {
    "color": "colour removed: α (1 = unchanged)",
    "shuffle": "tiles shuffled: tile size s (1 = unchanged)",
    "radial": "low-pass: radius r (1 = unchanged)",
}
SHALLOW_LABELS = {"svm": "RBF SVM", "forest": "random forest"}
QUANTITY_LABELS = {
    "easiness": "easiness (mean loss; low = easy)",
    "consistency": "consistency (share of trials correct)",
    "confidence": "confidence (p of the label)",
    "accuracy": "accuracy of the probed trials",
    "iteration_learned": "iteration learned (update)",
}
SPLIT_COLORS = {"train": "tab:blue", "test": "tab:orange"}


def pattern_figure(matching: pd.DataFrame, title: str) -> Figure:
    """Matching rate of easy and hard sets against strength, one panel per pattern."""
    patterns = [p for p in ("color", "shuffle", "radial") if p in set(matching["pattern"])]
    fig = Figure(figsize=(4.2 * len(patterns), 3.8))
    axes = fig.subplots(1, len(patterns), squeeze=False)[0]
    for ax, pattern in zip(axes, patterns):
        rows = matching[matching["pattern"] == pattern].sort_values("strength")
        # Hard first, easy on top with smaller markers: both stay visible where they coincide.
        for which, color, marker, size in (("hard", HARD_COLOR, "s", 8), ("easy", EASY_COLOR, "o", 4)):
            part = rows[rows["which"] == which]
            ax.plot(part["strength"], part["matching_rate"], color=color, marker=marker, markersize=size,
                    label=f"{which} set")
        chance = float(rows["chance"].iloc[0])
        ax.axhline(chance, color="gray", linestyle=":", label=f"chance ({chance:g})")
        accuracy = rows[rows["which"] == "easy"]
        ax.plot(accuracy["strength"], accuracy["accuracy"], color="gray", linestyle="--", marker=".",
                alpha=0.7, label="accuracy on these inputs")
        ax.set_xlabel(PATTERN_LABELS.get(pattern, pattern))
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlim(min(0.0, rows["strength"].min()) - 0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.set_title(pattern)
    axes[0].set_ylabel("matching rate with the regular set")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def shallow_vs_deep_figure(mean: pd.DataFrame, per_trial: pd.DataFrame, title: str) -> Figure:
    """R over training; deep accuracy on shallow-correct / -incorrect subsets; T00..T11.

    ``mean`` and ``per_trial`` hold one shallow model's rows of the stored tables.
    """
    fig = Figure(figsize=(13.5, 3.9))
    ax_r, ax_acc, ax_counts = fig.subplots(1, 3)
    epoch = mean["epoch"].to_numpy()
    for _, rows in per_trial.groupby("trial"):
        ax_r.plot(rows["epoch"], rows["R"], color="tab:purple", alpha=0.25, linewidth=0.8)
    ax_r.plot(epoch, mean["R"], color="tab:purple", marker=".", label="R = R+ / R- (trial mean)")
    ax_r.axhline(1.0, color="gray", linestyle=":", label="R = 1: no preference")
    ax_r.set_ylabel("R")
    ax_r.legend(fontsize=8)
    ax_acc.plot(epoch, mean["R_plus"], color=EASY_COLOR, marker=".", label="R+: deep acc. where shallow right")
    ax_acc.plot(epoch, mean["R_minus"], color=HARD_COLOR, marker=".", label="R-: deep acc. where shallow wrong")
    ax_acc.plot(epoch, mean["deep_accuracy"], color="black", marker=".", label="deep accuracy")
    ax_acc.axhline(float(mean["shallow_accuracy"].iloc[0]), color="gray", linestyle="--",
                   label=f"shallow accuracy ({float(mean['shallow_accuracy'].iloc[0]):.3f})")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend(fontsize=8)
    for cell, color in (("T00", "tab:red"), ("T01", "tab:orange"), ("T10", "tab:cyan"), ("T11", "tab:green")):
        ax_counts.plot(epoch, mean[cell], color=color, marker=".", label=cell)
    ax_counts.set_ylabel("examples (trial mean)")
    ax_counts.legend(fontsize=8, title="T[deep][shallow], 1 = correct", title_fontsize=8)
    for ax in (ax_r, ax_acc, ax_counts):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def depth_figure(summary: pd.DataFrame, title: str) -> Figure:
    """Mean (± standard error) of each statistic per prediction depth, train and test,
    and how many examples each depth holds."""
    quantities = [q for q in QUANTITY_LABELS if q in summary]
    fig = Figure(figsize=(13.5, 7.2))
    axes = fig.subplots(2, 3).ravel()
    n_layers = int(summary["n_layers"].max())
    # Depth per example is the mean over the probed trials; round it to a layer for binning.
    binned = summary.assign(depth_bin=np.rint(summary["depth"]).astype(int))
    for split, rows in binned.groupby("split"):
        counts = rows["depth_bin"].value_counts().reindex(range(n_layers + 1), fill_value=0)
        axes[0].bar(np.arange(n_layers + 1) + (-0.2 if split == "train" else 0.2), counts / counts.sum(),
                    width=0.4, color=SPLIT_COLORS.get(split), label=split)
        for ax, quantity in zip(axes[1:], quantities):
            stats = rows.groupby("depth_bin")[quantity].agg(["mean", "sem", "count"])
            ax.errorbar(stats.index, stats["mean"], yerr=stats["sem"].fillna(0), marker="o", capsize=3,
                        color=SPLIT_COLORS.get(split), label=split)
    axes[0].set_ylabel("share of examples")
    axes[0].set_title("prediction depth", fontsize=10)
    axes[0].legend(fontsize=8)
    for ax, quantity in zip(axes[1:], quantities):
        ax.set_title(QUANTITY_LABELS[quantity], fontsize=10)
        ax.legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(range(n_layers + 1))
        ax.set_xticklabels([str(d) if d < n_layers else f"{d}\n(never\nsettled)" for d in range(n_layers + 1)],
                           fontsize=8)
        ax.set_xlabel("prediction depth (probed layer)", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- writers


def _write_png(store, run_id: str, name: str, filename: str, fig: Figure) -> str:
    from raystats.service.analysis import analysis_path

    path = f"{analysis_path(store, run_id, name)}/{filename}"
    store.write_bytes(path, figure_png(fig))
    return path


def write_pattern_figure(storage: str, run_id: str) -> str:
    """Draw ``analyses/patterns/matching.parquet``; write ``matching.png`` beside it."""
    from raystats.service.analysis import read_settings, read_table
    from raystats.store import RunStore

    store = RunStore(storage)
    matching = read_table(store, run_id, "patterns", "matching")
    settings = read_settings(store, run_id, "patterns")
    n = int(matching["n_examples"].iloc[0])
    title = (f"run {run_id}: pattern removal — easy/hard sets (q = {settings['frac']:g}) on pattern-removed "
             f"inputs vs regular inputs; {n:,} training examples, {len(settings['trials'])} trial(s)")
    return _write_png(store, run_id, "patterns", "matching.png", pattern_figure(matching, title))


def write_shallow_vs_deep_figures(storage: str, run_id: str) -> list[str]:
    """One ``shallow_vs_deep_<model>.png`` per shallow model, beside the tables."""
    from raystats.service.analysis import read_settings, read_table
    from raystats.store import RunStore

    store = RunStore(storage)
    mean = read_table(store, run_id, "shallow_vs_deep", "contingency_mean")
    per_trial = read_table(store, run_id, "shallow_vs_deep", "contingency")
    settings = read_settings(store, run_id, "shallow_vs_deep")
    paths = []
    for name, rows in mean.groupby("shallow", sort=False):
        described = settings["shallow"][name]
        approximate = " — APPROXIMATE kernel SVM (Nyström + linear SVM)" if described["approximate"] else ""
        title = (f"run {run_id}: deep model vs {SHALLOW_LABELS.get(name, name)}{approximate}\n"
                 f"{settings['n_test']:,} test examples, {len(settings['trials'])} trial(s), "
                 f"shallow fitted on {settings['n_train']:,} training images")
        fig = shallow_vs_deep_figure(rows, per_trial[per_trial["shallow"] == name], title)
        paths.append(_write_png(store, run_id, "shallow_vs_deep", f"shallow_vs_deep_{name}.png", fig))
    return paths


def write_depth_figure(storage: str, run_id: str) -> str:
    """Draw ``analyses/prediction_depth/summary.parquet``; write ``depth.png`` beside it."""
    from raystats.service.analysis import read_settings, read_table
    from raystats.store import RunStore

    store = RunStore(storage)
    summary = read_table(store, run_id, "prediction_depth", "summary")
    settings = read_settings(store, run_id, "prediction_depth")
    title = (f"run {run_id}: prediction depth — k-NN probes (k = {settings['k']}, {settings['support_size']:,} "
             f"support examples) after {', '.join(settings['layers'])}; {len(settings['trials'])} trial(s)")
    return _write_png(store, run_id, "prediction_depth", "depth.png", depth_figure(summary, title))


__all__ = [
    "depth_figure", "pattern_figure", "shallow_vs_deep_figure", "write_depth_figure",
    "write_pattern_figure", "write_shallow_vs_deep_figures",
]
