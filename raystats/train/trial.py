"""One trial's training loop: seeded, resumable at logging steps, logging every example.

Everything random in a trial — initial weights, data order, augmentation — is drawn
from generators seeded by (run seed, trial, purpose, index). A trial resumed from a
checkpoint at step T therefore continues exactly as the undisturbed trial would have.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from raystats.config import RunConfig
from raystats.data import Dataset, augment, global_contrast_normalize, to_float
from raystats.models import build_model
from raystats.train.ddp import SOLO, TrialGroup, share
from raystats.train.evaluate import autocast, configure_device, default_eval_batch, evaluate_examples

_INIT, _ORDER, _AUGMENT = 1, 2, 3


def seed_for(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class Schedule:
    """When a run updates and when it logs, in parameter updates T.

    steps_per_epoch = ceil(n_train / batch_size); logging every ``log_every`` epochs
    means every round(log_every · steps_per_epoch) updates (at least 1), and the last
    update is always logged.
    """

    steps_per_epoch: int
    total_steps: int
    log_steps: tuple[int, ...]

    @classmethod
    def from_config(cls, config: RunConfig, n_train: int) -> "Schedule":
        steps_per_epoch = math.ceil(n_train / config.batch_size)
        total = max(1, round(config.epochs * steps_per_epoch))
        interval = max(1, round(config.log_every * steps_per_epoch))
        log_steps = list(range(interval, total + 1, interval))
        if not log_steps or log_steps[-1] != total:
            log_steps.append(total)
        return cls(steps_per_epoch, total, tuple(log_steps))

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def to_dict(self) -> dict:
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "log_steps": list(self.log_steps),
        }


@dataclass
class TrialData:
    """A data set laid out on the training device: uint8 images, labels, example ids."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    train_ids: np.ndarray
    test_images: torch.Tensor | None
    test_labels: torch.Tensor | None
    num_classes: int
    input_shape: tuple[int, int, int]

    @classmethod
    def build(cls, dataset: Dataset, config: RunConfig, device: torch.device) -> "TrialData":
        """Apply the run's subset and label corruption, then move everything to ``device``."""
        labels = dataset.train.labels.copy()
        for example_id, new_label in config.corrupt_labels:
            labels[example_id] = new_label
        ids = np.arange(len(labels)) if config.subset is None else np.asarray(config.subset)
        ids = np.sort(ids).astype(np.int64)
        test = dataset.test if config.log_test else None
        return cls(
            train_images=torch.as_tensor(dataset.train.images[ids]).to(device),
            train_labels=torch.as_tensor(labels[ids]).to(device),
            train_ids=ids,
            test_images=None if test is None else torch.tensor(test.images, device=device),
            test_labels=None if test is None else torch.tensor(test.labels, device=device),
            num_classes=dataset.num_classes,
            input_shape=dataset.input_shape,
        )


class LogSink(Protocol):
    """Where a trial's per-example rows go: store first, then the aggregators."""

    def __call__(
        self, trial: int, step: int, epoch: float, split: str,
        example_ids: np.ndarray, labels: np.ndarray, metrics: dict[str, np.ndarray],
    ) -> None: ...


class PartSink(LogSink, Protocol):
    """A sink that also writes single log parts: what a rank of a trial group needs.

    ``parts`` cuts a split's rows into (part, start, stop) with keys that do not depend
    on how many ranks share the evaluation, so a part written again replaces itself.
    """

    def parts(self, split: str, n_rows: int) -> list[tuple[int, int, int]]: ...

    def write_part(
        self, trial: int, step: int, epoch: float, split: str, part: int,
        example_ids: np.ndarray, labels: np.ndarray, metrics: dict[str, np.ndarray],
    ) -> None: ...


class CheckpointStore(Protocol):
    def save(self, trial: int, payload: bytes) -> None: ...
    def load(self, trial: int) -> bytes | None: ...


Progress = Callable[[dict], None]


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → float, then global contrast normalization (the studies' preprocessing)."""
    return global_contrast_normalize(to_float(images))


def make_optimizer(config: RunConfig, model: torch.nn.Module, total_steps: int):
    """The studies' recipes: momentum SGD 0.9 with step decay ÷10 at the milestones, or
    AdamW (betas 0.9/0.99) with a cosine schedule over the run."""
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.learning_rate, momentum=0.9, weight_decay=config.decay
        )
        milestones = [round(m * total_steps) for m in config.milestones]
        schedule = lambda step: 0.1 ** sum(step >= m for m in milestones)  # noqa: E731
    else:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, betas=(0.9, 0.99), weight_decay=config.decay
        )
        schedule = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))  # noqa: E731
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def init_model(config: RunConfig, data: TrialData, trial: int, device: torch.device) -> torch.nn.Module:
    """Trial ``trial``'s initial weights, drawn from its own seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(config.seed, trial, _INIT))
        model = build_model(config.arch, data.input_shape, data.num_classes)
    return model.to(device)


def epoch_order(config: RunConfig, trial: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed_for(config.seed, trial, _ORDER, epoch))
    return torch.randperm(n, generator=generator).to(device)


def training_batch(
    config: RunConfig, data: TrialData, trial: int, step: int, order: torch.Tensor, steps_per_epoch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and labels trial ``trial`` trains on at update ``step`` (0-based)."""
    position = step % steps_per_epoch
    index = order[position * config.batch_size : (position + 1) * config.batch_size]
    images = to_float(data.train_images[index])
    if config.augment:
        device = images.device
        generator = torch.Generator(device=device).manual_seed(seed_for(config.seed, trial, _AUGMENT, step))
        images = augment(images, generator, translate_pixels=config.translate_pixels, flip=config.flip)
    return global_contrast_normalize(images), data.train_labels[index]


def log_examples(
    model: torch.nn.Module, data: TrialData, trial: int, step: int, epoch: float,
    sink: LogSink, eval_batch: int,
) -> None:
    """Evaluate every logged example without augmentation and hand the rows to ``sink``."""
    metrics = evaluate_examples(model, data.train_images, data.train_labels, eval_batch, preprocess)
    sink(trial, step, epoch, "train", data.train_ids, data.train_labels.cpu().numpy(), metrics)
    if data.test_images is not None:
        metrics = evaluate_examples(model, data.test_images, data.test_labels, eval_batch, preprocess)
        sink(
            trial, step, epoch, "test", np.arange(len(data.test_labels)),
            data.test_labels.cpu().numpy(), metrics,
        )


def log_share(
    model: torch.nn.Module, data: TrialData, trial: int, step: int, epoch: float,
    sink: PartSink, eval_batch: int, group: TrialGroup,
) -> None:
    """This rank's share of a logging step: evaluate its parts of each split and write them.

    Part k goes to group rank k mod G, so the ranks evaluate disjoint rows and each
    writes its own rows to the store; no rank ever holds another's.
    """
    splits = [("train", data.train_images, data.train_labels, data.train_ids)]
    if data.test_images is not None:
        splits.append(("test", data.test_images, data.test_labels, np.arange(len(data.test_labels))))
    for split, images, labels, example_ids in splits:
        for part, start, stop in sink.parts(split, len(labels)):
            if not group.owns_part(part):
                continue
            rows = slice(start, stop)
            metrics = evaluate_examples(model, images[rows], labels[rows], eval_batch, preprocess)
            sink.write_part(trial, step, epoch, split, part, example_ids[rows], labels[rows].cpu().numpy(), metrics)


def save_state(model, optimizer, scheduler, step: int) -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
         "scheduler": scheduler.state_dict()},
        buffer,
    )
    return buffer.getvalue()


def restore_state(payload: bytes, model, optimizer, scheduler, device: torch.device) -> int:
    """Load a checkpoint written by :func:`save_state`; return its step.

    ``weights_only=True``: a checkpoint is tensors and plain values, never arbitrary
    pickled objects, so a file planted in the store cannot run code.
    """
    state = torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


def train_trial(
    config: RunConfig,
    data: TrialData,
    trial: int,
    device: torch.device,
    sink: LogSink,
    checkpoints: CheckpointStore | None = None,
    progress: Progress | None = None,
    group: TrialGroup = SOLO,
) -> int:
    """Train trial ``trial`` to the end of its schedule, logging at every logging step.

    Resumes from the trial's checkpoint when one exists. Returns the last step trained.

    With a ``group`` of G > 1 ranks (raystats.train.ddp) every rank of the group calls
    this for the same trial: the model is wrapped in DistributedDataParallel (batch norms
    synchronized on a GPU, :meth:`TrialGroup.prepare`), each rank
    trains on its share of the global batch and evaluates its share of the log parts
    (``sink`` must then be a :class:`PartSink`); only group rank 0 writes checkpoints,
    after every rank's rows of the step are in the store, and every rank resumes from it.
    """
    configure_device(device)
    n_train = len(data.train_labels)
    schedule = Schedule.from_config(config, n_train)
    model = group.prepare(init_model(config, data, trial, device), device)
    # channels_last lets cuDNN pick its NHWC tensor-core kernels for bf16 convolutions.
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer, scheduler = make_optimizer(config, model, schedule.total_steps)
    step = 0
    saved = checkpoints.load(trial) if checkpoints is not None else None
    if saved is not None:
        step = restore_state(saved, model, optimizer, scheduler, device)
    group.check_same_step(step, trial, device)
    trained = group.wrap(model, device)
    # torch.compile fuses the elementwise tail of each layer (BN, activation) into the
    # convolutions' epilogues; one compilation serves every trial of the process.
    forward = torch.compile(trained) if config.compile else trained
    eval_batch = config.eval_batch_size or default_eval_batch(device)
    log_steps = set(schedule.log_steps)
    model.train()
    order, order_epoch = None, -1
    started, images_seen, losses = time.perf_counter(), 0, []
    while step < schedule.total_steps:
        epoch_index = step // schedule.steps_per_epoch
        if epoch_index != order_epoch:
            order, order_epoch = epoch_order(config, trial, epoch_index, n_train, device), epoch_index
        inputs, labels = training_batch(config, data, trial, step, order, schedule.steps_per_epoch)
        # Every rank draws the whole global batch (same order, same augmentation seeds)
        # and keeps its share: the group then trains on exactly the single trial's batch.
        batch_size = len(labels)
        inputs, labels = share(inputs, group.rank, group.size), share(labels, group.rank, group.size)
        if inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=memory_format)
        with autocast(device):
            loss = group.loss(forward(inputs), labels, batch_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        images_seen += batch_size
        losses.append(loss.detach())
        if step in log_steps:
            if group.size == 1:
                log_examples(model, data, trial, step, schedule.epoch(step), sink, eval_batch)
            else:
                log_share(model, data, trial, step, schedule.epoch(step), sink, eval_batch, group)
                # The checkpoint says "step T is done": only once every rank's parts are stored.
                group.wait_for_all(device)
            if checkpoints is not None and group.rank == 0:
                checkpoints.save(trial, save_state(model, optimizer, scheduler, step))
            train_loss = float(group.mean(torch.stack(losses).mean()))
            if progress is not None and group.rank == 0:
                elapsed = time.perf_counter() - started
                progress({
                    "trial": trial, "step": step, "total_steps": schedule.total_steps,
                    "epoch": schedule.epoch(step), "train_loss": train_loss,
                    "images_per_s": images_seen / max(elapsed, 1e-9),
                })
            started, images_seen, losses = time.perf_counter(), 0, []
    return step
