"""Reads of reviewers' labels: which answers of an artifact a label can be about, each judge
configuration's agreement with the labels, and whether a judge is calibrated.

A judge configuration is what its judgements depend on apart from the answers: the judge's identity,
the template version, the mode and the rubric (repeats only average more replies of the same judge).
Changing any of them makes a new configuration, which starts without labels, so uncalibrated.
"""

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from django.db.models import QuerySet

from evals.models import DriftVerdict, Generation, GoldenSample, JudgeTrust, Label, MetricSnapshot
from evals.scoring.agreement import Agreement, fleiss_kappa, kappa_agreement
from evals.scoring.generation import messages_of
from evals.scoring.hashing import prompt_sha256
from evals.scoring.scorers import METRICS, metric_scorer
from evals.scoring.scorers.judge_score import judge_calibration
from evals.selectors import Answer, evaluation_profile, generation_settings_of
from registry.models import Artifact, ModelFamily

PAIRWISE_VALUES = Label.VALUES[Label.Kind.PAIRWISE]
POINTWISE_VALUES = Label.VALUES[Label.Kind.POINTWISE]
_MODE_KIND = {"pointwise": Label.Kind.POINTWISE, "pairwise": Label.Kind.PAIRWISE}


def family_judge_settings(family: ModelFamily) -> dict:
    return judge_calibration(evaluation_profile(family).judge)


def label_list() -> QuerySet[Label]:
    return Label.objects.select_related("reviewer", "artifact__family", "sample")


# The answers an artifact offers for review


@dataclass(frozen=True)
class AnswerKeys:
    """How one model's stored answers are found: its weights and generation settings."""

    weights_sha256: str
    config_sha256: str
    chat_template_sha256: str
    engine_version: int


@dataclass(frozen=True)
class ReviewSource:
    """An artifact's answers on one dataset version, and its baseline's (None: pointwise only)."""

    artifact: Artifact
    dataset_id: int
    positions: tuple[int, ...]
    candidate: AnswerKeys
    baseline: AnswerKeys | None


def _keys_of(snapshot: MetricSnapshot) -> AnswerKeys | None:
    settings = generation_settings_of(snapshot)
    if settings is None:
        return None
    weights = (snapshot.fingerprint or {}).get("weights_sha256") or snapshot.artifact.sha256
    return AnswerKeys(str(weights), *settings)


def _baseline_keys(snapshot: MetricSnapshot) -> AnswerKeys | None:
    """The baseline answers a snapshot was compared with: a pairwise judge records their keys; any
    other generation metric is paired with its verdict's baseline's snapshot of the same metric."""
    recorded = ((snapshot.fingerprint or {}).get("settings") or {}).get("baseline")
    if isinstance(recorded, dict) and recorded.get("generation"):
        return AnswerKeys(
            str(recorded["weights_sha256"]),
            str(recorded["generation"]),
            str(recorded.get("chat_template", "")),
            int(recorded.get("engine", 0)),
        )
    baseline_id = (
        DriftVerdict.objects.filter(artifact_id=snapshot.artifact_id, dataset_id=snapshot.dataset_id)
        .exclude(baseline=None)
        .values_list("baseline_id", flat=True)
        .first()
    )
    other = (
        MetricSnapshot.objects.select_related("artifact")
        .filter(artifact_id=baseline_id, dataset_id=snapshot.dataset_id, metric=snapshot.metric)
        .first()
        if baseline_id
        else None
    )
    return _keys_of(other) if other else None


def review_source(artifact: Artifact) -> ReviewSource | None:
    """The answers of the artifact's newest dataset version with generated answers (a pairwise judge's
    snapshot first: it names the baseline answers it judged); None when it has none."""
    snapshots = [
        s
        for s in MetricSnapshot.objects.filter(artifact=artifact)
        .select_related("artifact", "dataset")
        .order_by("dataset__name", "-dataset__version", "metric")
        if generation_settings_of(s)
    ]
    if not snapshots:
        return None
    newest = [s for s in snapshots if s.dataset_id == snapshots[0].dataset_id]
    chosen = next((s for s in newest if _judge_mode(s) == "pairwise"), None) or next(
        (s for s in newest if _judge_mode(s) is None), newest[0]
    )
    # A conversation is judged whole, on answers to turns a label could not name: it is not labelled.
    conversations = set(
        GoldenSample.objects.filter(dataset_id=chosen.dataset_id, turns__isnull=False).values_list(
            "position", flat=True
        )
    )
    return ReviewSource(
        artifact=artifact,
        dataset_id=chosen.dataset_id,
        positions=tuple(sorted(int(p) for p in chosen.arrays()[0] if int(p) not in conversations)),
        candidate=_keys_of(chosen),
        baseline=_baseline_keys(chosen),
    )


def _judge_mode(snapshot: MetricSnapshot) -> str | None:
    if snapshot.metric not in METRICS or not _is_judge_metric(snapshot.metric):
        return None
    return ((snapshot.fingerprint or {}).get("settings") or {}).get("mode")


def _is_judge_metric(metric: str) -> bool:
    try:
        return metric_scorer(metric).needs.judge
    except KeyError:
        return False


def _values_by_position(snapshot: MetricSnapshot) -> dict[int, float]:
    """Per-sample values; a judge error (denominator 0) is left out."""
    positions, numerators, denominators = snapshot.arrays()
    judged = denominators > 0
    return {int(p): float(n / d) for p, n, d, ok in zip(positions, numerators, denominators, judged, strict=True) if ok}


@dataclass(frozen=True)
class ReviewItem:
    """One sample to label: what was asked, the reference, and the answers (model output: untrusted)."""

    sample: GoldenSample
    candidate: Answer | None
    baseline: Answer | None


def sample_prompt_sha256(sample: GoldenSample) -> str:
    return prompt_sha256(messages_of({"prompt": sample.prompt, "messages": sample.messages}))


def _answers(keys: AnswerKeys | None, hashes: set[str]) -> dict[str, Answer]:
    if keys is None or not hashes:
        return {}
    rows = Generation.objects.filter(
        weights_sha256=keys.weights_sha256,
        config_sha256=keys.config_sha256,
        chat_template_sha256=keys.chat_template_sha256,
        engine_version=keys.engine_version,
        prompt_sha256__in=hashes,
    ).values_list("prompt_sha256", "text", "tokens", "finish")
    return {digest: Answer(text, tokens, finish) for digest, text, tokens, finish in rows}


def review_items(source: ReviewSource, positions: list[int]) -> list[ReviewItem]:
    """The samples at `positions` with both models' stored answers (three queries)."""
    samples = {
        s.position: s
        for s in GoldenSample.objects.filter(dataset_id=source.dataset_id, position__in=positions, turns__isnull=True)
    }
    hashes = {position: sample_prompt_sha256(sample) for position, sample in samples.items()}
    mine, theirs = _answers(source.candidate, set(hashes.values())), _answers(source.baseline, set(hashes.values()))
    return [
        ReviewItem(samples[p], mine.get(hashes[p]), theirs.get(hashes[p]))
        for p in positions
        if p in samples and hashes[p] in mine
    ]


def _judge_values(source: ReviewSource, kind: str) -> dict[int, float]:
    """The per-sample judge values on the source's answers, for the queue's order (empty: none)."""
    snapshots = MetricSnapshot.objects.filter(artifact=source.artifact, dataset_id=source.dataset_id).select_related(
        "artifact"
    )
    for snapshot in snapshots:
        if _MODE_KIND.get(_judge_mode(snapshot)) == kind:
            return _values_by_position(snapshot)
    return {}


def review_order(source: ReviewSource, kind: str, *, pass_rating: float, seed: int) -> list[int]:
    """The order items are offered in, so that a few labels tell the most: first the samples the judge
    disagreed on with itself (orders or repeats apart: a value that is not a whole number), then the
    most regressed (the baseline preferred, or a failing rating, worst first), then the rest at random."""
    values = _judge_values(source, kind)
    shuffled = list(source.positions)
    random.Random(seed).shuffle(shuffled)
    rank = {position: i for i, position in enumerate(shuffled)}

    def key(position: int) -> tuple:
        value = values.get(position)
        if value is None:
            return (2, 0.0, rank[position])
        if value != int(value):
            return (0, -abs(value - round(value)), rank[position])
        regressed = value < 0 if kind == Label.Kind.PAIRWISE else value < pass_rating
        return (1, value, rank[position]) if regressed else (2, 0.0, rank[position])

    return sorted(source.positions, key=key)


# Judge configurations and their agreement with people


@dataclass(frozen=True)
class JudgeConfiguration:
    identity: str
    template: int | None
    mode: str
    rubric: str | None

    @property
    def key(self) -> str:
        canonical = json.dumps([self.identity, self.template, self.mode, self.rubric], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def judge_configuration_of(snapshot: MetricSnapshot) -> JudgeConfiguration | None:
    """The judge configuration a judge metric's snapshot was judged with; None for any other metric."""
    mode = _judge_mode(snapshot)
    if mode not in _MODE_KIND:
        return None
    settings = (snapshot.fingerprint or {}).get("settings") or {}
    return JudgeConfiguration(
        identity=str(settings.get("judge") or ""),
        template=settings.get("template"),
        mode=mode,
        rubric=settings.get("rubric") or None,
    )


@dataclass(frozen=True)
class AgreementItem:
    artifact: int
    version: int
    sample: str
    human: str
    judge: str


@dataclass
class JudgeAgreement:
    configuration: JudgeConfiguration
    agreement: Agreement
    items: list[AgreementItem]
    calibrated: bool
    trusted: JudgeTrust | None
    settings: dict = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """Why the judge is uncalibrated, with κ, its interval and the number of labels."""
        a = self.agreement
        if a.n == 0:
            return "judge uncalibrated: no labels yet"
        if np.isnan(a.kappa) or np.isnan(a.ci_low):
            return f"judge uncalibrated: κ undefined on {a.n} labels"
        return f"judge uncalibrated: κ {a.kappa:.2f} [{a.ci_low:.2f}, {a.ci_high:.2f}] on {a.n} labels"

    @property
    def confusion_rows(self) -> list[tuple[str, list[int]]]:
        """The confusion matrix by the people's category (rows), for a table."""
        return list(zip(self.agreement.categories, self.agreement.confusion, strict=True))

    @property
    def disagreements(self) -> list[AgreementItem]:
        return [item for item in self.items if item.human != item.judge]


def judge_verdict_label(mode: str, value: float, pass_rating: float) -> str:
    """A judge's per-sample value in the labels' vocabulary: a rating binarised at `pass_rating`, a
    preference (both orders combined, repeats averaged) by its sign."""
    if mode == "pointwise":
        return "good" if value >= pass_rating else "bad"
    return "candidate" if value > 0 else "baseline" if value < 0 else "tie"


def _consensus(values: list[str]) -> str | None:
    """The reviewers' majority label of one item; None when the most common labels tie."""
    counts = Counter(values).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def _judge_snapshots(family: ModelFamily) -> list[tuple[MetricSnapshot, JudgeConfiguration]]:
    snapshots = MetricSnapshot.objects.filter(
        artifact__family=family, metric__in=[m for m in METRICS if _is_judge_metric(m)]
    ).select_related("artifact", "dataset")
    found = [(s, judge_configuration_of(s)) for s in snapshots]
    return [(s, c) for s, c in found if c is not None]


def _labels_by_item(family: ModelFamily) -> dict[tuple[int, int, str], list[Label]]:
    labels: dict[tuple[int, int, str], list[Label]] = {}
    for label in Label.objects.filter(artifact__family=family).select_related("sample"):
        labels.setdefault((label.artifact_id, label.sample.dataset_id, label.kind), []).append(label)
    return labels


def _snapshot_items(snapshot, configuration, labels, pass_rating) -> list[AgreementItem]:
    """The snapshot's judged samples that reviewers labelled, about the same answers the judge saw."""
    kind = _MODE_KIND[configuration.mode]
    candidate = _keys_of(snapshot)
    baseline = _baseline_keys(snapshot) if kind == Label.Kind.PAIRWISE else None
    values = _values_by_position(snapshot)
    by_sample: dict[int, list[Label]] = {}
    for label in labels.get((snapshot.artifact_id, snapshot.dataset_id, kind), []):
        same_answer = candidate is None or label.config_sha256 == candidate.config_sha256
        same_baseline = baseline is None or label.baseline_weights_sha256 == baseline.weights_sha256
        if same_answer and same_baseline and label.sample.position in values:
            by_sample.setdefault(label.sample.position, []).append(label)
    items = []
    for position, sample_labels in sorted(by_sample.items()):
        human = _consensus([label.value for label in sample_labels])
        if human is not None:
            judge = judge_verdict_label(configuration.mode, values[position], pass_rating)
            sample_id = sample_labels[0].sample.sample_id
            items.append(AgreementItem(snapshot.artifact_id, snapshot.artifact.version, sample_id, human, judge))
    return items


def judge_agreements(family: ModelFamily) -> list[JudgeAgreement]:
    """Each judge configuration the family's judge metrics were judged with, against the reviewers'
    labels on the same answers: Cohen's κ with its bootstrap interval, raw agreement, the confusion
    matrix, the items, and whether it is calibrated (trusted by staff, or at least `min_labels` items
    and κ's lower bound at least `min_kappa`)."""
    settings = family_judge_settings(family)
    labels = _labels_by_item(family)
    trusts = {trust.configuration: trust for trust in JudgeTrust.objects.filter(family=family)}
    grouped: dict[JudgeConfiguration, list[AgreementItem]] = {}
    for snapshot, configuration in _judge_snapshots(family):
        items = _snapshot_items(snapshot, configuration, labels, settings["pass_rating"])
        grouped.setdefault(configuration, []).extend(items)
    result = []
    for configuration, items in sorted(grouped.items(), key=lambda pair: (pair[0].mode, pair[0].identity)):
        categories = POINTWISE_VALUES if configuration.mode == "pointwise" else PAIRWISE_VALUES
        agreement = kappa_agreement(
            [i.human for i in items], [i.judge for i in items], categories, seed=int(configuration.key[:8], 16)
        )
        measured = agreement.n >= settings["min_labels"] and agreement.ci_low >= settings["min_kappa"]
        trust = trusts.get(configuration.key)
        result.append(JudgeAgreement(configuration, agreement, items, bool(measured or trust), trust, settings))
    return result


def snapshot_judge_agreement(snapshot: MetricSnapshot) -> JudgeAgreement | None:
    """The agreement of the judge configuration behind a judge metric's snapshot; None for other metrics."""
    configuration = judge_configuration_of(snapshot)
    if configuration is None:
        return None
    family = snapshot.artifact.family
    return next((a for a in judge_agreements(family) if a.configuration == configuration), None)


@dataclass(frozen=True)
class ReviewerAgreement:
    """Reviewers among themselves on the items several of them labelled: Cohen's κ with its interval
    when two reviewers share them, Fleiss' κ (no interval) when more do."""

    kind: str
    reviewers: int
    items: int
    statistic: str
    kappa: float
    ci_low: float | None
    ci_high: float | None


def reviewer_agreements(family: ModelFamily) -> list[ReviewerAgreement]:
    by_item: dict[tuple[int, int, str], dict[int, str]] = {}
    for artifact_id, sample_id, kind, reviewer_id, value in Label.objects.filter(artifact__family=family).values_list(
        "artifact_id", "sample_id", "kind", "reviewer_id", "value"
    ):
        by_item.setdefault((artifact_id, sample_id, kind), {})[reviewer_id] = value
    result = []
    for kind, categories in ((Label.Kind.PAIRWISE, PAIRWISE_VALUES), (Label.Kind.POINTWISE, POINTWISE_VALUES)):
        shared = [values for (_, _, k), values in sorted(by_item.items()) if k == kind and len(values) > 1]
        reviewers = sorted({reviewer for values in shared for reviewer in values})
        if not shared:
            continue
        if len(reviewers) == 2:
            first, second = reviewers
            a = kappa_agreement([v[first] for v in shared], [v[second] for v in shared], categories, seed=family.pk)
            result.append(ReviewerAgreement(kind, 2, len(shared), "Cohen's κ", a.kappa, a.ci_low, a.ci_high))
            continue
        counts = np.array([[Counter(values.values())[c] for c in categories] for values in shared])
        result.append(
            ReviewerAgreement(kind, len(reviewers), len(shared), "Fleiss' κ", fleiss_kappa(counts), None, None)
        )
    return result
