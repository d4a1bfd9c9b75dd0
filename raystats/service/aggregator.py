"""Aggregator shards: live per-example statistics of one run, one example-id range each.

A shard is a detached, restartable Ray actor. Rows reach it only after they are in
the store, so a shard that restarts rebuilds its whole state from the store and loses
nothing; a batch delivered again (a retried call, a resumed trial) is ignored by key.

Shard k of K owns the example ids ``ShardPlan.range(split, k)`` of each split and is sent
only those rows (``ShardPlan.route``); it refuses any other. Its dense state is bounded
by ``ShardPlan.bytes_per_shard`` (18 B per example, trial and logged step of its range),
and a step that would pass the bound is refused rather than allocated.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from raystats.errors import ConfigError, SchemaError, StepNotFoundError
from raystats.service.layout import BYTES_PER_CELL, ShardPlan
from raystats.service.names import NAMESPACE, aggregator_name
from raystats.stats import LogAccumulator
from raystats.store import RunStore

logger = logging.getLogger(__name__)


class ShardState:
    """The accumulators of one shard (one per split) and the queries on them.

    Plain Python, so the offline client uses the very same code on rows read from the
    store: that is what makes live and offline answers agree exactly.

    Parameters
    ----------
    plan : ShardPlan
    shard : int
        Which of the plan's shards this is; it owns ``plan.range(split, shard)``.
    n_trials : int
    max_bytes : int, optional
        The memory bound: a step whose matrices would take the state past it is
        refused. None: no bound (the offline client).
    """

    def __init__(self, plan: ShardPlan, shard: int, n_trials: int, max_bytes: int | None = None):
        self.plan, self.shard, self.max_bytes = plan, shard, max_bytes
        self.ranges = {split: plan.range(split, shard) for split in plan.sizes}
        self.accumulators = {
            split: LogAccumulator(stop - start, n_trials, id_offset=start)
            for split, (start, stop) in self.ranges.items()
        }
        self.rows = 0

    def ingest(self, key: tuple, split: str, table: pa.Table) -> bool:
        """Take this shard's rows of part ``key = (trial, step, part)``; all must be in its range.

        Returns False, changing nothing, for a key already taken. A part may hold no row
        of this range (the router sends an empty table): its step is logged all the same.

        Raises
        ------
        SchemaError
            If a row's example_id lies outside this shard's range: rows must be routed
            (``ShardPlan.route``) before they are sent.
        ConfigError
            If the split is not one of the run's, or the step would take the state past
            ``max_bytes``.
        """
        key = tuple(key)
        accumulator = self._split_accumulator(split)
        self._check_range(key, split, table)
        step = int(key[1])
        if step not in accumulator.steps():  # a taken key's step is always logged
            self._check_bound(split, step)
        taken = accumulator.ingest(table, key)
        if taken:
            accumulator.add_step(step)
            self.rows += table.num_rows
        return taken

    def keys(self) -> list[tuple]:
        return sorted({key for acc in self.accumulators.values() for key in acc.keys()})

    def steps(self, split: str) -> list[int]:
        return list(self._split_accumulator(split).steps())

    def easiness(self, split: str, step: int, kind: str, trials: list[int] | None = None):
        """(example_ids, values, n_trials) of this shard's range at ``step``.

        For the count form the values are the raw counts c_i: only the client, which
        sees every shard, knows max_j c_j.
        """
        accumulator = self._accumulator(split, step)
        if kind == "count":
            return accumulator.correct_counts(step, trials)
        return accumulator.easiness(step, "loss", trials)

    def set_candidates(self, split: str, step: int | None, k: int, kind: str, which: str):
        """``(step, ids, values, n_finite)``: this range's ``k`` best for an easy/hard set.

        ``step=None`` answers at this shard's last logged step (None when it has none);
        the client checks that every shard answered for the same step.
        """
        if step is None:
            logged = self._split_accumulator(split).steps()
            if not logged:
                return None, np.empty(0, np.int64), np.empty(0), 0
            step = logged[-1]
        ids, values, n_finite = self._accumulator(split, step).set_candidates(step, k, which, kind)
        return step, ids, values, n_finite

    def extremes(self, split: str, step: int, k: int, kind: str, which: str):
        accumulator = self._accumulator(split, step)
        if which == "easy":
            return accumulator.easiest_k(step, k, kind)
        return accumulator.hardest_k(step, k, kind)

    def dynamics(self, split: str) -> dict[str, np.ndarray]:
        return self._split_accumulator(split).dynamics()

    def nbytes(self) -> int:
        return sum(acc.nbytes for acc in self.accumulators.values())

    def _split_accumulator(self, split: str) -> LogAccumulator:
        if split not in self.accumulators:
            raise ConfigError(
                f"split={split!r} is not aggregated by this run: expected one of "
                f"{sorted(self.accumulators)}"
            )
        return self.accumulators[split]

    def _accumulator(self, split: str, step: int):
        accumulator = self._split_accumulator(split)
        if step not in accumulator.steps():
            raise StepNotFoundError(
                f"step {step} of split {split!r} is not logged (yet); logged steps: "
                f"{list(accumulator.steps())}"
            )
        return accumulator

    def _check_range(self, key: tuple, split: str, table: pa.Table) -> None:
        if not table.num_rows:
            return
        start, stop = self.ranges[split]
        low, high = pc.min_max(table.column("example_id")).values()
        if low.as_py() < start or high.as_py() >= stop:
            raise SchemaError(
                f"part {key} sent {split} example_ids {low}..{high} to aggregator shard "
                f"{self.shard}, which owns [{start}, {stop}); route rows with ShardPlan.route "
                "so each shard gets only its own range"
            )

    def _check_bound(self, split: str, step: int) -> None:
        accumulator = self.accumulators[split]
        added = accumulator.n_examples * accumulator.n_trials * BYTES_PER_CELL
        if self.max_bytes is not None and self.nbytes() + added > self.max_bytes:
            raise ConfigError(
                f"step {step} of split {split!r} would take aggregator shard {self.shard} to "
                f"{self.nbytes() + added:,} bytes, past its bound of {self.max_bytes:,}: the run "
                "logs more steps than it planned; resume it with a larger shard_bytes"
            )


def rebuild_from_store(state: ShardState, store: RunStore, run_id: str) -> int:
    """Ingest this shard's rows of every log part in the store; return how many parts it took.

    Each part is read, cut with the same ``ShardPlan.route`` as live rows, and only this
    shard's piece is ingested, so a rebuilt shard holds what a live one holds.
    """
    taken = 0
    for log_file in store.log_files(run_id):
        table = store.read_log(log_file.path)
        if table.num_rows:
            split = table.column("split")[0].as_py()
            piece = state.plan.route(split, table)[state.shard]
            taken += state.ingest(log_file.key, split, piece)
    return taken


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class AggregatorShard:
    """Ray actor around :class:`ShardState`, rebuilt from the store on every (re)start."""

    def __init__(self, storage: str, run_id: str, plan: ShardPlan, shard: int, n_trials: int,
                 max_bytes: int | None = None):
        self.storage, self.run_id, self.shard = storage, run_id, shard
        self.state = ShardState(plan, shard, n_trials, max_bytes)
        self.rebuilt = rebuild_from_store(self.state, RunStore(storage), run_id)
        logger.info("aggregator %s rebuilt %d log parts from the store", self.name(), self.rebuilt)

    def name(self) -> str:
        return aggregator_name(self.run_id, self.shard)

    def plan(self) -> ShardPlan:
        """The plan this shard is part of: log sinks route rows by it."""
        return self.state.plan

    def describe(self) -> dict:
        """Where the shard stands: its ranges, rows and parts taken, bytes held and its bound."""
        return {
            "run_id": self.run_id, "storage": self.storage, "shard": self.shard,
            "n_shards": self.state.plan.n_shards, "ranges": dict(self.state.ranges),
            "keys": len(self.state.keys()), "rows": self.state.rows,
            "nbytes": self.state.nbytes(), "bound_bytes": self.state.max_bytes,
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

    def set_candidates(self, split: str, step: int | None, k: int, kind: str, which: str):
        return self.state.set_candidates(split, step, k, kind, which)

    def extremes(self, split: str, step: int, k: int, kind: str, which: str):
        return self.state.extremes(split, step, k, kind, which)

    def dynamics(self, split: str):
        return self.state.dynamics(split)

    def pid(self) -> int:
        import os

        return os.getpid()


def start_aggregators(storage: str, run_id: str, plan: ShardPlan, n_trials: int,
                      max_bytes: int | None = None) -> list:
    """Get or create the run's K detached shards (named, in namespace ``raystats``).

    ``max_bytes`` is each shard's memory bound, normally ``plan.bytes_per_shard(M, T)``.
    """
    return [
        AggregatorShard.options(
            name=aggregator_name(run_id, shard), namespace=NAMESPACE,
            lifetime="detached", get_if_exists=True,
        ).remote(storage, run_id, plan, shard, n_trials, max_bytes)
        for shard in range(plan.n_shards)
    ]
