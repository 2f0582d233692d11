"""The answers explorer (/artifacts/<id>/answers/) and the generations API's filters: every answer,
paginated, ranked by the metric's change, its absolute change or position, narrowed to a category and to
a text; blank answers made visible; judge replies reachable even where the baseline has no judge score."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from driftboard.dashboard import views
from evals.models import Generation, GoldenSample, MetricSnapshot
from evals.scoring.generation import messages_of
from evals.scoring.hashing import prompt_sha256
from tests.factories import ArtifactFactory, DatasetFactory, FamilyFactory, VerdictFactory
from tests.generation import answer_board
from tests.generation.answer_board import CANDIDATE_SIMILARITY, build_answer_board
from tests.judges.test_judge_observability import ScriptedJudge, _judged_snapshot, _samples


@pytest.fixture
def board(db):
    return build_answer_board()


@pytest.fixture
def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def explorer_url(artifact, **query) -> str:
    url = reverse("artifact-answers", args=[artifact.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def shown_ids(response) -> list[str]:
    return [pair.compared.sample_id for pair in response.context["answers"]]


def api_ids(api_client, artifact, **query) -> list[str]:
    body = api_client.get(f"/api/v1/artifacts/{artifact.pk}/generations/", {"page_size": 200, **query}).json()
    return [item["id"] for item in body["results"]]


def regressed_first() -> list[str]:
    return [f"q{p}" for p in sorted(range(len(CANDIDATE_SIMILARITY)), key=lambda p: CANDIDATE_SIMILARITY[p])]


def set_answer(artifact, sample: GoldenSample, text: str) -> None:
    digest = prompt_sha256(messages_of({"prompt": sample.prompt, "messages": sample.messages}))
    assert Generation.objects.filter(weights_sha256=artifact.sha256, prompt_sha256=digest).update(text=text) == 1


def test_it_lists_every_answer_not_only_the_regressed_ones(board, page_client, api_client):
    response = page_client.get(explorer_url(board.candidate))

    assert response.status_code == 200
    assert shown_ids(response) == regressed_first() == api_ids(api_client, board.candidate)
    assert len(shown_ids(response)) == len(CANDIDATE_SIMILARITY)  # the review page shows the 5 regressed only
    content = response.content.decode()
    assert '<h2 id="answer-count">12 answers</h2>' in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content and "<script>alert(1)" not in content


def test_it_pages_through_every_answer_in_the_same_order(board, page_client, monkeypatch):
    monkeypatch.setattr(views, "ANSWERS_PER_PAGE", 5)
    seen, page = [], 1
    while True:
        response = page_client.get(explorer_url(board.candidate, page=page))
        seen += shown_ids(response)
        if not response.context["page"].has_next():
            break
        assert f"page={page + 1}#answers" in response.content.decode()
        page += 1
    assert page == 3 and seen == regressed_first()


@pytest.mark.parametrize("order", ["regressed", "absolute", "position"])
def test_it_ranks_as_the_reviewer_picks_like_the_api(board, page_client, api_client, order):
    response = page_client.get(explorer_url(board.candidate, order=order))

    assert shown_ids(response) == api_ids(api_client, board.candidate, order=order)
    assert [current for _, _, current in response.context["orders"]] == [
        order == name for name in ("regressed", "absolute", "position")
    ]
    if order == "position":
        assert shown_ids(response) == [f"q{p}" for p in range(len(CANDIDATE_SIMILARITY))]


def test_it_filters_by_category_on_the_page_and_in_the_api(board, page_client, api_client):
    response = page_client.get(explorer_url(board.candidate, category="math"))

    math = [sample_id for sample_id in regressed_first() if int(sample_id[1:]) % 2]
    assert shown_ids(response) == math == api_ids(api_client, board.candidate, category="math")
    content = response.content.decode()
    assert '<option value="math" selected>' in content and '<option value="policy">' in content
    assert '<h2 id="answer-count">6 answers match</h2>' in content
    assert api_ids(api_client, board.candidate, category="nothing") == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("PARIS", ["q5"]),  # the reference (and both answers), whatever the case
        ("lyon", ["q5"]),  # the candidate's answer only
        ("case eight", ["q8"]),  # an answer only the candidate gave
        ("2 + 2", ["q1"]),  # a chat turn
        ("<script>", ["q1"]),  # model output, searched as text
        ("nobody wrote this", []),
    ],
)
def test_it_filters_by_text_in_the_prompt_reference_or_answers(board, page_client, api_client, text, found):
    response = page_client.get(explorer_url(board.candidate), {"text": text})

    assert shown_ids(response) == found == api_ids(api_client, board.candidate, text=text)


def test_a_blank_text_filters_nothing_and_both_filters_combine(board, page_client, api_client):
    assert shown_ids(page_client.get(explorer_url(board.candidate), {"text": "   "})) == regressed_first()
    assert api_ids(api_client, board.candidate, text="   ") == regressed_first()
    both = {"category": "policy", "text": "the policy covers case"}
    expected = [s for s in regressed_first() if int(s[1:]) % 2 == 0]
    assert shown_ids(page_client.get(explorer_url(board.candidate), both)) == expected
    assert api_ids(api_client, board.candidate, **both) == expected
    assert (
        page_client.get(explorer_url(board.candidate), {"category": "policy", "text": "lyon"}).context["answers"] == []
    )


def test_the_api_documents_its_filters(board, api_client):
    document = api_client.get("/api/schema/?format=json").json()
    parameters = document["paths"]["/api/v1/artifacts/{id}/generations/"]["get"]["parameters"]
    assert {"category", "text"} <= {p["name"] for p in parameters}
    too_long = api_client.get(f"/api/v1/artifacts/{board.candidate.pk}/generations/", {"text": "x" * 201})
    assert too_long.status_code == 400 and "text" in too_long.json()


def test_whitespace_and_empty_answers_are_visible(board, page_client):
    samples = {s.position: s for s in board.samples}
    set_answer(board.candidate, samples[4], "\n \n")
    set_answer(board.candidate, samples[6], "")

    content = page_client.get(explorer_url(board.candidate, order="position")).content.decode()

    def candidate_side(sample_id: str) -> str:
        start = content.index(f'data-sample-id="{sample_id}"')
        side = content.index('data-side="candidate"', start)
        return content[side : content.index("</article>", side)]

    blank = candidate_side("q4")
    assert '<span class="answer-text blank-text" data-blank>⏎·⏎</span>' in blank
    assert "only whitespace (3 characters)" in blank
    assert '<span class="muted">empty answer</span>' in candidate_side("q6")


def test_the_review_page_links_to_the_explorer_on_its_metric(board, page_client):
    content = page_client.get(board.review_url()).content.decode()
    link = re.search(r'<a href="([^"]+)" id="answers-explorer-link">', content).group(1).replace("&amp;", "&")
    assert link == explorer_url(board.candidate, dataset=board.dataset.name, metric="answer_similarity")
    assert page_client.get(link).status_code == 200
    section = content[content.index('<section class="card" id="answers">') :]
    assert f'href="{link.replace("&", "&amp;")}" id="all-answers-link"' in section[: section.index("</section>")]


def test_an_artifact_without_answers_or_an_unknown_metric_is_not_found(board, page_client):
    assert page_client.get(explorer_url(ArtifactFactory(family=board.family))).status_code == 404
    assert page_client.get(explorer_url(board.candidate, metric="bits_per_byte")).status_code == 404
    assert page_client.get(explorer_url(board.candidate, metric="exact_match")).status_code == 200


def test_it_needs_a_signed_in_user(board, client):
    assert client.get(explorer_url(board.candidate)).status_code == 302


# Judge replies


@pytest.fixture
def judged_alone(db):
    """A candidate judged by a judge, against a production baseline that has answers but no judge score."""
    family = FamilyFactory(slug="judged-alone")
    dataset = DatasetFactory(name="judged-golden")
    samples = _samples(dataset)
    baseline = ArtifactFactory(family=family, stage="production", status="promoted")
    candidate = ArtifactFactory(family=family, parent=baseline, status="held")
    judge = ScriptedJudge()
    snapshot = _judged_snapshot(candidate, dataset, samples, 2, judge)
    for sample in samples:
        Generation.objects.create(
            weights_sha256=baseline.sha256,
            prompt_sha256=prompt_sha256(messages_of({"prompt": sample.prompt})),
            config_sha256=answer_board.SETTINGS["generation"],
            chat_template_sha256=answer_board.SETTINGS["chat_template"],
            engine_version=answer_board.SETTINGS["engine"],
            text="baseline says so",
            tokens=3,
            finish="eos",
        )
    VerdictFactory(
        artifact=candidate,
        baseline=baseline,
        dataset=dataset,
        metric="judge_score",
        candidate_value=snapshot.value,
        baseline_value=None,
        delta=None,
        ci_low=None,
        ci_high=None,
        outcome="green",
        reasons=["the baseline has no judge score"],
    )
    return candidate, dataset


def test_judge_replies_are_reachable_where_the_baseline_has_no_judge_score(judged_alone, page_client):
    candidate, dataset = judged_alone
    review = page_client.get(f"{candidate.get_absolute_url()}?metric=judge_score")
    refused = re.search(r'<p class="notice" id="focus-refused">.*?</p>', review.content.decode(), re.S).group(0)
    link = re.search(r'<a href="([^"]+)" id="refused-answers-link">', refused).group(1).replace("&amp;", "&")
    assert link == explorer_url(candidate, dataset=dataset.name, metric="judge_score")

    response = page_client.get(link)
    content = response.content.decode()
    assert response.context["baseline"] is None and shown_ids(response) == ["q0", "q1", "q2", "q3"]
    first = content[content.index('data-sample-id="q0"') : content.index('data-sample-id="q1"')]
    assert 'data-judged="candidate"' in first and "A weak answer." in first
    assert "&lt;script&gt;alert(&#x27;judge&#x27;)&lt;/script&gt;" in first and "<script>alert" not in content
    assert re.findall(r'data-part="judge-value">([^<]*)<', first) == ["2", "2"]
    caption = re.search(r'<p class="small judge-caption" id="judge-caption">(.*?)</p>', content, re.S).group(1)
    assert "mean of the ratings 1–10 weighted by the probability" in caption
    assert "mean of its valid repeats" in caption
    assert 'title="The 1–10 rating in this reply' in first


def test_the_caption_is_left_out_where_no_judge_replied(board, page_client):
    content = page_client.get(explorer_url(board.candidate)).content.decode()
    assert 'id="judge-caption"' not in content and "data-judged" not in content


def test_a_baselines_values_are_not_shown_when_it_has_none(judged_alone, page_client):
    candidate, dataset = judged_alone
    content = page_client.get(explorer_url(candidate, metric="judge_score")).content.decode()
    assert 'data-side="baseline"' not in content and 'data-value="change"' not in content
    assert MetricSnapshot.objects.filter(metric="judge_score").count() == 1


def test_it_runs_the_same_queries_for_a_short_and_a_long_page(board, page_client, monkeypatch):
    counts = []
    for size in (2, 12):
        monkeypatch.setattr(views, "ANSWERS_PER_PAGE", size)
        with CaptureQueriesContext(connection) as context:
            response = page_client.get(explorer_url(board.candidate), {"category": "policy", "text": "case"})
        assert len(response.context["answers"]) == min(size, 6)
        counts.append(len(context.captured_queries))
    assert counts[0] == counts[1]
