"""Golden datasets with prompts through the real upload API: stored, handed to the engine, and the
hashes of text-only samples unchanged."""

import json

from django.core.files.uploadedfile import SimpleUploadedFile

from evals.models import GoldenSample
from evals.scoring.hashing import sample_sha256
from evals.services.engine import dataset_samples

CHAT = [{"role": "user", "content": "What does len() return?"}]
ROWS = [
    {"id": "p", "prompt": "len() returns", "reference": "the number of items"},
    {"id": "m", "messages": CHAT, "reference": "its length", "category": "chat"},
    {"id": "t", "text": "Only text.", "reference": "ref"},
]


def upload(client, rows):
    content = "\n".join(json.dumps(row) for row in rows).encode()
    return client.post(
        "/api/v1/datasets/", {"name": "answers", "file": SimpleUploadedFile("a.jsonl", content)}, format="multipart"
    )


def test_it_stores_prompts_and_messages_and_hands_them_to_the_engine(api_client):
    response = upload(api_client, ROWS)
    assert response.status_code == 201, response.json()
    stored = {s.sample_id: s for s in GoldenSample.objects.all()}
    assert (stored["p"].prompt, stored["p"].text, stored["p"].messages) == ("len() returns", "", None)
    assert stored["m"].messages == CHAT
    assert stored["t"].sha256 == sample_sha256("Only text.", "ref"), "text-only samples hash as before"
    samples = dataset_samples(stored["p"].dataset)
    assert [(s["prompt"], s["messages"]) for s in samples] == [("len() returns", None), ("", CHAT), ("", None)]
    engine_hash = sample_sha256(samples[2]["text"], samples[2]["reference"], prompt=samples[2]["prompt"])
    assert engine_hash == stored["t"].sha256


def test_it_refuses_bad_messages_with_the_row_and_stores_nothing(api_client):
    response = upload(api_client, [ROWS[0], {"id": "bad", "messages": [{"role": "robot", "content": "x"}]}])
    assert response.status_code == 400
    assert response.json()["row"] == 2 and "robot" in json.dumps(response.json())
    assert not GoldenSample.objects.exists()
