"""What "Needs attention" lists besides alerts, and what reviewers have acknowledged of it: each item's
key says what it is about, so that an acknowledgement covers that cause and no later one."""

import datetime

from evals.models import Acknowledgement, EvalRun, Threshold

ACKNOWLEDGED_SHOWN = 50


def run_key(run: EvalRun) -> str:
    return str(run.pk)


def judge_key(family_id: int, configuration_key: str) -> str:
    return f"{family_id}:{configuration_key}"


def threshold_key(threshold: Threshold, review_by: datetime.date | None = None) -> str:
    """A threshold overdue since a date: a later review date, overdue again, is a new item."""
    return f"{threshold.pk}:{(review_by or threshold.review_by).isoformat()}"


def acknowledged_keys(kind: str) -> set[str]:
    return set(Acknowledgement.objects.filter(kind=kind).values_list("key", flat=True))


def acknowledgements_recent(limit: int = ACKNOWLEDGED_SHOWN) -> list[Acknowledgement]:
    return list(Acknowledgement.objects.select_related("acknowledged_by")[:limit])
