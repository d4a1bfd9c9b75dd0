"""Vectorized ensemble vs one trial after another: training images/s, measured in one run.

    python benchmarks/ensemble.py                  # CPU: cnn on Fashion-MNIST-shaped data
    python benchmarks/ensemble.py --device cuda    # GPU: cnn on CIFAR-shaped data

Both paths run the library's own training functions (train_trial, train_ensemble) on
the same seeds and the same number of updates, logging once at the end with a sink
that drops rows. Prints images/s summed over trials, per trial, and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine, null_sink, synchronize, synthetic_dataset

from raystats.config import RunConfig
from raystats.train.ensemble import train_ensemble
from raystats.train.trial import Schedule, TrialData, train_trial


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="cnn")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=None, help="per trial; default 512 GPU, 64 CPU")
    p.add_argument("--steps", type=int, default=None, help="updates per trial; default 200 GPU, 20 CPU")
    p.add_argument("--shape", default=None, help="C,H,W; default 3,32,32 GPU, 1,28,28 CPU")
    args = p.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch_size or (512 if gpu else 64)
    steps = args.steps or (200 if gpu else 20)
    shape = tuple(int(v) for v in (args.shape or ("3,32,32" if gpu else "1,28,28")).split(","))
    dataset = synthetic_dataset(batch * steps, 256, shape)
    config = RunConfig(run_id="bench", dataset="synthetic", arch=args.arch, trials=args.trials, epochs=1.0,
                       log_every=1.0, batch_size=batch, log_test=False, augment=True, flip=True,
                       translate_pixels=2)
    data = TrialData.build(dataset, config, device)
    trials = list(range(args.trials))
    schedule = Schedule.from_config(config, len(data.train_labels))

    def loop():
        for trial in trials:
            train_trial(config, data, trial, device, null_sink)
        synchronize(device)

    def ensemble():
        train_ensemble(config, data, trials, device, null_sink)
        synchronize(device)

    # warm-up: CUDA context, cuDNN autotuning, allocator
    warm = config.replace(trials=2, epochs=0.1, log_every=0.1)
    train_trial(warm, data, 0, device, null_sink)
    train_ensemble(warm, data, [0, 1], device, null_sink)
    synchronize(device)

    t_loop, t_ensemble = timed(loop), timed(ensemble)
    images = args.trials * schedule.total_steps * batch
    print(f"machine: {machine()}")
    print(f"{args.arch} on {shape}, {args.trials} trials x {schedule.total_steps} updates x batch {batch}, "
          "one logging pass over the training set at the end")
    print(f"{'path':<10}{'seconds':>10}{'images/s (sum)':>18}{'images/s per trial':>22}")
    for name, seconds in (("loop", t_loop), ("vmap", t_ensemble)):
        print(f"{name:<10}{seconds:>10.2f}{images / seconds:>18,.0f}{images / seconds / args.trials:>22,.0f}")
    print(f"ratio vmap / loop (per-trial throughput): {t_loop / t_ensemble:.2f}x")


if __name__ == "__main__":
    main()
