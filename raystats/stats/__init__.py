"""Per-example statistics as pure functions of dense arrays, and the streaming accumulator.

Pure numpy (pyarrow only where the accumulator reads record batches); imports nothing of
raystats but ``schema`` and ``errors``. A logging step is an (M trials × N examples)
matrix per log column, a run a (T steps × M × N) array; ``present`` marks logged cells.
"""

from raystats.stats.accumulator import LogAccumulator, from_tables
from raystats.stats.dynamics import (
    DataMap,
    ForgettingEvents,
    IterationLearned,
    area_under_margin,
    data_map,
    el2n_score,
    forgetting_events,
    iteration_learned,
)
from raystats.stats.easiness import (
    correct_counts,
    count_easiness,
    loss_easiness,
    normalize_counts,
    trial_counts,
)
from raystats.stats.matching import chance_level, matching_curve, matching_rate, self_agreement
from raystats.stats.sets import (
    check_frac,
    easy_and_hard_sets,
    easy_set,
    extremes,
    hard_set,
    merge_extremes,
    merge_set_candidates,
    set_candidates,
    set_size,
)

__all__ = [
    "DataMap", "ForgettingEvents", "IterationLearned", "LogAccumulator",
    "area_under_margin", "chance_level", "check_frac", "correct_counts", "count_easiness",
    "data_map", "easy_and_hard_sets", "easy_set", "el2n_score", "extremes",
    "forgetting_events", "from_tables", "hard_set", "iteration_learned", "loss_easiness",
    "matching_curve", "matching_rate", "merge_extremes", "merge_set_candidates", "normalize_counts",
    "self_agreement", "set_candidates", "set_size",
    "trial_counts",
]
