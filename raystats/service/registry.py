"""The registry: one detached actor that lists the runs a cluster knows and their status.

It holds no statistics, only where each run lives and how far it got. When it restarts
it rediscovers runs from the named aggregator shards, which rebuild from the store.
"""

from __future__ import annotations

import time

import ray

from raystats.errors import RaystatsError
from raystats.service.names import NAMESPACE, REGISTRY_NAME, parse_aggregator_name
from raystats.store import RunStore


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Registry:
    def __init__(self):
        self.runs: dict[str, dict] = {}
        self._rediscover()

    def _rediscover(self) -> None:
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry.get("namespace") != NAMESPACE:
                continue
            parsed = parse_aggregator_name(entry["name"])
            if parsed is None or parsed[0] in self.runs:
                continue
            try:
                shard = ray.get_actor(entry["name"], namespace=NAMESPACE)
                described = ray.get(shard.describe.remote(), timeout=30)
            except Exception:  # a shard that cannot answer is simply not listed
                continue
            # Config, data set and shard count from the run's run.json, so a client can
            # query a run the restarted registry only rediscovered; the storage is the
            # shard's own (the cluster's record), never a path taken from run.json.
            try:
                info = RunStore(described["storage"]).read_run(parsed[0])
            except RaystatsError:
                info = {"status": "unknown"}
            self.runs[parsed[0]] = dict(info, run_id=parsed[0], storage=described["storage"])

    def register(self, run_id: str, info: dict) -> None:
        self.runs[run_id] = dict(info, run_id=run_id, updated=time.time())

    def update(self, run_id: str, **fields) -> None:
        self.runs.setdefault(run_id, {"run_id": run_id}).update(fields, updated=time.time())

    def get(self, run_id: str) -> dict | None:
        return self.runs.get(run_id)

    def list(self) -> list[dict]:
        return [self.runs[run_id] for run_id in sorted(self.runs)]

    def forget(self, run_id: str) -> None:
        self.runs.pop(run_id, None)


def get_registry(create: bool = True):
    """The cluster's registry actor; created on first use when ``create``."""
    if not create:
        return ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
    return Registry.options(
        name=REGISTRY_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()
