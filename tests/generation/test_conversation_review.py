"""A conversation's turns on the generations API and the review page: every user turn with the
baseline's and the candidate's answers side by side, each side's later turns found under its own
earlier answers."""

import pytest
from django.test import Client

from evals.models import Generation, GoldenDataset, GoldenSample
from evals.scoring.conversations import turn_messages
from evals.scoring.hashing import prompt_sha256, sample_sha256
from registry.models import Artifact
from tests.factories import ArtifactFactory, DatasetFactory, FamilyFactory
from tests.generation.answer_board import SETTINGS, _snapshot, _verdict

TURNS = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Which city is the capital of France?", "reference": "Paris"},
    {"role": "user", "content": "And its river?", "reference": "the Seine"},
]
ANSWERS = {"baseline": ["Paris.", "The Seine."], "candidate": ["Lyon.", "The <b>Rhône</b>."]}


def store(artifact: Artifact, answers: list[str]) -> None:
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


@pytest.fixture
def conversation(db) -> Artifact:
    family = FamilyFactory(slug="chat-gpt")
    dataset = DatasetFactory(name="chat-golden")
    GoldenSample.objects.create(
        dataset=dataset, position=0, sample_id="talk", turns=TURNS, sha256=sample_sha256(None, None, turns=TURNS)
    )
    GoldenDataset.objects.filter(pk=dataset.pk).update(sample_count=1)
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    candidate = ArtifactFactory(family=family, parent=baseline, status=Artifact.Status.HELD, drift_flag="red")
    for artifact, value in ((baseline, 0.9), (candidate, 0.4)):
        _snapshot(artifact, dataset, "answer_similarity", [value])
        store(artifact, ANSWERS["baseline" if artifact == baseline else "candidate"])
    _verdict(candidate, baseline, dataset, "answer_similarity")
    return candidate


def test_it_gives_every_turn_with_both_answers_on_the_api(conversation, api_client):
    body = api_client.get(f"/api/v1/artifacts/{conversation.pk}/generations/").json()
    (item,) = body["results"]
    assert [(t["number"], t["user"], t["reference"]) for t in item["turns"]] == [
        (1, "Which city is the capital of France?", "Paris"),
        (2, "And its river?", "the Seine"),
    ]
    assert [t["baseline"]["text"] for t in item["turns"]] == ANSWERS["baseline"]
    assert [t["candidate"]["text"] for t in item["turns"]] == ANSWERS["candidate"]


def test_it_shows_the_turns_side_by_side_on_the_review_page(conversation, user):
    client = Client()
    client.force_login(user)
    content = client.get(f"{conversation.get_absolute_url()}?metric=answer_similarity").content.decode()
    turns = content[content.index('data-part="turns"') :]
    second = turns[turns.index('data-turn="2"') :]
    assert "And its river?" in second and "the Seine" in second
    assert "The Seine." in second[second.index('data-side="baseline"') : second.index('data-side="candidate"')]
    assert "The &lt;b&gt;Rhône&lt;/b&gt;." in second[second.index('data-side="candidate"') :]
    assert "Lyon." in turns[: turns.index('data-turn="2"')]
