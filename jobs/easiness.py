"""Train M trials of an architecture on Ray and log every example's easiness.

    python jobs/easiness.py --dataset digits --arch cnn --trials 10 --epochs 5 \
        --log-every 1 --storage ./raystats-runs --run-id digits-cnn

With no flags it trains 10 trials of `cnn` on scikit-learn's digits on a local Ray
cluster it starts itself. Under `ray job submit --working-dir . -- python
jobs/easiness.py ...` it joins the cluster the job was submitted to.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.argtypes import non_negative_float, non_negative_int, positive_float, positive_int  # noqa: E402
from raystats.config import ENSEMBLE_MODES, OPTIMIZERS, RunConfig  # noqa: E402
from raystats.data import DATASETS  # noqa: E402
from raystats.errors import RaystatsError  # noqa: E402
from raystats.models import ARCHITECTURES  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--data-root", default=None, help="folder of the data set's files")
    p.add_argument("--arch", default="cnn", choices=ARCHITECTURES)
    p.add_argument("--trials", type=positive_int, default=10, help="M, independent trials")
    p.add_argument("--epochs", type=positive_float, default=10.0)
    p.add_argument("--log-every", type=positive_float, default=1.0,
                   help="epochs between logging steps; fractions log within an epoch")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--eval-batch-size", type=positive_int, default=None,
                   help="default: 128 on CPU, 2048 on GPU")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="sgd: momentum 0.9, lr 0.1 ÷10 at milestones; adamw: lr 1e-3, cosine")
    p.add_argument("--lr", type=positive_float, default=None)
    p.add_argument("--weight-decay", type=non_negative_float, default=None)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                   help="translate by --translate-pixels and flip horizontally")
    p.add_argument("--translate-pixels", type=non_negative_int, default=4)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--log-test", action=argparse.BooleanOptionalAction, default=True,
                   help="also log every test example at each logging step")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--workers", type=positive_int, default=2, help="Ray Train workers")
    p.add_argument("--workers-per-trial", type=positive_int, default=1,
                   help="G: train each trial data-parallel (DDP) over G workers; --workers must be "
                        "a multiple of G, and W/G trials train at once (docs/cluster.md)")
    p.add_argument("--rows-per-part", type=positive_int, default=None,
                   help="rows per Parquet log part (default 1,048,576); smaller parts let the "
                        "workers of a trial group share the evaluation of small data sets")
    p.add_argument("--shard-bytes", type=positive_int, default=None,
                   help="memory bound of one aggregator shard; K is the fewest shards that fit "
                        "(default 2 GiB; docs/architecture.md)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker")
    p.add_argument("--ensemble", choices=ENSEMBLE_MODES, default="auto",
                   help="how a worker trains its trials: auto picks the faster path")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step (GPU)")
    p.add_argument("--storage", default="./raystats-runs", help="run store: a folder or s3:// / gs:// URI")
    p.add_argument("--run-id", default=None, help="default: <dataset>-<arch>")
    p.add_argument("--address", default=None, help="Ray cluster address; default: join or start one")
    p.add_argument("--resume", action="store_true", help="continue the stored run with its stored config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        run_id=args.run_id or f"{args.dataset}-{args.arch}", dataset=args.dataset,
        data_root=args.data_root, arch=args.arch, trials=args.trials, epochs=args.epochs,
        log_every=args.log_every, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, augment=args.augment,
        translate_pixels=args.translate_pixels, flip=args.flip, log_test=args.log_test,
        seed=args.seed, workers=args.workers, workers_per_trial=args.workers_per_trial,
        use_gpu=args.gpu, ensemble=args.ensemble, compile=args.compile, rows_per_part=args.rows_per_part,
        shard_bytes=args.shard_bytes,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = config_from_args(args)
        from raystats.service.easiness import run_easiness

        summary = run_easiness(config, args.storage, address=args.address, resume=args.resume,
                               show_progress=not args.quiet)
    except RaystatsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"run {summary.run_id} {summary.status} in {summary.seconds:.1f} s: "
        f"{summary.examples_logged:,} example rows at steps {list(summary.log_steps)}\n"
        f"store: {summary.storage}/{summary.run_id}\n"
        f"query: python -c \"import raystats; c = raystats.open({summary.storage!r}); "
        f"print(c.easiness({summary.run_id!r}))\"\n"
        f"   or: raystats --storage {summary.storage} easy {summary.run_id}\n"
        f"report: python jobs/report.py --storage {summary.storage} --run-id {summary.run_id}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
