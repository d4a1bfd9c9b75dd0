"""The run store: run.json, atomic idempotent shards, refusal of foreign or damaged files."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raystats.config import RunConfig, validate_run_id
from raystats.errors import (
    ConfigError, RunExistsError, RunNotFoundError, SchemaError, StoreError,
)
from raystats.schema import LOG_SCHEMA, VERSION_KEY, make_log_table, validate_table
from raystats.store import RunStore


def rows(n=50, trial=0, step=10, split="train", seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 10, n)
    pred = np.where(rng.random(n) < 0.7, label, rng.integers(0, 10, n))
    return make_log_table(
        example_id=np.arange(n), trial=trial, step=step, epoch=step / 10, split=split,
        label=label, pred=pred, loss=rng.exponential(1.0, n), margin=rng.normal(size=n),
        p_true=rng.random(n), el2n=rng.random(n) * 1.4,
    )


def info(config=None, fingerprint="abc"):
    config = config or RunConfig(run_id="r1")
    return {"config": config.to_dict(), "dataset": {"name": "digits", "fingerprint": fingerprint,
            "n_train": 50, "n_test": 0}, "status": "created"}


def test_write_read_roundtrip_keeps_every_value(tmp_path):
    store = RunStore(str(tmp_path))
    table = rows()
    path = store.write_log("r1", table, trial=0, step=10, part=0)
    assert path.endswith("r1/logs/trial=0/step=10/part-0.parquet")
    back = store.read_log(path)
    assert back.equals(table)
    assert pq.read_metadata(path).metadata[VERSION_KEY] == b"1"


def test_same_key_replaces_never_duplicates(tmp_path):
    store = RunStore(str(tmp_path))
    store.write_log("r1", rows(seed=1), 0, 10, 0)
    store.write_log("r1", rows(seed=2), 0, 10, 0)
    files = store.log_files("r1")
    assert [f.key for f in files] == [(0, 10, 0)]
    assert store.read_log(files[0].path).equals(rows(seed=2))
    leftovers = [n for _, _, names in os.walk(tmp_path) for n in names if n.startswith(".")]
    assert leftovers == []


def test_correct_is_derived_from_pred_and_label():
    table = rows()
    expected = table.column("pred").to_numpy() == table.column("label").to_numpy()
    assert np.array_equal(table.column("correct").to_numpy(), expected)


def test_rows_are_sorted_by_example_id():
    n = 20
    order = np.random.default_rng(3).permutation(n)
    table = make_log_table(
        example_id=order, trial=1, step=2, epoch=0.5, split="test", label=order % 3,
        pred=order % 3, loss=order.astype(float), margin=order.astype(float),
        p_true=np.full(n, 0.5), el2n=np.zeros(n),
    )
    assert table.column("example_id").to_pylist() == list(range(n))
    assert table.column("loss").to_pylist() == [float(i) for i in range(n)]


def test_truncated_file_is_reported_by_name(tmp_path):
    store = RunStore(str(tmp_path))
    path = store.write_log("r1", rows(), 0, 10, 0)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(StoreError, match="part-0.parquet"):
        store.read_logs("r1")


def test_foreign_parquet_in_logs_is_reported(tmp_path):
    store = RunStore(str(tmp_path))
    store.write_log("r1", rows(), 0, 10, 0)
    foreign = tmp_path / "r1" / "logs" / "trial=0" / "step=10" / "part-1.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), foreign)
    with pytest.raises(SchemaError, match="part-1.parquet"):
        store.read_logs("r1")
    stray = tmp_path / "r1" / "logs" / "notes.parquet"
    foreign.unlink()
    pq.write_table(pa.table({"x": [1]}), stray)
    with pytest.raises(StoreError, match="notes.parquet"):
        store.log_files("r1")


def test_unknown_schema_version_is_refused_with_the_file(tmp_path):
    table = rows()
    path = tmp_path / "r1" / "logs" / "trial=0" / "step=10" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"99"}), path)
    with pytest.raises(SchemaError, match=r"part-0.parquet.*version '99'"):
        RunStore(str(tmp_path)).read_logs("r1")


def test_non_finite_losses_are_refused_and_nothing_is_written(tmp_path):
    table = rows()
    loss = table.column("loss").to_numpy().copy()
    loss[3] = np.nan
    bad = table.set_column(table.schema.get_field_index("loss"), "loss", pa.array(loss, pa.float32()))
    store = RunStore(str(tmp_path))
    with pytest.raises(SchemaError, match="trial=0 step=10"):
        store.write_log("r1", bad, 0, 10, 0)
    assert store.log_files("r1") == []


def test_run_json_roundtrip_and_conflicts(tmp_path):
    store = RunStore(str(tmp_path))
    created = store.create_run("r1", info())
    assert store.read_run("r1")["config"] == created["config"]
    assert store.create_run("r1", info())["run_id"] == "r1"  # same config: resume
    with pytest.raises(RunExistsError, match="trials"):
        store.create_run("r1", info(RunConfig(run_id="r1", trials=3)))
    with pytest.raises(RunExistsError, match="fingerprint"):
        store.create_run("r1", info(fingerprint="other"))
    assert store.run_ids() == ["r1"]
    with pytest.raises(RunNotFoundError, match="no run 'nope'.*r1"):
        store.read_run("nope")


def test_malformed_run_json_is_reported(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "run.json").write_text("{not json")
    with pytest.raises(StoreError, match="run.json is not valid JSON"):
        RunStore(str(tmp_path)).read_run("r1")
    (tmp_path / "r1" / "run.json").write_text(json.dumps({"run_id": "r1"}))
    with pytest.raises(StoreError, match="malformed"):
        RunStore(str(tmp_path)).read_run("r1")


@pytest.mark.parametrize("run_id", ["", "../up", "a/b", ".hidden", "-x", "a" * 65, "a..b", None, 3])
def test_bad_run_ids_are_refused(run_id):
    with pytest.raises(ConfigError, match="run_id"):
        validate_run_id(run_id)


def test_storage_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot be written"):
        RunStore(str(blocker / "runs")).check_writable()


def test_pyarrow_filesystem_uri(tmp_path):
    store = RunStore(f"file://{tmp_path}")
    store.create_run("r1", info())
    path = store.write_log("r1", rows(), 0, 10, 0)
    assert store.read_log(path).equals(rows())
    assert RunStore(str(tmp_path)).run_ids() == ["r1"]


def test_validate_table_casts_plain_strings():
    table = rows()
    plain = table.set_column(4, "split", pa.array(["train"] * table.num_rows))
    plain = plain.replace_schema_metadata(LOG_SCHEMA.metadata)
    assert validate_table(plain, "x").equals(table)


def test_run_config_validation():
    with pytest.raises(ConfigError, match="trials=0"):
        RunConfig(trials=0)
    with pytest.raises(ConfigError, match="optimizer"):
        RunConfig(optimizer="lbfgs")
    config = RunConfig(run_id="x", subset=(1, 2), corrupt_labels=((3, 4),))
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown keys"):
        RunConfig.from_dict({"bogus": 1})
