"""Sweeps on easiness with Ray Tune: ablation, corruption, held-out easiness, compression.

The selection statistics themselves are tested in test_selection.py; here we test the
sweep machinery around them on a real `ray start --head` cluster (conftest.py): one
finished easiness run of digits per module, small grids, and the run store's files
read back with pandas. Resumption is tested twice: a second call over a finished grid
must train nothing, and a job killed mid-sweep must, when run again, train exactly the
points without a result.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time

import matplotlib.image
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from raystats.config import RunConfig
from raystats.errors import ConfigError, DataError, RunNotFoundError, StoreError
from raystats.report.experiments import (
    ablation_figure,
    accuracy_by_ratio,
    binned_correctness,
    compression_figure,
    corruption_figure,
    figure_png,
    heldout_figure,
    write_sweep_figure,
)
from raystats.service.sweeps import (
    HELDOUT_COLUMNS,
    SweepConfig,
    best_strategy,
    compression,
    compression_from_results,
    heldout_easiness,
    run_sweep,
    stepwise_cost,
    sweep_path,
    sweep_results,
    sweeps,
)
from raystats.stats.selection import compression_gap, stepwise_plan
from tests.conftest import REPO, run_job, wait_for

RUN = "digits-mlp"
N_TRAIN, N_TEST = 1437, 360
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def kept(ratio: float, n: int = N_TRAIN) -> int:
    return round((1 - ratio) * n)


def read_png(path: str) -> np.ndarray:
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.startswith(PNG_SIGNATURE), path
    return matplotlib.image.imread(io.BytesIO(data), format="png")


# ------------------------------------------------------------------ fixtures (Ray)


@pytest.fixture(scope="module")
def finished_run(ray_head, tmp_path_factory):
    """A finished easiness run: digits, mlp3, 3 trials × 1 epoch, test split logged."""
    from raystats.service.easiness import run_easiness

    storage = str(tmp_path_factory.mktemp("sweep-runs"))
    config = RunConfig(run_id=RUN, dataset="digits", arch="mlp3", trials=3, epochs=1.0, workers=2)
    summary = run_easiness(config, storage, show_progress=False)
    assert summary.status == "finished"
    return storage


@pytest.fixture(scope="module")
def ablation(finished_run):
    """easy, random and stepwise × ratios 0.3, 0.6 × 1 seed, 1 epoch per model."""
    config = SweepConfig(run_id=RUN, strategies=("easy", "random", "stepwise"), ratios=(0.3, 0.6), seeds=1,
                         epochs=1.0, stepwise_trials=2)
    summary = run_sweep(config, finished_run, show_progress=False)
    return finished_run, config, summary


# ------------------------------------------------------------------------ Ray tests


@pytest.mark.ray
def test_sweep_table_has_one_row_per_grid_point_with_exact_kept_sizes(ablation):
    storage, config, summary = ablation
    table = summary.table
    assert summary.trained == 6 and summary.skipped == 0
    assert sorted(zip(table["strategy"], table["ratio"], table["seed"])) == sorted(
        (p["strategy"], p["ratio"], p["seed"]) for p in config.points()
    )
    assert (table["kept_size"] == [kept(r) for r in table["ratio"]]).all()
    assert (table["kept_size"] + table["n_changed"] == N_TRAIN).all()
    assert (table["n_trained"] == table["kept_size"]).all()  # ablation trains on the kept rows only
    assert table["test_accuracy"].between(0, 1).all()
    # The stored table is the returned one, and the client-facing reader agrees.
    stored = pq.read_table(os.path.join(sweep_path(storage, RUN, "ablation"), "results.parquet")).to_pandas()
    pd.testing.assert_frame_equal(stored, table)
    pd.testing.assert_frame_equal(sweep_results(storage, RUN, "ablation"), table)
    assert sweeps(storage, RUN) == ["ablation"]
    # Tune ran it: its experiment folder sits in the sweep's folder.
    tune_dir = os.path.join(sweep_path(storage, RUN, "ablation"), "tune")
    assert any(name.startswith("attempt-") for name in os.listdir(tune_dir))
    print(f"measure: 6-point sweep in {summary.seconds:.1f} s")


@pytest.mark.ray
def test_stepwise_reaches_the_target_through_its_plan(ablation):
    storage, _, summary = ablation
    rows = summary.table[summary.table["strategy"] == "stepwise"].set_index("ratio")
    for ratio in (0.3, 0.6):
        plan = stepwise_plan(N_TRAIN, ratio)
        assert rows.loc[ratio, "stepwise_steps"] == len(plan)
        assert rows.loc[ratio, "kept_size"] == plan[-1] == kept(ratio)
    # Each step's kept set is stored under the seed; sets shrink along the plan and nest.
    chain = os.path.join(sweep_path(storage, RUN, "ablation"), "stepwise", "seed=0")
    previous = np.arange(N_TRAIN)
    for k, size in enumerate(stepwise_plan(N_TRAIN, 0.6)):
        ids = np.load(os.path.join(chain, f"k={k}-n={size}", "kept.npy"))
        assert len(ids) == size and np.isin(ids, previous).all()
        previous = ids
    # One trial walked the seed's chain once for both ratios: the longer chain's models,
    # plus the final model of the shorter ratio (its clamped last step reuses cached easiness).
    assert rows["models_trained"].sum() == stepwise_cost(N_TRAIN, 0.6, trials=2)["models"] + 1


@pytest.mark.ray
def test_second_call_trains_nothing_and_more_seeds_train_only_the_new_points(ablation):
    storage, config, first = ablation
    again = run_sweep(config, storage, show_progress=False)
    assert (again.trained, again.skipped) == (0, 6)
    pd.testing.assert_frame_equal(again.table, first.table)  # same finished_at: nothing retrained

    extended = dataclasses.replace(config, strategies=("easy", "random"), seeds=2)
    more = run_sweep(extended, storage, show_progress=False)
    assert (more.trained, more.skipped) == (4, 4)
    merged = more.table.merge(first.table, on=["strategy", "ratio", "seed"], suffixes=("", "_first"))
    assert len(merged) == 6 and (merged["finished_at"] == merged["finished_at_first"]).all()
    assert len(more.table) == 10 and set(more.table["seed"]) == {0, 1}


@pytest.mark.ray
def test_killed_sweep_resumes_without_retraining_finished_points(ray_head, finished_run):
    storage = finished_run
    name = "interrupted"
    rows_dir = os.path.join(sweep_path(storage, RUN, name), "rows")
    args = ["--storage", storage, "--run-id", RUN, "--sweep-name", name, "--strategies", "easy,hard,random",
            "--ratios", "0.2,0.5", "--seeds", "2", "--epochs", "25", "--address", ray_head.address, "--quiet"]
    job = subprocess.Popen([sys.executable, "jobs/ablation.py", *args], cwd=REPO, env=ray_head.env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: os.path.isdir(rows_dir) and len(os.listdir(rows_dir)) >= 2, timeout=240,
                 what="two finished grid points")
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver dies; Ray then ends its trial actors
        job.wait()

    def settled() -> bool:  # a trial may still finish while Ray reaps the dead driver's actors
        before = sorted(os.listdir(rows_dir))
        time.sleep(3)
        return sorted(os.listdir(rows_dir)) == before

    wait_for(settled, timeout=60, what="the killed sweep's trials to stop")
    done = {name: json.load(open(os.path.join(rows_dir, name)))["finished_at"]
            for name in os.listdir(rows_dir) if name.endswith(".json")}
    assert 2 <= len(done) < 12, f"the sweep was not interrupted mid-way: {len(done)} of 12 points done"

    config = SweepConfig(run_id=RUN, name=name, strategies=("easy", "hard", "random"), ratios=(0.2, 0.5),
                         seeds=2, epochs=25.0)
    resumed = run_sweep(config, storage, show_progress=False)
    assert (resumed.trained, resumed.skipped) == (12 - len(done), len(done))
    assert len(resumed.table) == 12
    for file_name, finished_at in done.items():
        assert json.load(open(os.path.join(rows_dir, file_name)))["finished_at"] == finished_at
    print(f"measure: killed after {len(done)} of 12 points; the resumed call trained the other {resumed.trained}")


@pytest.mark.ray
def test_corruption_sweep_relabels_instead_of_removing(finished_run):
    config = SweepConfig(run_id=RUN, kind="corrupt_labels", strategies=("beta_easy", "beta_random"),
                         ratios=(0.4,), seeds=1, epochs=1.0)
    summary = run_sweep(config, finished_run, show_progress=False)
    table = summary.table
    assert len(table) == 2 and set(table["strategy"]) == {"beta_easy", "beta_random"}
    assert (table["n_trained"] == N_TRAIN).all()  # relabeled examples stay in the training set
    assert (table["kept_size"] == kept(0.4)).all() and (table["n_changed"] == N_TRAIN - kept(0.4)).all()
    image = read_png(write_sweep_figure(finished_run, RUN, "corrupt_labels"))
    assert image.shape[0] > 300 and image.shape[1] > 500


@pytest.mark.ray
def test_bad_input_fails_before_any_trial_starts(finished_run, tmp_path):
    storage = finished_run
    with pytest.raises(ConfigError, match=r"ratio 1\.0 is not accepted"):
        SweepConfig(run_id=RUN, ratios=(0.5, 1.0))
    with pytest.raises(ConfigError, match=r"ratio -0\.1"):
        SweepConfig(run_id=RUN, ratios=(-0.1,))
    with pytest.raises(ConfigError, match="unknown ablation strategy 'easiest'"):
        SweepConfig(run_id=RUN, strategies=("easy", "easiest"))
    with pytest.raises(ConfigError, match="stepwise"):
        SweepConfig(run_id=RUN, kind="corrupt_labels", strategies=("stepwise",))
    with pytest.raises(RunNotFoundError, match="no run 'missing'"):
        run_sweep(SweepConfig(run_id="missing", name="bad"), storage, show_progress=False)
    with pytest.raises(DataError, match="over 'digits', not 'fashion-mnist'"):
        run_sweep(SweepConfig(run_id=RUN, name="bad", dataset="fashion-mnist"), storage, show_progress=False)
    # A run whose files were made from other images (another fingerprint), and one unfinished.
    info = json.load(open(os.path.join(storage, RUN, "run.json")))
    for run_id, change in (("other-data", {"dataset": dict(info["dataset"], fingerprint="0" * 64)}),
                           ("unfinished", {"status": "running"})):
        os.makedirs(os.path.join(storage, run_id))
        with open(os.path.join(storage, run_id, "run.json"), "w") as handle:
            json.dump({**info, **change, "run_id": run_id, "config": dict(info["config"], run_id=run_id)}, handle)
    with pytest.raises(DataError, match="fingerprint"):
        run_sweep(SweepConfig(run_id="other-data", name="bad"), storage, show_progress=False)
    with pytest.raises(ConfigError, match="is running, not finished"):
        run_sweep(SweepConfig(run_id="unfinished", name="bad"), storage, show_progress=False)
    for run_id in (RUN, "other-data", "unfinished"):
        assert not os.path.exists(sweep_path(storage, run_id, "bad")), "a refused sweep left files"
    # The job says it in one line and exits 2, before starting anything.
    done = run_job(["jobs/ablation.py", "--storage", storage, "--run-id", RUN, "--ratios", "0.1,1.5"])
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: ratio 1.5 is not accepted: every ratio must be a number in [0, 1)"]
    done = run_job(["jobs/corrupt_labels.py", "--storage", storage, "--run-id", "nope"])
    assert done.returncode == 2 and done.stderr.startswith("error: no run 'nope'")


@pytest.mark.ray
def test_changed_settings_are_refused_unless_the_sweep_gets_a_new_name(ablation):
    storage, config, _ = ablation
    changed = dataclasses.replace(config, epochs=2.0)
    with pytest.raises(ConfigError, match=r"epochs=1\.0 \(now 2\.0\)"):
        run_sweep(changed, storage, show_progress=False)


@pytest.mark.ray
def test_heldout_easiness_beside_the_runs_ensemble(finished_run):
    storage = finished_run
    table = heldout_easiness(storage, RUN, trials=2, n_heldout=40, epochs=1.0, show_progress=False)
    assert list(table.columns) == HELDOUT_COLUMNS and len(table) == 40
    assert table["example_id"].is_unique and table["example_id"].between(0, N_TEST - 1).all()
    assert (table["n_trials"] == 2).all() and (table["ensemble_size"] == 3).all()
    assert np.isfinite(table["easiness"]).all() and (table["easiness"] >= 0).all()
    # Ensemble correctness recomputed from the run's Parquet rows with pandas.
    frames = [pq.read_table(os.path.join(root, f)).to_pandas()
              for root, _, files in os.walk(os.path.join(storage, RUN, "logs")) for f in files]
    rows = pd.concat(frames)
    last = rows[rows["split"] == "test"]["step"].max()
    test_rows = rows[(rows["split"] == "test") & (rows["step"] == last)]
    expected = test_rows.groupby("example_id")["correct"].mean()
    np.testing.assert_allclose(table["ensemble_correct"], expected.loc[table["example_id"]].to_numpy())
    # The per-model losses behind the easiness column are stored, one file per merged model.
    losses = [pd.read_parquet(os.path.join(sweep_path(storage, RUN, "heldout"), "losses", f"trial={m}.parquet"))
              for m in range(2)]
    np.testing.assert_allclose(table["easiness"], (losses[0]["loss"] + losses[1]["loss"]) / 2, rtol=1e-6)
    assert read_png(write_sweep_figure(storage, RUN, "heldout")).shape[1] > 800


@pytest.mark.ray
def test_compression_reads_the_ablation_sweep(ablation):
    storage = ablation[0]
    results = sweep_results(storage, RUN, "ablation")  # other tests may have added seeds
    result = compression(storage, RUN, "ablation", target_ratio=0.6)
    assert result.strategy == best_strategy(results)
    chosen = results[results["strategy"] == result.strategy]
    rand = results[results["strategy"] == "random"]
    expected = compression_gap(chosen["kept_size"], chosen["test_accuracy"], rand["kept_size"],
                               rand["test_accuracy"], kept(0.6))
    assert result.gap == expected
    stored = json.load(open(os.path.join(sweep_path(storage, RUN, "ablation"), "compression.json")))
    assert stored["strategy"] == result.strategy and stored["target_size"] == kept(0.6)
    image = read_png(write_sweep_figure(storage, RUN, "ablation"))
    assert image.shape[0] > 300


# --------------------------------------------------------------- no cluster needed


def test_sweep_config_normalizes_and_counts_its_grid():
    config = SweepConfig(run_id="r", ratios=(0.5, 0.1, 0.5), strategies=("hard", "easy", "hard"), seeds=2)
    assert config.ratios == (0.1, 0.5) and config.strategies == ("hard", "easy")
    assert len(config.points()) == 2 * 2 * 2 and config.sweep_name == "ablation"
    assert SweepConfig(run_id="r", kind="corrupt_labels").strategies == ("beta_easy", "beta_hard", "beta_random")
    for bad in (dict(seeds=0), dict(ratios=()), dict(epochs=0), dict(name="../x"), dict(kind="prune"),
                dict(stepwise_frac=1.0), dict(easiness_kind="margin"), dict(ratios=(True,))):
        with pytest.raises(ConfigError):
            SweepConfig(run_id="r", **bad)


def test_sweep_results_of_a_missing_sweep_names_the_known_ones(tmp_path):
    with pytest.raises(RunNotFoundError):
        sweep_results(str(tmp_path), "nothing-here", "ablation")
    os.makedirs(tmp_path / "r")
    (tmp_path / "r" / "run.json").write_text(json.dumps(
        {"run_id": "r", "config": {}, "dataset": {}, "status": "finished"}))
    with pytest.raises(StoreError, match="has no sweep 'ablation'.*none"):
        sweep_results(str(tmp_path), "r", "ablation")


def hand_results() -> pd.DataFrame:
    """Two seeds of easy and random at three ratios of N = 100, accuracies chosen by hand."""
    rows = []
    accuracy = {"easy": {0.2: (0.90, 0.92), 0.5: (0.85, 0.87), 0.8: (0.70, 0.72)},
                "random": {0.2: (0.88, 0.90), 0.5: (0.80, 0.82), 0.8: (0.60, 0.62)}}
    for strategy, by_ratio in accuracy.items():
        for ratio, values in by_ratio.items():
            for seed, value in enumerate(values):
                rows.append({"strategy": strategy, "ratio": ratio, "seed": seed, "n_examples": 100,
                             "kept_size": kept(ratio, 100), "test_accuracy": value})
    return pd.DataFrame(rows)


def test_accuracy_summary_and_compression_by_hand():
    results = hand_results()
    summary = accuracy_by_ratio(results).set_index(["strategy", "ratio"])
    assert summary.loc[("easy", 0.5), "mean"] == pytest.approx(0.86)
    assert summary.loc[("easy", 0.5), "std"] == pytest.approx(np.std([0.85, 0.87], ddof=1))
    assert best_strategy(results) == "easy"
    # At kept size 50 easy has 0.86; random's mean curve (20: 0.61, 50: 0.81, 80: 0.89)
    # reaches 0.86 at 50 + (0.86 - 0.81) / (0.89 - 0.81) · 30 = 68.75.
    result = compression_from_results(results, 50)
    assert result.gap.accuracy_gap == pytest.approx(0.05)
    assert result.gap.extra_random_examples == pytest.approx(18.75)
    with pytest.raises(ConfigError, match="needs strategy 'random'"):
        best_strategy(results[results["strategy"] == "easy"])


def test_binned_correctness_by_hand():
    binned = binned_correctness(np.array([0.1, 0.2, 3.0, 4.0]), np.array([1.0, 1.0, 0.0, 0.5]), bins=2)
    assert binned["correct_mean"].tolist() == [1.0, 0.25]
    assert binned["n"].tolist() == [2, 2] and binned["easiness_high"].tolist() == [0.2, 4.0]


def test_figures_are_valid_pngs():
    results = hand_results()
    heldout = pd.DataFrame({"example_id": np.arange(50), "label": 0,
                            "easiness": np.random.default_rng(0).exponential(0.5, 50), "n_trials": 3,
                            "ensemble_correct": np.random.default_rng(1).integers(0, 4, 50) / 3,
                            "ensemble_size": 3})
    figures = [ablation_figure(results, "ablation"), corruption_figure(results, "corruption"),
               heldout_figure(heldout, "held-out"), compression_figure(compression_from_results(results, 50), "c")]
    for fig in figures:
        data = figure_png(fig)
        assert data.startswith(PNG_SIGNATURE)
        image = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert image.ndim == 3 and image.shape[0] >= 400
