"""A dataset with conversations beside single prompts: the review queue offers the single answers and
passes over the conversations (judged whole, not labelled), and a label posted on a conversation is
refused with a reason instead of an error."""

import numpy as np

from evals.models import Generation, GoldenDataset, GoldenSample, Label, MetricSnapshot
from evals.scoring.generation import messages_of
from evals.scoring.hashing import prompt_sha256, sample_sha256
from tests.generation.answer_board import SETTINGS
from tests.generation.test_conversation_review import conversation  # noqa: F401  (fixture)
from tests.labels.conftest import client_of, reviewer_named
from tests.labels.test_review_queue import browser_of, review_url, shown_sample

PROMPT = "Name a primary colour."


def add_single_answer(artifact, text: str) -> None:
    Generation.objects.create(
        weights_sha256=artifact.sha256,
        prompt_sha256=prompt_sha256(messages_of({"prompt": PROMPT})),
        config_sha256=SETTINGS["generation"],
        chat_template_sha256=SETTINGS["chat_template"],
        engine_version=SETTINGS["engine"],
        text=text,
        tokens=1,
        finish="eos",
    )


def with_a_prompt(candidate):
    """The conversation's dataset gains a prompted sample at position 1, answered by both models."""
    dataset = GoldenDataset.objects.get(name="chat-golden")
    GoldenSample.objects.create(
        dataset=dataset, position=1, sample_id="colour", prompt=PROMPT, sha256=sample_sha256(PROMPT, None)
    )
    GoldenDataset.objects.filter(pk=dataset.pk).update(sample_count=2)
    for snapshot in MetricSnapshot.objects.filter(artifact__in=[candidate, candidate.parent]):
        positions, numerators, denominators = snapshot.arrays()
        snapshot.positions = np.append(positions, 1).astype(np.int32).tobytes()
        snapshot.numerators = np.append(numerators, 0.5).tobytes()
        snapshot.denominators = np.append(denominators, 1.0).tobytes()
        snapshot.n = 2
        snapshot.save()
    add_single_answer(candidate, "Red.")
    add_single_answer(candidate.parent, "Blue.")
    return candidate


def test_the_review_queue_offers_the_single_answer_and_passes_over_the_conversation(conversation):  # noqa: F811
    candidate = with_a_prompt(conversation)
    browser = browser_of(reviewer_named("ada"))

    assert shown_sample(browser.get(review_url(candidate))) == "colour"
    response = browser.post(review_url(candidate), {"sample": "colour", "kind": "pairwise", "choice": "3"})
    assert response.status_code == 302
    assert Label.objects.get(sample__sample_id="colour").value == "tie"
    assert 'id="review-done"' in browser.get(review_url(candidate)).content.decode()


def test_a_label_on_a_conversation_is_refused_with_its_reason(conversation):  # noqa: F811
    candidate = with_a_prompt(conversation)
    client = client_of(reviewer_named("ada"))

    response = client.post(
        "/api/v1/labels/",
        {"artifact": candidate.pk, "sample": "talk", "kind": "pairwise", "value": "baseline"},
        format="json",
    )
    assert response.status_code == 400
    assert "conversation" in str(response.json()["sample"])
    assert not Label.objects.exists()
