"""How a metric, a change, a 0/1 metric's flips and a threshold's limit read on pages, charts and comments."""

import numpy as np

from driftboard.formatting import p_value, percent
from evals.models import Threshold
from evals.scoring import drift
from evals.scoring.scorers import METRICS


def metric_label(metric: str) -> str:
    """How a metric is named on pages, in charts and in PR comments (its spec's label)."""
    spec = METRICS.get(metric)
    return spec.label if spec is not None else metric.replace("_", " ")


def change_text(metric: str, change: float | None) -> str:
    """A change of `metric` as shown: '+1.23 %' for a relative one, '+0.35' in the metric's units
    for an absolute one; '—' when there is none."""
    spec = METRICS.get(metric)
    if spec is None or not spec.absolute or change is None or not np.isfinite(change):
        return percent(change)
    return spec.format_change(change, signed=True)


def flips_text(comparison: dict | None) -> str:
    """The questions a 0/1 metric flipped, from a verdict's stored comparison, with McNemar's exact
    p-value: '12 right→wrong, 4 wrong→right · McNemar p = 0.077'; empty for other metrics."""
    flips = (comparison or {}).get("flips")
    if not flips:
        return ""
    counts = f"{flips['right_to_wrong']} right→wrong, {flips['wrong_to_right']} wrong→right"
    return f"{counts} · McNemar {p_value(flips.get('p_value'))}"


def limit_text(metric: str, rule: str, limit: float | None) -> str:
    """A threshold's limit as it reads: '2 %' (relative rule, relative deltas), '0.5' (relative rule on a
    metric with absolute deltas: its own units), '3·σ' (band), '0.9' (absolute floor or ceiling)."""
    if limit is None:
        return "none"
    if rule == Threshold.Rule.BAND:
        return f"{limit:g}·σ"
    if rule == Threshold.Rule.RELATIVE:
        spec = METRICS.get(metric)
        return f"{100 * limit:g} %" if spec is None else drift.change_limit_text(spec, limit)
    return f"{limit:g}"
