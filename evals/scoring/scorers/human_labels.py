"""Metrics that reviewers' labels make, not a scorer: `human_preference` from pairwise labels (+1 the
candidate's answer is better, 0 a tie, −1 the baseline's) and `human_pass_rate` from pointwise ones
(1 good, 0 bad). Several reviewers of one item count as the mean of their values, so each item weighs
once. Both are one-sample metrics, like a judge's preference: they gate only where a threshold names
them."""

from collections.abc import Iterable

import numpy as np

from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers.base import register_metrics

HUMAN_PREFERENCE = MetricSpec(
    "human_preference",
    "higher",
    unit_range=(-1.0, 1.0),
    numerator="human_preference",
    denominator="labelled",
    one_sample=True,
    description="Mean preference of the reviewers for the candidate's answer over the baseline's "
    "(+1 / 0 / −1 per item, reviewers of one item averaged); 0 is no change.",
)
HUMAN_PASS_RATE = MetricSpec(
    "human_pass_rate",
    "higher",
    unit_range=(0.0, 1.0),
    numerator="human_pass",
    denominator="labelled",
    one_sample=True,
    description="Share of the candidate's answers the reviewers labelled good (reviewers of one item averaged).",
)
register_metrics(HUMAN_PREFERENCE, HUMAN_PASS_RATE)

# A label's value as a number, by metric.
LABEL_VALUES = {
    HUMAN_PREFERENCE.name: {"candidate": 1.0, "tie": 0.0, "baseline": -1.0},
    HUMAN_PASS_RATE.name: {"good": 1.0, "bad": 0.0},
}


def per_item_values(metric: str, labels: Iterable[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(positions, values) from (sample position, label value) pairs: one value per labelled item, the
    mean of its reviewers' values, positions ascending."""
    values = LABEL_VALUES[metric]
    by_item: dict[int, list[float]] = {}
    for position, value in labels:
        by_item.setdefault(int(position), []).append(values[value])
    positions = np.array(sorted(by_item), dtype=np.int64)
    return positions, np.array([np.mean(by_item[p]) for p in positions], dtype=np.float64)
