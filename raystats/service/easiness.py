"""The easiness run on Ray: M trials on Ray Train workers, rows to the store, then to
the aggregator shards, progress to the terminal and the job log.

Trial m trains on worker m mod W; trials are independent (no gradient sync). With
workers_per_trial G > 1, trial m trains data-parallel on trial group m mod (W/G) instead
(raystats.train.ddp), and each rank of the group writes the log parts it evaluated. Each
trial checkpoints into the run store at its logging steps; when a worker dies, Ray
Train's FailureConfig restarts the group and each trial resumes from its checkpoint.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from dataclasses import dataclass

import ray
import ray.train
import torch
from ray.train import FailureConfig, ScalingConfig
from ray.train import RunConfig as RayRunConfig
from ray.train.torch import TorchTrainer
from tqdm import tqdm

from raystats.config import RunConfig
from raystats.data import load_dataset
from raystats.errors import DataError, RaystatsError, RunNotFoundError
from raystats.schema import make_log_table
from raystats.service.aggregator import start_aggregators
from raystats.service.cluster import ensure_ray
from raystats.service.layout import DEFAULT_SHARD_BYTES, ShardPlan, choose_shards, part_ranges
from raystats.service.names import NAMESPACE
from raystats.service.registry import get_registry
from raystats.store import RunStore
from raystats.train.ddp import GroupPlan, join_trial_group
from raystats.train.ensemble import train_ensemble
from raystats.train.trial import Schedule, TrialData, train_trial

MAX_FAILURES = 3


class StoreAndForward:
    """The log sink of a training worker: write the part to the store, then ingest it.

    Store first: a shard that dies between the two rebuilds the part from the store,
    and the retried ingest is then a duplicate that changes nothing. Ingest is routed:
    shard k is sent only the part's rows in its example-id range (``ShardPlan.route``).
    """

    def __init__(self, store: RunStore, run_id: str, shards: list, n_train: int,
                 rows_per_part: int | None = None, writer: str | None = None):
        self.store, self.run_id, self.shards, self.n_train = store, run_id, shards, n_train
        # writer: which worker this is, kept in each part's Parquet metadata.
        self.rows_per_part, self.writer = rows_per_part, writer

    def parts(self, split: str, n_rows: int) -> list[tuple[int, int, int]]:
        return part_ranges(split, n_rows, self.n_train, self.rows_per_part)

    def __call__(self, trial, step, epoch, split, example_ids, labels, metrics) -> None:
        for part, start, stop in self.parts(split, len(example_ids)):
            rows = slice(start, stop)
            self.write_part(trial, step, epoch, split, part, example_ids[rows], labels[rows],
                            {name: values[rows] for name, values in metrics.items()})

    def write_part(self, trial, step, epoch, split, part, example_ids, labels, metrics) -> None:
        table = make_log_table(
            example_id=example_ids, trial=trial, step=step, epoch=epoch, split=split,
            label=labels, pred=metrics["pred"], loss=metrics["loss"], margin=metrics["margin"],
            p_true=metrics["p_true"], el2n=metrics["el2n"],
        )
        metadata = None if self.writer is None else {"raystats.writer": self.writer}
        self.store.write_log(self.run_id, table, trial, step, part, metadata=metadata)
        # Each shard gets only the rows of its example-id range (maybe none: the part's
        # step is still logged there), never the whole part.
        pieces = self.plan.route(split, table) if self.shards else []
        ray.get([shard.ingest.remote((trial, step, part), split, piece)
                 for shard, piece in zip(self.shards, pieces)])

    @functools.cached_property
    def plan(self) -> ShardPlan:
        """The shards' plan, asked of shard 0 once: rows are routed by it."""
        return ray.get(self.shards[0].plan.remote())


class StoreCheckpoints:
    """Trial checkpoints kept in the run store, one latest file per trial."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id

    def save(self, owner: int | str, payload: bytes) -> None:
        self.store.write_bytes(self.store.checkpoint_path(self.run_id, owner), payload)

    def load(self, owner: int | str) -> bytes | None:
        path = self.store.checkpoint_path(self.run_id, owner)
        if self.store.fs.get_file_info(path).type.name != "File":
            return None
        return self.store.read_bytes(path)


def _print_progress(update: dict) -> None:
    print(
        f"trial {update['trial']} step {update['step']}/{update['total_steps']} "
        f"epoch {update['epoch']:.2f} train loss {update['train_loss']:.4f} "
        f"{update['images_per_s']:,.0f} images/s",
        flush=True,
    )


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train entry point: train this worker's trials.

    Workers per trial G = 1: trial m on worker m mod W, one after another. G > 1: the
    worker joins trial group g = rank // G and trains, together with the group's other
    ranks, the trials m ≡ g (mod W/G) data-parallel (raystats.train.ddp); each rank
    writes the log parts it evaluated itself.
    """
    config = RunConfig.from_dict(loop_config["config"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device() if config.use_gpu else torch.device("cpu")
    dataset = load_dataset(config.dataset, config.data_root)
    if dataset.fingerprint != loop_config["fingerprint"]:
        raise DataError(
            f"worker {rank} sees data set {config.dataset!r} with fingerprint "
            f"{dataset.fingerprint[:12]}, the run was made from {loop_config['fingerprint'][:12]}; "
            "every node must read the same data"
        )
    data = TrialData.build(dataset, config, device)
    store = RunStore(loop_config["storage"])
    shards = [ray.get_actor(name, namespace=NAMESPACE) for name in loop_config["shards"]]
    plan = GroupPlan(world, config.workers_per_trial)
    group = join_trial_group(plan, rank)
    writer = f"world rank {rank}/{world}, trial group {plan.group_of(rank)} rank {group.rank}/{group.size}, " \
             f"pid {os.getpid()}, node {ray.util.get_node_ip_address()}"
    sink = StoreAndForward(store, config.run_id, shards, len(dataset.train.labels),
                           rows_per_part=config.rows_per_part, writer=writer)
    checkpoints = StoreCheckpoints(store, config.run_id)
    trials = plan.trials(plan.group_of(rank), config.trials)
    mode = config.ensemble if group.size == 1 else "loop"
    path = choose_path(mode, device, len(trials), config.batch_size)
    reason = PATH_REASONS[path if config.ensemble == "auto" and group.size == 1 else "asked"]
    print(f"worker {rank}/{world} on {device}: trials {trials}, {path} path ({reason})", flush=True)
    if group.size > 1:
        print(f"worker {rank}/{world}: rank {group.rank} of trial group {plan.group_of(rank)} "
              f"(workers {plan.ranks(plan.group_of(rank))}), DDP over {group.size} workers; "
              f"writes log parts k with k mod {group.size} == {group.rank}", flush=True)
    if path == "vmap":
        train_ensemble(config, data, trials, device, sink, checkpoints, _print_progress)
    else:
        for trial in trials:
            train_trial(config, data, trial, device, sink, checkpoints, _print_progress, group)
    ray.train.report({"trials_done": len(trials)})


PATH_REASONS = {
    "loop": "on CPU, or with large per-trial batches, one trial after another measured faster (benchmarks/ensemble.py)",
    "vmap": "on a GPU with small per-trial batches one vmap-ed ensemble fills the device",
    "asked": "chosen by --ensemble, or one trial per group with --workers-per-trial > 1",
}


def trainer_workers(config: RunConfig) -> int:
    """Ray Train workers to start: whole trial groups, no more groups than trials."""
    groups = min(config.workers // config.workers_per_trial, config.trials)
    return groups * config.workers_per_trial


VMAP_MAX_BATCH = 256


def choose_path(mode: str, device: torch.device, n_trials: int, batch_size: int) -> str:
    """The documented rule, from benchmarks/ensemble.py (README has the figures).

    vmap only on a GPU, with 2+ trials and per-trial batches of at most 256: an H100
    ran 10 small-CNN trials 1.25x faster with vmap at batch 128 but 0.59x at batch 512
    (the loop's bf16 autocast beats the vmap-ed fp32/TF32 convolutions once each
    trial's batch fills the device). On a 2-core CPU the loop measured faster.
    """
    if mode != "auto":
        return mode
    if device.type == "cuda" and n_trials > 1 and batch_size <= VMAP_MAX_BATCH:
        return "vmap"
    return "loop"


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    storage: str
    status: str
    log_steps: tuple[int, ...]
    seconds: float
    examples_logged: int


def run_info(config: RunConfig, dataset, schedule: Schedule) -> dict:
    """The run.json of a new run."""
    return {
        "config": config.to_dict(),
        "dataset": {
            "name": dataset.name, "fingerprint": dataset.fingerprint,
            "n_train": int(len(dataset.train.labels)), "n_test": int(len(dataset.test.labels)),
            "classes": list(dataset.classes), "input_shape": list(dataset.input_shape),
        },
        "schedule": schedule.to_dict(),
        "status": "created",
    }


def prepare_run(config: RunConfig, storage: str, resume: bool) -> tuple[RunConfig, RunStore, dict]:
    """Validate everything that can be checked before a cluster is touched.

    Bad input fails here and leaves nothing in the store.
    """
    store = RunStore(storage)
    if resume:
        if not store.exists(config.run_id):
            raise RunNotFoundError(f"--resume given, but there is no run {config.run_id!r} in {storage}")
        config = RunConfig.from_dict(store.read_run(config.run_id)["config"])
    dataset = load_dataset(config.dataset, config.data_root)
    if config.subset is not None and (min(config.subset) < 0 or max(config.subset) >= len(dataset.train.labels)):
        raise DataError(f"subset ids must lie in [0, {len(dataset.train.labels)})")
    store.check_writable()
    n_used = len(dataset.train.labels) if config.subset is None else len(config.subset)
    schedule = Schedule.from_config(config, n_used)
    return config, store, run_info(config, dataset, schedule)


def _expected_parts(info: dict) -> int:
    sizes = {"train": info["dataset"]["n_train"]}
    if info["config"]["log_test"]:
        sizes["test"] = info["dataset"]["n_test"]
    rows_per_part = info["config"].get("rows_per_part")
    n_parts = sum(len(part_ranges(split, n, info["dataset"]["n_train"], rows_per_part)) for split, n in sizes.items())
    return info["config"]["trials"] * len(info["schedule"]["log_steps"]) * n_parts


def _watch(shards: list, total: int, done: threading.Event, show: bool) -> None:
    """Show logged parts / expected parts while training runs (terminal and job log)."""
    bar = tqdm(total=total, desc="logged (trial, step) parts", unit="part", disable=not show,
               file=sys.stdout, mininterval=2.0, dynamic_ncols=True)
    while not done.wait(2.0):
        try:
            logged = min(len(keys) for keys in ray.get([s.keys.remote() for s in shards], timeout=10))
        except Exception:  # a restarting shard: try again at the next tick
            continue
        bar.update(logged - bar.n)
    bar.close()


def run_easiness(
    config: RunConfig,
    storage: str,
    address: str | None = None,
    resume: bool = False,
    show_progress: bool = True,
    max_failures: int = MAX_FAILURES,
) -> RunSummary:
    """Train ``config.trials`` trials on Ray and log every example at every logging step."""
    config, store, info = prepare_run(config, storage, resume)
    sizes = {"train": info["dataset"]["n_train"]}
    if config.log_test:
        sizes["test"] = info["dataset"]["n_test"]
    n_steps = len(info["schedule"]["log_steps"])
    # Before the cluster and the store: a budget too small for one example fails here.
    plan = choose_shards(sizes, config.trials, n_steps, config.shard_bytes)
    ensure_ray(address)
    info = store.create_run(config.run_id, info)
    bound = plan.bytes_per_shard(config.trials, n_steps)
    print(f"aggregation: {plan.n_shards} shard(s) by example_id range, at most {bound:,} bytes "
          f"each ({config.trials} trials x {n_steps} steps x 18 B per example; budget "
          f"{config.shard_bytes or DEFAULT_SHARD_BYTES:,} B)", flush=True)
    shards = start_aggregators(store.storage, config.run_id, plan, config.trials, bound)
    registry = get_registry()
    ray.get(registry.register.remote(
        config.run_id, dict(info, storage=store.storage, status="running", shards=plan.n_shards)
    ))
    store.set_status(config.run_id, "running", shards=plan.n_shards)
    workers = trainer_workers(config)
    if config.workers_per_trial > 1:
        print("\n".join(GroupPlan(workers, config.workers_per_trial).describe(config.trials)), flush=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config.to_dict(), "storage": store.storage,
            "fingerprint": info["dataset"]["fingerprint"],
            "shards": [ray.get(s.name.remote()) for s in shards],
        },
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=config.use_gpu),
        run_config=RayRunConfig(
            name="ray-train",
            storage_path=store.uri(f"{store.run_dir(config.run_id)}/checkpoints"),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    started = time.perf_counter()
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(shards, _expected_parts(info), done, show_progress), daemon=True)
    watcher.start()
    status = "failed"
    try:
        trainer.fit()
        status = "finished"
    except Exception as error:
        raise RaystatsError(f"run {config.run_id!r} failed: {error}") from error
    finally:
        done.set()
        watcher.join()
        store.set_status(config.run_id, status)
        ray.get(registry.update.remote(config.run_id, status=status))
    seconds = time.perf_counter() - started
    steps = tuple(info["schedule"]["log_steps"])
    return RunSummary(
        config.run_id, store.storage, status, steps, seconds,
        int(sum(sizes.values()) * config.trials * len(steps)),
    )
