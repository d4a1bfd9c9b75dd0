"""Per-example logging overhead as a fraction of a training epoch, measured in one run.

    python benchmarks/logging_overhead.py                       # cnn on Fashion-MNIST (CPU)
    python benchmarks/logging_overhead.py --dataset synthetic --device cuda

One logging step evaluates every training example without augmentation (the studies'
definition). Target on CPU: at most 0.5 of a training epoch for cnn on Fashion-MNIST.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine, null_sink, synchronize, synthetic_dataset

from raystats.config import RunConfig
from raystats.data import load_dataset
from raystats.schema import make_log_table
from raystats.train.evaluate import default_eval_batch, evaluate_examples
from raystats.train.trial import TrialData, init_model, preprocess, train_trial


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--arch", default="cnn")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument("--epochs", type=float, default=1.0, help="training measured over this many epochs")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # one Ray Train worker = one core (PERF_NOTES)
    dataset = synthetic_dataset(50_000, 1000) if args.dataset == "synthetic" else load_dataset(args.dataset)
    # log_every > epochs: the only logging pass is at the last update, timed separately below
    config = RunConfig(run_id="bench", dataset=dataset.name, arch=args.arch, trials=1, epochs=args.epochs,
                       log_every=args.epochs, batch_size=args.batch_size, log_test=False)
    data = TrialData.build(dataset, config, device)
    eval_batch = args.eval_batch_size or default_eval_batch(device)
    model = init_model(config, data, 0, device)

    def evaluate():
        metrics = evaluate_examples(model, data.train_images, data.train_labels, eval_batch, preprocess)
        synchronize(device)
        return metrics

    evaluate()  # warm-up
    started = time.perf_counter()
    metrics = evaluate()
    t_eval = time.perf_counter() - started
    started = time.perf_counter()
    n = len(data.train_ids)
    make_log_table(example_id=data.train_ids, trial=0, step=1, epoch=1.0, split="train",
                   label=data.train_labels.cpu().numpy(), pred=metrics["pred"], loss=metrics["loss"],
                   margin=metrics["margin"], p_true=metrics["p_true"], el2n=metrics["el2n"])
    t_rows = time.perf_counter() - started
    started = time.perf_counter()
    train_trial(config, data, 0, device, null_sink)
    synchronize(device)
    t_train = (time.perf_counter() - started - t_eval) / args.epochs
    print(f"machine: {machine()}, {torch.get_num_threads()} thread(s)")
    print(f"{args.arch} on {dataset.name}: {n:,} training examples, train batch {args.batch_size}, eval batch {eval_batch}")
    print(f"training epoch           {t_train:8.2f} s  ({n / t_train:,.0f} images/s)")
    print(f"logging pass (eval)      {t_eval:8.2f} s  ({n / t_eval:,.0f} images/s)")
    print(f"building the Arrow rows  {t_rows * 1e3:8.1f} ms")
    print(f"logging overhead: {(t_eval + t_rows) / t_train:.2f} of a training epoch per logging step (target <= 0.5)")


if __name__ == "__main__":
    main()
