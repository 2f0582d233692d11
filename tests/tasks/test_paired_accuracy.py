"""Paired statistics of 0/1 metrics: McNemar's exact test on the questions that flipped, in the
verdict, on the review page and in the PR comment."""

import numpy as np
import pytest
from scipy import stats

from evals import comments
from evals.models import DriftVerdict
from evals.scoring import drift
from evals.scoring.scorers import METRICS
from evals.services.pipeline import artifact_evaluate
from registry.models import Artifact
from tests.factories import ArtifactFactory, DatasetFactory, SnapshotFactory, ThresholdFactory, float_bytes

ACCURACY = METRICS["accuracy"]


def answers(n: int, right: float, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(n) < right).astype(np.float64)


def compare_accuracy(candidate: np.ndarray, baseline: np.ndarray, n_boot: int = 2000) -> drift.Comparison:
    ones = np.ones_like(candidate)
    return drift.compare(ACCURACY, candidate, ones, baseline, ones, n_boot=n_boot)


@pytest.mark.parametrize(("lost", "gained"), [(12, 4), (4, 12), (0, 5), (7, 7), (30, 11), (1, 0)])
def test_it_gives_the_exact_mcnemar_p_value_of_scipy(lost, gained):
    baseline = np.array([1.0] * lost + [0.0] * gained + [1.0] * 20 + [0.0] * 9)
    candidate = np.array([0.0] * lost + [1.0] * gained + [1.0] * 20 + [0.0] * 9)
    flips = drift.mcnemar(candidate, baseline)
    expected = stats.binomtest(lost, lost + gained, 0.5).pvalue
    assert (flips.right_to_wrong, flips.wrong_to_right) == (lost, gained)
    assert flips.p_value == pytest.approx(expected, rel=1e-12)


def test_it_puts_mcnemar_in_the_verdict_of_accuracy_only():
    rng = np.random.default_rng(1)
    baseline = answers(200, 0.7, rng)
    candidate = np.where(rng.random(200) < 0.1, 1 - baseline, baseline)
    comparison = compare_accuracy(candidate, baseline)
    assert comparison.flips == drift.mcnemar(candidate, baseline)
    assert comparison.p_value == comparison.flips.p_value
    ones = np.ones(200)
    assert drift.compare(METRICS["gold_probability"], candidate, ones, baseline, ones).flips is None


def red_share(shift: float, *, runs: int = 200, n: int = 400, limit: float = 0.05) -> float:
    """The share of red verdicts, under a block limit of `limit`, for a candidate whose accuracy
    moved by `shift` from 0.7 while 10 % of its answers flip either way."""
    rng = np.random.default_rng(7)
    threshold = drift.ThresholdSpec(id=1, version=1, metric="accuracy", rule="relative", limit=limit, severity="block")
    reds = 0
    for _ in range(runs):
        baseline = answers(n, 0.7, rng)
        noise = np.where(rng.random(n) < 0.1, 1 - baseline, baseline)
        # Turn right answers wrong (or wrong ones right) until the expected accuracy moved by `shift`.
        right = noise == 1
        turn = rng.random(n) < abs(shift) / (right.mean() if shift < 0 else 1 - right.mean())
        candidate = np.where(turn & (right if shift < 0 else ~right), 1 - noise, noise)
        comparison = compare_accuracy(candidate, baseline, n_boot=400)
        reds += drift.classify(comparison, [threshold]).outcome == "red"
    return reds / runs


def test_it_rarely_calls_unchanged_accuracy_red_and_nearly_always_twice_the_limit():
    assert red_share(0.0) <= 0.01
    assert red_share(-0.10) >= 0.95


@pytest.fixture
def flipped_verdict(db):
    """A candidate whose accuracy fell from 0.7 to 0.62 over 100 questions: 12 right→wrong, 4 wrong→right."""
    dataset = DatasetFactory(samples=100)
    baseline = ArtifactFactory(stage=Artifact.Stage.PRODUCTION)
    candidate = ArtifactFactory(family=baseline.family, parent=baseline)
    before = np.array([1.0] * 12 + [0.0] * 4 + [1.0] * 58 + [0.0] * 26)
    after = np.array([0.0] * 12 + [1.0] * 4 + [1.0] * 58 + [0.0] * 26)
    for artifact, values in ((baseline, before), (candidate, after)):
        SnapshotFactory(
            artifact=artifact,
            dataset=dataset,
            metric="accuracy",
            scorer_version="multiple-choice@1",
            n=100,
            value=values.mean(),
            numerators=float_bytes(values),
            denominators=float_bytes(np.ones(100)),
        )
    ThresholdFactory(family=baseline.family, metric="accuracy", limit=0.05, rationale="Keep answering right.")
    artifact_evaluate(artifact=candidate)
    return DriftVerdict.objects.get(artifact=candidate, metric="accuracy")


def test_it_shows_the_flips_in_the_pr_comment_and_on_the_page(flipped_verdict, client, user):
    assert flipped_verdict.comparison["flips"]["right_to_wrong"] == 12
    assert flipped_verdict.p_value == pytest.approx(stats.binomtest(12, 16, 0.5).pvalue)
    body = comments.comment_render(artifact=flipped_verdict.artifact, marker="<!-- m -->", page_url="http://x/")
    assert "| accuracy | 0.6200 | 0.7000 | -0.08 (12 right→wrong, 4 wrong→right · McNemar p = 0.077) |" in body
    client.force_login(user)
    page = client.get(flipped_verdict.artifact.get_absolute_url()).content.decode()
    assert "12 right→wrong, 4 wrong→right · McNemar p = 0.077" in page
