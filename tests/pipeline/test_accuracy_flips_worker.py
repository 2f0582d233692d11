"""Accuracy through the real worker: a family scored by the multiple-choice scorer, a candidate
compared with its baseline question by question, and the flips and McNemar's p-value in the PR comment."""

import io
import json

import numpy as np
import pytest
from scipy import stats

from driftboard.formatting import p_value
from evals.models import MetricSnapshot, Threshold
from evals.selectors import change_text
from evals.services import dataset_import
from evals.services.pipeline import family_create
from evals.services.thresholds import threshold_save
from tests.conftest import wait_for
from tests.pipeline.test_worker_pipeline import register, settled
from tests.publishing.forge import GITHUB_TOKEN

pytestmark = pytest.mark.worker

QUESTIONS = 40
PR_URL = "https://github.com/acme/weights/pull/7"


def demo_questions(golden_path) -> list[dict]:
    """'How does this held-out passage go on?': its next words among three other passages' words
    at the same place, the gold choice moving from first to last."""
    passages = [row["text"].split() for row in map(json.loads, golden_path.read_text().splitlines())]
    passages = [words for words in passages if len(words) >= 20][:QUESTIONS]
    questions = []
    for index, words in enumerate(passages):
        cut = 8 + index % 6
        others = [passages[(index + shift) % len(passages)] for shift in (1, 2, 3)]
        choices = [" ".join(other[cut : cut + 3]) for other in others]
        choices.insert(index % 4, " ".join(words[cut : cut + 3]))
        questions.append(
            {"id": f"q{index:02d}", "prompt": " ".join(words[:cut]), "choices": choices, "answer": index % 4}
        )
    return questions


@pytest.fixture
def quiz_family(transactional_db, demo_build):
    questions = demo_questions(demo_build.golden)
    assert len(questions) == QUESTIONS
    rows = "".join(json.dumps(question) + "\n" for question in questions)
    dataset_import(name="quiz", filename="quiz.jsonl", source=io.BytesIO(rows.encode()))
    family = family_create(
        slug="quiz", kind="causal-lm", base_path=str(demo_build.base), datasets=["quiz"], scorers=["multiple-choice"]
    )
    threshold_save(
        threshold=Threshold(
            family=family,
            metric="accuracy",
            rule=Threshold.Rule.RELATIVE,
            limit=0.05,
            severity=Threshold.Severity.BLOCK,
            owner="tests",
            rationale="Keep answering the questions right.",
        ),
        user=None,
        reason="test",
    )
    return family


def answers(artifact) -> np.ndarray:
    """The artifact's stored 0/1 accuracy per question."""
    snapshot = MetricSnapshot.objects.get(artifact=artifact, metric="accuracy")
    return np.frombuffer(snapshot.numerators, dtype=np.float64) / np.frombuffer(snapshot.denominators, dtype=np.float64)


def test_the_pr_comment_gives_the_flips_and_mcnemar_p_of_the_stored_answers(
    forge, celery_worker_factory, api_client, quiz_family, demo_imports
):
    celery_worker_factory(DRIFTBOARD_GITHUB_API_URL=forge.url, DRIFTBOARD_GITHUB_TOKEN=GITHUB_TOKEN)
    baseline = settled(register(api_client, quiz_family, demo_imports["base"], "a" * 40))
    response = api_client.post(
        "/api/v1/artifacts/",
        {
            "family": "quiz",
            "commit": "b" * 40,
            "branch": "finetune",
            "path": str(demo_imports["drifted"]),
            "pr_url": PR_URL,
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    candidate = settled(quiz_family.artifacts.get(pk=response.json()["id"]))

    before, after = answers(baseline), answers(candidate)
    lost, gained = int(np.sum((before == 1) & (after == 0))), int(np.sum((before == 0) & (after == 1)))
    expected_p = stats.binomtest(lost, lost + gained, 0.5).pvalue if lost + gained else 1.0
    assert len(before) == len(after) == QUESTIONS and lost + gained > 0

    verdict = candidate.verdicts.get(metric="accuracy")
    assert verdict.baseline_id == baseline.pk
    assert (verdict.comparison["flips"]["right_to_wrong"], verdict.comparison["flips"]["wrong_to_right"]) == (
        lost,
        gained,
    )
    assert verdict.p_value == pytest.approx(expected_p, rel=1e-9)

    flips = f"{lost} right→wrong, {gained} wrong→right · McNemar {p_value(expected_p)}"
    change = change_text("accuracy", after.mean() - before.mean())
    accuracy_row = f"| quiz | accuracy | {after.mean():.4f} | {before.mean():.4f} | {change} ({flips}) |"

    def commented() -> str:
        bodies = [comment["body"] for comment in forge.github_comments.get(("acme/weights", 7), [])]
        return next((body for body in bodies if "right→wrong" in body), "")

    body = wait_for(commented, timeout=60, message="the PR comment with the verdicts")
    assert accuracy_row in body, body
