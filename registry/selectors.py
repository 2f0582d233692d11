"""Reads shared by the pages, the API and the charts."""

from pathlib import Path

from django.db.models import F, OuterRef, Prefetch, Q, QuerySet, Subquery

from registry import object_store
from registry.models import (
    Alert,
    AlertDelivery,
    Artifact,
    ModelFamily,
    PromotionEvent,
    PullRequestLink,
    TelemetryTag,
)

ARTIFACT_FILTERS = ("stage", "status", "drift_flag", "branch")
RED = "red"


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


def alert_list(*, closed: bool) -> QuerySet[Alert]:
    """Open alerts (closed=False) or closed ones, newest first, with their artifact and family. An alert is
    closed once a reviewer acknowledged it or it was resolved (replaced by a newer one of the same cause, or
    its cause cleared)."""
    open_alerts = Q(acknowledged_at__isnull=True, resolved_at__isnull=True)
    return Alert.objects.filter(~open_alerts if closed else open_alerts).select_related(
        "artifact__family", "acknowledged_by"
    )


def alert_list_with_deliveries(*, closed: bool) -> QuerySet[Alert]:
    """`alert_list` with each alert's channel deliveries (`alert.deliveries.all`, oldest first, with their
    channel), two queries in all whatever the number of alerts."""
    deliveries = AlertDelivery.objects.select_related("channel").order_by("created_at", "id")
    return alert_list(closed=closed).prefetch_related(Prefetch("deliveries", queryset=deliveries))


def held_candidates() -> QuerySet[Artifact]:
    """Candidates waiting for a reviewer, oldest first since they have waited longest, each with the reason
    of its latest hold (`hold_reason`)."""
    holds = PromotionEvent.objects.filter(artifact=OuterRef("pk"), action=PromotionEvent.Action.HOLD)
    held = Artifact.objects.filter(status=Artifact.Status.HELD).select_related("family", "pull_request")
    reason = Subquery(holds.order_by("-created_at", "-id").values("reason")[:1])
    return held.annotate(hold_reason=reason).order_by("created_at", "id")


def production_traffic_drift() -> list[tuple[Artifact, str]]:
    """(production artifact, reason) of every family whose latest traffic window is red."""
    production = production_artifacts()
    tags = TelemetryTag.objects.filter(
        artifact__in=[artifact.pk for artifact in production.values()],
        key__in=("traffic_drift", "traffic_drift.reason"),
    ).values_list("artifact_id", "key", "value")
    by_artifact: dict[int, dict[str, str]] = {}
    for artifact_id, key, value in tags:
        by_artifact.setdefault(artifact_id, {})[key] = value
    rows = []
    for artifact in production.values():
        values = by_artifact.get(artifact.pk, {})
        if values.get("traffic_drift") == RED:
            rows.append((artifact, values.get("traffic_drift.reason", "")))
    return rows


def artifact_weights_path(artifact: Artifact) -> Path:
    """The weights on this host's disk; a worker without them fetches them from the shared storage."""
    return object_store.object_fetch(
        relative_path=artifact.storage_path, sha256=artifact.sha256, is_dir=artifact.format == Artifact.Format.HF_DIR
    )
