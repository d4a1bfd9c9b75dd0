"""The fast CIFAR-size recipe with per-epoch logging: summed training images/s, one run.

    python benchmarks/fast_recipe.py --device cuda           # 10 trials of airbench, 50k CIFAR-shaped images

Every trial trains with the library's loop (bf16 autocast, channels_last, data held on
the GPU, GPU-side augmentation) and evaluates all 50,000 training examples after every
epoch; the sink builds the Arrow rows (the storage write itself is measured by
store_rates.py). Target on one GPU: >= 150,000 training images/s summed over trials.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine, synchronize, synthetic_dataset

from raystats.config import RunConfig
from raystats.schema import make_log_table
from raystats.train.trial import Schedule, TrialData, train_trial


def arrow_sink(trial, step, epoch, split, example_ids, labels, metrics) -> None:
    make_log_table(example_id=example_ids, trial=trial, step=step, epoch=epoch, split=split, label=labels,
                   pred=metrics["pred"], loss=metrics["loss"], margin=metrics["margin"],
                   p_true=metrics["p_true"], el2n=metrics["el2n"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="airbench")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    dataset = synthetic_dataset(args.n_train, 1000, (3, 32, 32))
    config = RunConfig(run_id="bench", dataset="synthetic", arch=args.arch, trials=args.trials,
                       epochs=args.epochs, log_every=1.0, batch_size=args.batch_size, log_test=False,
                       augment=True, translate_pixels=2, flip=True, lr=0.05, compile=args.compile)
    data = TrialData.build(dataset, config, device)
    train_trial(config.replace(epochs=0.2, log_every=0.2), data, 0, device, arrow_sink)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for trial in range(args.trials):
        train_trial(config, data, trial, device, arrow_sink)
    synchronize(device)
    seconds = time.perf_counter() - started
    schedule = Schedule.from_config(config, args.n_train)
    trained = args.trials * schedule.total_steps * args.batch_size
    logged = args.trials * len(schedule.log_steps) * args.n_train
    print(f"machine: {machine()}")
    print(f"{args.trials} trials of {args.arch}, {args.epochs} epochs of {args.n_train:,} images, batch "
          f"{args.batch_size}, logging all {args.n_train:,} examples every epoch")
    print(f"wall time {seconds:.1f} s; {trained / seconds:,.0f} training images/s summed over trials "
          f"with logging on (target >= 150,000); {logged / seconds:,.0f} example rows logged/s")


if __name__ == "__main__":
    main()
