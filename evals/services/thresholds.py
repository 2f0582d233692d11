from django.db import transaction

from evals.models import DriftVerdict, Threshold
from evals.scoring.drift import Band, Comparison, ThresholdSpec, classify
from evals.scoring.judges.preference import DEFAULT_PREFERENCE_LIMIT
from evals.scoring.scorers import METRICS, SCORERS
from evals.selectors import evaluation_profile
from registry.models import ModelFamily

DEFAULT_METRIC = {ModelFamily.Kind.CAUSAL_LM: "bits_per_byte", ModelFamily.Kind.EMBEDDING: "similarity"}


def thresholds_create_defaults(*, family: ModelFamily) -> list[Threshold]:
    """A new family starts gated on its main metric: 2 % relative degradation blocks; and on each
    one-sample metric its scorers yield (a judge's preference over the baseline): a mean below −0.2
    blocks."""
    threshold = Threshold(
        family=family,
        metric=DEFAULT_METRIC[family.kind],
        rule=Threshold.Rule.RELATIVE,
        limit=0.02,
        severity=Threshold.Severity.BLOCK,
        owner="driftboard",
        rationale="Default gate for a new family: a degradation of more than 2 % on the main metric, "
        "beyond statistical doubt, blocks promotion. Revisit once the family has a history.",
    )
    defaults = [threshold, *(_one_sample_default(family, metric) for metric in _one_sample_metrics(family))]
    return [threshold_save(threshold=t, user=None, reason="Default for a new family") for t in defaults]


def _one_sample_metrics(family: ModelFamily) -> list[str]:
    named = [SCORERS[name] for name in evaluation_profile(family).scorers or () if name in SCORERS]
    return [spec.name for scorer in named for spec in scorer.metrics if spec.one_sample]


def _one_sample_default(family: ModelFamily, metric: str) -> Threshold:
    """A one-sample metric is already a difference from the baseline (0 is no change): a relative limit
    L is crossed when its mean falls below −L."""
    return Threshold(
        family=family,
        metric=metric,
        rule=Threshold.Rule.RELATIVE,
        limit=DEFAULT_PREFERENCE_LIMIT,
        severity=Threshold.Severity.BLOCK,
        owner="driftboard",
        rationale=f"Default gate on the judge: when it prefers the baseline's answers by more than "
        f"{DEFAULT_PREFERENCE_LIMIT:g} on average (+1 candidate better, −1 baseline better, both orders asked), "
        "beyond statistical doubt, promotion is blocked. A smaller limit needs more prompts to be decided.",
    )


@transaction.atomic
def threshold_save(*, threshold: Threshold, user, reason: str) -> Threshold:
    """Validate and save, recording who changed the record and why in its history."""
    threshold.full_clean()
    threshold._change_reason = reason
    if user is not None and user.is_authenticated:
        threshold._history_user = user
    threshold.save()
    return threshold


def threshold_version(threshold: Threshold) -> int | None:
    latest = threshold.history.order_by("-history_id").first()
    return latest.history_id if latest else None


def threshold_spec(threshold: Threshold) -> ThresholdSpec:
    return ThresholdSpec(
        id=threshold.pk,
        version=threshold_version(threshold) if threshold.pk else None,
        metric=threshold.metric,
        rule=threshold.rule,
        limit=threshold.limit,
        severity=threshold.severity,
    )


def threshold_backtest(*, threshold: Threshold) -> dict:
    """Re-classify every stored verdict on this threshold's metric as if only it had applied."""
    verdicts = DriftVerdict.objects.filter(metric=threshold.metric).exclude(comparison={})
    if threshold.family_id:
        verdicts = verdicts.filter(artifact__family_id=threshold.family_id)
    if threshold.dataset_name:
        verdicts = verdicts.filter(dataset__name=threshold.dataset_name)
    spec = threshold_spec(threshold)
    rows, counts = [], {"green": 0, "amber": 0, "red": 0}
    for verdict in verdicts.select_related("artifact__family", "dataset").order_by("artifact__created_at"):
        outcome = classify(comparison_from_verdict(verdict), [spec]).outcome
        counts[outcome] += 1
        rows.append(
            {
                "artifact": verdict.artifact_id,
                "family": verdict.artifact.family.slug,
                "version": verdict.artifact.version,
                "commit": verdict.artifact.commit_sha,
                "dataset": verdict.dataset.name,
                "delta": verdict.delta,
                "ci_low": verdict.ci_low,
                "ci_high": verdict.ci_high,
                "recorded": verdict.outcome,
                "would_be": outcome,
            }
        )
    return {"counts": counts, "artifacts": rows}


def comparison_from_verdict(verdict: DriftVerdict) -> Comparison:
    """Rebuild the comparison archived with a verdict, so a draft threshold can be applied to it."""
    stored = dict(verdict.comparison)
    stored["spec"] = METRICS[verdict.metric]
    stored["band"] = Band(**stored["band"]) if stored.get("band") else None
    return Comparison(**stored)


def implicit_band(metric: str, k: float) -> ThresholdSpec:
    """Leaving the k·σ band of past baselines is always worth a reviewer's look (amber)."""
    return ThresholdSpec(id="implicit-band", version=0, metric=metric, rule="band", limit=k, severity="warn")
