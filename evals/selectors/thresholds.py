"""Thresholds: those in force on a family's metric and dataset, and the list with each one's latest change."""

from django.db.models import OuterRef, QuerySet, Subquery

from evals.models import Threshold
from registry.models import ModelFamily


def thresholds_in_force(*, family: ModelFamily, metric: str, dataset_name: str) -> list[Threshold]:
    in_force = Threshold.objects.filter(enabled=True, metric=metric, scope=Threshold.Scope.CANDIDATE)
    candidates = in_force.filter(family__in=[family.pk]) | in_force.filter(family__isnull=True)
    return [t for t in candidates.order_by("id") if t.dataset_name in ("", dataset_name)]


def threshold_list() -> QuerySet[Threshold]:
    """Thresholds with their latest change annotated from the history, one query: the version (history
    id), who changed it, when and why."""
    history = Threshold.history.model.objects.filter(id=OuterRef("pk")).order_by("-history_id")
    return (
        Threshold.objects.select_related("family")
        .annotate(
            latest_version=Subquery(history.values("history_id")[:1]),
            changed_at=Subquery(history.values("history_date")[:1]),
            changed_by=Subquery(history.values("history_user__username")[:1]),
            change_reason=Subquery(history.values("history_change_reason")[:1]),
        )
        .order_by("family__slug", "metric", "id")
    )
