"""Bad input, as a matrix: each case is refused with one clear message and the store is
left byte for byte as it was (every file's name and SHA-256 hashed before and after).

The job's flags are checked in-process through ``jobs/easiness.py``'s ``main()``, with
the cluster entry point replaced by one that fails the test: a refusal must happen
before a cluster is touched. For --address the real entry point runs, with ``ray.init``
replaced the same way: the address must be refused before Ray is asked to join it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import raystats
from raystats.config import RunConfig, validate_run_id
from raystats.data import load_dataset
from raystats.errors import (
    ConfigError, DataError, RaystatsError, RunNotFoundError, SchemaError, StepNotFoundError, StoreError,
)
from raystats.schema import LOG_SCHEMA, VERSION_KEY, make_log_table
from raystats.service.aggregator import ShardState
from raystats.service.layout import ShardPlan
from raystats.store import RunStore
from tests.conftest import REPO
from tests.fakeruns import write_fake_run

RUN = "digits-cnn"


def tree_digest(root: str) -> dict[str, str]:
    """Relative path → SHA-256 of every file (and a marker for every folder) under ``root``."""
    digest = {}
    for folder, folders, files in os.walk(root):
        for name in folders:
            digest[os.path.relpath(os.path.join(folder, name), root) + "/"] = "folder"
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                digest[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    """A store with one finished digits run (2 trials, 2 logging steps, train rows)."""
    root = str(tmp_path_factory.mktemp("store"))
    write_fake_run(root, RUN, trials=2, epochs=2)
    return root


@pytest.fixture()
def unchanged(storage):
    """Asserts, after the test, that the store is byte for byte what it was before."""
    before = tree_digest(storage)
    yield storage
    assert tree_digest(storage) == before, "the store changed"


@pytest.fixture(scope="module")
def job():
    spec = importlib.util.spec_from_file_location("easiness_job", os.path.join(REPO, "jobs", "easiness.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _no_cluster(*args, **kwargs):
    raise AssertionError("bad input reached the cluster instead of being refused")


def run_main(job, argv, capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.setattr("raystats.service.easiness.ensure_ray", _no_cluster)
    try:
        code = job.main(argv)
    except SystemExit as exit_:  # argparse refuses by exiting
        code = exit_.code
    return code, capsys.readouterr().err


# ---- every flag of jobs/easiness.py ------------------------------------------------------------

FLAG_CASES = [
    (["--dataset", "nope"], "invalid choice: 'nope'"),
    (["--dataset", "fashion-mnist", "--data-root", "{empty}"], "no complete set of IDX files"),
    (["--data-root", ""], "data_root=''"),
    (["--arch", "nope"], "invalid choice: 'nope'"),
    (["--trials", "0"], "0 is not an integer >= 1"),
    (["--trials", "two"], "invalid positive_int value: 'two'"),
    (["--trials", "1.5"], "invalid positive_int value: '1.5'"),
    (["--epochs", "0"], "0 is not a number > 0"),
    (["--epochs", "nan"], "nan is not a number > 0"),
    (["--epochs", "inf"], "inf is not a number > 0"),
    (["--epochs", "-1"], "-1 is not a number > 0"),
    (["--log-every", "0"], "0 is not a number > 0"),
    (["--log-every", "x"], "invalid positive_float value: 'x'"),
    (["--batch-size", "0"], "0 is not an integer >= 1"),
    (["--batch-size", "64.0"], "invalid positive_int value: '64.0'"),
    (["--eval-batch-size", "-1"], "-1 is not an integer >= 1"),
    (["--optimizer", "adam"], "invalid choice: 'adam'"),
    (["--lr", "0"], "0 is not a number > 0"),
    (["--lr", "inf"], "inf is not a number > 0"),
    (["--weight-decay", "-1"], "-1 is not a finite number >= 0"),
    (["--weight-decay", "nan"], "nan is not a finite number >= 0"),
    (["--weight-decay", "inf"], "inf is not a finite number >= 0"),
    (["--augment=yes"], "ignored explicit argument 'yes'"),
    (["--translate-pixels", "-1"], "-1 is not an integer >= 0"),
    (["--translate-pixels", "2.5"], "invalid non_negative_int value: '2.5'"),
    (["--flip=no"], "ignored explicit argument 'no'"),
    (["--log-test=0"], "ignored explicit argument '0'"),
    (["--seed", "-1"], "-1 is not an integer >= 0"),
    (["--seed", "x"], "invalid non_negative_int value: 'x'"),
    (["--workers", "0"], "0 is not an integer >= 1"),
    (["--workers-per-trial", "0"], "0 is not an integer >= 1"),
    (["--workers", "3", "--workers-per-trial", "2"], "a multiple of workers_per_trial=2"),
    (["--rows-per-part", "0"], "0 is not an integer >= 1"),
    (["--shard-bytes", "0"], "0 is not an integer >= 1"),
    (["--shard-bytes", "1"], "shard"),
    (["--gpu=1"], "ignored explicit argument '1'"),
    (["--ensemble", "fast"], "invalid choice: 'fast'"),
    (["--compile=yes"], "ignored explicit argument 'yes'"),
    (["--storage", ""], "storage '' is not a path or URI"),
    (["--storage", "{blocked}"], "cannot be written"),
    (["--run-id", "../escape"], "run_id '../escape' is not valid"),
    (["--run-id", "a/b"], "run_id 'a/b' is not valid"),
    (["--run-id", "x" * 65], "is not valid"),
    (["--run-id", ".hidden"], "run_id '.hidden' is not valid"),
    (["--run-id", "no-such-run", "--resume"], "there is no run 'no-such-run'"),
    (["--resume=1"], "ignored explicit argument '1'"),
    (["--quiet=1"], "ignored explicit argument '1'"),
    (["--nope"], "unrecognized arguments: --nope"),
]


@pytest.mark.parametrize("argv, message", FLAG_CASES, ids=[" ".join(a)[:40] for a, _ in FLAG_CASES])
def test_every_flag_refuses_bad_values(job, argv, message, unchanged, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("not a folder")
    places = {"{empty}": str(tmp_path / "empty"), "{blocked}": str(tmp_path / "file" / "runs")}
    argv = [places.get(arg, arg) for arg in argv]
    if "--storage" not in argv:
        argv = ["--storage", unchanged, *argv]
    code, stderr = run_main(job, argv, capsys, monkeypatch)
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], stderr
    assert "Traceback" not in stderr
    assert sorted(os.listdir(tmp_path)) == ["empty", "file"]  # nothing made beside the store


@pytest.mark.parametrize("address, message", [
    ("nohost", "address 'nohost' is not host:port"),
    ("127.0.0.1:1", "no Ray cluster answered at '127.0.0.1:1'"),
])
def test_address_that_is_not_a_cluster(job, address, message, unchanged, capsys, monkeypatch):
    """--address is checked by the real cluster entry point; ray.init itself may not be reached."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh job process
    monkeypatch.setattr(ray, "init", _no_cluster)
    try:
        code = job.main(["--storage", unchanged, "--run-id", "fresh", "--address", address])
    except SystemExit as exit_:
        code = exit_.code
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and message in errors[0], stderr


# ---- names and run ids ---------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"dataset": "imagenet21k"}, "dataset='imagenet21k'"),
    ({"arch": "resnet1001"}, "arch='resnet1001'"),
    ({"subset": ()}, "subset=()"),
    ({"subset": (0, -1)}, "subset=(0, -1)"),
    ({"corrupt_labels": ((3,),)}, "corrupt_labels"),
    ({"augment": "yes"}, "augment='yes'"),
])
def test_run_config_refuses_unknown_names_and_values(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**changes)


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "a\\b", "..", "/etc", "", ".", "a..b", "x" * 65, "é"])
def test_run_ids_with_separators_or_dots_are_refused(run_id, unchanged):
    client, store = raystats.open(unchanged), RunStore(unchanged)
    for attempt in (lambda: validate_run_id(run_id), lambda: store.run_dir(run_id),
                    lambda: client.easiness(run_id), lambda: RunConfig(run_id=run_id)):
        with pytest.raises(ConfigError, match="is not valid"):
            attempt()


def test_unknown_run_and_step_are_named(unchanged):
    client = raystats.open(unchanged)
    with pytest.raises(RunNotFoundError, match=f"no run 'other'.*known runs: \\['{RUN}'\\]"):
        client.easiness("other")
    with pytest.raises(StepNotFoundError, match="step 7 is not logged"):
        client.easiness(RUN, step=7)
    with pytest.raises(ConfigError, match="frac=2"):
        client.easy(RUN, frac=2)


# ---- run.json -----------------------------------------------------------------------------------

def _copy_run(storage: str, tmp_path, run_id: str = RUN) -> str:
    copy = str(tmp_path / "copy")
    shutil.copytree(os.path.join(storage, run_id), os.path.join(copy, run_id))
    return copy


def _good_run_json(storage: str) -> dict:
    with open(os.path.join(storage, RUN, "run.json")) as handle:
        return json.load(handle)


MALFORMED = {
    "not json": lambda info: "{\"config\": ",
    "a list": lambda info: json.dumps([info]),
    "no status": lambda info: json.dumps({k: v for k, v in info.items() if k != "status"}),
    "another run_id": lambda info: json.dumps(dict(info, run_id="other")),
    "unknown config key": lambda info: json.dumps(dict(info, config=dict(info["config"], colour="red"))),
    "bad config value": lambda info: json.dumps(dict(info, config=dict(info["config"], trials=-2))),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_run_json_is_refused_by_name(kind, storage, tmp_path, job, capsys, monkeypatch):
    copy = _copy_run(storage, tmp_path)
    path = os.path.join(copy, RUN, "run.json")
    with open(path, "w") as handle:
        handle.write(MALFORMED[kind](_good_run_json(storage)))
    before = tree_digest(copy)
    code, stderr = run_main(job, ["--storage", copy, "--run-id", RUN, "--resume"], capsys, monkeypatch)
    assert code == 2 and stderr.count("error:") == 1, stderr
    if kind.endswith("config key") or kind.endswith("config value"):
        assert ("colour" in stderr) or ("trials=-2" in stderr), stderr
        with pytest.raises(ConfigError):
            RunConfig.from_dict(json.loads(MALFORMED[kind](_good_run_json(storage)))["config"])
    else:
        assert path in stderr, stderr
        with pytest.raises(StoreError, match=path):
            raystats.open(copy).easiness(RUN)
    assert tree_digest(copy) == before


# ---- Parquet parts --------------------------------------------------------------------------------

def _rewrite_part(path: str, table: pa.Table, version: bytes | None) -> None:
    metadata = dict(table.schema.metadata or {})
    metadata.pop(VERSION_KEY, None)
    if version is not None:
        metadata[VERSION_KEY] = version
    pq.write_table(table.replace_schema_metadata(metadata), path)


@pytest.mark.parametrize("version, message", [(b"2", "version '2'"), (None, "has no raystats.schema_version")])
def test_schema_version_mismatch_names_the_file(version, message, storage, tmp_path):
    copy = _copy_run(storage, tmp_path)
    store = RunStore(copy)
    part = store.log_files(RUN)[-1]
    _rewrite_part(part.path, store.read_log(part.path), version)
    before = tree_digest(copy)
    with pytest.raises(SchemaError, match=message) as refused:
        raystats.open(copy).easiness(RUN)
    assert part.path in str(refused.value)
    with pytest.raises(SchemaError, match=message):
        store.write_log(RUN, pq.read_table(part.path), part.trial, part.step, part.part)
    assert tree_digest(copy) == before


def test_nan_or_inf_loss_on_disk_is_refused_by_file(storage, tmp_path):
    copy = _copy_run(storage, tmp_path)
    store = RunStore(copy)
    part = store.log_files(RUN)[0]
    table = store.read_log(part.path)
    loss = table.column("loss").to_numpy().copy()
    loss[[5, 9]] = [np.nan, np.inf]
    _rewrite_part(part.path, table.set_column(table.schema.get_field_index("loss"), LOG_SCHEMA.field("loss"),
                                              pa.array(loss, pa.float32())), b"1")
    before = tree_digest(copy)
    with pytest.raises(SchemaError, match="2 NaN or infinite 'loss' values") as refused:
        raystats.open(copy).easiness(RUN, step=part.step)
    assert part.path in str(refused.value)
    assert tree_digest(copy) == before


# ---- NaN / inf in a row batch ---------------------------------------------------------------------

def _batch(loss: np.ndarray, trial: int = 0, step: int = 23) -> pa.Table:
    n = len(loss)
    label = np.arange(n) % 10
    return make_log_table(example_id=np.arange(n), trial=trial, step=step, epoch=1.0, split="train",
                          label=label, pred=label, loss=loss, margin=np.ones(n), p_true=np.full(n, 0.9),
                          el2n=np.full(n, 0.1))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_losses_are_refused_with_the_batch_named(bad, unchanged):
    loss = np.full(1437, 0.5, dtype=np.float32)
    loss[100] = bad
    with pytest.raises(SchemaError, match=r"trial=1 step=99 part=0 has 1 NaN or infinite 'loss'"):
        RunStore(unchanged).write_log(RUN, _batch(loss, trial=1, step=99), trial=1, step=99)
    # The aggregator's state: the batch is refused by its key and nothing of it is folded in.
    state = ShardState(ShardPlan(1, {"train": 1437}), 0, n_trials=2)
    good = _batch(np.full(1437, 0.25, dtype=np.float32), trial=0, step=99)
    assert state.ingest((0, 99, 0), "train", good)
    with pytest.raises(SchemaError, match=r"batch \(1, 99, 0\) has 1 NaN or infinite 'loss'"):
        state.ingest((1, 99, 0), "train", _batch(loss, trial=1, step=99))
    ids, values, n_trials = state.easiness("train", 99, "loss")
    assert np.all(values == 0.25) and np.all(n_trials == 1) and state.keys() == [(0, 99, 0)]


# ---- mixed data sets, empty data sets -------------------------------------------------------------

def test_matching_rate_across_data_sets_is_refused(storage, tmp_path, fashion_mnist_root):
    copy = _copy_run(storage, tmp_path)
    other = "fm-cnn"
    shutil.copytree(os.path.join(copy, RUN), os.path.join(copy, other))
    info = _good_run_json(copy)
    fashion = load_dataset("fashion-mnist", fashion_mnist_root)
    info.update(run_id=other, dataset=dict(info["dataset"], name="fashion-mnist", fingerprint=fashion.fingerprint))
    info["config"].update(run_id=other, dataset="fashion-mnist")
    with open(os.path.join(copy, other, "run.json"), "w") as handle:
        json.dump(info, handle)
    before = tree_digest(copy)
    client = raystats.open(copy)
    for query in (lambda: client.matching_rate(RUN, other), lambda: client.matching_curve(other, RUN, which="hard")):
        with pytest.raises(ConfigError, match="were made from different data sets") as refused:
            query()
        assert "digits" in str(refused.value) and "fashion-mnist" in str(refused.value)
    assert tree_digest(copy) == before


def test_empty_data_sets_are_refused(tmp_path, unchanged):
    empty = tmp_path / "empty"
    for split in ("train/cat", "val/cat"):
        (empty / split).mkdir(parents=True)
    for name in ("fashion-mnist", "imagefolder"):
        with pytest.raises(DataError, match=str(empty)):
            load_dataset(name, str(empty))
    with pytest.raises(ConfigError, match="non-empty list of example ids"):
        RunConfig(subset=())
    # A run with no logged rows yet answers with an error, not an empty table.
    copy = str(tmp_path / "copy")
    os.makedirs(os.path.join(copy, RUN))
    shutil.copy(os.path.join(unchanged, RUN, "run.json"), os.path.join(copy, RUN, "run.json"))
    with pytest.raises(StepNotFoundError, match="no logged train rows"):
        raystats.open(copy).easiness(RUN)


def test_every_refusal_is_a_raystats_error():
    """One type to catch: every error class above derives from RaystatsError."""
    for error in (ConfigError, DataError, SchemaError, StoreError, RunNotFoundError, StepNotFoundError):
        assert issubclass(error, RaystatsError)
