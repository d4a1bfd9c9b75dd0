"""Trial groups: one trial trained data-parallel over several workers (DDP).

With ``workers_per_trial`` G > 1 the W Ray Train workers form W/G groups of G
consecutive world ranks; trial m runs on group m mod (W/G). Inside a group the trial
is trained with torch ``DistributedDataParallel`` over a ``torch.distributed``
subgroup, and each rank takes every G-th row of the global batch the single-process
trial would train on (``batch[rank::G]``). Each rank's loss is the *sum* of its rows'
cross-entropies times G/B, so DDP's mean over ranks of the gradients is exactly the
gradient of the mean loss over the whole batch B, even when B is not a multiple of G:

    (1/G) Σ_r (G/B) Σ_{i∈r} ∇ℓ_i = (1/B) Σ_i ∇ℓ_i

The update therefore equals the single-process update up to the order of the float
sums (the all-reduce adds the ranks' partial gradients). Batch norm needs more: on a
GPU its layers become ``SyncBatchNorm`` over the group, so they normalize with the
whole batch's statistics, as the single-GPU trial does. On CPU torch has no
SyncBatchNorm: each rank normalizes with its own B/G rows ("ghost batches"; running
statistics are rank 0's, broadcast by DDP), which is a different trial, not a rounding
difference — CPU groups are for testing the machinery with models without batch norm.

Nothing here imports Ray: the plan is pure arithmetic, and the collectives run on
whatever default process group the caller initialised (Ray Train's: gloo on CPU, nccl
on GPU).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F

from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from raystats.errors import ConfigError, RaystatsError

T = TypeVar("T")


@dataclass(frozen=True)
class GroupPlan:
    """Which world ranks form which trial group, and which trials each group owns.

    Group g is the G consecutive ranks [g·G, (g+1)·G) — Ray Train numbers the workers
    of one node consecutively, so on a multi-GPU node a group's all-reduce stays on
    the node's own links. Trial m belongs to group m mod (W/G).
    """

    world_size: int
    workers_per_trial: int

    def __post_init__(self) -> None:
        if self.workers_per_trial < 1 or self.world_size % self.workers_per_trial:
            raise ConfigError(
                f"world size {self.world_size} is not a multiple of workers_per_trial="
                f"{self.workers_per_trial}: each trial group needs exactly workers_per_trial workers"
            )

    @property
    def n_groups(self) -> int:
        return self.world_size // self.workers_per_trial

    def group_of(self, rank: int) -> int:
        return rank // self.workers_per_trial

    def rank_in_group(self, rank: int) -> int:
        return rank % self.workers_per_trial

    def ranks(self, group: int) -> list[int]:
        first = group * self.workers_per_trial
        return list(range(first, first + self.workers_per_trial))

    def trials(self, group: int, n_trials: int) -> list[int]:
        return list(range(group, n_trials, self.n_groups))

    def describe(self, n_trials: int) -> list[str]:
        """One line per group: its workers and its trials (printed when a run starts)."""
        return [
            f"trial group {g}: workers {self.ranks(g)} train trials {self.trials(g, n_trials)}"
            for g in range(self.n_groups)
        ]


def share(items: Sequence[T], rank: int, size: int) -> Sequence[T]:
    """Rank ``rank``'s share of ``items`` among ``size`` ranks: every size-th item from ``rank``.

    Used for the rows of a training batch: the shares of all ranks are disjoint and
    together hold every row.
    """
    return items[rank::size]


@dataclass(frozen=True)
class TrialGroup:
    """This process's place in its trial group and the process group that joins them.

    ``size == 1`` (:data:`SOLO`) is the single-process trial: no collectives at all.
    """

    rank: int = 0
    size: int = 1
    process_group: Any = None

    def prepare(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model with its batch norms synchronized over the group (GPU), before its optimizer is made.

        ``convert_sync_batchnorm`` keeps the same Parameter and buffer objects and names, so
        checkpoints stay interchangeable with single-process trials.
        """
        if self.size == 1 or not any(isinstance(m, _BatchNorm) for m in model.modules()):
            return model
        if device.type == "cuda":
            return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model, self.process_group)
        warnings.warn(
            f"batch norm on CPU over {self.size} workers per trial: each worker normalizes with "
            "its own share of the batch (torch's SyncBatchNorm needs a GPU), so the trial differs "
            "from a single-process one",
            stacklevel=2,
        )
        return model

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` under DistributedDataParallel over the group; the model itself when alone.

        DDP broadcasts rank 0's weights once here; every rank has loaded the same
        checkpoint (or drawn the same seeded initial weights), so that changes nothing.
        """
        if self.size == 1:
            return model
        device_ids = [device] if device.type == "cuda" else None
        return DistributedDataParallel(model, process_group=self.process_group, device_ids=device_ids)

    def owns_part(self, part: int) -> bool:
        """Whether this rank evaluates and writes log part ``part``: part k goes to rank k mod G."""
        return part % self.size == self.rank

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The loss whose DDP-averaged gradient is the gradient of the global batch's mean loss.

        ``batch_size`` is the global batch's row count B; ``logits`` are this rank's rows.
        """
        if self.size == 1:
            return F.cross_entropy(logits, labels)
        return F.cross_entropy(logits, labels, reduction="sum") * (self.size / batch_size)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of a scalar over the group's ranks (the group's train loss for progress)."""
        if self.size == 1:
            return value
        total = value.detach().float().reshape(1).clone()
        dist.all_reduce(total, group=self.process_group)
        return total[0] / self.size

    def wait_for_all(self, device: torch.device) -> None:
        """Return once every rank of the group got here.

        An all-reduce rather than ``dist.barrier``: it works the same on gloo and nccl.
        """
        if self.size > 1:
            dist.all_reduce(torch.zeros(1, device=device), group=self.process_group)

    def check_same_step(self, step: int, trial: int, device: torch.device) -> None:
        """Refuse to train when the group's ranks resumed trial ``trial`` from different steps."""
        if self.size == 1:
            return
        low, high = torch.tensor([step], device=device), torch.tensor([step], device=device)
        dist.all_reduce(low, op=dist.ReduceOp.MIN, group=self.process_group)
        dist.all_reduce(high, op=dist.ReduceOp.MAX, group=self.process_group)
        if int(low) != int(high):
            raise RaystatsError(
                f"trial {trial}: the ranks of one trial group resumed from steps {int(low)} to "
                f"{int(high)}; every rank must load the same checkpoint"
            )


SOLO = TrialGroup()


def join_trial_group(plan: GroupPlan, world_rank: int) -> TrialGroup:
    """Create every group's process group (a collective: every rank, same order); return ours.

    Needs the default process group initialised (Ray Train's TorchTrainer does it).
    """
    if plan.workers_per_trial == 1:
        return SOLO
    mine = None
    for group in range(plan.n_groups):
        process_group = dist.new_group(plan.ranks(group))
        if group == plan.group_of(world_rank):
            mine = process_group
    return TrialGroup(plan.rank_in_group(world_rank), plan.workers_per_trial, mine)
