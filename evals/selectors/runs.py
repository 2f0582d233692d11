"""Runs: the API's list, where an artifact's waiting runs stand in the queue, the artifact detail with scores."""

from django.db.models import Prefetch, QuerySet

from evals.models import DriftVerdict, EvalRun, MetricSnapshot
from registry import selectors as registry_selectors
from registry.models import Artifact


def run_list() -> QuerySet[EvalRun]:
    return EvalRun.objects.select_related("artifact__family", "dataset")


def artifact_queue_position(artifact: Artifact) -> int | None:
    """1 for the next run a worker will take; None when nothing of the artifact waits."""
    first_waiting = artifact.runs.filter(status__in=EvalRun.WAITING).order_by("created_at", "id").first()
    if first_waiting is None:
        return None
    ahead = EvalRun.objects.filter(status__in=EvalRun.WAITING, queue=first_waiting.queue, id__lt=first_waiting.id)
    return ahead.count() + 1


def artifact_detail_queryset() -> QuerySet[Artifact]:
    """The registry's artifact detail with its snapshots (without the arrays) and verdicts."""
    return registry_selectors.artifact_detail_queryset().prefetch_related(
        Prefetch(
            "snapshots",
            queryset=MetricSnapshot.objects.select_related("dataset").defer("positions", "numerators", "denominators"),
        ),
        Prefetch("verdicts", queryset=DriftVerdict.objects.select_related("dataset", "threshold")),
        # The runs are listed and their usage priced (`cost`).
        Prefetch("runs", queryset=EvalRun.objects.select_related("dataset")),
    )
