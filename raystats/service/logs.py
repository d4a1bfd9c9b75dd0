"""A run's logs as a Ray Dataset, for analysis too large for one process.

The aggregator shards rebuild from the store file by file (each file is one
idempotency key, and a shard reads only its example range); this is the other reader:
a distributed scan of every row, e.g. to export, join or re-aggregate a finished run
on a cluster.
"""

from __future__ import annotations

import ray

from raystats.store import RunStore


def read_logs_dataset(storage: str, run_id: str, **read_args) -> "ray.data.Dataset":
    """Every log row of ``run_id`` as a ``ray.data.Dataset`` (log schema columns).

    Files are listed and checked by :class:`RunStore` first, so a foreign file in the
    run's folder is refused by name rather than read. Hive partitioning is off: the
    trial and step columns live inside the files.
    """
    store = RunStore(storage)
    paths = [store.uri(log_file.path) for log_file in store.log_files(run_id)]
    if not paths:
        return ray.data.from_items([])
    return ray.data.read_parquet(paths, partitioning=None, **read_args)
