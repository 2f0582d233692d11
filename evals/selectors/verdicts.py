"""Verdicts as readers see them: whether a limit judged one ("ungated" when none did), and worst first."""

from collections.abc import Iterable

import numpy as np

from evals.models import DriftVerdict

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
