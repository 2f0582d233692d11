"""A family's evaluation profile, the baseline its candidates are judged against, and its past baselines."""

from django.db import models

from evals.models import DriftVerdict, EvaluationProfile, MetricSnapshot
from registry import selectors as registry_selectors
from registry.models import Artifact, ModelFamily, PromotionEvent


def evaluation_profile(family: ModelFamily) -> EvaluationProfile:
    """The family's evaluation settings: every reader goes through here. A family made without
    the pipeline has none yet and gets the defaults (unsaved)."""
    try:
        return family.evaluation
    except EvaluationProfile.DoesNotExist:
        return EvaluationProfile(family=family)


def baseline_for(artifact: Artifact) -> Artifact | None:
    baseline = registry_selectors.production_artifact(artifact.family)
    return None if baseline is None or baseline.pk == artifact.pk else baseline


def band_history(snapshot: MetricSnapshot, window: int) -> list[float]:
    """Values of the last `window` production baselines of the family on this dataset and metric."""
    promoted_ids = (
        PromotionEvent.objects.filter(
            artifact__family_id=snapshot.artifact.family_id,
            action__in=[PromotionEvent.Action.PROMOTE, PromotionEvent.Action.BASELINE],
        )
        .exclude(artifact_id=snapshot.artifact_id)
        .values("artifact_id")
    )
    history = (
        MetricSnapshot.objects.filter(
            artifact_id__in=promoted_ids,
            dataset_id=snapshot.dataset_id,
            metric=snapshot.metric,
            complete=True,
            fingerprint=snapshot.fingerprint,
        )
        .order_by("-artifact__created_at")
        .values_list("value", flat=True)[:window]
    )
    return list(reversed(history))


def compare_default(family: ModelFamily) -> tuple[int, int] | None:
    """The two versions the compare page opens on when none is picked, as (a, b) artifact ids: the newest
    version judged against a baseline, against that baseline; else the two newest versions, older as a;
    None for a family of fewer than two versions (two queries at most)."""
    judged = (
        DriftVerdict.objects.filter(artifact__family=family, baseline__isnull=False)
        .exclude(baseline_id=models.F("artifact_id"))
        .order_by("-artifact__version", "-id")
        .values_list("baseline_id", "artifact_id")
        .first()
    )
    if judged is not None:
        return judged
    newest = list(family.artifacts.order_by("-version").values_list("pk", flat=True)[:2])
    return (newest[1], newest[0]) if len(newest) == 2 else None
