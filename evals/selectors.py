"""Reads shared by the pages, the API and the charts."""

from django.db.models import OuterRef, QuerySet, Subquery

from evals.models import EvalRun, GoldenDataset, Threshold
from registry.models import Artifact, ModelFamily


def dataset_latest(name: str) -> GoldenDataset | None:
    return GoldenDataset.objects.filter(name=name).order_by("-version").first()


def dataset_list() -> QuerySet[GoldenDataset]:
    return GoldenDataset.objects.all()


def artifact_queue_position(artifact: Artifact) -> int | None:
    """1 for the next run a worker will take; None when nothing of the artifact waits."""
    first_waiting = artifact.runs.filter(status__in=EvalRun.WAITING).order_by("created_at", "id").first()
    if first_waiting is None:
        return None
    ahead = EvalRun.objects.filter(status__in=EvalRun.WAITING, queue=first_waiting.queue, id__lt=first_waiting.id)
    return ahead.count() + 1


def thresholds_in_force(*, family: ModelFamily, metric: str, dataset_name: str) -> list[Threshold]:
    candidates = Threshold.objects.filter(enabled=True, metric=metric).filter(
        family__in=[family.pk]
    ) | Threshold.objects.filter(enabled=True, metric=metric, family__isnull=True)
    return [t for t in candidates.order_by("id") if t.dataset_name in ("", dataset_name)]


def run_list() -> QuerySet[EvalRun]:
    return EvalRun.objects.select_related("artifact__family", "dataset")


def threshold_list() -> QuerySet[Threshold]:
    """Thresholds with the id of their latest history record (their version) in one query."""
    latest = Threshold.history.model.objects.filter(id=OuterRef("pk")).order_by("-history_id").values("history_id")[:1]
    return Threshold.objects.select_related("family").annotate(latest_version=Subquery(latest))
