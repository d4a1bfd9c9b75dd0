"""The three analyses end to end on digits, on the session's real Ray cluster.

One small finished run (2 trials, logged every half epoch, test split too) is trained
once; pattern removal, shallow vs deep and prediction depth run on it through the
library (and one job as a user runs it), and their stored Parquet results are checked
against independent computations from the run's own log files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.svm import SVC

import raystats
from raystats.data import load_dataset
from raystats.errors import ConfigError
from raystats.service.analysis import AnalysisNotFoundError, default_run_config, ensure_run
from raystats.stats import set_size
from raystats.store import RunStore
from tests.conftest import run_job

pytestmark = pytest.mark.ray

RUN_ID = "digits-analyses"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(ray_head, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("analyses"))
    config = default_run_config("prediction_depth", "digits", run_id=RUN_ID, trials=2, epochs=2.0,
                                log_every=0.5, train_examples=None)
    ensure_run(config, storage, show_progress=False)
    return storage


def log_rows(storage: str, split: str) -> pd.DataFrame:
    """Every logged row of a split, read straight from the Parquet shards."""
    store = RunStore(storage)
    rows = pd.concat([t.to_pandas() for _, t in store.read_logs(RUN_ID)], ignore_index=True)
    return rows[rows["split"].astype(str) == split]


def test_pattern_removal_against_its_own_easiness_and_the_logs(run):
    from raystats.report.analyses import write_pattern_figure
    from raystats.service.pattern_removal import pattern_removal

    grid = {"color": (0.0, 1.0), "shuffle": (0.5,), "radial": (0.2, 1.0)}
    matching = pattern_removal(run, RUN_ID, grid=grid, frac=0.1, show_progress=False)
    client = raystats.open(run)
    stored = client.pattern_matching(RUN_ID)
    pd.testing.assert_frame_equal(stored, matching)
    # α = 1 is the identity: the same inputs, the same losses, the same sets.
    identity = stored[(stored["pattern"] == "color") & (stored["strength"] == 1.0)]
    assert sorted(identity["which"]) == ["easy", "hard"] and (identity["matching_rate"] == 1.0).all()
    assert (stored["chance"] == 0.1).all()
    # Each rate again by hand, from the stored per-example easiness: sort, take 10 %, intersect.
    regular = client.pattern_easiness(RUN_ID, "regular", 1.0)
    k = set_size(len(regular), 0.1)
    for row in stored.itertuples():
        removed = client.pattern_easiness(RUN_ID, row.pattern, row.strength)
        ascending = row.which == "easy"
        pick = lambda t: set(t.sort_values(["easiness", "example_id"], ascending=[ascending, True])  # noqa: E731
                             ["example_id"].head(k))
        a, b = pick(regular), pick(removed)
        assert row.matching_rate == pytest.approx(len(a & b) / max(len(a), len(b)))
    # The regular easiness is the run's own: mean loss over the trials at the last logged step.
    rows = log_rows(run, "train")
    logged = rows[rows["step"] == rows["step"].max()].groupby("example_id")["loss"].mean()
    np.testing.assert_allclose(regular.set_index("example_id")["easiness"], logged.loc[regular["example_id"]],
                               rtol=1e-4, atol=1e-5)
    assert open(write_pattern_figure(run, RUN_ID), "rb").read(8) == PNG_MAGIC


def test_shallow_vs_deep_counts_match_pandas_on_the_log_rows(run):
    from raystats.report.analyses import write_shallow_vs_deep_figures
    from raystats.service.shallow_vs_deep import flat_pixels, shallow_vs_deep

    mean = shallow_vs_deep(run, RUN_ID, show_progress=False)
    client = raystats.open(run)
    store = RunStore(run)
    shallow = pd.read_parquet(f"{store.run_dir(RUN_ID)}/analyses/shallow_vs_deep/shallow.parquet")
    digits = load_dataset("digits")
    # The SVM's predictions, fitted again here with scikit-learn directly.
    svc = SVC(kernel="rbf", C=1.0, gamma=0.1).fit(flat_pixels(digits.train.images), digits.train.labels)
    np.testing.assert_array_equal(shallow[shallow["shallow"] == "svm"]["pred"], svc.predict(flat_pixels(digits.test.images)))
    rows = log_rows(run, "test")
    for name in ("svm", "forest"):
        per_trial = client.contingency(RUN_ID, shallow=name, per_trial=True)
        right = shallow[shallow["shallow"] == name].set_index("example_id")["correct"]
        joined = rows.assign(shallow_correct=right.loc[rows["example_id"]].to_numpy())
        counts = (joined.groupby(["step", "trial", "correct", "shallow_correct"]).size()
                  .unstack(["correct", "shallow_correct"], fill_value=0))
        for (deep, shallow_right), cell in {(False, False): "T00", (False, True): "T01",
                                            (True, False): "T10", (True, True): "T11"}.items():
            expected = counts.get((deep, shallow_right), pd.Series(0, index=counts.index))
            got = per_trial.set_index(["step", "trial"])[cell]
            np.testing.assert_array_equal(got.loc[expected.index].to_numpy(), expected.to_numpy())
        # The study's identities: accuracy of D split over the shallow-correct/incorrect subsets.
        for table in (per_trial, client.contingency(RUN_ID, shallow=name)):
            acc_m = table["shallow_accuracy"]
            np.testing.assert_allclose(table["deep_accuracy"], acc_m * table["R_plus"] + (1 - acc_m) * table["R_minus"],
                                       rtol=0, atol=1e-12)
            np.testing.assert_allclose(table["R"], table["R_plus"] / table["R_minus"])
        # Listed examples: shallow right, and a majority of the trials wrong at the last step.
        last = rows[rows["step"] == rows["step"].max()].groupby("example_id")["correct"].mean()
        expected_ids = sorted(i for i in right.index if right[i] and last[i] < 0.5)
        assert client.shallow_right_deep_wrong(RUN_ID, shallow=name).tolist() == expected_ids
    assert set(mean["shallow"]) == {"svm", "forest"} and not mean["approximate"].any()
    with pytest.raises(ConfigError, match="knn"):
        client.contingency(RUN_ID, shallow="knn")
    assert all(open(p, "rb").read(8) == PNG_MAGIC for p in write_shallow_vs_deep_figures(run, RUN_ID))


def test_shallow_vs_deep_job_says_when_it_approximates(ray_head, run):
    done = run_job(["jobs/shallow_vs_deep.py", "--storage", run, "--run-id", RUN_ID, "--shallow", "svm",
                    "--exact-svm-limit", "500", "--address", ray_head.address, "--quiet"], env=ray_head.env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "APPROXIMATED" in done.stdout and "Nystroem" in done.stdout
    settings = raystats.open(run).contingency(RUN_ID, shallow="svm")
    assert settings["approximate"].all()
    assert open(f"{run}/{RUN_ID}/analyses/shallow_vs_deep/shallow_vs_deep_svm.png", "rb").read(8) == PNG_MAGIC


def test_prediction_depth_bounds_predictions_and_join(run):
    from raystats.report.analyses import write_depth_figure
    from raystats.service.prediction_depth import prediction_depth

    prediction_depth(run, RUN_ID, k=30, support_size=800, show_progress=False)
    client = raystats.open(run)
    for split in ("train", "test"):
        per_trial = client.prediction_depth(RUN_ID, split=split, per_trial=True)
        n_layers = int(per_trial["n_layers"].iloc[0])
        assert n_layers == 4  # the input and the cnn's three blocks
        assert per_trial["depth"].between(0, n_layers).all()
        np.testing.assert_array_equal(per_trial["settled"], per_trial["depth"] < n_layers)
        # The probed network's prediction is the one the run logged at its last step.
        rows = log_rows(run, split)
        last = rows[rows["step"] == rows["step"].max()].set_index(["trial", "example_id"])
        np.testing.assert_array_equal(per_trial["pred"], last.loc[list(zip(per_trial["trial"], per_trial["example_id"])), "pred"])
        summary = client.prediction_depth(RUN_ID, split=split)
        grouped = last.groupby("example_id")
        np.testing.assert_allclose(summary["easiness"], grouped["loss"].mean().loc[summary["example_id"]], rtol=1e-6)
        np.testing.assert_allclose(summary["consistency"], grouped["correct"].mean().loc[summary["example_id"]])
        np.testing.assert_allclose(summary["depth"], per_trial.groupby("example_id")["depth"].mean().loc[summary["example_id"]])
    assert open(write_depth_figure(run, RUN_ID), "rb").read(8) == PNG_MAGIC


def test_missing_results_name_the_job(run, tmp_path):
    store = RunStore(run)
    # Copy only run.json to a fresh store: a run without analyses.
    fresh = RunStore(str(tmp_path))
    fresh.write_bytes(f"{fresh.run_dir(RUN_ID)}/run.json", store.read_bytes(f"{store.run_dir(RUN_ID)}/run.json"))
    with pytest.raises(AnalysisNotFoundError, match="jobs/prediction_depth.py"):
        raystats.open(str(tmp_path)).prediction_depth(RUN_ID)
    with pytest.raises(AnalysisNotFoundError, match="jobs/patterns.py"):
        raystats.open(str(tmp_path)).pattern_matching(RUN_ID)


def test_trial_weights_come_out_of_a_vmap_ensemble_checkpoint(tmp_path):
    """A run trained as a vmap-ed ensemble keeps one file per group; each trial is found in it."""
    import io

    import torch

    from raystats.config import RunConfig
    from raystats.models import build_model
    from raystats.service.analysis import load_trial_model
    from raystats.train.ensemble import StackedEnsemble, checkpoint_name

    store = RunStore(str(tmp_path))
    config = RunConfig(run_id="vmapped", trials=4)
    torch.manual_seed(0)
    models = [build_model("cnn", (1, 8, 8), 10) for _ in (1, 3)]
    buffer = io.BytesIO()
    torch.save({"step": 5, "model": StackedEnsemble(models).state_dict()}, buffer)
    store.write_bytes(store.checkpoint_path("vmapped", checkpoint_name([1, 3])), buffer.getvalue())
    loaded = load_trial_model(store, "vmapped", config, (1, 8, 8), 10, trial=3)
    for name, value in models[1].state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(raystats.errors.StoreError, match="no checkpoint of trial 0"):
        load_trial_model(store, "vmapped", config, (1, 8, 8), 10, trial=0)
