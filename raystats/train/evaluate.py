"""Per-example evaluation: the model at update T over every logged example.

This is the studies' definition of the quantities behind easiness — a separate pass
without augmentation, not the training forward pass (PERF_NOTES: the training pass
would cost only ~1.5 %, but it sees each example at a different update and augmented).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

# PERF_NOTES: on CPU a pass at eval batch 128 costs 0.59x a training epoch, at 1024
# 1.09x (the working set leaves the cache); on a GPU large batches keep it busy.
CPU_EVAL_BATCH = 128
GPU_EVAL_BATCH = 2048


def default_eval_batch(device: torch.device) -> int:
    return GPU_EVAL_BATCH if device.type == "cuda" else CPU_EVAL_BATCH


def configure_device(device: torch.device) -> None:
    """TF32 matmuls and convolutions, and cuDNN autotuning, on a GPU.

    TF32 keeps fp32's range with a 10-bit mantissa: about 1e-3 relative error per
    product, far below the trial-to-trial spread of a per-example loss.
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def autocast(device: torch.device):
    """bf16 autocast on a GPU, nothing on CPU.

    bf16 keeps fp32's exponent range, so no loss scaling is needed; the per-example
    metrics are computed from the logits cast back to fp32. Measured effect on the
    logged loss (benchmarks/ensemble.py on an H100): see README's table.
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def per_example_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss, prediction, margin, p_true and EL2N of each row of ``logits``.

    margin = logit of the label minus the largest other logit (Pleiss et al., AUM);
    el2n = ||softmax(logits) - onehot(label)||_2 (Paul et al.).
    """
    logits = logits.float()
    log_probs = F.log_softmax(logits, dim=1)
    true_log_prob = log_probs.gather(1, labels[:, None]).squeeze(1)
    probs = log_probs.exp()
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    one_hot = F.one_hot(labels, logits.shape[1]).to(probs.dtype)
    return {
        "loss": -true_log_prob,
        "pred": logits.argmax(dim=1),
        "margin": true_logit - others.max(dim=1).values,
        "p_true": true_log_prob.exp(),
        "el2n": torch.linalg.vector_norm(probs - one_hot, dim=1),
    }


@torch.inference_mode()
def evaluate_examples(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    preprocess=None,
) -> dict[str, np.ndarray]:
    """Evaluate ``model`` on every row of ``inputs``; return per-example numpy arrays.

    ``inputs`` stay on the model's device between logging steps; ``preprocess`` maps a
    raw batch to the model's input (uint8 → normalized float). Results are gathered on
    the device and copied to the host once.
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        if preprocess is not None:
            batch = preprocess(batch)
        if batch.is_cuda and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(batch.device):
            logits = model(batch)
        metrics = per_example_metrics(logits, labels[start : start + batch_size])
        for name, values in metrics.items():
            parts.setdefault(name, []).append(values)
    model.train(was_training)
    return {name: torch.cat(values).cpu().numpy() for name, values in parts.items()}
