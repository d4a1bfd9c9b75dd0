"""Faults on a multi-node Ray cluster on one machine: each test says INJECT / EXPECT / MEASURE.

The cluster (``ray.cluster_utils.Cluster``, token authentication on) is a head node
with no CPUs — it holds the drivers, the Ray Train controllers and the detached
aggregator shards — and three 1-CPU worker nodes. A run trains 2 trials on 2 Ray Train
workers, so after one worker node is removed the restarted group still fits on the two
that remain.

Faults are injected on a condition, never after a sleep. The gate: rows reach the
aggregator shard only through a blocking ``ingest`` call made after the part is in the
store, so pausing the shard's process (SIGSTOP) holds every training worker right after
it wrote a part — with its checkpoint one logging step behind — however fast or slow
the machine is. The fault lands there, then the shard is resumed (SIGCONT).

Expected every time: the store holds each (split, trial, step, example) exactly once,
and its rows — hence easiness in both forms at every step — EQUAL an undisturbed run's
with the same seeds, bit for bit. Training on CPU is deterministic given the seeds: a
trial resumed from its checkpoint replays the same batches from the same state.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray

import raystats
from raystats.errors import StoreError
from raystats.service.names import NAMESPACE, aggregator_name
from raystats.store import RunStore
from tests.conftest import REPO, free_port, wait_for

pytestmark = pytest.mark.ray

TRIALS = 2
# digits: 1,437 train + 360 test examples; 23 updates per epoch at batch 64; logging
# every 0.2 epoch gives steps 5, 10, 15, 20, 23: room to stop a run in its middle.
RUN_ARGS = ["--dataset", "digits", "--arch", "cnn", "--trials", str(TRIALS), "--epochs", "1",
            "--log-every", "0.2", "--workers", "2", "--quiet"]
KEY = ["split", "trial", "step", "example_id"]
TIMEOUT = 900  # generous: the 2 cores of CI are shared with other work


# ---- the cluster ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """Head (0 CPUs, dashboard on 127.0.0.1) + three 1-CPU worker nodes; this process drives it."""
    from ray.cluster_utils import Cluster

    previous = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    ray.shutdown()
    dashboard = f"http://127.0.0.1:{free_port()}"
    # Every state query — ours, and Ray Train's PlacementGroupCleaner inside the cluster —
    # must name this cluster. Left to itself, ray.util.state asks the newest cluster on
    # the machine; when that is another one, the cleaner finds no Train controller there,
    # takes ours for dead and removes its placement group mid-run. Nodes inherit the env.
    saved = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = dashboard
    nodes = None
    try:
        nodes = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
            "dashboard_port": int(dashboard.rsplit(":", 1)[1]), "dashboard_agent_listen_port": free_port(),
        })
        nodes.dashboard, nodes.drivers = dashboard, []
        for _ in range(3):
            nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes(timeout=300)
        ray.init(address=nodes.address, namespace=NAMESPACE, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        if nodes is not None:
            for driver in nodes.drivers:  # a failed test may leave its job running
                if driver.process.poll() is None:
                    driver.process.kill()
                    driver.process.wait(timeout=60)
            nodes.shutdown()
        if saved is None:
            os.environ.pop("RAY_API_SERVER_ADDRESS", None)
        else:
            os.environ["RAY_API_SERVER_ADDRESS"] = saved
        if previous is not None:  # the session's cluster (conftest.ray_head) stays usable
            ray.init(address=previous, namespace=NAMESPACE, log_to_driver=False)


class Driver:
    """`python jobs/easiness.py ...` joined to the cluster: the driver of one easiness job."""

    def __init__(self, cluster, storage: str, run_id: str, *extra: str, log_dir: str):
        self.log = os.path.join(log_dir, f"{run_id}-{time.monotonic_ns()}.log")
        env = dict(os.environ, RAY_AUTH_MODE="token", PYTHONPATH=REPO)
        env.pop("RAY_ADDRESS", None)
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "jobs/easiness.py", *RUN_ARGS, "--storage", storage, "--run-id", run_id,
                 "--address", cluster.address, *extra],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        cluster.drivers.append(self)

    def running(self, condition):
        """``condition`` wrapped for wait_for: fails at once, with the job's output, if the job ended."""
        def check():
            value = condition()
            if not value and self.process.poll() is not None:
                raise AssertionError(f"the job ended ({self.process.returncode}) before the fault:\n"
                                     f"{self.output()[-4000:]}")
            return value
        return check

    def output(self) -> str:
        with open(self.log) as handle:
            return handle.read()

    def wait(self) -> None:
        try:
            code = self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"job still running after {TIMEOUT} s:\n{self.output()[-4000:]}")
        assert code == 0, f"job exited with {code}:\n{self.output()[-4000:]}"


def run_job(cluster, storage, run_id, tmp_path, *extra) -> None:
    driver = Driver(cluster, storage, run_id, *extra, log_dir=str(tmp_path))
    driver.wait()


# ---- the store, read independently of raystats ---------------------------------------------

def stored_rows(storage: str, run_id: str) -> pd.DataFrame:
    """Every row of every Parquet part, read with pyarrow + pandas, sorted by the key."""
    frames = []
    for root, _, files in os.walk(os.path.join(storage, run_id, "logs")):
        frames += [pq.read_table(os.path.join(root, n)).to_pandas() for n in files if n.endswith(".parquet")]
    rows = pd.concat(frames, ignore_index=True)
    rows["split"] = rows["split"].astype(str)
    return rows.sort_values(KEY, ignore_index=True)


def parts(storage: str, run_id: str) -> set[str]:
    logs = os.path.join(storage, run_id, "logs")
    return {os.path.relpath(os.path.join(root, n), logs)
            for root, _, files in os.walk(logs) for n in files if n.endswith(".parquet")}


def assert_same_as_undisturbed(storage, run_id, reference, reference_id="reference") -> None:
    """Each (split, trial, step, example) once; rows and both easiness forms equal the reference's."""
    rows, expected = stored_rows(storage, run_id), stored_rows(reference, reference_id)
    assert not rows.duplicated(KEY).any(), "a (split, trial, step, example) is stored twice"
    assert len(rows) == len(expected) == (1437 + 360) * TRIALS * 5
    pd.testing.assert_frame_equal(rows, expected, check_exact=True)
    got, want = raystats.open(storage), raystats.open(reference)
    assert got.steps(run_id) == want.steps(reference_id) == [5, 10, 15, 20, 23]
    for step in want.steps(reference_id):
        for kind in ("loss", "count"):
            for split in ("train", "test"):
                pd.testing.assert_frame_equal(
                    got.easiness(run_id, step=step, kind=kind, split=split),
                    want.easiness(reference_id, step=step, kind=kind, split=split), check_exact=True,
                )


# ---- the gate: hold the workers right after they wrote a part --------------------------------

def shard_pid(driver: Driver, run_id: str) -> int:
    def ask():
        try:
            shard = ray.get_actor(aggregator_name(run_id, 0), namespace=NAMESPACE)
            return ray.get(shard.pid.remote(), timeout=30)
        except (ValueError, ray.exceptions.GetTimeoutError):
            return None
    return wait_for(driver.running(ask), timeout=TIMEOUT, what=f"the aggregator shard of {run_id}")


def checkpointed(storage: str, run_id: str) -> bool:
    folder = os.path.join(storage, run_id, "checkpoints")
    return all(os.path.exists(os.path.join(folder, f"trial={m}", "latest.pt")) for m in range(TRIALS))


def hold_workers_mid_run(driver: Driver, storage: str, run_id: str) -> int:
    """Pause the run's aggregator shard once every trial has a checkpoint; return its pid.

    Each worker then writes its next part and blocks in ``ingest``: the run is stopped
    between a part in the store and the checkpoint that follows it.
    """
    pid = shard_pid(driver, run_id)  # the shard starts before training does
    wait_for(driver.running(lambda: checkpointed(storage, run_id)), timeout=TIMEOUT, interval=0.01,
             what="a checkpoint of every trial")
    os.kill(pid, signal.SIGSTOP)
    before = parts(storage, run_id)
    assert not any("step=23/" in p for p in before), "the run finished before the gate closed"
    return pid


def release(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:  # the shard died with the fault; Ray restarts it
        pass


def alive_train_workers(cluster) -> list:
    from ray.util.state import list_actors

    return list_actors(address=cluster.dashboard,
                       filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])


# ---- tests ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory):
    """The undisturbed run every fault is compared with."""
    storage = str(tmp_path_factory.mktemp("reference"))
    run_job(cluster, storage, "reference", tmp_path_factory.mktemp("logs"))
    return storage


def test_worker_node_removed_mid_run(cluster, reference, tmp_path):
    """INJECT: the worker node of a Ray Train worker is removed (all its processes SIGKILLed)
    while both workers hold a logged part whose checkpoint is not written yet.
    EXPECT: FailureConfig restarts the worker group on the two remaining nodes, each trial
    resumes from its checkpoint, rewrites the parts after it, and the store equals the
    undisturbed run's. MEASURE: nodes, worker actors started, seconds to finish after the fault."""
    storage = str(tmp_path / "store")
    before_ids = {actor.actor_id for actor in _train_workers(cluster)}
    driver = Driver(cluster, storage, "node-lost", log_dir=str(tmp_path))
    pid = hold_workers_mid_run(driver, storage, "node-lost")
    wait_for(driver.running(lambda: len(parts(storage, "node-lost")) > TRIALS * 2), timeout=TIMEOUT,
             what="a part written after the checkpoints")
    workers = wait_for(lambda: _all_alive(cluster), timeout=TIMEOUT, what="both training workers")
    victim = next(n for n in cluster.worker_nodes if n.node_id == workers[0].node_id)
    held = sorted(parts(storage, "node-lost"))
    print(f"INJECT: remove worker node {victim.node_id[:8]} (training worker pid {workers[0].pid}) "
          f"with {len(held)} parts stored, every trial checkpointed, the aggregator paused")
    cluster.remove_node(victim, allow_graceful=False)
    injected = time.monotonic()
    release(pid)
    driver.wait()
    seconds = time.monotonic() - injected
    print("EXPECT: job finishes; store holds each (split, trial, step, example) once; rows and "
          "easiness (loss, count; train, test; every step) equal the undisturbed run's exactly")
    assert_same_as_undisturbed(storage, "node-lost", reference)
    started = [actor for actor in _train_workers(cluster) if actor.actor_id not in before_ids]
    assert len(started) > TRIALS, "no worker was restarted: the fault did not hit the run"
    print(f"MEASURE: {len(cluster.worker_nodes)} worker nodes left, {len(started)} training workers "
          f"started for the job, finished {seconds:.1f} s after the fault; rows equal")


def _all_alive(cluster) -> list | None:
    workers = alive_train_workers(cluster)
    return workers if len(workers) == TRIALS else None


def _train_workers(cluster) -> list:
    """Every RayTrainWorker actor the cluster has seen, alive or dead."""
    from ray.util.state import list_actors

    return list_actors(address=cluster.dashboard, filters=[("class_name", "=", "RayTrainWorker")],
                       limit=10_000)


def test_aggregator_shard_killed_while_rows_arrive(cluster, reference, tmp_path):
    """INJECT: SIGKILL to the aggregator shard's process while a worker's ingest call for a
    stored part is waiting on it. EXPECT: Ray restarts the shard, it rebuilds from the store,
    the waiting ingest is retried and ignored or taken once; live answers equal the offline ones
    and both equal the undisturbed run's. MEASURE: parts the restarted shard rebuilt."""
    storage = str(tmp_path / "store")
    driver = Driver(cluster, storage, "shard-lost", log_dir=str(tmp_path))
    pid = hold_workers_mid_run(driver, storage, "shard-lost")
    wait_for(driver.running(lambda: len(parts(storage, "shard-lost")) > TRIALS * 2), timeout=TIMEOUT,
             what="a part written after the checkpoints (rows in flight)")
    print(f"INJECT: SIGKILL aggregator shard pid {pid} with {len(parts(storage, 'shard-lost'))} "
          "parts stored and ingest calls waiting")
    os.kill(pid, signal.SIGKILL)
    driver.wait()
    shard = ray.get_actor(aggregator_name("shard-lost", 0), namespace=NAMESPACE)
    described = ray.get(shard.describe.remote())
    assert ray.get(shard.pid.remote()) != pid
    print("EXPECT: live == offline == undisturbed, each row stored once")
    assert_same_as_undisturbed(storage, "shard-lost", reference)
    live, offline = raystats.connect(cluster.address), raystats.open(storage)
    for step in offline.steps("shard-lost"):
        for kind in ("loss", "count"):
            pd.testing.assert_frame_equal(live.easiness("shard-lost", step=step, kind=kind),
                                          offline.easiness("shard-lost", step=step, kind=kind),
                                          check_exact=True)
    assert described["keys"] == len(parts(storage, "shard-lost"))
    print(f"MEASURE: restarted shard rebuilt {described['rebuilt_parts']} parts from the store, "
          f"holds {described['keys']} keys = parts stored")


def test_driver_killed_and_job_resubmitted_with_resume(cluster, reference, tmp_path):
    """INJECT: SIGKILL to the job's driver process while its workers hold parts written after
    their checkpoints. EXPECT: the workers die with the driver; the same command with the same
    run_id and --resume continues from the checkpoints, rewrites the interrupted parts under
    the same names, and the store equals the undisturbed run's with no duplicate row.
    MEASURE: parts stored at the kill, after the resume, and the resumed job's seconds."""
    storage = str(tmp_path / "store")
    driver = Driver(cluster, storage, "driver-lost", log_dir=str(tmp_path))
    pid = hold_workers_mid_run(driver, storage, "driver-lost")
    wait_for(driver.running(lambda: len(parts(storage, "driver-lost")) > TRIALS * 2), timeout=TIMEOUT,
             what="a part written after the checkpoints")
    at_kill = parts(storage, "driver-lost")
    print(f"INJECT: SIGKILL driver pid {driver.process.pid} with {len(at_kill)} parts stored")
    driver.process.kill()
    driver.process.wait(timeout=60)
    wait_for(lambda: not alive_train_workers(cluster), timeout=TIMEOUT, what="the dead job's workers to stop")
    release(pid)
    assert raystats.open(storage).info("driver-lost")["status"] == "running"
    started = time.monotonic()
    run_job(cluster, storage, "driver-lost", tmp_path, "--resume")
    seconds = time.monotonic() - started
    print("EXPECT: resumed job finishes; each row once; rows and easiness equal the undisturbed run's")
    assert_same_as_undisturbed(storage, "driver-lost", reference)
    assert raystats.open(storage).info("driver-lost")["status"] == "finished"
    print(f"MEASURE: {len(at_kill)} parts at the kill, {len(parts(storage, 'driver-lost'))} after "
          f"--resume; resumed job took {seconds:.1f} s")


def test_same_part_delivered_twice(cluster, reference):
    """INJECT: one stored part handed to the run's sink twice (store write + ingest), as a
    retried call or a resumed trial would. EXPECT: the file is replaced by identical bytes,
    the second ingest is refused by key, live answers are unchanged and equal the store's.
    MEASURE: files before/after, ingest answers."""
    from raystats.service.easiness import StoreAndForward

    store = RunStore(reference)
    log_file = next(f for f in store.log_files("reference") if f.part == 0)
    table = store.read_log(log_file.path)
    before_bytes = open(log_file.path, "rb").read()
    before_files = parts(reference, "reference")
    shard = ray.get_actor(aggregator_name("reference", 0), namespace=NAMESPACE)
    live = raystats.connect(cluster.address)
    before = live.easiness("reference", step=log_file.step)
    columns = table.to_pydict()
    metrics = {name: np.asarray(columns[name]) for name in ("pred", "loss", "margin", "p_true", "el2n")}
    # The same writer as the stored part's (its Parquet metadata), so the bytes can match.
    writer = pq.read_schema(log_file.path).metadata.get(b"raystats.writer", b"").decode() or None
    sink = StoreAndForward(store, "reference", [shard], 1437, writer=writer)
    print(f"INJECT: part {log_file.key} delivered twice through StoreAndForward and once more by ingest")
    for _ in range(2):
        sink(log_file.trial, log_file.step, float(columns["epoch"][0]), "train",
             np.asarray(columns["example_id"]), np.asarray(columns["label"]), metrics)
    again = ray.get(shard.ingest.remote(log_file.key, "train", table))
    print("EXPECT: ingest refuses the known key; same files, same bytes; easiness unchanged")
    assert again is False
    assert parts(reference, "reference") == before_files
    assert open(log_file.path, "rb").read() == before_bytes
    after = live.easiness("reference", step=log_file.step)
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    pd.testing.assert_frame_equal(after, raystats.open(reference).easiness("reference", step=log_file.step),
                                  check_exact=True)
    assert ray.get(shard.describe.remote())["keys"] == len(before_files)
    print(f"MEASURE: {len(before_files)} files before and after, identical bytes, ingest answered {again}")


def test_truncated_part_is_refused_by_name_and_recovered(cluster, reference, tmp_path):
    """INJECT: a copy of the undisturbed run (as run 'truncated') with one Parquet part cut
    to half its bytes. EXPECT: offline queries refuse it with a StoreError naming the file and
    the recovery; doing the recovery (delete the file and the checkpoints, resubmit with
    --resume) rewrites it and the store equals the undisturbed run's. MEASURE: sizes, seconds."""
    storage = str(tmp_path / "store")
    shutil.copytree(os.path.join(reference, "reference"), os.path.join(storage, "truncated"))
    store = RunStore(storage)
    info = _renamed_run_json(storage, "truncated")
    assert info["run_id"] == "truncated"
    victim = next(f for f in store.log_files("truncated") if f.step == 10 and f.part == 0)
    size = os.path.getsize(victim.path)
    with open(victim.path, "r+b") as handle:
        handle.truncate(size // 2)
    print(f"INJECT: {os.path.relpath(victim.path, storage)} truncated from {size} to {size // 2} bytes")
    with pytest.raises(StoreError) as refused:
        raystats.open(storage).easiness("truncated", step=10)
    message = str(refused.value)
    assert victim.path in message and "--resume" in message, message
    print(f"EXPECT: refused by name ({message[:80]}...), then the documented recovery restores it")
    os.remove(victim.path)
    shutil.rmtree(os.path.join(storage, "truncated", "checkpoints"))
    started = time.monotonic()
    run_job(cluster, storage, "truncated", tmp_path, "--resume")
    assert os.path.getsize(victim.path) > size // 2 and store.read_log(victim.path).num_rows == 1437
    assert_same_as_undisturbed(storage, "truncated", reference)
    print(f"MEASURE: part rewritten, {os.path.getsize(victim.path)} bytes (was {size}; the writer's pid differs); "
          f"recovery job {time.monotonic() - started:.1f} s")


def _renamed_run_json(storage: str, run_id: str) -> dict:
    """Make a copied run folder a run of its own: run.json names ``run_id``."""
    import json

    path = os.path.join(storage, run_id, "run.json")
    with open(path) as handle:
        info = json.load(handle)
    info["run_id"] = run_id
    info["config"]["run_id"] = run_id
    with open(path, "w") as handle:
        json.dump(info, handle)
    return info


def test_registry_killed_then_runs_are_rediscovered(cluster, reference):
    """INJECT: ray.kill (restart allowed) on the detached registry actor. EXPECT: it restarts,
    rediscovers the run from its aggregator shards — config and shard count read from the
    run's store at the shard's own storage path — and live answers equal the offline ones.
    MEASURE: runs the restarted registry lists."""
    from raystats.service.registry import get_registry

    registry = get_registry(create=False)
    print("INJECT: ray.kill(registry, no_restart=False)")
    ray.kill(registry, no_restart=False)
    live = raystats.connect(cluster.address)
    listed = wait_for(lambda: _listed(live), timeout=TIMEOUT, what="the restarted registry")
    print("EXPECT: the reference run is listed again and answers as the store does")
    info = live.info("reference")
    assert info["storage"] == reference and info["config"]["trials"] == TRIALS
    for kind in ("loss", "count"):
        pd.testing.assert_frame_equal(live.easiness("reference", kind=kind),
                                      raystats.open(reference).easiness("reference", kind=kind), check_exact=True)
    print(f"MEASURE: the restarted registry lists {listed}")


def _listed(live) -> list | None:
    try:
        runs = live.runs()["run_id"].tolist()
    except ray.exceptions.RayActorError:  # still restarting
        return None
    return runs if "reference" in runs else None
