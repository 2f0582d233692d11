"""Generated answers under review: GET /api/v1/artifacts/{id}/generations/ (shape, order, paging, refusals)
and the review page's side-by-side answers of the prompts that regressed most, model output kept as text."""

import re

import pytest
import requests
import schemathesis
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from driftboard.dashboard.views import FOLD_CHARS, Segment, word_diff
from tests.factories import ArtifactFactory
from tests.generation import answer_board
from tests.generation.answer_board import (
    BASELINE_SIMILARITY,
    CANDIDATE_SIMILARITY,
    FRANCE_CANDIDATE,
    HOSTILE,
    LONG_BASELINE,
    AnswerBoard,
    build_answer_board,
)

ITEM_KEYS = {
    "id",
    "position",
    "category",
    "prompt",
    "messages",
    "reference",
    "candidate",
    "baseline",
    "candidate_value",
    "baseline_value",
    "relative_change",
    "change",
    "unchanged",
    "departs_at_token",
    "turns",
    "candidate_judged",
    "baseline_judged",
}


@pytest.fixture
def board(db) -> AnswerBoard:
    return build_answer_board()


@pytest.fixture
def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def generations_url(artifact, **query) -> str:
    url = f"/api/v1/artifacts/{artifact.pk}/generations/"
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def relative_change(position: int) -> float:
    return (CANDIDATE_SIMILARITY[position] - BASELINE_SIMILARITY) / BASELINE_SIMILARITY


def worst_first() -> list[int]:
    return sorted(range(len(CANDIDATE_SIMILARITY)), key=relative_change)


def answers_section(content: str) -> str:
    start = content.index('<section class="card" id="answers">')
    return content[start : content.index("</section>", start)]


def article(section: str, sample_id: str) -> str:
    start = section.index(f'data-sample-id="{sample_id}"')
    end = section.find("<article", start)
    return section[start : end if end != -1 else len(section)]


# The API


def test_it_lists_the_answers_the_most_regressed_first(board, api_client):
    body = api_client.get(generations_url(board.candidate)).json()
    assert (body["metric"], body["dataset"], body["dataset_version"]) == ("answer_similarity", "qa-golden", 1)
    assert (body["baseline"], body["order"], body["count"]) == (board.baseline.pk, "regressed", 12)
    results = body["results"]
    assert [item["position"] for item in results] == worst_first()
    assert results[0]["id"] == f"q{answer_board.WORST}"
    assert all(set(item) == ITEM_KEYS for item in results)
    worst = results[0]
    assert worst["prompt"] == "Name the capital of France." and worst["reference"] == "Paris"
    assert worst["candidate"] == {"text": FRANCE_CANDIDATE, "tokens": 6, "finish": "eos"}
    assert worst["baseline"]["text"] == answer_board.FRANCE_BASELINE
    assert worst["candidate_value"] == pytest.approx(0.4) and worst["baseline_value"] == pytest.approx(0.9)
    # Answer similarity changes in cosine points (its spec's absolute delta): no relative change is given.
    assert worst["relative_change"] is None and worst["change"] == pytest.approx(0.4 - 0.9)
    changes = [item["change"] for item in results]
    assert changes == sorted(changes)


def test_it_gives_chat_turns_and_missing_answers_as_they_are(board, api_client):
    by_position = {
        item["position"]: item for item in api_client.get(generations_url(board.candidate)).json()["results"]
    }
    chat = by_position[answer_board.HOSTILE_POSITION]
    assert chat["prompt"] == "" and chat["messages"][1] == {"role": "user", "content": "What is 2 + 2?"}
    assert chat["candidate"]["text"] == HOSTILE
    assert by_position[answer_board.NO_CANDIDATE_ANSWER]["candidate"] is None
    assert by_position[answer_board.NO_BASELINE_ANSWER]["baseline"] is None
    assert by_position[answer_board.NO_BASELINE_ANSWER]["candidate"]["text"] == "The policy covers case eight."


def test_it_keeps_dataset_order_when_asked(board, api_client):
    body = api_client.get(generations_url(board.candidate, order="position")).json()
    assert body["order"] == "position"
    assert [item["position"] for item in body["results"]] == list(range(12))


def test_an_artifact_without_a_baseline_lists_its_answers_in_dataset_order(board, api_client):
    body = api_client.get(generations_url(board.baseline)).json()
    assert (body["baseline"], body["order"]) == (None, "position")
    assert [item["position"] for item in body["results"]] == list(range(12))
    assert all(item["baseline"] is None and item["relative_change"] is None for item in body["results"])
    assert body["results"][answer_board.WORST]["candidate"]["text"] == answer_board.FRANCE_BASELINE


def test_it_pages_through_the_same_order(board, api_client):
    seen = []
    url = generations_url(board.candidate, page_size=5)
    while url:
        body = api_client.get(url).json()
        assert body["count"] == 12 and body["metric"] == "answer_similarity"
        seen.extend(item["position"] for item in body["results"])
        url = body["next"]
    assert seen == worst_first()
    assert api_client.get(generations_url(board.candidate, page_size=5, page=3)).json()["previous"]
    assert api_client.get(generations_url(board.candidate, page=9)).status_code == 404


def test_it_answers_another_generation_metric(board, api_client):
    body = api_client.get(generations_url(board.candidate, metric="exact_match", dataset="qa-golden")).json()
    assert body["metric"] == "exact_match" and body["baseline"] == board.baseline.pk
    assert {item["candidate_value"] for item in body["results"]} == {0.0, 1.0}


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ({"dataset": "nope"}, "dataset", "datasets with answers: qa-golden"),
        ({"metric": "bits_per_byte"}, "metric", "metrics with answers: answer_similarity, exact_match"),
        ({"order": "best"}, "order", "not a valid choice"),
    ],
)
def test_it_refuses_what_it_has_no_answers_for(board, api_client, query, field, says):
    response = api_client.get(generations_url(board.candidate, **query))
    assert response.status_code == 400
    assert says in response.json()[field][0]


def test_an_artifact_without_generated_answers_is_not_found(board, api_client):
    response = api_client.get(generations_url(ArtifactFactory(family=board.family)))
    assert response.status_code == 404
    assert "has no generated answers" in response.json()["detail"]
    assert api_client.get("/api/v1/artifacts/999999/generations/").status_code == 404


def test_it_needs_a_signed_in_user(board, anonymous_client):
    assert anonymous_client.get(generations_url(board.candidate)).status_code == 401


def test_it_runs_the_same_queries_for_a_short_and_a_long_page(board, api_client):
    counts = []
    for size in (2, 12):
        with CaptureQueriesContext(connection) as context:
            assert len(api_client.get(generations_url(board.candidate, page_size=size)).json()["results"]) == size
        counts.append(len(context.captured_queries))
    assert counts[0] == counts[1] <= 9


def test_the_schema_documents_it_as_it_answers(board, api_client):
    document = api_client.get("/api/schema/?format=json").json()
    documented = document["paths"]["/api/v1/artifacts/{id}/generations/"]["get"]
    assert {p["name"] for p in documented["parameters"]} >= {"id", "dataset", "metric", "order", "page", "page_size"}
    assert {"200", "400", "404"} <= set(documented["responses"])
    operation = schemathesis.openapi.from_dict(document)["/api/v1/artifacts/{id}/generations/"]["GET"]
    for url in (
        generations_url(board.candidate),
        generations_url(board.baseline, metric="exact_match"),
        generations_url(board.candidate, dataset="nope"),
        generations_url(ArtifactFactory(family=board.family)),
    ):
        answer = api_client.get(url)
        operation.validate_response(
            schemathesis.Response(
                status_code=answer.status_code,
                headers={"Content-Type": [answer["Content-Type"]]},
                content=answer.content,
                request=requests.Request("GET", f"http://testserver{url}").prepare(),
                elapsed=0.0,
                verify=True,
            )
        )


# The review page


def test_it_shows_the_answers_of_the_samples_that_regressed_most(board, page_client):
    response = page_client.get(board.review_url())
    regressions = [row.position for row in response.context["regressions"]]
    assert regressions == [p for p in worst_first() if relative_change(p) < 0]
    assert [pair.compared.position for pair in response.context["answers"]] == regressions
    section = answers_section(response.content.decode())
    assert "The answers that regressed most" in section
    worst = article(section, "q5")
    assert "Name the capital of France." in worst and "Paris" in worst
    assert "The capital of France is <del>Paris.</del>" in worst
    assert "The capital of France is <ins>Lyon.</ins>" in worst
    assert 'baseline <span data-value="baseline">0.9000</span>' in worst
    assert '<strong data-value="relative-change">-0.5</strong>' in worst


def test_model_output_is_shown_as_text(board, page_client):
    section = answers_section(page_client.get(board.review_url()).content.decode())
    hostile = article(section, "q1")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile and "&lt;b&gt;bold&lt;/b&gt;" in hostile
    assert "<script>" not in section and "<b>" not in section


def test_it_shows_chat_turns_as_role_and_content(board, page_client):
    section = answers_section(page_client.get(board.review_url()).content.decode())
    assert "system: Answer briefly.\nuser: What is 2 + 2?" in article(section, "q1")


def test_a_side_without_a_stored_answer_says_so(board, page_client):
    section = answers_section(page_client.get(board.review_url()).content.decode())
    for sample_id, side in (("q0", "candidate"), ("q8", "baseline")):
        shown = article(section, sample_id)
        side_html = shown[shown.index(f'data-side="{side}"') :]
        assert side_html.split("</div>")[0].count("no answer stored") == 1
    assert section.count("no answer stored") == 2


def test_a_long_answer_is_folded_to_its_start(board, page_client):
    long = article(answers_section(page_client.get(board.review_url()).content.decode()), "q3")
    baseline = long[long.index('data-side="baseline"') : long.index('data-side="candidate"')]
    assert '<details class="fold">' in baseline and '<details class="fold" open' not in baseline
    preview = re.search(r'<span class="answer-text fold-preview">(.*?)…</span>', baseline, re.S).group(1)
    assert preview == LONG_BASELINE[:FOLD_CHARS]
    assert f"show all {len(LONG_BASELINE)} characters (differences further on)" in baseline
    assert "step <del>6</del> of" in baseline
    candidate = long[long.index('data-side="candidate"') :]
    assert "step <ins>six</ins> of" in candidate
    assert "<ins>It adds a closing remark nobody asked for.</ins>" in candidate


def test_the_regressions_table_shows_the_prompt_of_a_prompt_only_sample(board, page_client):
    rows = page_client.get(board.review_url()).context["regressions"]
    assert rows[0].excerpt == "Name the capital of France."
    assert next(r for r in rows if r.sample_id == "q1").excerpt == "system: Answer briefly.\nuser: What is 2 + 2?"


def test_a_metric_not_computed_from_answers_shows_no_answers(board, page_client):
    response = page_client.get(board.review_url("bits_per_byte"))
    assert response.context["focus"].verdict.metric == "bits_per_byte"
    assert response.context["answers"] is None
    assert 'id="answers"' not in response.content.decode()


# The word diff


def test_the_word_diff_marks_changed_words_and_keeps_every_character():
    old, new = word_diff("The cat  sat\non the mat.", "The dog  sat\non the mat, twice.")
    assert old == [
        Segment("same", "The "),
        Segment("del", "cat"),
        Segment("same", "  sat\non the "),
        Segment("del", "mat."),
    ]
    assert new[1] == Segment("ins", "dog") and new[-1] == Segment("ins", "mat, twice.")
    assert "".join(s.text for s in old) == "The cat  sat\non the mat."
    assert "".join(s.text for s in new) == "The dog  sat\non the mat, twice."


def test_the_word_diff_compares_words_not_the_whitespace_between_them():
    old, new = word_diff("  one two\nthree", "one  two three ")
    assert [s.kind for s in old] == ["same"] and [s.kind for s in new] == ["same"]
    assert old[0].text == "  one two\nthree" and new[0].text == "one  two three "
