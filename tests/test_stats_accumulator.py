"""LogAccumulator: streaming answers equal batch answers, in any order, with redelivery."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raystats.errors import ConfigError, SchemaError, StepNotFoundError
from raystats.schema import make_log_table
from raystats.stats import (
    LogAccumulator,
    area_under_margin,
    count_easiness,
    data_map,
    easy_set,
    el2n_score,
    forgetting_events,
    from_tables,
    hard_set,
    iteration_learned,
    loss_easiness,
    merge_extremes,
    set_size,
)

N, M, STEPS = 23, 3, (0, 5, 10)
COLUMNS = ("loss", "margin", "p_true", "el2n", "correct")


def make_run(seed: int, missing: int = 0):
    """Random logs of a small run, as (key, table) parts and as the dense truth.

    Each (trial, step) is cut into parts: contiguous chunks, plus (for some) an
    interleaved split — even ids in one part, odd in another. ``missing`` (trial, step)
    pairs are left out entirely, and example 0 is never logged at step 5.
    """
    rng = np.random.default_rng(seed)
    truth = {s: {c: np.zeros((M, N), np.float32) for c in COLUMNS[:-1]} for s in STEPS}
    for s in STEPS:
        truth[s]["correct"] = np.zeros((M, N), bool)
        truth[s]["present"] = np.zeros((M, N), bool)
    pairs = [(m, s) for m in range(M) for s in STEPS]
    skipped = {pairs[i] for i in rng.choice(len(pairs), missing, replace=False)}
    parts = []
    for m, s in pairs:
        if (m, s) in skipped:
            continue
        ids = np.arange(N) if s != 5 else np.arange(1, N)
        label = rng.integers(0, 3, len(ids))
        # ties on purpose: losses from a small set of values
        values = dict(
            loss=rng.choice([0.25, 0.5, 1.0, 2.0], len(ids)).astype(np.float32),
            margin=rng.normal(size=len(ids)).astype(np.float32),
            p_true=rng.random(len(ids)).astype(np.float32),
            el2n=rng.random(len(ids)).astype(np.float32),
        )
        pred = np.where(rng.random(len(ids)) < 0.6, label, (label + 1) % 3)
        for c, v in values.items():
            truth[s][c][m, ids] = v
        truth[s]["correct"][m, ids] = pred == label
        truth[s]["present"][m, ids] = True
        if rng.random() < 0.5:
            cuts = np.sort(rng.choice(np.arange(1, len(ids)), 2, replace=False))
            chunks = np.split(np.arange(len(ids)), cuts)
        else:
            chunks = [np.arange(0, len(ids), 2), np.arange(1, len(ids), 2)]
        for k, rows in enumerate(chunks):
            table = make_log_table(
                example_id=ids[rows], trial=m, step=s, epoch=s / 10, split="train",
                label=label[rows], pred=pred[rows], **{c: v[rows] for c, v in values.items()},
            )
            parts.append(((m, s, k), table))
    return parts, truth


def assert_same(a, b):
    assert np.array_equal(a, b, equal_nan=True), (a, b)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 3), st.data())
def test_streaming_equals_batch_in_any_order_with_redelivery(seed, missing, data):
    parts, truth = make_run(seed, missing)
    order = data.draw(st.permutations(range(len(parts))))
    indices = st.sampled_from(range(len(parts))) if parts else st.nothing()
    again = data.draw(st.lists(indices, max_size=6, unique=True))
    accumulator = LogAccumulator(N, M)
    for i in order:
        assert accumulator.ingest(parts[i][1], parts[i][0]) is True
    for i in again:
        key, table = parts[i]
        assert accumulator.ingest(table, key) is False  # same key: refused
        assert accumulator.ingest(table, (*key, "retry")) is True  # new key: rewrites equal values

    logged = [s for s in STEPS if truth[s]["present"].any()]
    assert accumulator.steps() == logged
    for s in logged:
        matrices = accumulator.matrices(s)
        for c in (*COLUMNS, "present"):
            assert_same(matrices[c], truth[s][c])
        loss, correct, present = truth[s]["loss"], truth[s]["correct"], truth[s]["present"]
        ids, values, n_trials = accumulator.easiness(s, "loss")
        assert ids.tolist() == list(range(N))
        assert_same(values, loss_easiness(loss, present))
        assert n_trials.tolist() == present.sum(axis=0).tolist()
        assert_same(accumulator.easiness(s, "count")[1], count_easiness(correct, present))
        for kind, source in (("loss", loss_easiness(loss, present)),
                             ("count", count_easiness(correct, present))):
            assert_same(accumulator.easy(s, 0.2, kind), easy_set(source, 0.2, kind))
            assert_same(accumulator.hard(s, 0.2, kind), hard_set(source, 0.2, kind))
        trials = [0, 2]
        assert_same(accumulator.easiness(s, "loss", trials)[1],
                    loss_easiness(loss[trials], present[trials]))


def test_dynamics_pass_through_to_the_batch_functions():
    parts, truth = make_run(3, missing=2)
    accumulator = from_tables(parts, N, M)
    steps = np.array(accumulator.steps())
    stacked = {c: np.stack([truth[s][c] for s in steps]) for c in (*COLUMNS, "present")}
    present = stacked["present"]
    assert_same(accumulator.stack("loss")[1], stacked["loss"])
    assert_same(accumulator.stack("loss")[2], present)
    learned = iteration_learned(stacked["correct"], steps, present)
    assert_same(accumulator.iteration_learned().per_trial, learned.per_trial)
    forgetting = forgetting_events(stacked["correct"], present)
    assert_same(accumulator.forgetting_events().mean, forgetting.mean)
    cartography = data_map(stacked["p_true"], stacked["correct"], present)
    table = accumulator.dynamics()
    assert_same(table["example_id"], np.arange(N))
    assert_same(table["iteration_learned"], learned.mean)
    assert_same(table["forgetting_events"], forgetting.mean)
    assert_same(table["never_learned"], forgetting.never_learned)
    assert_same(table["confidence"], cartography.confidence)
    assert_same(table["variability"], cartography.variability)
    assert_same(table["correctness"], cartography.correctness)
    assert_same(table["aum"], area_under_margin(stacked["margin"], present))
    first = truth[steps[0]]
    assert_same(table["el2n"], el2n_score(first["el2n"], first["present"]))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.lists(st.integers(1, N - 1), max_size=4, unique=True),
       st.sampled_from(["loss", "count"]), st.floats(0.05, 0.95))
def test_range_shards_merge_to_the_single_answer(seed, cuts, kind, frac):
    parts, _ = make_run(seed, missing=1)
    single = from_tables(parts, N, M)
    bounds = [0, *sorted(cuts), N]
    shards = [from_tables(parts, b - a, M, id_offset=a) for a, b in zip(bounds, bounds[1:])]
    for s in single.steps():
        ids, values, n_trials = single.easiness(s, kind)
        k = set_size(int((~np.isnan(values)).sum()), frac)
        shard_steps = shards  # every shard saw every batch, so each lists every step
        assert all(sh.steps() == single.steps() for sh in shards)
        high_is_easy = kind == "count"
        easy = merge_extremes([sh.easiest_k(s, k, kind) for sh in shard_steps], k, high_is_easy)
        hard = merge_extremes([sh.hardest_k(s, k, kind) for sh in shard_steps], k, not high_is_easy)
        assert_same(easy[0], single.easy(s, frac, kind))
        assert_same(hard[0], single.hard(s, frac, kind))
        # the loss form and the raw counts concatenate across shards
        if kind == "loss":
            joined = np.concatenate([sh.easiness(s, "loss")[1] for sh in shard_steps])
            assert_same(joined, values)
        else:
            counts = np.concatenate([sh.correct_counts(s)[1] for sh in shard_steps])
            seen = np.concatenate([sh.correct_counts(s)[2] for sh in shard_steps])
            normalised = counts / counts.max() if counts.max() else np.zeros(len(counts))
            normalised[seen == 0] = np.nan
            assert_same(normalised, values)


def one_table(ids, trial=0, step=1, loss=None):
    ids = np.asarray(ids)
    n = len(ids)
    loss = np.arange(n, dtype=np.float32) + 1 if loss is None else loss
    return make_log_table(
        example_id=ids, trial=trial, step=step, epoch=0.0, split="train",
        label=np.zeros(n, int), pred=(ids % 2), loss=loss, margin=-loss, p_true=loss / 100,
        el2n=loss * 2,
    )


def test_rows_outside_the_range_are_ignored_and_gaps_stay_absent():
    accumulator = LogAccumulator(4, 2, id_offset=10)
    # ids 8..15, every other one: 10, 12 are in range [10, 14); 14 is not
    assert accumulator.ingest(one_table([8, 10, 12, 14]), ("a",))
    matrices = accumulator.matrices(1)
    assert matrices["present"].tolist() == [[True, False, True, False], [False] * 4]
    assert matrices["loss"][0].tolist() == [2.0, 0.0, 3.0, 0.0]
    assert matrices["correct"][0].tolist() == [True, False, True, False]  # pred = id % 2 = 0
    # a batch with no row in range takes its key and logs its step, with nothing present
    assert accumulator.ingest(one_table([0, 1, 2], step=7), ("b",))
    assert accumulator.steps() == [1, 7] and ("b",) in accumulator.keys()
    assert not accumulator.matrices(7)["present"].any()
    assert np.isnan(accumulator.easiness(7)[1]).all()
    assert accumulator.easy(7, 0.5).tolist() == []


def test_unsorted_ids_take_the_mask_path():
    accumulator = LogAccumulator(6, 1)
    table = one_table([0, 1, 2, 3, 4, 5]).take([3, 0, 5, 1])  # ids 3, 0, 5, 1
    accumulator.ingest(table, ("x",))
    assert accumulator.matrices(1)["loss"][0].tolist() == [1.0, 2.0, 0.0, 4.0, 0.0, 6.0]
    # correct = (pred == label) = (id % 2 == 0): only id 0 of the present ids 0, 1, 3, 5
    assert accumulator.matrices(1)["correct"][0].tolist() == [True] + [False] * 5


def test_record_batches_chunked_and_sliced_tables():
    table = one_table(np.arange(20))
    expected = LogAccumulator(20, 1)
    expected.ingest(table, ("whole",))
    chunked = pa.concat_tables([table.slice(0, 7), table.slice(7)])
    assert chunked.column("loss").num_chunks == 2
    for source in (chunked, table.to_batches()[0], table.slice(3, 11)):
        accumulator = LogAccumulator(20, 1)
        accumulator.ingest(source, ("k",))
        rows = slice(None) if source.num_rows == 20 else slice(3, 14)
        for name, matrix in accumulator.matrices(1).items():
            assert_same(matrix[0, rows], expected.matrices(1)[name][0, rows])


def test_bad_batches_are_refused_and_change_nothing():
    accumulator = LogAccumulator(10, 2)
    mixed = pa.concat_tables([one_table([0, 1], trial=0), one_table([2, 3], trial=1)])
    with pytest.raises(SchemaError, match="mixes"):
        accumulator.ingest(mixed, ("m",))
    mixed_steps = pa.concat_tables([one_table([0, 1]), one_table([2, 3])]).combine_chunks()
    mixed_steps = mixed_steps.set_column(2, "step", pa.array([1, 1, 2, 2], pa.int32()))
    with pytest.raises(SchemaError, match="step"):
        accumulator.ingest(mixed_steps, ("s",))
    with pytest.raises(SchemaError, match="'margin'"):
        accumulator.ingest(one_table([0]).drop_columns(["margin"]), ("d",))
    with pytest.raises(SchemaError, match="trial 5"):
        accumulator.ingest(one_table([0], trial=5), ("t",))
    with pytest.raises(SchemaError, match=r"example_ids \[1\]"):
        accumulator.ingest(one_table([0, 1, 2]).take([1, 0, 1]), ("r",))
    as_text = one_table([0, 1]).set_column(7, "loss", pa.array(["a", "b"]))
    with pytest.raises(SchemaError, match="'loss' column has type string"):
        accumulator.ingest(as_text, ("x",))
    assert accumulator.keys() == frozenset() and accumulator.steps() == []
    assert accumulator.nbytes == 0
    assert accumulator.ingest(pa.Table.from_batches([], one_table([0]).schema), ("empty",))


def test_unknown_step_lists_the_logged_steps():
    accumulator = LogAccumulator(5, 1)
    accumulator.ingest(one_table([0, 1], step=4), ("a",))
    accumulator.ingest(one_table([0, 1], step=2), ("b",))
    assert accumulator.steps() == [2, 4]
    with pytest.raises(StepNotFoundError, match=r"step 3 .*\[2, 4\]"):
        accumulator.easiness(3)
    with pytest.raises(ConfigError, match="kind='median'"):
        accumulator.easiness(2, "median")
    with pytest.raises(ConfigError, match="trials"):
        accumulator.easiness(2, "loss", [1])


def test_nbytes_and_read_only_views():
    accumulator = LogAccumulator(5, 3)
    accumulator.ingest(one_table([0, 1, 2, 3, 4]), ("a",))
    accumulator.ingest(one_table([0, 1, 2, 3, 4], step=2), ("b",))
    assert accumulator.nbytes == 2 * 3 * 5 * 18  # steps × trials × examples × 18 bytes
    with pytest.raises(ValueError):
        accumulator.matrices(1)["loss"][0, 0] = 5.0


def test_empty_accumulator_dynamics():
    table = LogAccumulator(3, 2).dynamics()
    assert table["example_id"].tolist() == [0, 1, 2]
    assert np.isnan(table["iteration_learned"]).all() and np.isnan(table["el2n"]).all()


@pytest.mark.parametrize("swap", [None, 65535, 65536])
def test_batches_longer_than_one_chunk(swap):
    # 70,000 rows cross the 2^16-row blocks of the order check and the bool unpacking;
    # a swap of two neighbours at a block edge must still be seen as unsorted.
    n = 70_000
    ids = np.arange(n)
    if swap is not None:
        ids[[swap, swap + 1]] = ids[[swap + 1, swap]]
    loss = np.random.default_rng(1).random(n, dtype=np.float32)
    table = pa.Table.from_batches(
        one_table(np.arange(n), loss=loss).take(ids).to_batches(max_chunksize=n)
    )
    accumulator = LogAccumulator(n - 10, 1, id_offset=5)
    accumulator.ingest(table.slice(3), ("k",))
    matrices = accumulator.matrices(1)
    assert matrices["present"].all()
    assert_same(matrices["loss"][0], loss[5 : n - 5])
    assert_same(matrices["correct"][0], np.arange(5, n - 5) % 2 == 0)
