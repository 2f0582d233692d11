"""Reads shared by the pages, the API and the charts."""

from django.db.models import Prefetch, QuerySet

from registry.models import Artifact, ModelFamily, TelemetryTag

ARTIFACT_FILTERS = ("stage", "status", "drift_flag", "branch")


def artifact_list(*, filters: dict[str, str] | None = None) -> QuerySet[Artifact]:
    filters = filters or {}
    queryset = Artifact.objects.select_related("family", "pull_request", "parent")
    if filters.get("family"):
        queryset = queryset.filter(family__slug=filters["family"])
    if filters.get("commit"):
        queryset = queryset.filter(commit_sha__startswith=filters["commit"].strip().lower())
    for field in ARTIFACT_FILTERS:
        if filters.get(field) is not None and filters.get(field) != "":
            queryset = queryset.filter(**{field: filters[field]})
    return queryset


def artifact_detail_queryset() -> QuerySet[Artifact]:
    from evals.models import DriftVerdict, MetricSnapshot

    return Artifact.objects.select_related("family", "pull_request", "parent").prefetch_related(
        Prefetch("tags", queryset=TelemetryTag.objects.order_by("key")),
        Prefetch(
            "snapshots",
            queryset=MetricSnapshot.objects.select_related("dataset").defer("positions", "numerators", "denominators"),
        ),
        Prefetch("verdicts", queryset=DriftVerdict.objects.select_related("dataset", "threshold")),
    )


def family_list() -> QuerySet[ModelFamily]:
    return ModelFamily.objects.all()


def production_artifact(family: ModelFamily) -> Artifact | None:
    return (
        family.artifacts.filter(stage=Artifact.Stage.PRODUCTION, branch=family.base_branch).order_by("-version").first()
    )
