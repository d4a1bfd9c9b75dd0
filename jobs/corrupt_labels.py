"""Label-corruption sweep on Ray Tune: give examples chosen by easiness a wrong label.

    python jobs/corrupt_labels.py --storage ./raystats-runs --run-id digits-cnn \
        --strategies beta_easy,beta_hard,beta_random --ratios 0.1,0.3,0.5 --seeds 3 --epochs 1

The same sweep as jobs/ablation.py, but the round(rate · N) selected examples stay in
the training set with a random wrong label: Beta(3,1) over easiness ranks relabels
mostly easy examples, Beta(1,3) mostly hard ones, Beta(1,1) uniformly. The figure
shows test accuracy against the random-label rate. Results go to
<storage>/<run-id>/sweeps/<sweep-name>/ (default name: corrupt_labels); running the
same command again resumes.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.ablation import sweep_main  # noqa: E402  (shared flags of the two sweeps)


def main(argv: list[str] | None = None) -> int:
    return sweep_main("corrupt_labels", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
