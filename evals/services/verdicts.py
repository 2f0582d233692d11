"""Verdicts: each metric of a scored artifact against its baseline, then the family's promotion policy."""

import dataclasses
import logging

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from evals.models import DriftVerdict, EvalRun, MetricSnapshot, Threshold
from evals.scoring import drift
from evals.selectors import thresholds_in_force
from evals.services.thresholds import implicit_band, threshold_spec, threshold_version
from registry import services as registry_services
from registry.models import Alert, Artifact, ModelFamily, PromotionEvent
from registry.selectors import production_artifact

logger = logging.getLogger(__name__)

FLAG_SEVERITY = {"green": 0, "incomparable": 1, "amber": 2, "red": 3}


def baseline_for(artifact: Artifact) -> Artifact | None:
    baseline = production_artifact(artifact.family)
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


def aligned(candidate: MetricSnapshot, baseline: MetricSnapshot) -> tuple[np.ndarray, ...]:
    """Pair the two snapshots sample by sample (a sampled candidate covers a subset of positions)."""
    cand_pos, cand_num, cand_den = candidate.arrays()
    base_pos, base_num, base_den = baseline.arrays()
    common, cand_idx, base_idx = np.intersect1d(cand_pos, base_pos, assume_unique=True, return_indices=True)
    return common, cand_num[cand_idx], cand_den[cand_idx], base_num[base_idx], base_den[base_idx]


def compare_snapshots(
    candidate: MetricSnapshot, baseline: MetricSnapshot, thresholds: list[Threshold]
) -> drift.Comparison:
    band = next((t for t in thresholds if t.rule == Threshold.Rule.BAND), None)
    window = band.band_window if band else settings.DRIFTBOARD_BAND_WINDOW
    positions, cand_num, cand_den, base_num, base_den = aligned(candidate, baseline)
    categories = list(
        candidate.dataset.samples.filter(position__in=positions.tolist())
        .order_by("position")
        .values_list("category", flat=True)
    )
    return drift.compare(
        drift.METRICS[candidate.metric],
        cand_num,
        cand_den,
        base_num,
        base_den,
        history=band_history(candidate, window),
        band_k=band.limit if band else settings.DRIFTBOARD_BAND_K,
        robust=band.band_robust if band else False,
        categories=categories,
        n_boot=settings.DRIFTBOARD_BOOTSTRAP_RESAMPLES,
        seed=candidate.artifact_id,
    )


def verdict_for(candidate: MetricSnapshot, baseline_artifact: Artifact) -> dict:
    baseline = MetricSnapshot.objects.filter(
        artifact=baseline_artifact, dataset=candidate.dataset, metric=candidate.metric
    ).first()
    fields = {"baseline": baseline_artifact, "candidate_value": candidate.value}
    if baseline is None:
        return {
            **fields,
            "outcome": DriftVerdict.Outcome.INCOMPARABLE,
            "reasons": [f"The baseline v{baseline_artifact.version} has no {candidate.metric} on {candidate.dataset}."],
        }
    comparable, differing = drift.fingerprints_comparable(candidate.fingerprint, baseline.fingerprint)
    if not comparable:
        return {
            **fields,
            "baseline_value": baseline.value,
            "outcome": DriftVerdict.Outcome.INCOMPARABLE,
            "reasons": ["Scored differently from the baseline (" + ", ".join(differing) + "): no number is given."],
        }
    thresholds = thresholds_in_force(
        family=candidate.artifact.family, metric=candidate.metric, dataset_name=candidate.dataset.name
    )
    comparison = compare_snapshots(candidate, baseline, thresholds)
    if not candidate.complete:
        # Stopped early: the interval and estimate come from the anytime-valid confidence sequence.
        from evals.services.sampling import anytime_comparison

        comparison = anytime_comparison(candidate, comparison)
    specs = [threshold_spec(t) for t in thresholds]
    if not any(t.rule == Threshold.Rule.BAND for t in thresholds):
        specs.append(implicit_band(candidate.metric, settings.DRIFTBOARD_BAND_K))
    verdict = drift.classify(comparison, specs)
    deciding = next((t for t in thresholds if verdict.threshold and t.pk == verdict.threshold.id), None)
    applied = deciding or (thresholds[0] if thresholds else None)
    return {
        **fields,
        "baseline_value": comparison.baseline,
        "candidate_value": comparison.candidate,
        "delta": comparison.delta,
        "ci_low": comparison.ci_low,
        "ci_high": comparison.ci_high,
        "p_value": comparison.p_value,
        "band_low": comparison.band_low,
        "band_high": comparison.band_high,
        "band_position": comparison.band_position,
        "ks": comparison.ks,
        "wasserstein": comparison.wasserstein,
        "per_category": json_safe(comparison.per_category),
        "outcome": verdict.outcome,
        "reasons": verdict.reasons,
        "comparison": json_safe(_stored_comparison(comparison)),
        "threshold": applied,
        "threshold_history_id": threshold_version(applied) if applied else None,
        "samples_used": comparison.n,
        "samples_total": candidate.dataset.sample_count,
        "stopped_early": not candidate.complete,
    }


def _stored_comparison(comparison: drift.Comparison) -> dict:
    stored = dataclasses.asdict(comparison)
    stored.pop("spec")
    return stored


def json_safe(value):
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def overall_flag(outcomes: list[str]) -> str:
    return max(outcomes, key=FLAG_SEVERITY.__getitem__) if outcomes else Artifact.DriftFlag.GREEN


def artifact_ready(artifact: Artifact) -> bool:
    """Every run of the artifact has finished, and none of them failed."""
    runs = list(
        artifact.runs.filter(kind__in=[EvalRun.Kind.FULL, EvalRun.Kind.SEQUENTIAL]).values_list("status", flat=True)
    )
    return bool(runs) and all(s == EvalRun.Status.SUCCEEDED for s in runs)


def artifact_evaluate(*, artifact: Artifact) -> str:
    """Compare every metric with the baseline, store the verdicts, set the flag and apply the policy."""
    artifact = Artifact.objects.select_related("family").get(pk=artifact.pk)
    baseline = baseline_for(artifact)
    if baseline is None:
        return _without_baseline(artifact)
    snapshots = list(artifact.snapshots.select_related("dataset", "artifact__family"))
    results = {(s.dataset_id, s.metric): verdict_for(s, baseline) for s in snapshots}
    with transaction.atomic():
        for (dataset_id, metric), fields in results.items():
            DriftVerdict.objects.update_or_create(
                artifact=artifact, dataset_id=dataset_id, metric=metric, defaults=fields
            )
        flag = overall_flag([f["outcome"] for f in results.values()])
        artifact_flag_set(artifact, flag, baseline, results)
        _apply_policy(artifact, flag, results)
    return flag


def artifact_flag_set(artifact: Artifact, flag: str, baseline: Artifact | None, results: dict) -> None:
    """Record the overall flag on the artifact and as telemetry tags, with the baseline and deltas."""
    now = timezone.now()
    Artifact.objects.filter(pk=artifact.pk).update(drift_flag=flag, scored_at=now)
    artifact.drift_flag, artifact.scored_at = flag, now
    tags = {
        "drift_flag": flag,
        "scored_at": now.isoformat(),
        "baseline_id": baseline.pk if baseline else "",
        "eval_runs": ",".join(str(pk) for pk in artifact.runs.values_list("pk", flat=True)),
    }
    datasets = {dataset_id for dataset_id, _ in results}
    for (dataset_id, metric), fields in results.items():
        if fields.get("delta") is not None:
            key = f"delta.{metric}" if len(datasets) == 1 else f"delta.{metric}.{dataset_id}"
            tags[key] = f"{fields['delta']:+.5f}"
    registry_services.tags_set(artifact=artifact, tags=tags)


def _apply_policy(artifact: Artifact, flag: str, results: dict) -> None:
    reasons = [r for fields in results.values() for r in fields.get("reasons", [])]
    summary = "; ".join(reasons[:3]) or f"Drift flag {flag}."
    Artifact.objects.filter(pk=artifact.pk).update(status=Artifact.Status.SCORED)
    artifact.status = Artifact.Status.SCORED
    if flag == "red":
        registry_services.artifact_halt(artifact=artifact, reason=summary)
        registry_services.alert_raise(
            artifact=artifact,
            severity=Alert.Severity.CRITICAL,
            title=f"{artifact.family.slug} v{artifact.version} halted: drift flag red",
            message=summary,
            payload={
                "family": artifact.family.slug,
                "version": artifact.version,
                "commit": artifact.commit_sha,
                "flag": flag,
            },
        )
    elif (
        flag == "green"
        and artifact.family.promotion_policy == ModelFamily.PromotionPolicy.AUTO
        and artifact.branch == artifact.family.base_branch
    ):
        registry_services.artifact_promote(artifact=artifact, reason=summary)
    else:
        registry_services.artifact_hold(artifact=artifact, reason=summary)
    verdict_publish(artifact)


def _without_baseline(artifact: Artifact) -> str:
    family = artifact.family
    first_on_base = artifact.branch == family.base_branch
    with transaction.atomic():
        Artifact.objects.filter(pk=artifact.pk).update(status=Artifact.Status.SCORED)
        artifact.status = Artifact.Status.SCORED
        artifact_flag_set(artifact, Artifact.DriftFlag.GREEN, None, {})
        if first_on_base and family.baseline_policy == ModelFamily.BaselinePolicy.FIRST_SCORED:
            registry_services.artifact_promote(
                artifact=artifact,
                reason="First scored artifact on the base branch: it becomes the baseline.",
                action=PromotionEvent.Action.BASELINE,
            )
        else:
            registry_services.artifact_hold(artifact=artifact, reason="No production baseline to compare with yet.")
        verdict_publish(artifact)
    return Artifact.DriftFlag.GREEN


def verdict_publish(artifact: Artifact) -> None:
    """Report the verdict to the pull request once the transaction commits."""
    from registry.publishing import verdict_publish_enqueue

    transaction.on_commit(lambda: verdict_publish_enqueue(artifact_id=artifact.pk))
