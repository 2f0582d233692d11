"""Every sample as CSV or JSONL: the review page's download and the API's are the same rows, streamed."""

import csv
import io
import json

import pytest
from django.test import Client

from tests.generation.answer_board import CANDIDATE_SIMILARITY, FRANCE_CANDIDATE, build_answer_board


@pytest.fixture
def board(db):
    return build_answer_board()


@pytest.fixture
def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def lines(response) -> list[str]:
    assert response.streaming
    return b"".join(response.streaming_content).decode().splitlines()


def test_it_downloads_the_same_rows_from_the_page_and_the_api(board, page_client, api_client):
    page = page_client.get(f"/artifacts/{board.candidate.pk}/samples.jsonl")
    api = api_client.get(f"/api/v1/artifacts/{board.candidate.pk}/samples/")

    assert page["Content-Disposition"] == f'attachment; filename="qa-gpt-v{board.candidate.version}-samples.jsonl"'
    rows = [json.loads(line) for line in lines(page)]
    assert rows == [json.loads(line) for line in lines(api)]
    on_answers = [row for row in rows if row["dataset"] == board.dataset.name]
    assert [row["sample_id"] for row in on_answers] == [f"q{p}" for p in range(len(CANDIDATE_SIMILARITY))]
    worst = on_answers[5]
    assert worst["candidate_answer"] == FRANCE_CANDIDATE and worst["reference"] == "Paris"
    similarity = worst["metrics"]["answer_similarity"]
    assert similarity["candidate"] == pytest.approx(0.4) and similarity["baseline"] == pytest.approx(0.9)
    assert similarity["change"] == pytest.approx(0.4 - 0.9)  # answer similarity changes in cosine points
    assert on_answers[0]["candidate_answer"] is None  # no answer stored: null, not ""
    assert len(rows) == len(on_answers) + board.text_dataset.sample_count


def test_it_flattens_the_same_rows_to_csv(board, page_client, api_client):
    page = page_client.get(f"/artifacts/{board.candidate.pk}/samples.csv")
    api = api_client.get(f"/api/v1/artifacts/{board.candidate.pk}/samples/", {"as": "csv"})

    assert page["Content-Type"].startswith("text/csv")
    text = lines(page)
    assert text == lines(api)
    rows = [row for row in csv.DictReader(io.StringIO("\n".join(text))) if row["dataset"] == board.dataset.name]
    assert float(rows[5]["answer_similarity.candidate"]) == pytest.approx(0.4)
    assert rows[5]["candidate_answer"] == FRANCE_CANDIDATE
    assert {"bits_per_byte.baseline", "exact_match.change"} <= set(rows[0])


def test_it_refuses_an_unknown_format_naming_the_field(board, api_client):
    response = api_client.get(f"/api/v1/artifacts/{board.candidate.pk}/samples/", {"as": "xlsx"})

    assert response.status_code == 400
    assert "as" in response.json()


def test_it_needs_a_signed_in_user(board, client):
    assert client.get(f"/artifacts/{board.candidate.pk}/samples.csv").status_code == 302
