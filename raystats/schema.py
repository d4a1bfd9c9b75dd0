"""The Arrow schema of a log row: one row per example, per trial, per logging step.

The schema's version travels in the Parquet file's key-value metadata under
``raystats.schema_version``; a reader refuses any other version with a message that
names the file (DESIGN.md, "Log schema").
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raystats.errors import SchemaError

SCHEMA_VERSION = "1"
VERSION_KEY = b"raystats.schema_version"
SPLITS = ("train", "test")

_FIELDS = [
    pa.field("example_id", pa.int32(), nullable=False),
    pa.field("trial", pa.int16(), nullable=False),
    pa.field("step", pa.int32(), nullable=False),
    pa.field("epoch", pa.float32(), nullable=False),
    pa.field("split", pa.dictionary(pa.int8(), pa.string()), nullable=False),
    pa.field("label", pa.int16(), nullable=False),
    pa.field("pred", pa.int16(), nullable=False),
    pa.field("loss", pa.float32(), nullable=False),
    pa.field("correct", pa.bool_(), nullable=False),
    pa.field("margin", pa.float32(), nullable=False),
    pa.field("p_true", pa.float32(), nullable=False),
    pa.field("el2n", pa.float32(), nullable=False),
]
LOG_SCHEMA = pa.schema(_FIELDS, metadata={VERSION_KEY: SCHEMA_VERSION.encode()})
COLUMNS = tuple(LOG_SCHEMA.names)
FLOAT_COLUMNS = ("loss", "margin", "p_true", "el2n")


def make_log_table(
    *,
    example_id: np.ndarray,
    trial: int,
    step: int,
    epoch: float,
    split: str,
    label: np.ndarray,
    pred: np.ndarray,
    loss: np.ndarray,
    margin: np.ndarray,
    p_true: np.ndarray,
    el2n: np.ndarray,
) -> pa.Table:
    """Build one (trial, step, split) batch of log rows from per-example arrays.

    ``correct`` is derived as ``pred == label``, so it can never disagree with them.
    Rows are sorted by ``example_id``, which is what makes the Parquet delta encoding
    and the aggregator's dense fast path work.
    """
    if split not in SPLITS:
        raise SchemaError(f"split {split!r} is not one of {SPLITS}")
    n = len(example_id)
    order = np.argsort(example_id, kind="stable")
    if not np.all(order == np.arange(n)):
        example_id, label, pred = example_id[order], label[order], pred[order]
        loss, margin, p_true, el2n = loss[order], margin[order], p_true[order], el2n[order]
    label = np.asarray(label, dtype=np.int16)
    pred = np.asarray(pred, dtype=np.int16)
    split_array = pa.DictionaryArray.from_arrays(
        pa.array(np.full(n, SPLITS.index(split), dtype=np.int8)), pa.array(list(SPLITS))
    )
    columns = [
        pa.array(np.asarray(example_id, dtype=np.int32)),
        pa.array(np.full(n, trial, dtype=np.int16)),
        pa.array(np.full(n, step, dtype=np.int32)),
        pa.array(np.full(n, epoch, dtype=np.float32)),
        split_array,
        pa.array(label),
        pa.array(pred),
        pa.array(np.asarray(loss, dtype=np.float32)),
        pa.array(pred == label),
        pa.array(np.asarray(margin, dtype=np.float32)),
        pa.array(np.asarray(p_true, dtype=np.float32)),
        pa.array(np.asarray(el2n, dtype=np.float32)),
    ]
    return pa.Table.from_arrays(columns, schema=LOG_SCHEMA)


def check_version(metadata: dict | None, source: str) -> None:
    """Refuse a file whose schema version is missing or unknown, naming the file."""
    version = (metadata or {}).get(VERSION_KEY)
    if version is None:
        raise SchemaError(
            f"{source} is not a raystats log: its Parquet metadata has no "
            f"{VERSION_KEY.decode()} key"
        )
    if version.decode() != SCHEMA_VERSION:
        raise SchemaError(
            f"{source} has log schema version {version.decode()!r}; this raystats reads "
            f"version {SCHEMA_VERSION!r} only"
        )


def validate_table(table: pa.Table, source: str) -> pa.Table:
    """Check a table against the log schema and refuse non-finite statistics.

    Returns the table cast to the exact schema (a reader may hand back plain strings
    for the dictionary column). Raises :class:`SchemaError` naming ``source``.
    """
    check_version(table.schema.metadata, source)
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise SchemaError(f"{source} lacks the log columns {missing}")
    table = table.select(list(COLUMNS))
    try:
        table = table.set_column(
            COLUMNS.index("split"), LOG_SCHEMA.field("split"), _split_column(table.column("split"), source)
        ).cast(LOG_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise SchemaError(f"{source} has columns of the wrong type: {error}") from None
    for name in FLOAT_COLUMNS:
        values = table.column(name).to_numpy()
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise SchemaError(
                f"{source} has {bad} NaN or infinite {name!r} values; refusing to fold "
                "them into statistics"
            )
    return table


def _split_column(column: pa.ChunkedArray, source: str) -> pa.ChunkedArray:
    """The split column re-encoded against the fixed dictionary ("train", "test").

    Works on the dictionary indices, never on the strings of every row: a million-row
    batch costs microseconds, not a second.
    """
    chunks = []
    for chunk in column.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.cast(pa.string()).dictionary_encode()
        names = chunk.dictionary.cast(pa.string()).to_pylist()
        unknown = sorted(set(names) - set(SPLITS))
        if unknown:
            raise SchemaError(f"{source} has split values {unknown}; expected {SPLITS}")
        mapping = np.array([SPLITS.index(name) for name in names] or [0], dtype=np.int8)
        indices = mapping[chunk.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
        chunks.append(pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(list(SPLITS))))
    return pa.chunked_array(chunks, type=LOG_SCHEMA.field("split").type)
