"""Aggregation sharded by example-id range: routing, the client's merge, the memory bound.

The integration tests force K = 3 shards with a small ``shard_bytes`` budget on digits
and run the real job on the session's Ray cluster (conftest.py). Every live, sharded
answer is compared with the offline answer of one accumulator holding all rows (K = 1)
and with an independent pandas computation from the Parquet rows. The property tests
check the merge of per-shard top-k lists against easy_set / hard_set on the
concatenation, with ties, NaN and any K.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from hypothesis import given, settings
from hypothesis import strategies as st

import raystats
from raystats.config import RunConfig
from raystats.errors import ConfigError, SchemaError
from raystats.schema import make_log_table
from raystats.service.aggregator import ShardState
from raystats.service.easiness import run_easiness
from raystats.service.layout import ShardPlan, choose_shards
from raystats.service.names import NAMESPACE, aggregator_name
from raystats.store import RunStore
from raystats.stats import (
    easy_set, hard_set, matching_rate, merge_set_candidates, normalize_counts, set_candidates, set_size,
)
from tests.conftest import wait_for

M, N_TRAIN, N_TEST = 3, 1437, 360  # digits: 1,797 images, 80 / 20 split
CONFIG = dict(dataset="digits", arch="cnn", trials=M, epochs=1.0, log_every=0.5, workers=2)
RUN = "digits-sharded"


def by_hand_bytes(n_shards: int, n_steps: int) -> int:
    """The largest shard's state, worked out by hand: ⌈N/K⌉ ids per split × M × T × 18 B."""
    return (math.ceil(N_TRAIN / n_shards) + math.ceil(N_TEST / n_shards)) * M * n_steps * 18


# ---- integration: the real job with K = 3 --------------------------------------------------


@pytest.fixture(scope="module")
def sharded_run(ray_head, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("sharded"))
    n_steps = 2  # epochs 1, log every 0.5 epoch
    # Between the K=3 and K=2 bounds (64,692 and 97,092 bytes): the fewest shards that fit is 3.
    budget = by_hand_bytes(3, n_steps) + 5000
    assert by_hand_bytes(2, n_steps) > budget
    summary = run_easiness(RunConfig(run_id=RUN, shard_bytes=budget, **CONFIG), storage,
                           show_progress=False)
    assert len(summary.log_steps) == n_steps
    return storage, summary, budget


def parquet_rows(storage: str) -> pd.DataFrame:
    frames = []
    for root, _, files in os.walk(os.path.join(storage, RUN, "logs")):
        frames += [pq.read_table(os.path.join(root, f)).to_pandas() for f in files if f.endswith(".parquet")]
    return pd.concat(frames, ignore_index=True)


def pandas_answers(rows: pd.DataFrame, step: int, split: str, frac: float) -> dict:
    """Easiness and sets recomputed with pandas alone: group by example, sort, take K."""
    rows = rows[(rows["step"] == step) & (rows["split"].astype(str) == split)]
    grouped = rows.groupby("example_id")
    table = pd.DataFrame({"loss": grouped["loss"].mean(), "count": grouped["correct"].sum()}).reset_index()
    k = max(1, round(frac * len(table)))
    first = lambda frame: sorted(frame["example_id"][:k].tolist())  # noqa: E731
    return {
        "table": table,
        ("easy", "loss"): first(table.sort_values(["loss", "example_id"])),
        ("hard", "loss"): first(table.sort_values(["loss", "example_id"], ascending=[False, True])),
        ("easy", "count"): first(table.sort_values(["count", "example_id"], ascending=[False, True])),
        ("hard", "count"): first(table.sort_values(["count", "example_id"])),
    }


def shard_handles(n_shards: int = 3) -> list:
    return [ray.get_actor(aggregator_name(RUN, k), namespace=NAMESPACE) for k in range(n_shards)]


@pytest.mark.ray
def test_three_shards_each_hold_only_their_range_within_the_bound(sharded_run):
    storage, summary, budget = sharded_run
    info = raystats.open(storage).info(RUN)
    assert info["shards"] == 3 and info["config"]["shard_bytes"] == budget
    described = ray.get([h.describe.remote() for h in shard_handles()])
    n_steps = len(summary.log_steps)
    bound = by_hand_bytes(3, n_steps)
    for k, shard in enumerate(described):
        assert shard["n_shards"] == 3 and shard["bound_bytes"] == bound
        assert shard["nbytes"] <= bound <= budget
        ranges = shard["ranges"]
        assert ranges["train"] == (k * N_TRAIN // 3, (k + 1) * N_TRAIN // 3)
        assert ranges["test"] == (k * N_TEST // 3, (k + 1) * N_TEST // 3)
        owned = sum(stop - start for start, stop in ranges.values())
        # Routed: the shard was sent its own rows only (the whole table would be 3x as many).
        assert shard["rows"] == owned * M * n_steps
        assert shard["nbytes"] == owned * M * n_steps * 18
    assert sum(s["rows"] for s in described) == len(parquet_rows(storage))
    assert len({s["keys"] for s in described}) == 1, "every shard saw every part's key"


@pytest.mark.ray
def test_a_shard_refuses_rows_outside_its_range(sharded_run):
    storage, summary, _ = sharded_run
    store = RunStore(storage)
    whole = store.read_log(store.log_path(RUN, 0, summary.log_steps[0], 0))  # all 1,437 train rows
    middle = shard_handles()[1]
    before = ray.get(middle.describe.remote())
    with pytest.raises(SchemaError, match=r"example_ids 0..1436 to aggregator shard 1, which owns \[479, 958\)"):
        try:
            ray.get(middle.ingest.remote((0, summary.log_steps[0], 99), "train", whole))
        except ray.exceptions.RayTaskError as error:
            raise error.as_instanceof_cause() from None
    after = ray.get(middle.describe.remote())
    assert (after["rows"], after["keys"]) == (before["rows"], before["keys"])


@pytest.mark.ray
def test_live_sharded_answers_equal_offline_single_actor_and_pandas(sharded_run):
    storage, summary, _ = sharded_run
    live, offline = raystats.connect(), raystats.open(storage)
    rows = parquet_rows(storage)
    for split in ("train", "test"):
        for step in summary.log_steps:
            for kind in ("loss", "count"):
                got = live.easiness(RUN, step=step, kind=kind, split=split)
                pd.testing.assert_frame_equal(got, offline.easiness(RUN, step=step, kind=kind, split=split))
            for frac in (0.1, 0.25):
                expected = pandas_answers(rows, step, split, frac)
                table = expected["table"]
                np.testing.assert_allclose(live.easiness(RUN, step=step, split=split)["easiness"],
                                           table["loss"], rtol=1e-6)
                for kind in ("loss", "count"):
                    for which, pick in (("easy", live.easy), ("hard", live.hard)):
                        ids = pick(RUN, frac=frac, step=step, kind=kind, split=split)
                        single = getattr(offline, which)(RUN, frac=frac, step=step, kind=kind, split=split)
                        assert np.array_equal(ids, single), (split, step, kind, which, frac)
                        assert ids.tolist() == expected[(which, kind)], (split, step, kind, which, frac)
    first, last = summary.log_steps
    for kind in ("loss", "count"):
        for which in ("easy", "hard"):
            rate = live.matching_rate(RUN, RUN, which=which, step=first, step_b=last, kind=kind)
            assert rate == offline.matching_rate(RUN, RUN, which=which, step=first, step_b=last, kind=kind)
            a = pandas_answers(rows, first, "train", 0.1)[(which, kind)]
            b = pandas_answers(rows, last, "train", 0.1)[(which, kind)]
            assert rate == len(set(a) & set(b)) / max(len(a), len(b))
    # step=None is the last step, answered in one round trip to the shards
    asked = []
    ask = live._ask
    live._ask = lambda run_id, method, *args: asked.append(method) or ask(run_id, method, *args)
    assert np.array_equal(live.easy(RUN), offline.easy(RUN, step=last))
    assert asked == ["set_candidates"]


@pytest.mark.ray
def test_a_restarted_shard_rebuilds_only_its_range(sharded_run):
    storage, summary, _ = sharded_run
    live, offline = raystats.connect(), raystats.open(storage)
    middle = shard_handles()[1]
    before = ray.get(middle.describe.remote())
    old_pid = ray.get(middle.pid.remote())
    print(f"inject: ray.kill on shard 1 (pid {old_pid}), holding {before['rows']} rows")
    ray.kill(middle, no_restart=False)
    wait_for(lambda: _restarted(middle, old_pid), timeout=120, what="shard 1 to restart")
    after = ray.get(middle.describe.remote())
    assert after["rebuilt_parts"] == after["keys"] == before["keys"]
    assert (after["rows"], after["nbytes"], after["ranges"]) == (before["rows"], before["nbytes"], before["ranges"])
    for step in summary.log_steps:
        pd.testing.assert_frame_equal(live.easiness(RUN, step=step, split="test"),
                                      offline.easiness(RUN, step=step, split="test"))
        assert np.array_equal(live.hard(RUN, step=step, kind="count"), offline.hard(RUN, step=step, kind="count"))
    print("measure: rebuilt shard 1 holds the same rows; live == offline for every step")


def _restarted(handle, old_pid) -> bool:
    try:
        return ray.get(handle.pid.remote(), timeout=10) != old_pid
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return False


# ---- the merge and the plan, without a cluster ----------------------------------------------


def _cuts(draw_cuts: list[int], n: int) -> list[int]:
    return [0, *sorted({c for c in draw_cuts if 0 < c < n}), n]


values_with_ties = st.lists(
    st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0, 3, width=32), st.just(float("nan"))),
    min_size=1, max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(values_with_ties, st.lists(st.integers(0, 60), max_size=6), st.floats(0.01, 0.99),
       st.sampled_from(["easy", "hard"]), st.integers(0, 1000))
def test_merged_shard_sets_equal_the_sets_of_the_concatenation_loss_form(values, cuts, frac, which, offset):
    values = np.array(values)
    ids = np.arange(offset, offset + len(values))
    bounds = _cuts(cuts, len(values))
    k = set_size(len(values), frac)  # the client's upper bound: every example of the split
    shards = [set_candidates(values[a:b], k, which, "loss", example_ids=ids[a:b])
              for a, b in zip(bounds, bounds[1:])]
    expected = (easy_set if which == "easy" else hard_set)(values, frac, "loss", example_ids=ids)
    assert np.array_equal(merge_set_candidates(shards, frac, which, "loss"), expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 5), st.none()), min_size=1, max_size=60),
       st.lists(st.integers(0, 60), max_size=6), st.floats(0.01, 0.99), st.sampled_from(["easy", "hard"]))
def test_merged_shard_sets_equal_the_sets_of_the_concatenation_count_form(counts, cuts, frac, which):
    raw = np.array([np.nan if c is None else c for c in counts], dtype=np.float64)
    n_trials = np.where(np.isnan(raw), 0, 5)
    bounds = _cuts(cuts, len(raw))
    k = set_size(len(raw), frac)
    # shards rank by the raw counts c_i; the single answer ranks by c_i / max_j c_j
    shards = [set_candidates(raw[a:b], k, which, "count", example_ids=np.arange(a, b))
              for a, b in zip(bounds, bounds[1:])]
    normalised = normalize_counts(np.nan_to_num(raw), n_trials)
    expected = (easy_set if which == "easy" else hard_set)(normalised, frac, "count")
    assert np.array_equal(merge_set_candidates(shards, frac, which, "count"), expected)


def test_merge_refuses_a_shard_that_sent_too_few():
    values = np.array([0.1, 0.2, 0.3, 0.4])
    short = [set_candidates(values[:2], 1, "easy"), set_candidates(values[2:], 1, "easy", example_ids=np.arange(2, 4))]
    with pytest.raises(ConfigError, match="sent 1 candidates for a set of 2"):
        merge_set_candidates(short, 0.5, "easy")
    assert matching_rate(merge_set_candidates([set_candidates(values, 2, "easy")], 0.5, "easy"), np.array([0, 1])) == 1


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5000), st.integers(0, 800), st.integers(1, 12), st.integers(1, 9), st.integers(1, 10**6))
def test_choose_shards_is_the_fewest_shards_within_the_budget(n_train, n_test, trials, steps, budget):
    sizes = {"train": n_train, "test": n_test}
    cell = trials * steps * 18
    if 2 * cell > budget:
        with pytest.raises(ConfigError, match="shard_bytes"):
            choose_shards(sizes, trials, steps, budget)
        return
    plan = choose_shards(sizes, trials, steps, budget)
    largest = lambda k: max(  # noqa: E731 - every shard's bytes, by hand
        sum((s + 1) * n // k - s * n // k for n in sizes.values()) * cell for s in range(k)
    )
    assert largest(plan.n_shards) <= budget
    assert plan.bytes_per_shard(trials, steps) == largest(plan.n_shards)
    assert plan.n_shards == 1 or largest(plan.n_shards - 1) > budget


def log_table(ids, step: int = 1, loss=None) -> pa.Table:
    """One (trial 0, step) part with the given example ids; zeros but for ``loss``."""
    ids = np.asarray(ids, dtype=np.int32)
    zeros, labels = np.zeros(len(ids), np.float32), np.zeros(len(ids), np.int16)
    return make_log_table(example_id=ids, trial=0, step=step, epoch=1.0, split="train", label=labels,
                          pred=labels, loss=zeros if loss is None else loss, margin=zeros,
                          p_true=zeros, el2n=zeros)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.integers(1, 7), st.booleans(), st.integers(0, 10**6))
def test_route_gives_each_shard_exactly_its_rows(n, n_shards, shuffle, seed):
    rng = np.random.default_rng(seed)
    ids = rng.choice(n, size=rng.integers(0, n + 1), replace=False)
    ids = ids if shuffle else np.sort(ids)
    table = log_table(ids, loss=rng.random(len(ids), dtype=np.float32))
    plan = ShardPlan(n_shards, {"train": n})
    pieces = plan.route("train", table)
    assert len(pieces) == n_shards
    ids = table.column("example_id").to_numpy()  # make_log_table may reorder the rows
    for k, piece in enumerate(pieces):
        start, stop = plan.range("train", k)
        mine = (ids >= start) & (ids < stop)
        assert sorted(piece.column("example_id").to_pylist()) == sorted(ids[mine].tolist())
        np.testing.assert_array_equal(np.sort(piece.column("loss").to_numpy()),
                                      np.sort(table.column("loss").to_numpy()[mine]))
        if 0 < piece.num_rows < table.num_rows:
            # its own buffers: pickling it does not carry the whole part along
            assert piece.column("loss").chunk(0).buffers()[1].size == 4 * piece.num_rows
    with pytest.raises(SchemaError, match=rf"example_ids \[{n}\] outside \[0, {n}\)"):
        plan.route("train", log_table([0, n]))


def test_a_shard_refuses_a_step_past_its_memory_bound():
    plan = ShardPlan(2, {"train": 10})
    one_step = 5 * 2 * 18  # 5 ids × 2 trials × 18 B
    state = ShardState(plan, 1, n_trials=2, max_bytes=one_step)
    assert state.ingest((0, 1, 0), "train", log_table(range(5, 10), step=1))
    assert state.nbytes() == one_step
    with pytest.raises(ConfigError, match=f"past its bound of {one_step}"):
        state.ingest((0, 2, 0), "train", log_table(range(5, 10), step=2))
    assert state.steps("train") == [1] and state.nbytes() == one_step
    with pytest.raises(SchemaError, match=r"owns \[0, 5\)"):
        ShardState(plan, 0, n_trials=2).ingest((0, 1, 0), "train", log_table(range(5, 10)))
    # a part with none of the range's ids still logs its step there, all cells absent
    empty = ShardState(plan, 0, n_trials=2)
    assert empty.ingest((0, 3, 0), "train", plan.route("train", log_table(range(5, 10), step=3))[0])
    assert empty.steps("train") == [3] and np.isnan(empty.easiness("train", 3, "loss")[1]).all()
