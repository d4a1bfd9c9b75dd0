"""One query surface over a run's statistics: live from the cluster, or from the store.

``raystats.open(storage)`` reads the Parquet logs and needs no cluster;
``raystats.connect()`` asks the aggregator shards of a running cluster. Both feed the
same :class:`~raystats.service.aggregator.ShardState` queries with the same rows, so
for a finished run their answers are equal, not merely close.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raystats.errors import ClusterError, ConfigError, RunNotFoundError, StepNotFoundError
from raystats.stats import (
    chance_level, easy_set, hard_set, matching_rate, merge_set_candidates, normalize_counts, set_size,
)

KINDS = ("loss", "count")
WHICH = ("easy", "hard")


def _check_choice(name: str, value: object, accepted: tuple) -> None:
    if value not in accepted:
        raise ConfigError(f"{name}={value!r} is not accepted: expected one of {accepted}")


def _check_frac(frac: object) -> float:
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
        raise ConfigError(f"frac={frac!r} is not accepted: expected a fraction in (0, 1)")
    return float(frac)


class Client:
    """Queries shared by the live and the offline client.

    A backend supplies ``_info(run_id)`` (run.json-like dict), ``_runs()`` and
    ``_ask(run_id, method, *args)`` — one answer per aggregator shard, in shard order.
    """

    # ---- backend ------------------------------------------------------------------------
    def _runs(self) -> list[dict]:
        raise NotImplementedError

    def _info(self, run_id: str) -> dict:
        raise NotImplementedError

    def _ask(self, run_id: str, method: str, *args) -> list:
        raise NotImplementedError

    # ---- runs ---------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """One row per known run: id, data set, architecture, trials, status, steps logged."""
        columns = ["run_id", "dataset", "arch", "trials", "status", "steps_logged", "last_step"]
        rows = []
        for info in self._runs():
            steps = self.steps(info["run_id"]) if info.get("status") != "created" else []
            config = info.get("config", {})
            rows.append({
                "run_id": info["run_id"], "dataset": config.get("dataset"), "arch": config.get("arch"),
                "trials": config.get("trials"), "status": info.get("status"),
                "steps_logged": len(steps), "last_step": steps[-1] if steps else None,
            })
        return pd.DataFrame(rows, columns=columns)

    def info(self, run_id: str) -> dict:
        """The run's run.json: config, data set, schedule, status."""
        return self._info(run_id)

    def steps(self, run_id: str, split: str = "train") -> list[int]:
        """Logging steps with rows so far (any trial), ascending."""
        self._check_split(run_id, split)
        return sorted(set().union(*[set(s) for s in self._ask(run_id, "steps", split)]))

    # ---- easiness and sets ----------------------------------------------------------------
    def easiness(self, run_id: str, step: int | None = None, kind: str = "loss",
                 split: str = "train") -> pd.DataFrame:
        """Per-example easiness at ``step`` (None: the last logged step).

        Columns example_id, easiness, n_trials. Loss form (``kind="loss"``): mean
        cross-entropy over the trials, low = easy. Count form: c_i / max_j c_j, high = easy.
        """
        ids, values, n_trials = self._easiness(run_id, step, kind, split)
        return pd.DataFrame({"example_id": ids, "easiness": values, "n_trials": n_trials})

    def easy(self, run_id: str, frac: float = 0.1, step: int | None = None, kind: str = "loss",
             split: str = "train") -> np.ndarray:
        """Example ids of the fraction ``frac`` easiest examples (ties by example_id)."""
        return self._set(run_id, "easy", frac, step, kind, split)

    def hard(self, run_id: str, frac: float = 0.1, step: int | None = None, kind: str = "loss",
             split: str = "train") -> np.ndarray:
        """Example ids of the fraction ``frac`` hardest examples (ties by example_id)."""
        return self._set(run_id, "hard", frac, step, kind, split)

    def matching_rate(self, run_a: str, run_b: str, which: str = "easy", frac: float = 0.1,
                      step: int | None = None, step_b: int | None = None, kind: str = "loss",
                      split: str = "train") -> float:
        """M_AB = |A ∩ B| / max(|A|, |B|) of two runs' easy (or hard) sets.

        ``step`` picks run A's step and, unless ``step_b`` is given, run B's too (None:
        each run's last step). ``run_a == run_b`` with two steps compares the beginning and
        the end of one run. Chance level is ``frac``.
        """
        _check_choice("which", which, WHICH)
        self._check_same_data(run_a, run_b)
        pick = self.easy if which == "easy" else self.hard
        a = pick(run_a, frac, step, kind, split)
        b = pick(run_b, frac, step if step_b is None else step_b, kind, split)
        return matching_rate(a, b)

    def matching_curve(self, run_a: str, run_b: str, which: str = "easy", frac: float = 0.1,
                       kind: str = "loss", split: str = "train") -> pd.DataFrame:
        """Matching rate of two runs at every step both logged, beside the chance level."""
        _check_choice("which", which, WHICH)
        self._check_same_data(run_a, run_b)
        steps = sorted(set(self.steps(run_a, split)) & set(self.steps(run_b, split)))
        rates = [self.matching_rate(run_a, run_b, which, frac, s, s, kind, split) for s in steps]
        return pd.DataFrame({"step": steps, "matching_rate": rates, "chance": chance_level(frac)})

    def self_agreement(self, run_id: str, which: str = "easy", frac: float = 0.1,
                       step: int | None = None, kind: str = "loss", split: str = "train") -> float:
        """Matching rate between the sets of two disjoint halves of the trials.

        Trials 0..⌈M/2⌉-1 against the rest: how reproducible the sets are at this M.
        """
        _check_choice("which", which, WHICH)
        frac = _check_frac(frac)
        trials = int(self._info(run_id)["config"]["trials"])
        if trials < 2:
            raise ConfigError(f"run {run_id!r} has {trials} trial; self-agreement needs at least 2")
        half = (trials + 1) // 2
        pick = easy_set if which == "easy" else hard_set
        sets = []
        for chosen in (list(range(half)), list(range(half, trials))):
            ids, values, _ = self._easiness(run_id, step, kind, split, chosen)
            sets.append(pick(values, frac, kind=kind, example_ids=ids))
        return matching_rate(*sets)

    def dynamics(self, run_id: str, split: str = "train") -> pd.DataFrame:
        """Training-dynamics scores of every example from all logged steps.

        Columns: example_id, iteration_learned, forgetting_events, never_learned,
        confidence, variability, correctness, aum, el2n (at the first logged step).
        """
        self._check_split(run_id, split)
        parts = [pd.DataFrame(part) for part in self._ask(run_id, "dynamics", split)]
        return pd.concat(parts, ignore_index=True)

    # ---- helpers ------------------------------------------------------------------------------
    def _set(self, run_id, which, frac, step, kind, split) -> np.ndarray:
        """An easy or hard set from the shards' own top k, merged here: one round trip.

        Each shard sends its ``k = set_size(N_split, frac)`` best (an upper bound of the
        set size ``K``, which counts only examples with a value) and how many of its
        examples have a value; ``merge_set_candidates`` keeps the K best of the union,
        ties by example_id — the same set one actor holding every row would give.
        """
        _check_choice("kind", kind, KINDS)
        frac = _check_frac(frac)
        self._check_split(run_id, split)
        k = set_size(_sizes(self._info(run_id))[split], frac)
        if step is not None:
            answers = self._ask_or_explain(run_id, split, step, "set_candidates", split, step, k, kind, which)
        else:
            answers = self._ask(run_id, "set_candidates", split, None, k, kind, which)
            if len({answer[0] for answer in answers}) != 1 or answers[0][0] is None:
                # Shards mid-ingest disagree on their last step: ask again at the run's.
                step = self._resolve_step(run_id, None, split)
                answers = self._ask(run_id, "set_candidates", split, step, k, kind, which)
        return merge_set_candidates([answer[1:] for answer in answers], frac, which, kind)

    def _ask_or_explain(self, run_id, split, step, method, *args) -> list:
        """``_ask``, turning a shard's missing step into the run's list of logged steps."""
        try:
            return self._ask(run_id, method, *args)
        except StepNotFoundError:
            self._resolve_step(run_id, step, split)  # raises, naming the run's steps
            raise

    def _easiness(self, run_id, step, kind, split, trials=None):
        _check_choice("kind", kind, KINDS)
        step = self._resolve_step(run_id, step, split)
        answers = self._ask(run_id, "easiness", split, step, kind, trials)
        ids = np.concatenate([a[0] for a in answers])
        n_trials = np.concatenate([a[2] for a in answers])
        if kind == "count":
            # c_i / max_j c_j needs the global max: shards return raw counts c_i.
            values = normalize_counts(np.concatenate([a[1] for a in answers]), n_trials)
        else:
            values = np.concatenate([a[1] for a in answers])
        return ids, values, n_trials

    def _resolve_step(self, run_id: str, step: int | None, split: str) -> int:
        logged = self.steps(run_id, split)
        if step is None:
            if not logged:
                raise StepNotFoundError(f"run {run_id!r} has no logged {split} rows yet")
            return logged[-1]
        if step not in logged:
            raise StepNotFoundError(
                f"step {step!r} is not logged in run {run_id!r} ({split}); logged steps: {logged}"
            )
        return int(step)

    def _check_split(self, run_id: str, split: str) -> None:
        info = self._info(run_id)
        splits = ("train", "test") if info["config"].get("log_test") else ("train",)
        if split not in splits:
            raise ConfigError(f"split={split!r} is not logged in run {run_id!r}: expected one of {splits}")

    def _check_same_data(self, run_a: str, run_b: str) -> None:
        a, b = self._info(run_a)["dataset"], self._info(run_b)["dataset"]
        if a.get("fingerprint") != b.get("fingerprint"):
            raise ConfigError(
                f"runs {run_a!r} ({a.get('name')}) and {run_b!r} ({b.get('name')}) were made from "
                "different data sets; matching rates compare example ids of one data set"
            )

    # ---- what makes examples easy: stored analysis results ------------------------------------
    # Written by jobs/patterns.py, jobs/shallow_vs_deep.py and jobs/prediction_depth.py under
    # <storage>/<run_id>/analyses/; read the same way by the live and the offline client.

    def pattern_matching(self, run_id: str, pattern: str | None = None, which: str | None = None) -> pd.DataFrame:
        """Matching rate of easy/hard sets on pattern-removed inputs with the regular ones.

        Columns pattern, parameter, strength, which, frac, matching_rate, chance, accuracy,
        regular_accuracy, n_examples, n_trials; optionally one ``pattern`` ("color",
        "shuffle", "radial") and one set (``which``: "easy" or "hard").
        """
        table = self._analysis_table(run_id, "patterns", "matching")
        if pattern is not None:
            _check_choice("pattern", pattern, tuple(sorted(set(table["pattern"]))))
            table = table[table["pattern"] == pattern]
        if which is not None:
            _check_choice("which", which, WHICH)
            table = table[table["which"] == which]
        return table.reset_index(drop=True)

    def pattern_easiness(self, run_id: str, pattern: str = "regular", strength: float = 1.0) -> pd.DataFrame:
        """Per-example easiness (loss form) on inputs with ``pattern`` removed at ``strength``.

        Columns example_id, easiness, correct_frac; ``pattern="regular"`` gives the
        regular inputs' easiness the matching rates compare with.
        """
        table = self._analysis_table(run_id, "patterns", "easiness")
        rows = table[(table["pattern"] == pattern) & np.isclose(table["strength"], strength)]
        if rows.empty:
            known = sorted({(p, float(s)) for p, s in zip(table["pattern"], table["strength"])})
            raise ConfigError(f"(pattern, strength)=({pattern!r}, {strength!r}) was not evaluated; evaluated: {known}")
        return rows[["example_id", "easiness", "correct_frac"]].reset_index(drop=True)

    def contingency(self, run_id: str, shallow: str = "svm", per_trial: bool = False) -> pd.DataFrame:
        """Contingency of the deep run against a shallow model at every logged test step.

        Columns shallow, approximate, step, epoch, (trial | n_trials), T00, T01, T10, T11,
        n, deep_accuracy, shallow_accuracy, R_plus, R_minus, R. First index deep, second
        shallow (T01: deep wrong, shallow right). ``per_trial=False``: trial means.
        """
        table = self._analysis_table(run_id, "shallow_vs_deep", "contingency" if per_trial else "contingency_mean")
        _check_choice("shallow", shallow, tuple(sorted(set(table["shallow"]))))
        return table[table["shallow"] == shallow].reset_index(drop=True)

    def shallow_right_deep_wrong(self, run_id: str, shallow: str = "svm") -> np.ndarray:
        """Test example ids the shallow model gets right and the trained deep ensemble wrong."""
        table = self._analysis_table(run_id, "shallow_vs_deep", "shallow_right_deep_wrong")
        known = tuple(sorted(set(self._analysis_table(run_id, "shallow_vs_deep", "shallow")["shallow"])))
        _check_choice("shallow", shallow, known)
        return table.loc[table["shallow"] == shallow, "example_id"].to_numpy(np.int64)

    def prediction_depth(self, run_id: str, split: str = "train", per_trial: bool = False) -> pd.DataFrame:
        """Prediction depth per example, joined with easiness and the other statistics.

        ``per_trial=False``: one row per example — split, example_id, label, depth (mean
        over the probed trials), depth_median, settled_frac, n_layers, accuracy, easiness,
        consistency, confidence, iteration_learned. ``per_trial=True``: one row per
        (trial, example) — depth, settled, pred, correct. Depth n_layers with settled
        False is the "effective" depth of a prediction that never settles.
        """
        _check_choice("split", split, ("train", "test"))
        table = self._analysis_table(run_id, "prediction_depth", "depth" if per_trial else "summary")
        rows = table[table["split"] == split]
        if rows.empty:
            raise ConfigError(f"run {run_id!r} has no {split} prediction depths (was its test split logged?)")
        return rows.reset_index(drop=True)

    def _analysis_table(self, run_id: str, name: str, table: str) -> pd.DataFrame:
        from raystats.service.analysis import read_table
        from raystats.store import RunStore

        store = getattr(self, "store", None)
        if store is None:  # the live client: the run's storage, as registered
            store = RunStore(self._info(run_id)["storage"])
        return read_table(store, run_id, name, table)


class OfflineClient(Client):
    """Answers from a run store alone; no cluster needed."""

    def __init__(self, storage: str):
        from raystats.store import RunStore

        self.store = RunStore(storage)
        self._cache: dict[str, tuple[tuple, list]] = {}

    def __repr__(self) -> str:
        return f"raystats.open({self.store.storage!r})"

    def _runs(self) -> list[dict]:
        return [self.store.read_run(run_id) for run_id in self.store.run_ids()]

    def _info(self, run_id: str) -> dict:
        return self.store.read_run(run_id)

    def _ask(self, run_id: str, method: str, *args) -> list:
        return [getattr(state, method)(*args) for state in self._states(run_id)]

    def _states(self, run_id: str) -> list:
        """The run's rows folded into one shard state, rebuilt when the logs change."""
        from raystats.service.aggregator import ShardState
        from raystats.service.layout import ShardPlan

        files = self.store.log_files(run_id)
        info = self._info(run_id)
        signature = tuple((f.key, self.store.fs.get_file_info(f.path).mtime_ns) for f in files)
        cached = self._cache.get(run_id)
        if cached is not None and cached[0] == signature:
            return cached[1]
        state = ShardState(ShardPlan(1, _sizes(info)), 0, int(info["config"]["trials"]))
        for log_file in files:
            table = self.store.read_log(log_file.path)
            if table.num_rows:
                state.ingest(log_file.key, table.column("split")[0].as_py(), table)
        self._cache[run_id] = (signature, [state])
        return [state]


class LiveClient(Client):
    """Answers from the aggregator shards of a running Ray cluster."""

    def __init__(self, address: str = "auto"):
        import ray

        from raystats.service.cluster import ensure_ray
        from raystats.service.registry import get_registry

        ensure_ray(address)
        self._ray = ray
        try:
            self._registry = get_registry(create=False)
        except ValueError:
            raise ClusterError(
                "this Ray cluster has no raystats registry yet: no easiness job has run on it"
            ) from None

    def _runs(self) -> list[dict]:
        return self._ray.get(self._registry.list.remote())

    def _info(self, run_id: str) -> dict:
        info = self._ray.get(self._registry.get.remote(run_id))
        if info is None:
            known = [r["run_id"] for r in self._runs()]
            raise RunNotFoundError(f"the cluster knows no run {run_id!r}; known runs: {known or 'none'}")
        return info

    def _ask(self, run_id: str, method: str, *args) -> list:
        from raystats.service.names import NAMESPACE, aggregator_name

        n_shards = int(self._info(run_id)["shards"])
        handles = [self._ray.get_actor(aggregator_name(run_id, k), namespace=NAMESPACE) for k in range(n_shards)]
        try:
            return self._ray.get([getattr(h, method).remote(*args) for h in handles])
        except self._ray.exceptions.RayTaskError as error:
            raise error.as_instanceof_cause() from None


def _sizes(info: dict) -> dict:
    sizes = {"train": int(info["dataset"]["n_train"])}
    if info["config"].get("log_test"):
        sizes["test"] = int(info["dataset"]["n_test"])
    return sizes


def open(storage: str) -> OfflineClient:  # noqa: A001 - the public name of the design
    """A client over the run store at ``storage`` (local path or URI); no cluster needed."""
    return OfflineClient(storage)


def connect(address: str = "auto") -> LiveClient:
    """A client over the running cluster at ``address`` (default: the one this machine joined)."""
    return LiveClient(address)
