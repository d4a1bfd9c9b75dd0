"""Aggregator shards: live per-example statistics of one run, one example-id range each.

A shard is a detached, restartable Ray actor. Rows reach it only after they are in
the store, so a shard that restarts rebuilds its whole state from the store and loses
nothing; a batch delivered again (a retried call, a resumed trial) is ignored by key.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import ray

from raystats.errors import StepNotFoundError
from raystats.service.layout import ShardPlan
from raystats.service.names import NAMESPACE, aggregator_name
from raystats.stats import LogAccumulator
from raystats.store import RunStore

logger = logging.getLogger(__name__)


class ShardState:
    """The accumulators of one shard (one per split) and the queries on them.

    Plain Python, so the offline client uses the very same code on rows read from the
    store: that is what makes live and offline answers agree exactly.
    """

    def __init__(self, plan: ShardPlan, shard: int, n_trials: int):
        self.shard = shard
        self.accumulators = {}
        for split in plan.sizes:
            start, stop = plan.range(split, shard)
            self.accumulators[split] = LogAccumulator(stop - start, n_trials, id_offset=start)

    def ingest(self, key: tuple, split: str, table: pa.Table) -> bool:
        return self.accumulators[split].ingest(table, tuple(key))

    def keys(self) -> list[tuple]:
        return sorted({key for acc in self.accumulators.values() for key in acc.keys()})

    def steps(self, split: str) -> list[int]:
        return list(self.accumulators[split].steps())

    def easiness(self, split: str, step: int, kind: str, trials: list[int] | None = None):
        """(example_ids, values, n_trials) of this shard's range at ``step``.

        For the count form the values are the raw counts c_i: only the client, which
        sees every shard, knows max_j c_j.
        """
        accumulator = self._accumulator(split, step)
        if kind == "count":
            return accumulator.correct_counts(step, trials)
        return accumulator.easiness(step, "loss", trials)

    def extremes(self, split: str, step: int, k: int, kind: str, which: str):
        accumulator = self._accumulator(split, step)
        if which == "easy":
            return accumulator.easiest_k(step, k, kind)
        return accumulator.hardest_k(step, k, kind)

    def dynamics(self, split: str) -> dict[str, np.ndarray]:
        return self.accumulators[split].dynamics()

    def nbytes(self) -> int:
        return sum(acc.nbytes for acc in self.accumulators.values())

    def _accumulator(self, split: str, step: int):
        accumulator = self.accumulators[split]
        if step not in accumulator.steps():
            raise StepNotFoundError(
                f"step {step} of split {split!r} is not logged (yet); logged steps: "
                f"{list(accumulator.steps())}"
            )
        return accumulator


def rebuild_from_store(state: ShardState, store: RunStore, run_id: str) -> int:
    """Ingest every shard file of the run into ``state``; return how many it took."""
    taken = 0
    for log_file, table in store.read_logs(run_id):
        if table.num_rows:
            taken += state.ingest(log_file.key, table.column("split")[0].as_py(), table)
    return taken


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class AggregatorShard:
    """Ray actor around :class:`ShardState`, rebuilt from the store on every (re)start."""

    def __init__(self, storage: str, run_id: str, plan: ShardPlan, shard: int, n_trials: int):
        self.storage, self.run_id, self.shard = storage, run_id, shard
        self.state = ShardState(plan, shard, n_trials)
        self.rebuilt = rebuild_from_store(self.state, RunStore(storage), run_id)
        logger.info("aggregator %s rebuilt %d log parts from the store", self.name(), self.rebuilt)

    def name(self) -> str:
        return aggregator_name(self.run_id, self.shard)

    def describe(self) -> dict:
        return {
            "run_id": self.run_id, "storage": self.storage, "shard": self.shard,
            "keys": len(self.state.keys()), "nbytes": self.state.nbytes(),
            "rebuilt_parts": self.rebuilt,
        }

    def ingest(self, key: tuple, split: str, table: pa.Table) -> bool:
        return self.state.ingest(key, split, table)

    def keys(self) -> list[tuple]:
        return self.state.keys()

    def steps(self, split: str) -> list[int]:
        return self.state.steps(split)

    def easiness(self, split: str, step: int, kind: str, trials: list[int] | None = None):
        return self.state.easiness(split, step, kind, trials)

    def extremes(self, split: str, step: int, k: int, kind: str, which: str):
        return self.state.extremes(split, step, k, kind, which)

    def dynamics(self, split: str):
        return self.state.dynamics(split)

    def pid(self) -> int:
        import os

        return os.getpid()


def start_aggregators(storage: str, run_id: str, plan: ShardPlan, n_trials: int) -> list:
    """Get or create the run's K detached shards (named, in namespace ``raystats``)."""
    return [
        AggregatorShard.options(
            name=aggregator_name(run_id, shard), namespace=NAMESPACE,
            lifetime="detached", get_if_exists=True,
        ).remote(storage, run_id, plan, shard, n_trials)
        for shard in range(plan.n_shards)
    ]
