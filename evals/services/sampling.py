"""Sampled evaluation: reach the verdict on part of the golden set when the answer is already clear.

A family with `sampling = sequential` has each candidate scored in a random order, stratified by
category, one chunk at a time; the seed is kept in EvalRun.sampling, so the run can be replayed.
After every chunk, each gated metric gets an anytime-valid confidence sequence for its relative
delta against the baseline's stored per-sample values (evals.scoring.sequential). A metric that
applies to only some samples (an answer metric: those with a prompt) is followed on its own
samples, the baseline's, in the run's order restricted to them. A bootstrap interval
re-checked after every chunk would not be valid under such optional stopping; this one is.

The run stops once every gated interval lies wholly inside the green region or wholly beyond a
block limit, never before the family's minimum, and otherwise goes on to the full set. The
verdict of an early stop takes its interval and outcome from the confidence sequence
(`anytime_comparison`). The samples left are scored later on the off-peak queue by a completion
run that merges them into the archived snapshot; the verdict is then re-checked on the full set,
and a changed outcome is raised loudly.
"""

import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction

from evals import selectors
from evals.models import DriftVerdict, EvalRun, MetricSnapshot, Threshold
from evals.registry_changes import AlertNotice, RegistryChange
from evals.run_kinds import RUN_KINDS
from evals.run_records import Sampling
from evals.scoring import drift
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers import METRICS
from evals.scoring.sequential import SequentialMonitor, design_weights, sampling_order
from evals.selectors import thresholds_in_force
from evals.services import engine, runs, verdicts
from evals.services.thresholds import DEFAULT_METRIC
from registry.models import Alert, Artifact

logger = logging.getLogger(__name__)

_NONE = (np.empty(0, dtype=np.int32), np.empty(0), np.empty(0))

CONFIDENCE = 0.95
SEED_BITS = 32


@dataclass(frozen=True)
class Limits:
    """Limits on the relative delta: wholly below −block is red, wholly above −green is green."""

    block: float = math.inf
    green: float = math.inf

    @property
    def any(self) -> bool:
        return math.isfinite(self.block) or math.isfinite(self.green)


@dataclass
class Gate:
    """One gated metric: its confidence sequence on its own samples (`members`, indices into the run's
    samples, at the baseline's `positions`), its limits and what it has seen so far."""

    metric: str
    monitor: SequentialMonitor
    limits: Limits
    positions: np.ndarray
    members: np.ndarray
    base_num: np.ndarray
    base_den: np.ndarray
    cand_num: list[np.ndarray] = field(default_factory=list)
    decision: str = "continue"
    trace: list[list[float]] = field(default_factory=list)

    @property
    def spec(self) -> MetricSpec:
        return METRICS[self.metric]

    def observe(self, part: engine.RunResult) -> str:
        """Take the chunk's values of this metric's samples, which come in the run's order."""
        positions, num, den = part.arrays.get(self.metric, _NONE)
        if not len(positions):
            return self.decision
        seen = self.monitor.n
        if not np.array_equal(positions, self.positions[self.monitor.order[seen : seen + len(positions)]]):
            raise ValueError(f"the chunk's {self.metric} samples are not the next of its order")
        interval = self.monitor.update(num, den)
        self.cand_num.append(num)
        self.decision = self.monitor.decide(self.limits.block, self.limits.green)
        self.trace.append([interval.n, interval.low, interval.high])
        return self.decision

    def summary(self, weights: np.ndarray, codes: np.ndarray) -> dict:
        interval = self.monitor.interval
        baseline = float(self.spec.value(self.base_num.sum(), self.base_den.sum()))
        estimated = self._estimated_delta(weights[self.members], codes[self.members], baseline)
        estimate = np.clip(estimated, interval.low, interval.high)
        return verdicts.json_safe(
            {
                "decision": self.decision,
                "samples_used": self.monitor.n,
                "samples_total": len(self.members),
                "ci_low": interval.low,
                "ci_high": interval.high,
                "delta": estimate,
                "baseline_value": baseline,
                "block_limit": self.limits.block,
                "green_limit": self.limits.green,
                "trace": self.trace,
            }
        )

    def _estimated_delta(self, weights: np.ndarray, codes: np.ndarray, baseline: float) -> float:
        """Des Raj's estimator of Σ(cand − base) under size-weighted sampling without replacement:
        in each category, the mean over draws of (seen so far + rest of the size × draw / size);
        weights and codes are those of the metric's own samples."""
        seen = self.monitor.order[: self.monitor.n]
        rho = (np.concatenate(self.cand_num) - self.base_num[seen]) / weights[seen]
        total = float(self.base_num.sum())
        for code in np.unique(codes):
            drawn = codes[seen] == code
            category_weight = weights[codes == code].sum()
            if not drawn.any():
                total += category_weight * float(rho.mean())
                continue
            w, r = weights[seen][drawn], rho[drawn]
            before = np.concatenate([[0.0], np.cumsum(w * r)[:-1]])
            unseen = category_weight - np.concatenate([[0.0], np.cumsum(w)[:-1]])
            total += float(np.mean(before + unseen * r))
        value = self.spec.value(total, self.base_den.sum())
        return float(self.spec.change(value, baseline))


def score_sequential_run(*, run: EvalRun, progress: Callable[..., None]) -> engine.RunResult:
    """Score a sequential run until its verdict is clear."""
    family = run.artifact.family
    profile = selectors.evaluation_profile(family)
    samples = engine.dataset_samples(run.dataset)
    design = {
        "mode": "sequential",
        "seed": _recorded_seed(run),
        "confidence": CONFIDENCE,
        "chunk_size": max(1, profile.sampling_chunk_size),
        "min_samples": profile.sampling_min_samples,
    }
    lm = engine.load_model(run.artifact)
    fingerprints = engine.run_fingerprints(
        lm, engine.scoring_scorers(family), engine.scoring_config(family), run.dataset
    )
    found = _baseline_arrays(run, fingerprints, samples)
    if isinstance(found, str):
        result = engine.score_samples_of_run(run, samples, progress)
        result.sampling = Sampling.from_json({**design, "disabled": found, **_usage(len(samples), len(samples))})
        return result
    return _score_sampled(run, samples, design, found, fingerprints, progress)


def _score_sampled(
    run: EvalRun,
    samples: list[dict],
    design: dict,
    found: tuple[Artifact, dict[str, engine.Arrays]],
    fingerprints: dict[str, dict],
    progress: Callable[..., None],
) -> engine.RunResult:
    """Every gated metric on one order, sized by the family's main metric."""
    baseline, arrays = found
    categories = [s["category"] for s in samples]
    main = DEFAULT_METRIC[run.artifact.family.kind]
    weights = design_weights(METRICS[main], *arrays[main][1:])
    order = sampling_order(categories, design["seed"], weights=weights)
    gates = _gates(run, arrays, order, samples, weights, fingerprints)
    result = _score_in_order(run, samples, order, gates, design, progress)
    codes = np.unique(np.asarray(categories, dtype=str), return_inverse=True)[1]
    result.sampling = Sampling.from_json(
        {
            **design,
            **_usage(result.samples_scored, len(samples)),
            "baseline_artifact": baseline.pk,
            **result.sampling.to_json(),
            "metrics": {gate.metric: gate.summary(weights, codes) for gate in gates},
        }
    )
    return result


def _usage(used: int, total: int) -> dict:
    return {"samples_used": used, "samples_total": total, "stopped_early": used < total}


def _recorded_seed(run: EvalRun) -> int:
    """The run's seed; drawn and recorded on the first attempt, so a retry replays the same order."""
    seed = run.sampling_record.seed
    if seed is None:
        seed = secrets.randbits(SEED_BITS)
        run.sampling = {**run.sampling, "seed": seed}
        EvalRun.objects.filter(pk=run.pk).update(sampling=run.sampling)
    return int(seed)


def _baseline_arrays(
    run: EvalRun, fingerprints: dict[str, dict], samples: list[dict]
) -> tuple[Artifact, dict[str, engine.Arrays]] | str:
    """The baseline and its complete per-sample values in dataset order, or why sampling cannot use them."""
    metrics = list(fingerprints)
    baseline = selectors.baseline_for(run.artifact)
    if baseline is None:
        return "No production baseline to compare with yet: the full golden set is scored."
    snapshots = MetricSnapshot.objects.filter(artifact=baseline, dataset=run.dataset, metric__in=metrics, complete=True)
    found = {snapshot.metric: snapshot for snapshot in snapshots}
    missing = [metric for metric in metrics if metric not in found]
    if missing:
        return f"The baseline v{baseline.version} has no complete {', '.join(missing)} on {run.dataset}."
    differing = sorted(
        {
            key
            for metric, s in found.items()
            for key in drift.fingerprints_comparable(fingerprints[metric], s.fingerprint, spec=METRICS[metric])[1]
        }
    )
    if differing:
        return f"Scored differently from the baseline v{baseline.version} ({', '.join(differing)}): no paired samples."
    arrays = {metric: _by_position(snapshot.arrays()) for metric, snapshot in found.items()}
    return _unpaired_reason(run, arrays, samples) or (baseline, arrays)


def _unpaired_reason(run: EvalRun, arrays: dict[str, engine.Arrays], samples: list[dict]) -> str | None:
    """Why the baseline's samples cannot carry the design: each metric's must be some of the dataset's
    (its own, e.g. those with a prompt), the main metric's, which size the draws, all of them."""
    positions = np.array([s["position"] for s in samples])
    strays = sorted(metric for metric, (found, _, _) in arrays.items() if not np.isin(found, positions).all())
    if strays:
        return f"The baseline's {', '.join(strays)} samples are not among those of {run.dataset}."
    main = DEFAULT_METRIC[run.artifact.family.kind]
    if main not in arrays or not np.array_equal(arrays[main][0], positions):
        return f"The baseline's {main} does not cover every sample of {run.dataset}: nothing to size the draws by."
    return None


def _gates(
    run: EvalRun,
    baseline: dict[str, engine.Arrays],
    order: np.ndarray,
    samples: list[dict],
    weights: np.ndarray,
    fingerprints: dict[str, dict],
) -> list[Gate]:
    """A confidence sequence for every metric with a limit in force, all on one order, each on its own
    samples."""
    categories = [s["category"] for s in samples]
    min_samples = selectors.evaluation_profile(run.artifact.family).sampling_min_samples
    gates = []
    positions = np.array([s["position"] for s in samples])
    for metric, (own, num, den) in baseline.items():
        spec = METRICS[metric]
        limits = metric_limits(
            run=run,
            metric=metric,
            baseline_value=float(spec.value(num.sum(), den.sum())),
            fingerprint=fingerprints[metric],
        )
        if limits.any and len(own):
            members = np.searchsorted(positions, own)
            monitor = SequentialMonitor(
                spec,
                num,
                den,
                order,
                categories=categories,
                weights=weights,
                confidence=CONFIDENCE,
                min_samples=min_samples,
                applies_to=members,
            )
            gates.append(Gate(metric, monitor, limits, own, members, num, den))
    return gates


def _score_in_order(
    run: EvalRun,
    samples: list[dict],
    order: np.ndarray,
    gates: list[Gate],
    design: dict,
    progress: Callable[..., None],
) -> engine.RunResult:
    """Score chunk by chunk until every gate is decisive.

    A chunk the confidence sequences refuse (values outside the metric's range, denominators that
    differ from the baseline's) ends sampling: the gates are dropped and the full set is scored.
    """
    started, parts, note = time.perf_counter(), [], Sampling()
    chunk = design["chunk_size"]
    for start in range(0, len(order), chunk):
        chunk_samples = [samples[i] for i in order[start : start + chunk]]
        parts.append(engine.score_samples_of_run(run, chunk_samples, _offset(progress, start)))
        if note.abandoned:
            continue
        try:
            decisions = [gate.observe(parts[-1]) for gate in gates]
        except ValueError as exc:
            note = Sampling(abandoned=f"Sampling abandoned, the full golden set is scored: {exc}")
            gates.clear()
            continue
        if start + len(chunk_samples) >= design["min_samples"] and "continue" not in decisions:
            break
    combined = _combined(parts, time.perf_counter() - started)
    return dataclasses.replace(combined, sampling=note, complete=combined.samples_scored >= len(samples))


def _offset(progress: Callable[..., None], done_before: int) -> Callable[..., None]:
    return lambda done, *args, **kwargs: progress(done_before + done, *args, **kwargs)


def _combined(parts: list[engine.RunResult], seconds: float) -> engine.RunResult:
    """The chunks' results as one; a metric is absent from a chunk that held none of its samples."""
    arrays: dict[str, engine.Arrays] = {}
    for part in parts:
        arrays |= {metric: merged_arrays(arrays.get(metric, _NONE), added) for metric, added in part.arrays.items()}
    tokens = sum(part.tokens for part in parts)
    return engine.RunResult(
        arrays={metric: _by_position(a) for metric, a in arrays.items()},
        fingerprints=parts[-1].fingerprints,
        categories={p: c for part in parts for p, c in part.categories.items()},
        samples_scored=sum(part.samples_scored for part in parts),
        tokens=tokens,
        tokens_per_second=tokens / seconds if tokens and seconds > 0 else None,
        forward_passes=sum(part.forward_passes for part in parts),
        cached_samples=sum(part.cached_samples for part in parts),
        device=parts[-1].device,
        judging=parts[-1].judging,
    )


def merged_arrays(kept: engine.Arrays, added: engine.Arrays) -> engine.Arrays:
    """Per-sample arrays of both, by position; a position already kept is not taken twice."""
    new = ~np.isin(added[0], kept[0])
    return _by_position(tuple(np.concatenate([k, a[new]]) for k, a in zip(kept, added, strict=True)))


def _by_position(arrays: Iterable[np.ndarray]) -> engine.Arrays:
    positions, num, den = arrays
    order = np.argsort(positions, kind="stable")
    return positions[order], num[order], den[order]


def metric_limits(*, run: EvalRun, metric: str, baseline_value: float, fingerprint: dict) -> Limits:
    """Every threshold in force on the metric as a limit on the relative delta.

    A limit on the value itself (an absolute one, or the edge of the band of past baselines,
    implicit or not) becomes a relative one through the baseline's full-set value, known exactly.
    """
    thresholds = thresholds_in_force(family=run.artifact.family, metric=metric, dataset_name=run.dataset.name)
    implicit_band = [] if any(t.rule == Threshold.Rule.BAND for t in thresholds) else [None]
    limits: list[tuple[str, float]] = []
    for threshold in [*thresholds, *implicit_band]:
        limit = _relative_limit(run, metric, fingerprint, baseline_value, threshold)
        if limit is not None:
            limits.append((threshold.severity if threshold else Threshold.Severity.WARN, limit))
    block = [limit for severity, limit in limits if severity == Threshold.Severity.BLOCK]
    return Limits(block=min(block, default=math.inf), green=min((limit for _, limit in limits), default=math.inf))


def _relative_limit(
    run: EvalRun, metric: str, fingerprint: dict, baseline_value: float, threshold: Threshold | None
) -> float | None:
    """One threshold (None: the implicit band) as a limit on the relative delta; None for a band
    without enough history."""
    if threshold is not None and threshold.rule == Threshold.Rule.RELATIVE:
        return threshold.limit
    if threshold is not None and threshold.rule == Threshold.Rule.ABSOLUTE:
        edge = threshold.limit
    else:
        edge = _band_edge(run, metric, fingerprint, threshold)
    return None if edge is None else -float(METRICS[metric].change(edge, baseline_value))


def _band_edge(run: EvalRun, metric: str, fingerprint: dict, band: Threshold | None) -> float | None:
    """The worse edge of the band the verdict will apply (the implicit one when band is None)."""
    window = band.band_window if band else settings.DRIFTBOARD_BAND_WINDOW
    probe = MetricSnapshot(artifact=run.artifact, dataset=run.dataset, metric=metric, fingerprint=fingerprint)
    history = drift.historical_band(selectors.band_history(probe, window), robust=band.band_robust if band else False)
    if history is None:
        return None
    low, high = history.edges(band.limit if band else settings.DRIFTBOARD_BAND_K)
    return high if METRICS[metric].direction == "lower" else low


def score_completion_run(*, run: EvalRun, progress: Callable[..., None]) -> engine.RunResult:
    """Score the samples the archived snapshots lack, and hand back the merged, complete arrays."""
    samples = engine.dataset_samples(run.dataset)
    existing = {s.metric: s.arrays() for s in MetricSnapshot.objects.filter(artifact=run.artifact, dataset=run.dataset)}
    # Every scorer scored each sample of a chunk it applies to: a sample in some snapshot is done.
    scored = set(np.concatenate([a[0] for a in existing.values()]).tolist()) if existing else set()
    left = [sample for sample in samples if sample["position"] not in scored]
    result = engine.score_samples_of_run(run, left, progress)
    arrays = {
        metric: merged_arrays(existing[metric], added) if metric in existing else added
        for metric, added in result.arrays.items()
    }
    return dataclasses.replace(
        result,
        arrays=arrays,
        complete=True,
        categories={s["position"]: s["category"] for s in samples},
        sampling=dataclasses.replace(
            run.sampling_record, mode="completion", samples_completed=len(left), samples_total=len(samples)
        ),
    )


def completion_schedule(*, run: EvalRun) -> EvalRun | None:
    """After an early stop: queue the rest of the golden set on the off-peak queue, once."""
    sampling = Sampling.from_json(EvalRun.objects.values_list("sampling", flat=True).get(pk=run.pk))
    if not sampling.stopped_early:
        return None
    others = EvalRun.objects.filter(artifact=run.artifact, dataset=run.dataset, kind=EvalRun.Kind.COMPLETION)
    if others.exclude(status=EvalRun.Status.FAILED).exists():
        return None
    completion = EvalRun.objects.create(
        artifact=run.artifact,
        dataset=run.dataset,
        kind=EvalRun.Kind.COMPLETION,
        queue=RUN_KINDS[EvalRun.Kind.COMPLETION].queue,
        status=EvalRun.Status.PENDING,
        samples_total=sampling.samples_total - sampling.samples_used,
        sampling=Sampling(completes_run=run.pk).to_json(),
    )
    transaction.on_commit(runs.eval_runs_dispatch)
    return completion


def completion_recheck(*, run: EvalRun, prepared: None = None) -> RegistryChange | None:
    """Re-check the early verdicts on the now complete snapshots (in the pipeline's transaction, with the
    change it returns: the artifact's flag again, and an alert when an outcome changed)."""
    early = {v.metric: v for v in DriftVerdict.objects.filter(artifact=run.artifact, dataset=run.dataset)}
    if not early:
        return None  # not evaluated yet: the artifact's evaluation will read the complete snapshots
    snapshots = MetricSnapshot.objects.filter(artifact=run.artifact, dataset=run.dataset, metric__in=list(early))
    changed = []
    for snapshot in snapshots.select_related("dataset", "artifact__family", "run"):
        verdict = early[snapshot.metric]
        if verdict.baseline_id is None:
            continue
        fields = verdicts.verdict_for(snapshot, verdict.baseline)
        previous = verdict.outcome
        for name, value in fields.items():
            setattr(verdict, name, value)
        if verdict.outcome != previous:
            verdict.previous_outcome = previous
            changed.append(verdict)
        verdict.save()
    retagged = _retag(run.artifact)
    verdicts.verdict_publish(run.artifact)
    return _with_changes(retagged, changed) if changed else retagged


def _retag(artifact: Artifact) -> RegistryChange:
    every = list(artifact.verdicts.select_related("baseline", "dataset", "artifact__family"))
    results = {(v.dataset_id, v.metric): {"delta": v.delta} for v in every}
    baseline = next((v.baseline for v in every if v.baseline), None)
    return RegistryChange(
        artifact=artifact,
        flag=verdicts.artifact_flag(every),
        flag_tags=verdicts.verdict_tags(artifact, baseline, results),
    )


def _with_changes(retagged: RegistryChange, changed: list[DriftVerdict]) -> RegistryChange:
    artifact = retagged.artifact
    changes = [f"{v.metric} on {v.dataset.name}: {v.previous_outcome} → {v.outcome}" for v in changed]
    summary = "; ".join(changes)
    worse = any(verdicts.FLAG_SEVERITY[v.outcome] > verdicts.FLAG_SEVERITY[v.previous_outcome] for v in changed)
    logger.error(
        "Verdict of %s v%s changed on the full golden set: %s", artifact.family.slug, artifact.version, summary
    )
    alert = AlertNotice(
        severity=Alert.Severity.CRITICAL if worse else Alert.Severity.WARNING,
        title=f"{artifact.family.slug} v{artifact.version}: verdict changed on the full golden set",
        message=f"Decided early on part of the golden set, the full set disagrees ({summary}). "
        f"The artifact is {artifact.status}; review it.",
        payload={
            "family": artifact.family.slug,
            "version": artifact.version,
            "commit": artifact.commit_sha,
            "changes": changes,
        },
    )
    return dataclasses.replace(retagged, tags={"verdict_changed": summary}, alerts=(alert,))
