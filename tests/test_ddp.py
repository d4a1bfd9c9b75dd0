"""One trial trained data-parallel over several workers (--workers-per-trial), with and without Ray.

The fast tests check the grouping and share arithmetic by hand. The Ray tests train the
same 2 trials of `mlp3` (no batch norm) on digits twice on the session's real cluster
(W = 2 workers): one trial per worker (G = 1), and each trial over both workers with
DDP (G = 2); then once more with G = 2 while a training worker is killed. They read the
Parquet files the workers wrote.

Tolerance of G = 2 against G = 1: the two compute the same update, but the G = 2 batch
gradient is the gloo all-reduce sum of two half-batch sums instead of one sum over the
batch, so float32 rounding differs by about one ulp per gradient entry and step. Over
the 23 SGD updates here that moved per-example losses by at most 1.2e-6 (measured
2026-11-23, max over every logged row), against losses of 0.03 to 3 that change by
~0.1 per logging interval: atol 1e-5 with rtol 1e-4 is 10x the rounding and far below
any real difference (a rank training on the wrong rows, or a mean loss not rescaled for
the uneven last batch, moves losses by > 1e-3).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from raystats.config import RunConfig
from raystats.errors import ConfigError
from raystats.service.easiness import run_easiness, trainer_workers
from raystats.service.layout import part_ranges
from raystats.train.ddp import GroupPlan, TrialGroup, share
from tests.conftest import REPO, wait_for

N_TRAIN, N_TEST = 1437, 360
# 1437 train rows at batch 64: 23 updates per epoch, the last batch has 29 rows (split
# 15/14 over two ranks). Logging every round(23/4) = 6 updates: steps 6, 12, 18, and the last, 23.
CONFIG = dict(dataset="digits", arch="mlp3", trials=2, epochs=1.0, log_every=0.25, batch_size=64,
              workers=2, rows_per_part=384)
STEPS = [6, 12, 18, 23]
# 1437 train rows in parts of 384: parts 0-3; 360 test rows: part 4.
PARTS = [0, 1, 2, 3, 4]


# ---- without Ray ------------------------------------------------------------------------

def test_group_plan_by_hand():
    plan = GroupPlan(world_size=6, workers_per_trial=2)
    assert plan.n_groups == 3
    assert [plan.ranks(g) for g in range(3)] == [[0, 1], [2, 3], [4, 5]]
    assert [plan.group_of(r) for r in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [plan.rank_in_group(r) for r in range(6)] == [0, 1, 0, 1, 0, 1]
    assert [plan.trials(g, 7) for g in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert plan.describe(7)[1] == "trial group 1: workers [2, 3] train trials [1, 4]"
    assert GroupPlan(4, 1).trials(1, 6) == [1, 5]  # G = 1: trial m on worker m mod W, as before
    with pytest.raises(ConfigError, match="world size 6 is not a multiple of workers_per_trial=4"):
        GroupPlan(6, 4)


def test_shares_are_disjoint_and_cover_the_batch():
    batch = torch.tensor([40, 11, 7, 93, 2, 65, 18])
    shares = [share(batch, rank, 3) for rank in range(3)]
    assert [s.tolist() for s in shares] == [[40, 93, 18], [11, 2], [7, 65]]
    assert sorted(torch.cat(shares).tolist()) == sorted(batch.tolist())
    assert share(batch, 0, 1).tolist() == batch.tolist()


def test_rank_losses_average_to_the_whole_batch_gradient():
    """(1/G) Σ_r ∇ loss_r equals ∇ of the batch's mean cross-entropy, for an uneven batch of 7."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    inputs, labels = torch.randn(7, 5), torch.tensor([0, 2, 1, 1, 0, 2, 2])
    whole = torch.autograd.grad(torch.nn.functional.cross_entropy(model(inputs), labels), model.weight)[0]
    averaged = torch.zeros_like(whole)
    for rank in range(3):
        group = TrialGroup(rank=rank, size=3)
        loss = group.loss(model(share(inputs, rank, 3)), share(labels, rank, 3), batch_size=7)
        averaged += torch.autograd.grad(loss, model.weight)[0] / 3
    torch.testing.assert_close(averaged, whole, rtol=1e-6, atol=1e-7)
    # The plain mean per rank (what DDP examples often do) is not the batch gradient here.
    plain = sum(
        torch.autograd.grad(torch.nn.functional.cross_entropy(model(share(inputs, r, 3)), share(labels, r, 3)),
                            model.weight)[0] / 3
        for r in range(3)
    )
    assert not torch.allclose(plain, whole, atol=1e-4)


def test_batch_norm_on_cpu_groups_warns_and_models_without_it_do_not():
    from raystats.models import build_model

    cpu = torch.device("cpu")
    cnn, mlp = build_model("cnn", (1, 8, 8), 10), build_model("mlp3", (1, 8, 8), 10)
    with pytest.warns(UserWarning, match="SyncBatchNorm needs a GPU"):
        assert TrialGroup(0, 2).prepare(cnn, cpu) is cnn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrialGroup(0, 2).prepare(mlp, cpu) is mlp
        assert TrialGroup().prepare(cnn, cpu) is cnn


def test_part_keys_do_not_depend_on_the_group():
    assert part_ranges("train", 10, 10, rows_per_part=4) == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert part_ranges("test", 5, 10, rows_per_part=4) == [(3, 0, 4), (4, 4, 5)]
    assert part_ranges("test", 5, 10) == [(1, 0, 5)]  # default: one part per split on small data
    keys = [0, 1, 2, 3, 4]
    for size in (1, 2, 3):
        mine = [[k for k in keys if TrialGroup(rank, size).owns_part(k)] for rank in range(size)]
        assert sorted(sum(mine, [])) == keys  # each part written by exactly one rank of the group
    assert [[k for k in keys if TrialGroup(rank, 2).owns_part(k)] for rank in range(2)] == [[0, 2, 4], [1, 3]]


def test_config_and_flags_refuse_bad_groups(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"workers=3 is not accepted: expected a multiple of workers_per_trial=2"):
        RunConfig(workers=3, workers_per_trial=2)
    with pytest.raises(ConfigError, match="workers_per_trial=0"):
        RunConfig(workers_per_trial=0)
    with pytest.raises(ConfigError, match="ensemble='vmap'"):
        RunConfig(workers=2, workers_per_trial=2, ensemble="vmap")
    with pytest.raises(ConfigError, match="rows_per_part=0"):
        RunConfig(rows_per_part=0)
    assert trainer_workers(RunConfig(workers=6, workers_per_trial=2, trials=2)) == 4  # 2 groups for 2 trials
    assert trainer_workers(RunConfig(workers=4, trials=3)) == 3
    job = _load_job("easiness")
    storage = str(tmp_path / "store")
    assert job.main(["--workers", "3", "--workers-per-trial", "2", "--storage", storage]) == 2
    assert "multiple of workers_per_trial=2" in capsys.readouterr().err
    assert not os.path.exists(storage)
    args = job.parser().parse_args(["--workers", "4", "--workers-per-trial", "2", "--rows-per-part", "500"])
    config = job.config_from_args(args)
    assert (config.workers, config.workers_per_trial, config.rows_per_part) == (4, 2, 500)
    with pytest.raises(SystemExit):
        job.parser().parse_args(["--workers-per-trial", "0"])


def _load_job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", os.path.join(REPO, "jobs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- on the session's Ray cluster ---------------------------------------------------------

def read_rows(storage: str, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every logged row, and one line per Parquet file: (trial, step, part, writer)."""
    frames, files = [], []
    for root, _, names in os.walk(os.path.join(storage, run_id, "logs")):
        for name in names:
            if not (name.startswith("part-") and name.endswith(".parquet")):
                continue  # a part being written: ".part-<k>.parquet.tmp-<uuid>"
            path = os.path.join(root, name)
            frames.append(pq.read_table(path).to_pandas())
            writer = pq.read_schema(path).metadata[b"raystats.writer"].decode()
            files.append({"trial": int(frames[-1]["trial"].iloc[0]), "step": int(frames[-1]["step"].iloc[0]),
                          "part": int(name.removeprefix("part-").removesuffix(".parquet")), "writer": writer,
                          "pid": int(writer.split("pid ")[1].split(",")[0])})
    rows = pd.concat(frames).sort_values(["trial", "step", "split", "example_id"]).reset_index(drop=True)
    return rows, pd.DataFrame(files)


def assert_each_row_once(rows: pd.DataFrame) -> None:
    assert not rows.duplicated(["trial", "step", "split", "example_id"]).any()
    assert len(rows) == 2 * len(STEPS) * (N_TRAIN + N_TEST)
    assert sorted(rows["step"].unique()) == STEPS


@pytest.fixture(scope="module")
def solo_and_ddp(ray_head, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("ddp"))
    for run_id, per_trial in (("solo", 1), ("ddp", 2)):
        summary = run_easiness(RunConfig(run_id=run_id, workers_per_trial=per_trial, **CONFIG), storage,
                               show_progress=False)
        assert summary.status == "finished" and list(summary.log_steps) == STEPS
        print(f"measure: run {run_id} (workers_per_trial={per_trial}) took {summary.seconds:.1f} s")
    return storage


@pytest.mark.ray
def test_ddp_logs_the_single_process_losses(solo_and_ddp):
    solo, _ = read_rows(solo_and_ddp, "solo")
    ddp, _ = read_rows(solo_and_ddp, "ddp")
    assert_each_row_once(ddp)
    assert (solo[["trial", "step", "split", "example_id", "label"]] == ddp[["trial", "step", "split", "example_id", "label"]]).all().all()
    for column in ("loss", "margin", "p_true", "el2n"):
        np.testing.assert_allclose(ddp[column], solo[column], rtol=1e-4, atol=1e-5, err_msg=column)
    # The trials learned: a test that compares two untrained runs would prove nothing.
    last = solo[(solo["step"] == STEPS[-1]) & (solo["split"] == "train")]
    assert last["loss"].mean() < 0.5 * solo[solo["step"] == STEPS[0]]["loss"].mean()
    print(f"measure: max |loss G=2 - loss G=1| = {np.abs(ddp['loss'] - solo['loss']).max():.2e} "
          f"over {len(ddp)} rows")


@pytest.mark.ray
def test_both_ranks_write_their_own_parts(solo_and_ddp):
    _, files = read_rows(solo_and_ddp, "ddp")
    assert files["pid"].nunique() == 2, files["writer"].unique()
    for (trial, step), parts in files.groupby(["trial", "step"]):
        assert sorted(parts["part"]) == PARTS
        by_pid = {pid: sorted(group["part"]) for pid, group in parts.groupby("pid")}
        assert sorted(by_pid.values()) == [[0, 2, 4], [1, 3]], (trial, step, by_pid)
        assert all("trial group 0 rank 0/2" in w for w in parts[parts["part"] % 2 == 0]["writer"])
        assert all("trial group 0 rank 1/2" in w for w in parts[parts["part"] % 2 == 1]["writer"])
    _, solo_files = read_rows(solo_and_ddp, "solo")
    assert solo_files.groupby("trial")["pid"].nunique().tolist() == [1, 1]  # G = 1: one writer per trial


@pytest.mark.ray
def test_ddp_resumes_after_a_worker_is_killed(solo_and_ddp):
    storage = solo_and_ddp
    config = RunConfig(run_id="ddp-killed", workers_per_trial=2, **CONFIG)
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.update(summary=run_easiness(config, storage, show_progress=False)), daemon=True)
    thread.start()
    checkpoint = os.path.join(storage, "ddp-killed", "checkpoints", "trial=0", "latest.pt")
    wait_for(lambda: os.path.exists(checkpoint), timeout=120, interval=0.05, what="trial 0's first checkpoint")
    step = torch.load(checkpoint, weights_only=True)["step"]
    # The run's own workers, from the parts they wrote before the checkpoint.
    _, files = read_rows(storage, "ddp-killed")
    before = set(files[(files["trial"] == 0) & (files["step"] == step)]["pid"])
    assert len(before) == 2
    victim = max(before)
    print(f"inject: SIGKILL to training worker pid {victim} after trial 0's checkpoint at step {step}")
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=300)
    assert outcome.get("summary") is not None and outcome["summary"].status == "finished"
    rows, files = read_rows(storage, "ddp-killed")
    assert_each_row_once(rows)
    # Resumed, not restarted: the parts up to the checkpointed step keep their first writers.
    early = files[(files["trial"] == 0) & (files["step"] <= step)]
    assert set(early["pid"]) <= before, early
    assert files["pid"].nunique() > 2, "no part was written after the restart"
    reference, _ = read_rows(storage, "ddp")
    for column in ("loss", "margin", "p_true", "el2n"):
        np.testing.assert_allclose(rows[column], reference[column], rtol=1e-6, atol=1e-7, err_msg=column)
    print("measure: every row equals the undisturbed G=2 run's; each (trial, step, example) once")
