"""The run store: run.json, per-example Parquet logs and checkpoints of each run.

Layout (DESIGN.md, "The run store")::

    <storage>/<run_id>/run.json
    <storage>/<run_id>/logs/trial=<m>/step=<T>/part-<k>.parquet
    <storage>/<run_id>/checkpoints/trial=<m>/...

``<storage>`` is a local path or any URI that pyarrow's filesystems open (s3://,
gs://). Writes never leave a half-written file visible: on a local disk a file is
written under a hidden temporary name and renamed into place (rename replaces
atomically); on object stores an object only appears when its upload completes.
Writing the same (trial, step, part) twice replaces the file, never duplicates it.

A part damaged on disk (truncated by a full disk, a killed copy) is refused by name.
Recovery: delete the part and the run's ``checkpoints/`` folder, then resubmit the job
with ``--resume``; the trials retrain from their seeds and rewrite the same rows
(tests/test_faults.py does exactly this).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raystats.config import validate_run_id
from raystats.errors import RunExistsError, RunNotFoundError, StoreError
from raystats.schema import LOG_SCHEMA, SCHEMA_VERSION, validate_table

_LOG_PATH = re.compile(r"trial=(\d+)/step=(\d+)/part-(\d+)\.parquet")
# Every part is a deterministic function of (config, seed, trial, step): retraining the
# trial from its seed writes the same rows under the same name.
_RECOVERY = (
    "to recover, delete this file and the checkpoints/ folder of its run, then resubmit the "
    "job with --resume: trials without a checkpoint retrain from their seeds and rewrite "
    "identical rows"
)
RUN_STATUSES = ("created", "running", "finished", "failed")

# Why these encodings: rows are sorted by example_id, so its deltas are all 1 and
# DELTA_BINARY_PACKED stores them in almost nothing; BYTE_STREAM_SPLIT groups the
# exponent bytes of float columns so zstd compresses them (PERF_NOTES: 6.0 → 3.6 B/row).
_ENCODINGS = {
    "example_id": "DELTA_BINARY_PACKED",
    "loss": "BYTE_STREAM_SPLIT",
    "margin": "BYTE_STREAM_SPLIT",
    "p_true": "BYTE_STREAM_SPLIT",
    "el2n": "BYTE_STREAM_SPLIT",
}
_DICTIONARY_COLUMNS = ["trial", "step", "epoch", "split", "label", "pred", "correct"]


@dataclass(frozen=True)
class LogFile:
    """One Parquet shard of a run's logs and the key it was written under."""

    trial: int
    step: int
    part: int
    path: str

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.trial, self.step, self.part)


def open_filesystem(storage: str) -> tuple[pafs.FileSystem, str]:
    """Resolve ``storage`` (local path or URI) to a pyarrow filesystem and a root path."""
    if not isinstance(storage, (str, os.PathLike)) or not str(storage):
        raise StoreError(f"storage {storage!r} is not a path or URI")
    storage = str(storage)
    if "://" in storage:
        try:
            return pafs.FileSystem.from_uri(storage)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as error:
            raise StoreError(f"storage URI {storage!r} cannot be opened: {error}") from None
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(storage))


class RunStore:
    """Read and write runs under one storage root.

    Parameters
    ----------
    storage : str
        Local folder or pyarrow-filesystem URI holding one folder per run.
    """

    def __init__(self, storage: str):
        self.storage = str(storage)
        self.fs, self.root = open_filesystem(storage)
        self._local = isinstance(self.fs, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"RunStore({self.storage!r})"

    # ---- paths -------------------------------------------------------------------
    def run_dir(self, run_id: str) -> str:
        return f"{self.root}/{validate_run_id(run_id)}"

    def log_path(self, run_id: str, trial: int, step: int, part: int) -> str:
        return f"{self.run_dir(run_id)}/logs/trial={int(trial)}/step={int(step)}/part-{int(part)}.parquet"

    def checkpoint_path(self, run_id: str, owner: int | str) -> str:
        """Latest checkpoint of a trial (an int) or of a named group of trials."""
        name = f"trial={int(owner)}" if isinstance(owner, int) else validate_run_id(owner)
        return f"{self.run_dir(run_id)}/checkpoints/{name}/latest.pt"

    def uri(self, path: str) -> str:
        """The path as a URI another process (Ray Data, a remote node) can open."""
        if self._local:
            return path
        scheme = self.storage.split("://", 1)[0]
        return f"{scheme}://{path}"

    # ---- runs ----------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        """Run ids with a run.json under this storage, sorted."""
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return []
        entries = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))
        found = []
        for entry in entries:
            if entry.type != pafs.FileType.Directory or entry.base_name.startswith((".", "_")):
                continue
            if self.fs.get_file_info(f"{entry.path}/run.json").type == pafs.FileType.File:
                found.append(entry.base_name)
        return sorted(found)

    def exists(self, run_id: str) -> bool:
        path = f"{self.run_dir(run_id)}/run.json"
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def read_run(self, run_id: str) -> dict:
        """Return a run's run.json as a dict; refuse a malformed one with its path."""
        path = f"{self.run_dir(run_id)}/run.json"
        if not self.exists(run_id):
            known = self.run_ids()
            raise RunNotFoundError(
                f"no run {run_id!r} in {self.storage}; known runs: {known or 'none'}"
            )
        try:
            info = json.loads(self.read_bytes(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise StoreError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(info, dict) or not {"run_id", "config", "dataset", "status"} <= set(info):
            raise StoreError(f"{path} is malformed: expected keys run_id, config, dataset, status")
        if info["run_id"] != run_id:
            raise StoreError(f"{path} names run {info['run_id']!r}, not {run_id!r}")
        return info

    def create_run(self, run_id: str, info: dict) -> dict:
        """Write run.json for a new run, or return the stored one if it is the same run.

        A run is the same when its config and data set fingerprint are equal; then the
        caller resumes it. Anything else under an existing run_id is refused.
        """
        info = json.loads(json.dumps(info))  # compare as stored: tuples become lists
        if self.exists(run_id):
            stored = self.read_run(run_id)
            same = (
                stored["config"] == info["config"]
                and stored["dataset"].get("fingerprint") == info["dataset"].get("fingerprint")
            )
            if not same:
                changed = sorted(
                    key
                    for key in set(stored["config"]) | set(info["config"])
                    if stored["config"].get(key) != info["config"].get(key)
                )
                what = f"config keys {changed}" if changed else "data set fingerprint"
                raise RunExistsError(
                    f"run {run_id!r} already exists in {self.storage} with a different "
                    f"{what}; choose a new --run-id, or pass --resume to continue the stored "
                    "run with its stored config"
                )
            return stored
        info = dict(info, run_id=run_id, schema_version=SCHEMA_VERSION)
        info.setdefault("status", "created")
        info.setdefault("created", time.time())
        self.write_run(run_id, info)
        return info

    def write_run(self, run_id: str, info: dict) -> None:
        info = dict(info, updated=time.time())
        self.write_bytes(f"{self.run_dir(run_id)}/run.json", json.dumps(info, indent=2).encode())

    def set_status(self, run_id: str, status: str, **fields) -> dict:
        if status not in RUN_STATUSES:
            raise StoreError(f"status {status!r} is not one of {RUN_STATUSES}")
        info = self.read_run(run_id)
        info.update(fields, status=status)
        self.write_run(run_id, info)
        return info

    def check_writable(self) -> None:
        """Fail early, with the path, when the storage cannot be written."""
        probe = f"{self.root}/.raystats-write-check-{uuid.uuid4().hex}"
        try:
            created = self.fs.get_file_info(self.root).type == pafs.FileType.NotFound
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(probe) as stream:
                stream.write(b"ok")
            self.fs.delete_file(probe)
            if created:  # leave nothing behind: the run itself creates the folder
                self.fs.delete_dir(self.root)
        except (OSError, pa.ArrowException) as error:
            raise StoreError(f"storage {self.storage!r} cannot be written: {error}") from None

    # ---- bytes -----------------------------------------------------------------------
    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` so that readers see the old file or the new, never half."""
        directory = path.rsplit("/", 1)[0]
        try:
            self.fs.create_dir(directory, recursive=True)
            if not self._local:
                with self.fs.open_output_stream(path) as stream:
                    stream.write(data)
                return
            temporary = f"{directory}/.{path.rsplit('/', 1)[1]}.tmp-{uuid.uuid4().hex}"
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except (OSError, pa.ArrowException) as error:
            raise StoreError(f"cannot write {path}: {error}") from None

    def read_bytes(self, path: str) -> bytes:
        try:
            with self.fs.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError:
            raise StoreError(f"{path} does not exist") from None
        except (OSError, pa.ArrowException) as error:
            raise StoreError(f"cannot read {path}: {error}") from None

    def delete(self, path: str) -> None:
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            self.fs.delete_file(path)

    # ---- logs --------------------------------------------------------------------------
    def write_log(
        self, run_id: str, table: pa.Table, trial: int, step: int, part: int = 0, metadata: dict | None = None
    ) -> str:
        """Write one part of a (trial, step) evaluation; the same key replaces, never duplicates.

        ``metadata``: extra Parquet key-value metadata (e.g. which worker wrote the part).
        """
        table = validate_table(table, f"rows for trial={trial} step={step} part={part}")
        if metadata:
            table = table.replace_schema_metadata({**table.schema.metadata, **metadata})
        buffer = io.BytesIO()
        pq.write_table(
            table,
            buffer,
            compression="zstd",
            use_dictionary=_DICTIONARY_COLUMNS,
            column_encoding=_ENCODINGS,
            write_statistics=["example_id"],
        )
        path = self.log_path(run_id, trial, step, part)
        self.write_bytes(path, buffer.getvalue())
        return path

    def log_files(self, run_id: str) -> list[LogFile]:
        """Every log shard of a run, sorted by (step, trial, part).

        A file in ``logs/`` that is not named like a shard is reported, not skipped:
        it means something other than raystats wrote there.
        """
        logs = f"{self.run_dir(run_id)}/logs"
        if self.fs.get_file_info(logs).type == pafs.FileType.NotFound:
            return []
        found = []
        for entry in self.fs.get_file_info(pafs.FileSelector(logs, recursive=True)):
            if entry.type != pafs.FileType.File or entry.base_name.startswith((".", "_")):
                continue
            relative = entry.path[len(logs) + 1 :]
            match = _LOG_PATH.fullmatch(relative)
            if match is None:
                raise StoreError(
                    f"{entry.path} does not belong in a raystats log folder (expected "
                    "trial=<m>/step=<T>/part-<k>.parquet); move it out of the run"
                )
            trial, step, part = (int(group) for group in match.groups())
            found.append(LogFile(trial, step, part, entry.path))
        return sorted(found, key=lambda f: (f.step, f.trial, f.part))

    def read_log(self, path: str) -> pa.Table:
        """Read one shard, refusing a truncated, foreign or unknown-version file by name."""
        try:
            with self.fs.open_input_file(path) as handle:
                table = pq.read_table(handle, schema=None)
        except FileNotFoundError:
            raise StoreError(f"{path} does not exist") from None
        except (OSError, pa.ArrowException) as error:
            raise StoreError(
                f"{path} is not a readable Parquet file (truncated?): {error}; {_RECOVERY}"
            ) from None
        table = validate_table(table, path)
        return table.replace_schema_metadata(LOG_SCHEMA.metadata)

    def read_logs(self, run_id: str, steps: set[int] | None = None) -> list[tuple[LogFile, pa.Table]]:
        """Read every shard of a run (optionally only some steps), each with its key."""
        return [
            (log_file, self.read_log(log_file.path))
            for log_file in self.log_files(run_id)
            if steps is None or log_file.step in steps
        ]

    def logs_dir(self, run_id: str) -> str:
        return self.uri(f"{self.run_dir(run_id)}/logs")

