"""Vectorized ensembles: several trials of one architecture trained as one program.

The trials' parameters are stacked along a new leading axis
(``torch.func.stack_module_state``) and one ``vmap``-ed ``functional_call`` runs every
trial's forward and backward pass at once. Each trial keeps its own initial weights,
data order and augmentation (the same seeds as the plain loop), and the optimizers'
updates are elementwise, so the stacked run computes what M separate runs compute, up
to the order of floating-point sums.

Why it pays: a small model leaves most of a GPU idle; M trials in one kernel launch
fill it. Why it is not always used: on a 2-core CPU the batched working set outgrows
the cache and vmap runs at ~0.45x per trial (PERF_NOTES), so the loop wins there.
"""

from __future__ import annotations

import copy
import io
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from raystats.config import RunConfig
from raystats.train.evaluate import autocast, configure_device, default_eval_batch, per_example_metrics
from raystats.train.trial import (
    CheckpointStore, LogSink, Progress, Schedule, TrialData, epoch_order, init_model,
    make_optimizer, preprocess, training_batch,
)


class StackedEnsemble(torch.nn.Module):
    """M copies of one architecture with stacked parameters and buffers.

    ``forward(x)`` takes (M, B, ...) — each trial its own batch — and returns (M, B, K).
    ``forward_shared(x)`` takes one (B, ...) batch for all trials (evaluation).
    """

    def __init__(self, models: list[torch.nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(models)
        self.names = list(params)
        self.buffer_names = list(buffers)
        self.params = torch.nn.ParameterList([torch.nn.Parameter(params[n]) for n in self.names])
        for index, name in enumerate(self.buffer_names):
            self.register_buffer(f"buffer_{index}", buffers[name])
        # Kept outside the module tree: its (meta) parameters are a template for
        # functional_call, not weights to train or save.
        object.__setattr__(self, "base", copy.deepcopy(models[0]).to("meta"))
        self.size = len(models)

    def train(self, mode: bool = True) -> "StackedEnsemble":
        self.base.train(mode)
        return super().train(mode)

    def _state(self):
        params = dict(zip(self.names, self.params))
        buffers = {n: getattr(self, f"buffer_{i}") for i, n in enumerate(self.buffer_names)}
        return params, buffers

    def _call(self, params, buffers, x):
        return functional_call(self.base, (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params, buffers = self._state()
        return vmap(self._call, in_dims=(0, 0, 0), randomness="different")(params, buffers, x)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        params, buffers = self._state()
        return vmap(self._call, in_dims=(0, 0, None), randomness="different")(params, buffers, x)

    def trial_state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """Trial ``index``'s weights as a plain model's state_dict."""
        params, buffers = self._state()
        state = {name: value[index].detach().clone() for name, value in {**params, **buffers}.items()}
        return state


@torch.inference_mode()
def evaluate_ensemble(
    ensemble: StackedEnsemble, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> list[dict[str, np.ndarray]]:
    """Every trial of ``ensemble`` on every row of ``inputs``: one metrics dict per trial."""
    was_training = ensemble.training
    ensemble.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(inputs), batch_size):
        batch = preprocess(inputs[start : start + batch_size])
        batch_labels = labels[start : start + batch_size]
        with autocast(batch.device):
            logits = ensemble.forward_shared(batch)  # (M, B, K)
        metrics = per_example_metrics(
            logits.reshape(-1, logits.shape[-1]), batch_labels.repeat(ensemble.size)
        )
        for name, values in metrics.items():
            parts.setdefault(name, []).append(values.reshape(ensemble.size, -1))
    ensemble.train(was_training)
    stacked = {name: torch.cat(values, dim=1).cpu().numpy() for name, values in parts.items()}
    return [{name: values[m] for name, values in stacked.items()} for m in range(ensemble.size)]


def _log_all(ensemble, data: TrialData, trials, step, epoch, sink: LogSink, eval_batch: int) -> None:
    train_labels = data.train_labels.cpu().numpy()
    for trial, metrics in zip(trials, evaluate_ensemble(ensemble, data.train_images, data.train_labels, eval_batch)):
        sink(trial, step, epoch, "train", data.train_ids, train_labels, metrics)
    if data.test_images is not None:
        test_labels = data.test_labels.cpu().numpy()
        test_ids = np.arange(len(test_labels))
        for trial, metrics in zip(trials, evaluate_ensemble(ensemble, data.test_images, data.test_labels, eval_batch)):
            sink(trial, step, epoch, "test", test_ids, test_labels, metrics)


def checkpoint_name(trials: list[int]) -> str:
    return "ensemble-" + "-".join(str(t) for t in trials)


def train_ensemble(
    config: RunConfig,
    data: TrialData,
    trials: list[int],
    device: torch.device,
    sink: LogSink,
    checkpoints: CheckpointStore | None = None,
    progress: Progress | None = None,
) -> int:
    """Train ``trials`` together as one stacked ensemble; log and checkpoint like the loop."""
    configure_device(device)
    n_train = len(data.train_labels)
    schedule = Schedule.from_config(config, n_train)
    ensemble = StackedEnsemble([init_model(config, data, t, device) for t in trials]).to(device)
    optimizer, scheduler = make_optimizer(config, ensemble, schedule.total_steps)
    name = checkpoint_name(trials)
    step = 0
    saved = checkpoints.load(name) if checkpoints is not None else None
    if saved is not None:
        state = torch.load(io.BytesIO(saved), map_location=device, weights_only=True)
        ensemble.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
    eval_batch = config.eval_batch_size or default_eval_batch(device)
    log_steps = set(schedule.log_steps)
    ensemble.train()
    orders, order_epoch = None, -1
    started, images_seen, losses = time.perf_counter(), 0, []
    while step < schedule.total_steps:
        epoch_index = step // schedule.steps_per_epoch
        if epoch_index != order_epoch:
            orders = [epoch_order(config, t, epoch_index, n_train, device) for t in trials]
            order_epoch = epoch_index
        batches = [training_batch(config, data, t, step, o, schedule.steps_per_epoch) for t, o in zip(trials, orders)]
        inputs = torch.stack([b[0] for b in batches])
        labels = torch.stack([b[1] for b in batches])
        # No bf16 autocast here: torch's vmap batching rule for batch-norm backward
        # refuses bf16 activations with fp32 running stats (torch 2.11, H100). TF32
        # matmuls and convolutions (configure_device) keep the ensemble fast anyway.
        logits = ensemble(inputs)
        # Sum of the trials' mean losses: each trial's gradient is its own loss's gradient.
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(len(trials), -1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        scheduler.step()
        step += 1
        images_seen += labels.numel()
        losses.append(loss.detach().mean())
        if step in log_steps:
            _log_all(ensemble, data, trials, step, schedule.epoch(step), sink, eval_batch)
            if checkpoints is not None:
                buffer = io.BytesIO()
                torch.save({"step": step, "model": ensemble.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict()}, buffer)
                checkpoints.save(name, buffer.getvalue())
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress({
                    "trial": trials, "step": step, "total_steps": schedule.total_steps,
                    "epoch": schedule.epoch(step), "train_loss": float(torch.stack(losses).mean()),
                    "images_per_s": images_seen / max(elapsed, 1e-9),
                })
            started, images_seen, losses = time.perf_counter(), 0, []
    return step
