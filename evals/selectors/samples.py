"""Per-sample values: two snapshots paired sample by sample, and the samples that regressed most."""

from dataclasses import dataclass

import numpy as np

from evals.models import DriftVerdict, GoldenSample, MetricSnapshot
from evals.scoring.scorers import METRICS
from evals.scoring.summary import per_sample_values
from evals.selectors.metrics import change_text

# Text shown for a regressed sample on pages; the PR comment shortens further.
EXCERPT_CHARS = 240


def snapshots_paired(candidate: MetricSnapshot, baseline: MetricSnapshot) -> tuple[np.ndarray, ...]:
    """Pair two snapshots' raw arrays sample by sample (a sampled candidate covers a subset of positions):
    (positions, candidate num, candidate den, baseline num, baseline den)."""
    cand_pos, cand_num, cand_den = candidate.arrays()
    base_pos, base_num, base_den = baseline.arrays()
    common, cand_idx, base_idx = np.intersect1d(cand_pos, base_pos, assume_unique=True, return_indices=True)
    return common, cand_num[cand_idx], cand_den[cand_idx], base_num[base_idx], base_den[base_idx]


@dataclass(frozen=True)
class PairedSamples:
    """Candidate and baseline per-sample values of one metric, aligned sample by sample."""

    metric: str
    direction: str
    positions: np.ndarray
    candidate: np.ndarray
    baseline: np.ndarray

    @property
    def deltas(self) -> np.ndarray:
        """Per-sample change in metric units, signed so that negative means worse."""
        sign = 1.0 if self.direction == "higher" else -1.0
        return sign * (self.candidate - self.baseline)

    @property
    def changes(self) -> np.ndarray:
        """Per-sample change as the metric measures it (`MetricSpec.change`: relative, or absolute in
        its units), negative means worse: how regressions are ranked. A relative change from a
        baseline of 0 is undefined (not finite); an absolute one is not, so a regression from 0 ranks."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(METRICS[self.metric].change(self.candidate, self.baseline), dtype=np.float64)


@dataclass(frozen=True)
class SampleRegression:
    position: int
    sample_id: str
    category: str
    text: str
    candidate: float
    baseline: float
    change: float
    metric: str
    # The change in the metric's units, negative means worse.
    difference: float

    @property
    def change_text(self) -> str:
        return change_text(self.metric, self.change)

    @property
    def difference_text(self) -> str:
        return f"{self.difference:+.4g}"

    @property
    def excerpt(self) -> str:
        return self.text if len(self.text) <= EXCERPT_CHARS else self.text[: EXCERPT_CHARS - 1] + "…"


def samples_paired(candidate: MetricSnapshot, baseline: MetricSnapshot) -> PairedSamples:
    """Per-sample values of both snapshots on their common samples (those with a finite value in both)."""
    spec = METRICS[candidate.metric]
    positions, cand_num, cand_den, base_num, base_den = snapshots_paired(candidate, baseline)
    with np.errstate(divide="ignore", invalid="ignore"):
        cand = np.asarray(spec.value(cand_num, cand_den), dtype=np.float64)
        base = np.asarray(spec.value(base_num, base_den), dtype=np.float64)
    keep = np.isfinite(cand) & np.isfinite(base)
    return PairedSamples(candidate.metric, spec.direction, positions[keep], cand[keep], base[keep])


def _one_sample(metric: str) -> bool:
    spec = METRICS.get(metric)
    return bool(spec and spec.one_sample)


def verdict_samples_paired(verdict: DriftVerdict) -> PairedSamples | None:
    """The paired per-sample values behind one verdict (one query for both snapshots); None for a
    one-sample metric (a pairwise judge's preference is already the candidate against its baseline)."""
    if verdict.baseline_id is None or _one_sample(verdict.metric):
        return None
    snapshots = {
        snapshot.artifact_id: snapshot
        for snapshot in MetricSnapshot.objects.filter(
            artifact_id__in=[verdict.artifact_id, verdict.baseline_id],
            dataset_id=verdict.dataset_id,
            metric=verdict.metric,
        )
    }
    candidate, baseline = snapshots.get(verdict.artifact_id), snapshots.get(verdict.baseline_id)
    if candidate is None or baseline is None or verdict.metric not in METRICS:
        return None
    return samples_paired(candidate, baseline)


def _ranked(pairs: PairedSamples, order: str) -> np.ndarray:
    """Indices into `pairs` in `order`: `regressed` by the metric's own change (the spec's relative or
    absolute), `absolute` by the change in the metric's units, `position` in dataset order; a sample
    whose change is not finite (relative to a baseline of 0) goes last."""
    if order == "position":
        return np.argsort(pairs.positions, kind="stable")
    key = pairs.deltas if order == "absolute" else pairs.changes
    return np.argsort(np.where(np.isfinite(key), key, np.inf), kind="stable")


def samples_regressed_most(
    pairs: PairedSamples, dataset_id: int, limit: int, order: str = "regressed"
) -> list[SampleRegression]:
    """The `limit` samples that got worse (in the metric's units), in `order` (see `_ranked`): by
    default the metric's own change, worst first; with their golden sample (one query)."""
    worse = pairs.deltas < 0
    worst = [int(i) for i in _ranked(pairs, order) if worse[i]][:limit]
    samples = GoldenSample.objects.filter(dataset_id=dataset_id, position__in=[int(pairs.positions[i]) for i in worst])
    by_position = {sample.position: sample for sample in samples}
    rows = []
    changes = pairs.changes
    for i in worst:
        position = int(pairs.positions[i])
        sample = by_position.get(position)
        rows.append(
            SampleRegression(
                position=position,
                sample_id=sample.sample_id if sample else str(position),
                category=sample.category if sample else "",
                text=(sample.text or asked_text(sample.prompt, sample.messages)) if sample else "",
                candidate=float(pairs.candidate[i]),
                baseline=float(pairs.baseline[i]),
                change=float(changes[i]),
                metric=pairs.metric,
                difference=float(pairs.deltas[i]),
            )
        )
    return rows


def asked_text(prompt: str, messages: list | None) -> str:
    """What a sample asks the model, as one text: the chat turns as `role: content` lines, else the prompt."""
    if messages:
        return "\n".join(f"{turn.get('role', '')}: {turn.get('content', '')}" for turn in messages)
    return prompt


def snapshot_per_sample_values(snapshot: MetricSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """(dataset positions, per-sample values) with samples whose denominator is zero left out."""
    positions, numerators, denominators = snapshot.arrays()
    spec = METRICS.get(snapshot.metric)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = per_sample_values(spec, numerators, denominators) if spec else numerators / denominators
    keep = np.isfinite(values)
    return positions[keep], np.asarray(values)[keep]
