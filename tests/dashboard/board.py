"""A realistic board for page tests: one family with a production history, candidates across commits and
branches with green / amber / red verdicts, runs in every state, and a threshold with a change history."""

import dataclasses
import datetime
import math
from dataclasses import dataclass, field

import numpy as np
from django.utils import timezone

from evals.models import EvalRun, GoldenDataset, MetricSnapshot, Threshold
from evals.scoring import drift
from evals.scoring.scorers import METRICS
from evals.services import threshold_save
from evals.services.verdicts import json_safe
from registry.models import Artifact, ModelFamily, PromotionEvent
from tests.factories import (
    ArtifactFactory,
    DatasetFactory,
    EvalRunFactory,
    FamilyFactory,
    PullRequestFactory,
    SnapshotFactory,
    ThresholdFactory,
    VerdictFactory,
    float_bytes,
)

OUTCOMES = ("green", "amber", "red")
# Relative change of bits per byte per outcome (positive = more bits = worse).
SHIFTS = {"green": -0.01, "amber": 0.025, "red": 0.08}
PRODUCTION_LEVELS = (2.04, 2.02, 2.0)
BASE_LEVEL = PRODUCTION_LEVELS[-1]
PERPLEXITY_RATIO = 2.5  # mean NLL per token of the baseline, in nats


@dataclass
class Board:
    family: ModelFamily
    dataset: GoldenDataset
    threshold: Threshold
    production: Artifact
    history: list[Artifact]
    candidates: list[Artifact] = field(default_factory=list)

    def candidate(self, outcome: str) -> Artifact:
        return next(a for a in self.candidates if a.drift_flag == outcome)


def build_board(*, candidates: int = 3, samples: int = 60, user=None) -> Board:
    family = FamilyFactory(slug="support-gpt", description="Support-ticket assistant weights.")
    dataset = DatasetFactory(name="support-golden", samples=samples)
    threshold = ThresholdFactory(family=family, review_by=timezone.now().date() - datetime.timedelta(days=3))
    threshold.limit = 0.03
    threshold_save(threshold=threshold, user=user, reason="Too many false alarms at 2 %")
    history = [_production_artifact(family, dataset, level, samples) for level in PRODUCTION_LEVELS]
    board = Board(family, dataset, threshold, history[-1], history)
    add_candidates(board, candidates)
    return board


def _production_artifact(family: ModelFamily, dataset: GoldenDataset, level: float, samples: int) -> Artifact:
    """A former or current baseline: promoted, archived by the next one."""
    previous = family.artifacts.filter(stage=Artifact.Stage.PRODUCTION).first()
    if previous:
        Artifact.objects.filter(pk=previous.pk).update(stage=Artifact.Stage.ARCHIVED)
    artifact = ArtifactFactory(
        family=family,
        stage=Artifact.Stage.PRODUCTION,
        status=Artifact.Status.PROMOTED,
        drift_flag="green",
        branch="main",
        parent=previous,
    )
    PromotionEvent.objects.create(
        artifact=artifact,
        action=PromotionEvent.Action.PROMOTE if previous else PromotionEvent.Action.BASELINE,
        to_stage=Artifact.Stage.PRODUCTION,
        to_status=Artifact.Status.PROMOTED,
        reason="Green on main.",
    )
    _snapshots(artifact, dataset, level, samples)
    _run(artifact, dataset, EvalRun.Status.SUCCEEDED)
    return artifact


def add_candidates(board: Board, count: int, *, parent: Artifact | None = None) -> list[Artifact]:
    created = []
    for _ in range(count):
        index = len(board.candidates) + len(created)
        outcome = OUTCOMES[index % len(OUTCOMES)]
        created.append(_candidate(board, outcome, index, parent or board.production))
    board.candidates.extend(created)
    return created


def _candidate(board: Board, outcome: str, index: int, parent: Artifact) -> Artifact:
    status = {"green": Artifact.Status.SCORED, "amber": Artifact.Status.HELD, "red": Artifact.Status.HALTED}[outcome]
    artifact = ArtifactFactory(
        family=board.family,
        branch="main" if index % 2 == 0 else f"feature/tune-{index}",
        parent=parent,
        drift_flag=outcome,
        status=status,
        pull_request=PullRequestFactory() if index % 2 else None,
        pr_url="https://github.com/acme/weights/pull/7" if index % 2 == 0 else "",
    )
    level = BASE_LEVEL * (1 + SHIFTS[outcome])
    _snapshots(artifact, board.dataset, level, board.dataset.sample_count, seed=index + 10)
    for metric in ("bits_per_byte", "perplexity"):
        _verdict(board, artifact, metric, outcome)
    if outcome == "red":
        PromotionEvent.objects.create(
            artifact=artifact,
            action=PromotionEvent.Action.HALT,
            from_status=Artifact.Status.SCORED,
            to_status=Artifact.Status.HALTED,
            reason="bits per byte worse by 8.0 %",
        )
    _run(artifact, board.dataset, EvalRun.Status.SUCCEEDED)
    if outcome == "amber":
        _run(artifact, board.dataset, EvalRun.Status.FAILED, error="RuntimeError: CUDA out of memory")
    return artifact


def _snapshots(artifact: Artifact, dataset: GoldenDataset, level: float, samples: int, seed: int = 0) -> None:
    """bits per byte around `level` and the matching perplexity, per sample over every golden sample."""
    _save_snapshot(SnapshotFactory.build(artifact=artifact, dataset=dataset, n=samples, level=level, seed=seed))
    ratio = PERPLEXITY_RATIO * level / BASE_LEVEL
    nll = 100.0 * (ratio + np.random.default_rng(seed + 1000).normal(0, 0.1, samples))
    perplexity = SnapshotFactory.build(
        artifact=artifact,
        dataset=dataset,
        metric="perplexity",
        n=samples,
        value=math.exp(ratio),
        ci_low=math.exp(ratio - 0.02),
        ci_high=math.exp(ratio + 0.02),
        numerators=float_bytes(nll),
        denominators=float_bytes(np.full(samples, 100.0)),
    )
    _save_snapshot(perplexity)


def _save_snapshot(snapshot: MetricSnapshot) -> None:
    # SnapshotFactory's `n` parameter sizes the arrays but does not reach the model field.
    snapshot.n = len(snapshot.arrays()[0])
    snapshot.save()


def _verdict(board: Board, artifact: Artifact, metric: str, outcome: str) -> None:
    """The real comparison of the stored arrays (as the verdict service stores it), with a chosen outcome."""
    candidate = artifact.snapshots.get(metric=metric)
    baseline = board.production.snapshots.get(metric=metric)
    history = [a.snapshots.get(metric=metric).value for a in board.history]
    categories = list(board.dataset.samples.order_by("position").values_list("category", flat=True))
    comparison = drift.compare(
        METRICS[metric],
        *candidate.arrays()[1:],
        *baseline.arrays()[1:],
        history=history,
        categories=categories,
        n_boot=200,
        seed=artifact.pk,
    )
    samples = board.dataset.sample_count
    stopped_early = outcome == "amber"
    VerdictFactory(
        artifact=artifact,
        dataset=board.dataset,
        baseline=board.production,
        metric=metric,
        outcome=outcome,
        candidate_value=comparison.candidate,
        baseline_value=comparison.baseline,
        delta=comparison.delta,
        ci_low=comparison.ci_low,
        ci_high=comparison.ci_high,
        p_value=comparison.p_value,
        band_low=comparison.band_low,
        band_high=comparison.band_high,
        band_position=comparison.band_position,
        ks=comparison.ks,
        wasserstein=comparison.wasserstein,
        per_category=comparison.per_category,
        comparison=json_safe(dataclasses.asdict(comparison)),
        threshold=board.threshold,
        threshold_history_id=board.threshold.history.latest().history_id,
        reasons=[
            f"{metric.replace('_', ' ')} {'worse' if comparison.delta < 0 else 'better'} by "
            f"{100 * abs(comparison.delta):.1f} %"
        ],
        samples_used=samples // 4 if stopped_early else samples,
        samples_total=samples,
        stopped_early=stopped_early,
    )


def _run(artifact: Artifact, dataset: GoldenDataset, status: str, *, error: str = "") -> EvalRun:
    now = timezone.now()
    finished = status in (EvalRun.Status.SUCCEEDED, EvalRun.Status.FAILED)
    return EvalRunFactory(
        artifact=artifact,
        dataset=dataset,
        status=status,
        samples_total=dataset.sample_count,
        samples_done=dataset.sample_count if finished else dataset.sample_count // 3,
        worker="gpu-1@host",
        enqueued_at=now - datetime.timedelta(minutes=5),
        started_at=now - datetime.timedelta(minutes=4),
        finished_at=now if finished else None,
        tokens=12_000,
        tokens_per_second=50.0 if finished else None,
        error=error,
        attempts=1,
    )


def running_run(board: Board, artifact: Artifact) -> EvalRun:
    """A run still scoring, a third of the way through."""
    return _run(artifact, board.dataset, EvalRun.Status.RUNNING)
