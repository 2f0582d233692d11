"""In Chromium: one candidate's review page with the questions its accuracy flipped (and McNemar's
p-value) and a multi-turn conversation, each turn with the baseline's and the candidate's answers
side by side, hostile text shown as text."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from evals.models import Generation, GoldenDataset, GoldenSample
from evals.scoring import drift
from evals.scoring.conversations import turn_messages
from evals.scoring.hashing import prompt_sha256, sample_sha256
from evals.scoring.scorers import METRICS
from evals.services.verdicts import json_safe
from registry.models import Artifact
from tests.factories import ArtifactFactory, DatasetFactory, FamilyFactory, SnapshotFactory, VerdictFactory, float_bytes
from tests.generation.answer_board import SETTINGS, _snapshot, _verdict

pytestmark = pytest.mark.browser

HOSTILE_TURN = '<img src=x onerror="window.pwned=1"> Which river?'
HOSTILE_ANSWER = "<script>window.pwned=1</script><b>The Rhône.</b>"
TURNS = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Which city is the capital of France?", "reference": "Paris"},
    {"role": "user", "content": HOSTILE_TURN, "reference": "the Seine"},
    {"role": "user", "content": "And its length?", "reference": "777 km"},
]
ANSWERS = {
    "baseline": ["Paris.", "The Seine.", "About 777 km."],
    "candidate": ["Lyon.", HOSTILE_ANSWER, "About 800 km."],
}
# 30 questions: 9 right→wrong, 2 wrong→right, 12 right on both sides, 7 wrong on both.
BEFORE = np.array([1.0] * 9 + [0.0] * 2 + [1.0] * 12 + [0.0] * 7)
AFTER = np.array([0.0] * 9 + [1.0] * 2 + [1.0] * 12 + [0.0] * 7)


def store(artifact: Artifact, answers: list[str]) -> None:
    """Each turn's answer as the engine stores it: under the messages asking it, this side's earlier answers included."""
    for turn, text in enumerate(answers):
        Generation.objects.create(
            weights_sha256=artifact.sha256,
            prompt_sha256=prompt_sha256(turn_messages(TURNS, answers[:turn])[turn]),
            config_sha256=SETTINGS["generation"],
            chat_template_sha256=SETTINGS["chat_template"],
            engine_version=SETTINGS["engine"],
            text=text,
            tokens=len(text.split()),
            finish="eos",
        )


def accuracy_verdict(baseline: Artifact, candidate: Artifact) -> None:
    dataset = DatasetFactory(name="quiz-golden", samples=len(BEFORE))
    for artifact, values in ((baseline, BEFORE), (candidate, AFTER)):
        SnapshotFactory(
            artifact=artifact,
            dataset=dataset,
            metric="accuracy",
            scorer_version="multiple-choice@1",
            n=len(values),
            level=values.mean(),
            numerators=float_bytes(values),
            denominators=float_bytes(np.ones(len(values))),
        )
    ones = np.ones(len(BEFORE))
    comparison = drift.compare(METRICS["accuracy"], AFTER, ones, BEFORE, ones, n_boot=200)
    VerdictFactory(
        artifact=candidate,
        baseline=baseline,
        dataset=dataset,
        metric="accuracy",
        candidate_value=comparison.candidate,
        baseline_value=comparison.baseline,
        delta=comparison.delta,
        ci_low=comparison.ci_low,
        ci_high=comparison.ci_high,
        p_value=comparison.p_value,
        comparison=json_safe(dataclasses.asdict(comparison)),
    )


@pytest.fixture
def reviewed(transactional_db) -> tuple[Artifact, GoldenDataset]:
    family = FamilyFactory(slug="quiz-chat")
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    candidate = ArtifactFactory(family=family, parent=baseline, status=Artifact.Status.HELD, drift_flag="red")
    accuracy_verdict(baseline, candidate)
    chat = DatasetFactory(name="chat-golden")
    GoldenSample.objects.create(
        dataset=chat, position=0, sample_id="talk", turns=TURNS, sha256=sample_sha256(None, None, turns=TURNS)
    )
    GoldenDataset.objects.filter(pk=chat.pk).update(sample_count=1)
    for artifact, side, value in ((baseline, "baseline", 0.9), (candidate, "candidate", 0.4)):
        _snapshot(artifact, chat, "answer_similarity", [value])
        store(artifact, ANSWERS[side])
    _verdict(candidate, baseline, chat, "answer_similarity")
    return candidate, chat


def test_it_shows_the_flips_and_every_turn_of_both_versions(open_page, reader, reviewed):
    candidate, chat = reviewed
    page, errors = open_page(reader)
    page.goto(f"{candidate.get_absolute_url()}?metric=answer_similarity&dataset={chat.pk}#answers")
    page.locator("#answers").wait_for()

    flips = page.locator("#verdicts tr", has_text="quiz-golden").locator(".flips")
    p = stats.binomtest(9, 11, 0.5).pvalue
    assert flips.is_visible()
    assert flips.inner_text() == f"9 right→wrong, 2 wrong→right · McNemar p = {p:.3f}".rstrip("0")

    turns = page.locator('#answers [data-sample-id="talk"] .conversation-turn')
    assert turns.count() == 3
    for number in range(3):
        turn = turns.nth(number)
        assert turn.locator('[data-part="user"]').inner_text() == TURNS[number + 1]["content"]
        baseline, candidate_side = (turn.locator(f'[data-side="{side}"]') for side in ("baseline", "candidate"))
        assert baseline.locator(".answer-text").inner_text() == ANSWERS["baseline"][number]
        assert candidate_side.locator(".answer-text").inner_text() == ANSWERS["candidate"][number]
        left, right = baseline.bounding_box(), candidate_side.bounding_box()
        assert right["x"] >= left["x"] + left["width"] - 1 and abs(right["y"] - left["y"]) < 2  # side by side

    assert page.locator("#answers img, #answers script, #answers .answer-text b").count() == 0
    assert page.evaluate("window.pwned") is None
    assert errors == []
