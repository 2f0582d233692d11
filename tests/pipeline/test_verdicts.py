"""Verdicts and promotion from stored snapshots (the worker's last step), on the real database."""

import numpy as np
import pytest
from scipy import stats

from evals.models import DriftVerdict, EvalRun
from evals.services import artifact_evaluate
from evals.services.pipeline import family_create
from registry.models import Alert, ModelFamily
from tests.factories import ArtifactFactory, DatasetFactory, SnapshotFactory, float_bytes

N = 400


@pytest.fixture
def setup(db):
    family = family_create(slug="fam", kind="causal-lm", datasets=["golden"])
    dataset = DatasetFactory(name="golden", samples=N)
    baseline = ArtifactFactory(family=family, stage="production", status="promoted")
    base_snapshot = SnapshotFactory(artifact=baseline, dataset=dataset, n=N, seed=1)
    return family, dataset, baseline, base_snapshot


def candidate_with(setup, factor: float, noise: float = 0.01, branch: str = "main", **snapshot_fields):
    family, dataset, baseline, base_snapshot = setup
    artifact = ArtifactFactory(family=family, branch=branch, status="scoring")
    EvalRun.objects.create(artifact=artifact, dataset=dataset, status="succeeded", samples_total=N)
    _, base_num, _ = base_snapshot.arrays()
    rng = np.random.default_rng(7)
    numerators = base_num * factor * (1 + rng.normal(0, noise, N))
    SnapshotFactory(artifact=artifact, dataset=dataset, n=N, numerators=float_bytes(numerators), **snapshot_fields)
    return artifact


def test_a_clear_degradation_is_red_halted_and_alerted(setup):
    artifact = candidate_with(setup, factor=1.05)

    assert artifact_evaluate(artifact=artifact) == "red"

    artifact.refresh_from_db()
    verdict = artifact.verdicts.get()
    assert (artifact.drift_flag, artifact.status, artifact.stage) == ("red", "halted", "staging")
    assert verdict.delta == pytest.approx(-0.05, abs=0.01) and verdict.ci_high < -0.02
    assert verdict.threshold.metric == "bits_per_byte" and verdict.threshold_history_id is not None
    assert verdict.baseline == setup[2]
    assert Alert.objects.filter(artifact=artifact, severity="critical").exists()
    tags = {t.key: t.value for t in artifact.tags.all()}
    assert tags["drift_flag"] == "red" and tags["baseline_id"] == str(setup[2].pk)
    assert float(tags["delta.bits_per_byte"]) == pytest.approx(verdict.delta, abs=1e-5)


def test_an_improvement_is_green_and_promoted(setup):
    artifact = candidate_with(setup, factor=0.97)

    assert artifact_evaluate(artifact=artifact) == "green"

    artifact.refresh_from_db()
    assert (artifact.status, artifact.stage) == ("promoted", "production")
    setup[2].refresh_from_db()
    assert setup[2].stage == "archived"


def test_a_green_candidate_off_the_base_branch_is_held_not_promoted(setup):
    artifact = candidate_with(setup, factor=1.0, branch="experiment")

    assert artifact_evaluate(artifact=artifact) == "green"

    artifact.refresh_from_db()
    assert (artifact.status, artifact.stage) == ("held", "staging")


def test_a_point_estimate_beyond_the_limit_with_a_straddling_interval_is_amber(setup):
    artifact = candidate_with(setup, factor=1.035, noise=0.12)

    assert artifact_evaluate(artifact=artifact) == "amber"

    verdict = artifact.verdicts.get()
    assert verdict.delta < -0.02 < verdict.ci_high
    artifact.refresh_from_db()
    assert artifact.status == "held"


def test_a_different_fingerprint_is_incomparable_never_a_number(setup):
    artifact = candidate_with(
        setup,
        factor=1.0,
        fingerprint={
            "dataset_sha256": "d",
            "tokenizer_hash": "other",
            "scorer_version": "causal-rolling/1",
            "max_length": 64,
        },
    )

    assert artifact_evaluate(artifact=artifact) == "incomparable"

    verdict = artifact.verdicts.get()
    assert verdict.outcome == DriftVerdict.Outcome.INCOMPARABLE and verdict.delta is None
    # Bits per byte does not depend on the tokenizer, so only the context length is named.
    assert "max_length" in verdict.reasons[0] and "tokenizer_hash" not in verdict.reasons[0]


def test_the_first_scored_artifact_on_the_base_branch_becomes_the_baseline(db):
    family = family_create(slug="new", kind="causal-lm")
    artifact = ArtifactFactory(family=family, status="scoring")

    artifact_evaluate(artifact=artifact)

    artifact.refresh_from_db()
    assert (artifact.stage, artifact.status) == ("production", "promoted")
    assert artifact.events.filter(action="baseline").exists()


def test_a_manual_baseline_policy_waits_for_a_reviewer(db):
    family = family_create(slug="manual", kind="causal-lm", baseline_policy=ModelFamily.BaselinePolicy.MANUAL)
    artifact = ArtifactFactory(family=family, status="scoring")

    artifact_evaluate(artifact=artifact)

    artifact.refresh_from_db()
    assert (artifact.stage, artifact.status) == ("staging", "held")


def test_a_check_the_baseline_never_passed_is_compared_in_points_and_leaves_the_gated_verdict_alone(setup):
    family, dataset, baseline, _ = setup
    zeros, ones = float_bytes(np.zeros(N)), float_bytes(np.ones(N))
    SnapshotFactory(
        artifact=baseline, dataset=dataset, n=N, metric="exact_match", numerators=zeros, denominators=ones, value=0.0
    )
    artifact = candidate_with(setup, factor=0.97)
    matches = float_bytes((np.arange(N) % 10 == 0).astype(float))
    SnapshotFactory(
        artifact=artifact, dataset=dataset, n=N, metric="exact_match", numerators=matches, denominators=ones, value=0.1
    )

    assert artifact_evaluate(artifact=artifact) == "green"

    verdict = artifact.verdicts.get(metric="exact_match")
    # A 0/1 share changes in points (absolute deltas): from 0 to 0.1 is +0.1, not an undefined ratio.
    assert verdict.outcome != "incomparable" and verdict.delta == pytest.approx(0.1)
    assert verdict.baseline_value == 0.0
    flips = verdict.comparison["flips"]
    assert (flips["right_to_wrong"], flips["wrong_to_right"]) == (0, N // 10)
    assert flips["p_value"] == pytest.approx(stats.binomtest(0, N // 10, 0.5).pvalue)
