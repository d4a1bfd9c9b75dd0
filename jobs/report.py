"""Write the HTML report of one easiness run: figures plus index.html.

    python jobs/report.py --storage ./raystats-runs --run-id digits-cnn \
        [--compare-with digits-mlp3] [--out DIR] [--frac 0.1]

Reads the run store only; no cluster is needed. Prints the path of index.html, which
lies in <storage>/<run-id>/report/ unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystats.cli import add_report_options  # noqa: E402
from raystats.errors import RaystatsError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", default="./raystats-runs", help="run store: a folder or s3:// / gs:// URI")
    p.add_argument("--run-id", required=True, help="the run to report on")
    add_report_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import raystats.client
        from raystats.report import write_report

        path = write_report(raystats.client.open(args.storage), args.run_id, out_dir=args.out,
                            compare_with=args.compare_with, frac=args.frac, data_root=args.data_root)
    except RaystatsError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
