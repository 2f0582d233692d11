"""The answer diff as a signal: how many of the candidate's answers equal the baseline's and where the
others depart (known from drafting) — per answer on the generations API, in one sentence on the
review page and in the PR comment, and at its token in the side-by-side view."""

import pytest
from django.test import Client

from evals.comments import comment_render
from evals.models import Generation
from tests.generation.answer_board import FRANCE_CANDIDATE, LONG_CANDIDATE, WORST, AnswerBoard, build_answer_board

# Both sides answered 10 of the 12 prompts; 7 of those answers are the same.
SENTENCE = "7 of 10 answers unchanged; the others depart at token 5 on median"


@pytest.fixture
def board(db) -> AnswerBoard:
    board = build_answer_board()
    drafted = Generation.objects.filter(weights_sha256=board.candidate.sha256)
    drafted.update(drafted_from=board.baseline.sha256)
    drafted.filter(text=FRANCE_CANDIDATE).update(departs_at_token=5)
    drafted.filter(text=LONG_CANDIDATE).update(departs_at_token=60)
    drafted.exclude(text__in=[FRANCE_CANDIDATE, LONG_CANDIDATE]).exclude(text__startswith="The policy").update(
        departs_at_token=1
    )
    return board


def test_it_gives_each_answer_unchanged_and_where_it_departs(board, api_client):
    url = f"/api/v1/artifacts/{board.candidate.pk}/generations/?order=position&page_size=50"
    results = {item["position"]: item for item in api_client.get(url).json()["results"]}
    assert results[WORST]["unchanged"] is False and results[WORST]["departs_at_token"] == 5
    assert results[2]["unchanged"] is True and results[2]["departs_at_token"] is None
    assert results[0]["unchanged"] is None, "no candidate answer stored"
    assert sum(item["unchanged"] is True for item in results.values()) == 7


def test_it_does_not_claim_a_departure_from_another_artifacts_draft(board, api_client):
    Generation.objects.filter(weights_sha256=board.candidate.sha256).update(drafted_from="f" * 64)
    url = f"/api/v1/artifacts/{board.candidate.pk}/generations/?order=position&page_size=50"
    results = api_client.get(url).json()["results"]
    assert all(item["departs_at_token"] is None for item in results)


def test_it_says_how_many_answers_are_unchanged_on_the_review_page(board, user):
    client = Client()
    client.force_login(user)
    content = client.get(board.review_url()).content.decode()
    assert SENTENCE in content
    assert "departs from the baseline's answer at token 5" in content


def test_it_says_how_many_answers_are_unchanged_in_the_pr_comment(board):
    body = comment_render(artifact=board.candidate, marker="<!-- m -->", page_url="http://x/")
    assert f"{SENTENCE} (v{board.baseline.version} → v{board.candidate.version})." in body
