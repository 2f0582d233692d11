"""Verdicts as readers see them: whether a limit judged one ("ungated" when none did), and worst first."""

from collections.abc import Iterable

import numpy as np

from evals.models import DriftVerdict
from evals.scoring.drift import relative_undefined_reason
from evals.scoring.scorers import METRICS

UNGATED = "ungated"


def verdict_gated(verdict) -> bool:
    """Whether any limit judged this verdict: a threshold in force, or the implicit k·σ band of past baselines.

    Takes a DriftVerdict or any row with its threshold_id, threshold_history_id and band_low.
    """
    return verdict.threshold_id is not None or verdict.threshold_history_id is not None or verdict.band_low is not None


def verdict_shown_outcome(verdict) -> str:
    """The outcome as pages, API readers and PR comments should read it: a green nothing judged is "ungated"."""
    if verdict.outcome == DriftVerdict.Outcome.GREEN and not verdict_gated(verdict):
        return UNGATED
    return verdict.outcome


def relative_undefined(verdict) -> bool:
    """Not compared because the baseline's value is 0 on a metric whose change is relative (no exact
    match at all, say): no number can be given, which is not the "scored differently" of versions that
    cannot be compared. Read from the reason the verdict was stored with."""
    spec = METRICS.get(verdict.metric)
    return (
        verdict.outcome == DriftVerdict.Outcome.INCOMPARABLE
        and spec is not None
        and verdict.baseline_value == 0
        and list(verdict.reasons or [])[:1] == [relative_undefined_reason(spec)]
    )


def unchanged_at_zero(verdict) -> bool:
    """Both versions score 0 on a metric whose change is relative: unchanged, though with no number."""
    return relative_undefined(verdict) and verdict.candidate_value == 0


# The verdict table, the focused metric, halt reasons and PR comments read red first, then amber.
SHOWN_OUTCOME_RANK = {"red": 0, "amber": 1, "incomparable": 2, "green": 3, UNGATED: 4}


def verdicts_worst_first(verdicts: Iterable[DriftVerdict]) -> list[DriftVerdict]:
    """Verdicts red first, then amber, incomparable, green and ungated; within one outcome the
    largest drop first (by the metric's own change), then by dataset and metric."""
    return sorted(
        verdicts,
        key=lambda v: (
            SHOWN_OUTCOME_RANK.get(verdict_shown_outcome(v), len(SHOWN_OUTCOME_RANK)),
            v.delta if v.delta is not None else np.inf,
            v.dataset_id,
            v.metric,
        ),
    )


def verdict_gated_comparable(verdict) -> bool:
    """A verdict a reviewer should open first: a limit judged it and it has a change to chart."""
    return verdict.delta is not None and verdict_shown_outcome(verdict) != UNGATED
