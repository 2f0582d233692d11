"""Small wording on the review, compare and threshold pages: "The sample that regressed most", never "The 1
samples" or "The 0 samples"; the backtest takes its limit in the units the page words it in (3 %, not 0.03)."""

import re

import pytest
from django.urls import reverse

from evals.models import MetricSnapshot
from evals.services import threshold_backtest
from tests.factories import float_bytes
from tests.generation.answer_board import BASELINE_SIMILARITY, CANDIDATE_SIMILARITY, build_answer_board


def regressing(board, count: int) -> None:
    """The candidate's answer similarity: better than the baseline's everywhere but on `count` samples."""
    values = [BASELINE_SIMILARITY + 0.05] * len(CANDIDATE_SIMILARITY)
    for position in range(count):
        values[position] = BASELINE_SIMILARITY - 0.1 * (position + 1)
    snapshot = MetricSnapshot.objects.get(artifact=board.candidate, dataset=board.dataset, metric="answer_similarity")
    snapshot.numerators = float_bytes(values)
    snapshot.save()


def worse_on(a, b, count: int) -> None:
    """b's bits per byte: a's on every sample, 10 % better, but 10 % worse on the first `count`."""
    theirs = MetricSnapshot.objects.get(artifact=a, metric="bits_per_byte")
    mine = MetricSnapshot.objects.get(artifact=b, metric="bits_per_byte")
    numerators = theirs.arrays()[1] * 0.9
    numerators[:count] = theirs.arrays()[1][:count] * 1.1
    mine.positions, mine.denominators = theirs.positions, theirs.denominators
    mine.numerators = float_bytes(numerators)
    mine.save()


def heading(content: str) -> str:
    card = content[content.index('id="distributions"') :]
    return re.sub(r"<[^>]+>", "", re.search(r"<h3>(.*?)</h3>", card, re.S).group(1))


COUNTS = [
    (0, "Samples that regressed most"),
    (1, "The sample that regressed most"),
    (3, "The 3 samples that regressed most"),
]


@pytest.mark.parametrize(("count", "said"), COUNTS)
def test_the_review_pages_heading_agrees_with_its_count(db, user, client, count, said):
    board = build_answer_board()
    regressing(board, count)
    client.force_login(user)

    review = client.get(board.review_url()).content.decode()

    assert heading(review).startswith(said)
    assert "The 0 samples" not in review and "The 1 samples" not in review
    assert ("No sample got worse." in review) == (count == 0)


@pytest.mark.parametrize(("count", "said"), COUNTS)
def test_the_compare_pages_heading_agrees_with_its_count(board, reader_client, count, said):
    a, b = board.candidate("green"), board.candidate("red")
    worse_on(a, b, count)

    compare = reader_client.get(
        f"{reverse('family-compare', args=[board.family.slug])}?a={a.pk}&b={b.pk}&metric=bits_per_byte"
    ).content.decode()

    assert heading(compare).startswith(said)
    assert "The 0 samples" not in compare and "The 1 samples" not in compare
    assert ("No sample got worse." in compare) == (count == 0)


def test_the_backtest_takes_the_limit_in_percent_as_the_page_words_it(board, reader_client):
    url = reverse("threshold-detail", args=[board.threshold.pk])
    page = reader_client.get(url)
    content = page.content.decode()
    assert board.threshold.limit == 0.03 and "relative degradation limit 3 %" in content
    assert re.search(r'name="limit" value="3(\.0)?"', content)
    assert "relative rule: in % (2 = 2 %)" in content

    drafted = reader_client.get(url, {"rule": "relative", "limit": "3", "severity": board.threshold.severity})
    backtest = drafted.context["backtest"]
    stored = threshold_backtest(threshold=board.threshold)  # the saved 3 %
    assert backtest is not None
    assert [would_be for _, _, would_be in backtest["outcomes"]] == list(stored["counts"].values())
    changed = {row["artifact"] for row in stored["artifacts"] if row["recorded"] != row["would_be"]}
    assert {row["artifact"] for row in backtest["changed"]} == changed

    def red(limit: str) -> int:
        backtest = reader_client.get(url, {"rule": "relative", "limit": limit, "severity": "block"}).context["backtest"]
        return dict((outcome, would_be) for outcome, _, would_be in backtest["outcomes"])["red"]

    assert red("0.5") >= 1 and red("50") == 0  # 0.5 % halts the red candidate (−9 %); 50 % halts none


def test_the_backtest_says_its_percent_range(board, reader_client):
    url = reverse("threshold-detail", args=[board.threshold.pk])
    response = reader_client.get(url, {"rule": "relative", "limit": "100", "severity": "block"})
    assert response.context["backtest"] is None
    assert response.context["form"].errors["limit"] == ["A relative limit is a percentage from 0 up to 100 (2 = 2 %)."]
