"""Reads shared by the pages, the API and the charts."""

from django.db.models import F, Prefetch, QuerySet

from registry.models import Artifact, ModelFamily, PullRequestLink, TelemetryTag

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
    return Artifact.objects.select_related("family", "pull_request", "parent").prefetch_related(
        Prefetch("tags", queryset=TelemetryTag.objects.order_by("key"))
    )


def artifact_same_weights_before(artifact: Artifact) -> Artifact | None:
    """The family's newest earlier version with the very same bytes (sha256), if any."""
    earlier = Artifact.objects.filter(
        family_id=artifact.family_id, sha256=artifact.sha256, version__lt=artifact.version
    )
    return earlier.order_by("-version").first()


def family_webhook_repositories(family: ModelFamily) -> set[tuple[str, str]]:
    """(provider, repository) of the pull requests that webhooks linked to the family's artifacts.

    A link a webhook recorded has the provider's state; one made from a submitted pr_url has none.
    """
    links = PullRequestLink.objects.filter(artifacts__family=family).exclude(state="")
    return set(links.values_list("provider", "repository").distinct())


def family_list() -> QuerySet[ModelFamily]:
    return ModelFamily.objects.all()


def families_gating_on(dataset: str) -> list[ModelFamily]:
    """The families that name the golden dataset, with their owners (a JSON list: filtered here, not in SQL,
    since SQLite has no JSON `contains`)."""
    return [family for family in ModelFamily.objects.prefetch_related("owners") if dataset in family.datasets]


def production_artifact(family: ModelFamily) -> Artifact | None:
    """The family's baseline: its newest production artifact on the base branch."""
    return production_artifacts(families=[family]).get(family.pk)


def production_artifacts(*, families: list[ModelFamily] | None = None) -> dict[int, Artifact]:
    """Family id → production artifact (the rule of `production_artifact`) for many families in one query."""
    rows = Artifact.objects.filter(stage=Artifact.Stage.PRODUCTION, branch=F("family__base_branch"))
    if families is not None:
        rows = rows.filter(family__in=families)
    production: dict[int, Artifact] = {}
    for artifact in rows.select_related("family").order_by("family_id", "-version"):
        production.setdefault(artifact.family_id, artifact)
    return production
