"""Verdicts: each metric of a scored artifact against its baseline, then the family's promotion policy."""

import dataclasses
import logging
import math

import numpy as np
from django.conf import settings
from django.db import transaction

from evals import selectors
from evals.models import DriftVerdict, EvalRun, MetricSnapshot, Threshold
from evals.registry_changes import AlertNotice, RegistryChange
from evals.run_kinds import GATING_KINDS
from evals.run_records import Sampling
from evals.scoring import drift
from evals.scoring.judges.preference import preference_comparison
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers import METRICS
from evals.selectors import thresholds_in_force
from evals.services.labels import verdict_judge_cap
from evals.services.thresholds import implicit_band, threshold_spec, threshold_version
from registry import publishing as forge_publishing
from registry import selectors as registry_selectors
from registry.models import Alert, Artifact, ModelFamily, PromotionEvent

logger = logging.getLogger(__name__)

FLAG_SEVERITY = {"green": 0, "incomparable": 1, "amber": 2, "red": 3}


def compare_snapshots(
    candidate: MetricSnapshot, baseline: MetricSnapshot, thresholds: list[Threshold]
) -> drift.Comparison:
    band = next((t for t in thresholds if t.rule == Threshold.Rule.BAND), None)
    window = band.band_window if band else settings.DRIFTBOARD_BAND_WINDOW
    positions, cand_num, cand_den, base_num, base_den = selectors.snapshots_paired(candidate, baseline)
    categories = list(
        candidate.dataset.samples.filter(position__in=positions.tolist())
        .order_by("position")
        .values_list("category", flat=True)
    )
    return drift.compare(
        METRICS[candidate.metric],
        cand_num,
        cand_den,
        base_num,
        base_den,
        history=selectors.band_history(candidate, window),
        band_k=band.limit if band else settings.DRIFTBOARD_BAND_K,
        robust=band.band_robust if band else False,
        categories=categories,
        n_boot=settings.DRIFTBOARD_BOOTSTRAP_RESAMPLES,
        seed=candidate.artifact_id,
    )


def _incomparable_reason(metric: str, differing: list[str]) -> str:
    if differing == ["tokenizer_hash"]:
        return (
            f"The tokenizer differs from the baseline's: {METRICS[metric].label if metric in METRICS else metric} counts tokens, so it is not "
            "compared (bits per byte, which counts bytes, is)."
        )
    return "Scored differently from the baseline (" + ", ".join(differing) + "): no number is given."


def verdict_for(candidate: MetricSnapshot, baseline_artifact: Artifact) -> dict:
    spec = METRICS.get(candidate.metric)
    if spec is not None and spec.one_sample:
        return one_sample_verdict(candidate, baseline_artifact)
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
    comparable, differing = drift.fingerprints_comparable(
        candidate.fingerprint, baseline.fingerprint, spec=METRICS[candidate.metric]
    )
    if not comparable:
        return {
            **fields,
            "baseline_value": baseline.value,
            "outcome": DriftVerdict.Outcome.INCOMPARABLE,
            "reasons": [_incomparable_reason(candidate.metric, differing)],
        }
    thresholds = thresholds_in_force(
        family=candidate.artifact.family, metric=candidate.metric, dataset_name=candidate.dataset.name
    )
    try:
        comparison = compare_snapshots(candidate, baseline, thresholds)
    except drift.UndefinedRelativeDelta as exc:
        return {
            **fields,
            "baseline_value": baseline.value,
            "outcome": DriftVerdict.Outcome.INCOMPARABLE,
            "reasons": [str(exc)],
        }
    if not candidate.complete:
        # Stopped early: the interval and estimate come from the anytime-valid confidence sequence.
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
        "samples_total": _samples_total(candidate),
        "stopped_early": not candidate.complete,
    }


def _samples_total(snapshot: MetricSnapshot) -> int:
    """What a verdict was decided out of: a sequential run's own count for the metric (an answer metric's
    prompted samples), else the golden set's size."""
    sampled = snapshot.run.sampling_record.metrics.get(snapshot.metric) if snapshot.run_id else None
    if sampled is not None and sampled.samples_total:
        return sampled.samples_total
    return snapshot.dataset.sample_count


def one_sample_verdict(candidate: MetricSnapshot, baseline_artifact: Artifact) -> dict:
    """A metric whose per-sample values already compare the candidate with its baseline (a judge's
    preference): no baseline snapshot is paired. The candidate's values, judge errors left out, are
    bootstrapped around 0 and the thresholds in force are limits on their mean: relative L is crossed
    below −L, absolute is a floor; red once the whole interval lies beyond a block limit. A band has
    no history to stand on (each value is against a different baseline), so none applies."""
    spec = METRICS[candidate.metric]
    fields = {"baseline": baseline_artifact, "candidate_value": candidate.value, "baseline_value": None}
    judged_against = _judged_against(candidate)
    if judged_against != baseline_artifact.pk:
        return {
            **fields,
            "outcome": DriftVerdict.Outcome.INCOMPARABLE,
            "reasons": [_other_baseline_reason(spec, judged_against, baseline_artifact)],
        }
    positions, values = _judged_values(candidate)
    errors = int(np.isnan(values).sum())
    if errors == len(values):
        reason = f"No sample of {candidate.dataset} was judged ({errors} judge errors): {spec.label} is not given."
        return {**fields, "outcome": DriftVerdict.Outcome.INCOMPARABLE, "reasons": [reason]}
    comparison, preference = preference_comparison(
        spec,
        values,
        categories=_categories_at(candidate, positions),
        n_boot=settings.DRIFTBOARD_BOOTSTRAP_RESAMPLES,
        seed=candidate.artifact_id,
    )
    thresholds = thresholds_in_force(
        family=candidate.artifact.family, metric=candidate.metric, dataset_name=candidate.dataset.name
    )
    limits = [t for t in thresholds if t.rule != Threshold.Rule.BAND]
    verdict = drift.classify(comparison, [threshold_spec(t) for t in limits])
    applied = next((t for t in limits if verdict.threshold and t.pk == verdict.threshold.id), None) or next(
        iter(limits), None
    )
    if labelled := _labelled(candidate):
        judged_text = (
            f"{preference.samples} item{'s' if preference.samples != 1 else ''} labelled by reviewers "
            f"({labelled.get('labels', preference.samples)} labels), against v{baseline_artifact.version}"
        )
    else:
        judged_text = (
            f"{preference.samples} samples judged against v{baseline_artifact.version}, both orders asked; "
            f"{errors} judge error{'s' if errors != 1 else ''} left out"
        )
    band_text = (
        [f"no band for {spec.label}: each value is against its own baseline"] if len(limits) < len(thresholds) else []
    )
    return {
        **fields,
        "candidate_value": comparison.candidate,
        "delta": comparison.delta,
        "ci_low": comparison.ci_low,
        "ci_high": comparison.ci_high,
        "p_value": comparison.p_value,
        "per_category": json_safe(comparison.per_category),
        "outcome": verdict.outcome,
        "reasons": [*verdict.reasons, judged_text, *band_text],
        "comparison": json_safe(_stored_comparison(comparison)),
        "threshold": applied,
        "threshold_history_id": threshold_version(applied) if applied else None,
        "samples_used": preference.samples,
        "samples_total": candidate.dataset.sample_count,
        "stopped_early": not candidate.complete,
    }


def _judged_values(snapshot: MetricSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """Positions and per-sample values, NaN where the denominator is 0 (a judge error)."""
    positions, numerators, denominators = snapshot.arrays()
    judged = denominators > 0
    return positions, np.where(judged, numerators, np.nan) / np.where(judged, denominators, 1.0)


def _judged_against(snapshot: MetricSnapshot) -> int | None:
    """The baseline artifact the judge run (or the reviewers' labels) compared the candidate's answers with."""
    if labelled := _labelled(snapshot):
        return labelled.get("baseline")
    compared = snapshot.run.judging_record.baseline if snapshot.run_id else None
    return compared.artifact if compared else None


def _labelled(snapshot: MetricSnapshot) -> dict:
    """What a human metric's snapshot was made of (evals/services/human_metrics.py); empty for any other."""
    return (snapshot.fingerprint or {}).get("human") or {}


def _other_baseline_reason(spec: MetricSpec, judged_against: int | None, baseline: Artifact) -> str:
    if judged_against is None:
        return f"It is not known which baseline {spec.label} was judged against: it is not compared with v{baseline.version}."
    other = Artifact.objects.filter(pk=judged_against).values_list("version", flat=True).first()
    return (
        f"{spec.label.capitalize()} was judged against v{other}, not against the baseline v{baseline.version}: "
        "it is not compared."
    )


def _categories_at(snapshot: MetricSnapshot, positions: np.ndarray) -> list[str]:
    by_position = dict(
        snapshot.dataset.samples.filter(position__in=positions.tolist()).values_list("position", "category")
    )
    return [by_position.get(int(p), "") for p in positions]


def anytime_comparison(snapshot: MetricSnapshot, comparison: drift.Comparison) -> drift.Comparison:
    """For an early-stopped snapshot: the confidence sequence's interval and estimate of the
    full-set delta in place of a bootstrap on the samples used, the baseline's full-set value, and
    the candidate values they imply."""
    sampling = snapshot.run.sampling_record if snapshot.run_id else Sampling()
    stored = sampling.metrics.get(snapshot.metric)
    if not sampling.stopped_early or stored is None:
        return comparison
    spec, baseline = comparison.spec, stored.baseline_value
    # JSON has no infinity: an end the sequence could not bound was stored as null.
    low = -math.inf if stored.ci_low is None else stored.ci_low
    high = math.inf if stored.ci_high is None else stored.ci_high
    candidate = _value_at(spec, stored.delta, baseline)
    ends = sorted(_value_at(spec, end, baseline) for end in (low, high))
    return dataclasses.replace(
        comparison,
        confidence=sampling.confidence,
        baseline=baseline,
        candidate=candidate,
        delta=stored.delta,
        ci_low=low,
        ci_high=high,
        cand_ci_low=ends[0],
        cand_ci_high=ends[1],
        band_position=comparison.band.position(candidate) if comparison.band else None,
    )


def _value_at(spec: MetricSpec, delta: float, baseline: float) -> float:
    """The candidate value whose relative delta against baseline is `delta` (negative = worse)."""
    sign = 1.0 if spec.direction == "higher" else -1.0
    return baseline + sign * delta * abs(baseline)


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


def artifact_flag(verdicts: list[DriftVerdict]) -> str:
    """The artifact's flag from its verdicts. A metric that could not be compared counts only when a
    threshold is in force for it: a tokenizer change makes an ungated perplexity incomparable, and that
    alone must not hold weights whose gated metrics are green."""
    outcomes = [
        v.outcome
        for v in verdicts
        if v.outcome != DriftVerdict.Outcome.INCOMPARABLE
        or thresholds_in_force(family=v.artifact.family, metric=v.metric, dataset_name=v.dataset.name)
    ]
    return overall_flag(outcomes)


def artifact_ready(artifact: Artifact) -> bool:
    """Every run of the artifact has finished, and none of them failed."""
    runs = list(artifact.runs.filter(kind__in=GATING_KINDS).values_list("status", flat=True))
    return bool(runs) and all(s == EvalRun.Status.SUCCEEDED for s in runs)


@dataclasses.dataclass(frozen=True)
class Comparisons:
    """An artifact's metrics compared with its baseline (none: nothing to compare with), not yet stored."""

    artifact: Artifact
    baseline: Artifact | None
    results: dict[tuple[int, str], dict]


def artifact_compare(*, artifact: Artifact) -> Comparisons:
    """Compare every metric of the artifact with its baseline's; nothing is written."""
    artifact = Artifact.objects.select_related("family").get(pk=artifact.pk)
    baseline = selectors.baseline_for(artifact)
    if baseline is None:
        return Comparisons(artifact=artifact, baseline=None, results={})
    snapshots = list(artifact.snapshots.select_related("dataset", "artifact__family"))
    results = {(s.dataset_id, s.metric): verdict_judge_cap(s, verdict_for(s, baseline)) for s in snapshots}
    return Comparisons(artifact=artifact, baseline=baseline, results=results)


def artifact_judge(*, compared: Comparisons) -> RegistryChange:
    """Store the verdicts (in the caller's transaction) and decide what the family's policy does with the
    artifact: its flag and tags, promoted, held or halted, and the alerts."""
    artifact, baseline, results = compared.artifact, compared.baseline, compared.results
    if baseline is None:
        return _without_baseline(artifact)
    stored = [_verdict_store(artifact, dataset_id, metric, fields) for (dataset_id, metric), fields in results.items()]
    flag = artifact_flag(stored)
    return _policy(artifact, flag, stored, verdict_tags(artifact, baseline, results))


def artifact_verdicts_add(*, artifact: Artifact, metrics: list[str]) -> list[DriftVerdict]:
    """Compare and store the verdicts of some of the artifact's metrics, deciding nothing anew (a human
    metric no threshold gates joins the verdict table); nothing without a baseline."""
    baseline = selectors.baseline_for(artifact)
    if baseline is None:
        return []
    snapshots = artifact.snapshots.filter(metric__in=metrics).select_related("dataset", "artifact__family")
    return [_verdict_store(artifact, s.dataset_id, s.metric, verdict_for(s, baseline)) for s in snapshots]


def _verdict_store(artifact: Artifact, dataset_id: int, metric: str, fields: dict) -> DriftVerdict:
    verdict, _ = DriftVerdict.objects.update_or_create(
        artifact=artifact, dataset_id=dataset_id, metric=metric, defaults=fields
    )
    return verdict


def verdict_tags(artifact: Artifact, baseline: Artifact | None, results: dict) -> dict[str, object]:
    """The telemetry tags that go with the artifact's flag: the baseline, the runs and the deltas."""
    tags: dict[str, object] = {
        "baseline_id": baseline.pk if baseline else "",
        "eval_runs": ",".join(str(pk) for pk in artifact.runs.values_list("pk", flat=True)),
    }
    datasets = {dataset_id for dataset_id, _ in results}
    for (dataset_id, metric), fields in results.items():
        if fields.get("delta") is not None:
            key = f"delta.{metric}" if len(datasets) == 1 else f"delta.{metric}.{dataset_id}"
            tags[key] = f"{fields['delta']:+.5f}"
    return tags


POLICY_REASONS = 3  # reasons quoted in a halt, hold or promotion and its alert; the page lists them all


def policy_summary(verdicts: list[DriftVerdict], flag: str) -> str:
    """The reasons that decided the outcome first: red verdicts, then amber, then the rest (as the
    review page lists them), so a halt never opens on a metric that was within every limit."""
    reasons = [r for v in selectors.verdicts_worst_first(verdicts) for r in v.reasons or []]
    return "; ".join(reasons[:POLICY_REASONS]) or f"Drift flag {flag}."


def hold_reason(artifact: Artifact, flag: str) -> str:
    """Why a candidate waits for a reviewer rather than being promoted: amber, the family's policy, its
    branch, and whether the very same weights were registered before."""
    family = artifact.family
    if flag != "green":
        why = f"Drift flag {flag}: a reviewer decides."
    elif family.promotion_policy != ModelFamily.PromotionPolicy.AUTO:
        why = f'Green, held for review: the promotion policy of {family.slug} is "{family.get_promotion_policy_display()}".'
    else:
        why = (
            f"Green, held for review: only the base branch {family.base_branch} is promoted automatically, "
            f"and this is {artifact.branch or 'no branch'}."
        )
    same = registry_selectors.artifact_same_weights_before(artifact)
    return why + (
        f" The same weights were registered as v{same.version} ({same.get_status_display().lower()})." if same else ""
    )


def _policy(artifact: Artifact, flag: str, verdicts: list[DriftVerdict], tags: dict[str, object]) -> RegistryChange:
    summary = policy_summary(verdicts, flag)
    scored = RegistryChange(artifact=artifact, status=Artifact.Status.SCORED, flag=flag, flag_tags=tags)
    if flag == "red":
        red_metrics = sorted({v.metric for v in verdicts if v.outcome == "red"})
        alert = AlertNotice(
            severity=Alert.Severity.CRITICAL,
            title=f"{artifact.family.slug} v{artifact.version} halted: drift flag red",
            message=summary,
            payload={
                "family": artifact.family.slug,
                "version": artifact.version,
                "commit": artifact.commit_sha,
                "flag": flag,
            },
            cause="drift:" + ",".join(red_metrics),
        )
        return dataclasses.replace(scored, decision="halt", reason=summary, alerts=(alert,))
    # A green family recovered: its open drift alerts are resolved where they were sent (PagerDuty too).
    resolve = "drift:" if flag == "green" else ""
    if (
        flag == "green"
        and artifact.family.promotion_policy == ModelFamily.PromotionPolicy.AUTO
        and artifact.branch == artifact.family.base_branch
    ):
        return dataclasses.replace(scored, resolve_alerts=resolve, decision="promote", reason=summary)
    reason = f"{hold_reason(artifact, flag)} {summary}"
    return dataclasses.replace(scored, resolve_alerts=resolve, decision="hold", reason=reason)


def _without_baseline(artifact: Artifact) -> RegistryChange:
    family = artifact.family
    scored = RegistryChange(
        artifact=artifact,
        status=Artifact.Status.SCORED,
        flag=Artifact.DriftFlag.GREEN,
        flag_tags=verdict_tags(artifact, None, {}),
    )
    if artifact.branch == family.base_branch and family.baseline_policy == ModelFamily.BaselinePolicy.FIRST_SCORED:
        return dataclasses.replace(
            scored,
            decision="promote",
            reason="First scored artifact on the base branch: it becomes the baseline.",
            promotion_action=PromotionEvent.Action.BASELINE,
        )
    return dataclasses.replace(scored, decision="hold", reason="No production baseline to compare with yet.")


def verdict_publish(artifact: Artifact) -> None:
    """Report the verdict to the pull request once the transaction commits."""
    transaction.on_commit(lambda: forge_publishing.verdict_publish_enqueue(artifact_id=artifact.pk))
