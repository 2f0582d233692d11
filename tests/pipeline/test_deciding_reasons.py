"""Halt and hold reasons and the alert lead with the verdicts that decided the outcome, and a held candidate
says why it waits (policy, branch, the same weights registered before)."""

import numpy as np
import pytest

from evals.models import EvalRun
from evals.services import artifact_evaluate
from evals.services.pipeline import family_create
from registry.models import Alert, PromotionEvent
from tests.factories import ArtifactFactory, DatasetFactory, SnapshotFactory, float_bytes

N = 200


@pytest.fixture
def setup(db):
    family = family_create(slug="fam", kind="causal-lm", datasets=["golden"])
    dataset = DatasetFactory(name="golden", samples=N)
    baseline = ArtifactFactory(family=family, stage="production", status="promoted", sha256="a" * 64)
    # answer length sorts before bits per byte: ungated and unchanged, it must not lead the reasons.
    SnapshotFactory(artifact=baseline, dataset=dataset, n=N, seed=1, metric="answer_length")
    SnapshotFactory(artifact=baseline, dataset=dataset, n=N, seed=1)
    return family, dataset, baseline


def candidate(setup, factor: float, *, branch: str = "main", sha256: str = "b" * 64):
    family, dataset, baseline = setup
    artifact = ArtifactFactory(family=family, branch=branch, status="scoring", sha256=sha256)
    EvalRun.objects.create(artifact=artifact, dataset=dataset, status="succeeded", samples_total=N)
    for metric, scale in (("answer_length", 1.0), ("bits_per_byte", factor)):
        _, numerators, _ = baseline.snapshots.get(metric=metric).arrays()
        noisy = numerators * scale * (1 + np.random.default_rng(7).normal(0, 0.01, N))
        SnapshotFactory(artifact=artifact, dataset=dataset, n=N, metric=metric, numerators=float_bytes(noisy))
    return artifact


def test_it_halts_and_alerts_with_the_red_metric_first(setup):
    artifact = candidate(setup, factor=1.05)

    assert artifact_evaluate(artifact=artifact) == "red"

    halt = PromotionEvent.objects.get(artifact=artifact, action=PromotionEvent.Action.HALT)
    alert = Alert.objects.get(artifact=artifact)
    assert halt.reason.startswith("bits per byte worse by"), halt.reason
    assert alert.message.startswith("bits per byte worse by"), alert.message
    assert "answer length" in halt.reason  # still there, after what decided


def test_it_says_a_green_candidate_off_the_base_branch_waits_for_the_branch_and_same_weights(setup):
    earlier = ArtifactFactory(family=setup[0], branch="main", status="halted", sha256="c" * 64)
    artifact = candidate(setup, factor=1.0, branch="feature/x", sha256="c" * 64)

    assert artifact_evaluate(artifact=artifact) == "green"

    hold = PromotionEvent.objects.get(artifact=artifact, action=PromotionEvent.Action.HOLD)
    assert hold.reason.startswith("Green, held for review: only the base branch main is promoted automatically")
    assert "feature/x" in hold.reason
    assert f"The same weights were registered as v{earlier.version} (halted)." in hold.reason
