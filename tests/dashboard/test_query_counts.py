"""Each page runs the same number of queries with 1 or 50 candidate artifacts."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.dashboard.board import add_candidates, build_board, running_run

EXTRA_CANDIDATES = 49


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        assert client.get(url).status_code == 200
    return len(context.captured_queries)


@pytest.fixture
def small_board(db, staff_user):
    board = build_board(candidates=1, user=staff_user)
    running_run(board, board.candidates[0])
    return board


def urls(board) -> list[str]:
    return [
        reverse("home"),
        reverse("family-detail", args=[board.family.slug]),
        reverse("artifact-list"),
        reverse("artifact-list") + f"?family={board.family.slug}&flag=green",
        reverse("artifact-detail", args=[board.production.pk]),
        reverse("artifact-detail", args=[board.candidates[0].pk]),
        reverse("artifact-progress", args=[board.candidates[0].pk]),
        reverse("threshold-list"),
        reverse("threshold-detail", args=[board.threshold.pk]),
        reverse("threshold-detail", args=[board.threshold.pk]) + "?rule=relative&limit=0.01&severity=warn",
        reverse("queues"),
        reverse("family-compare", args=[board.family.slug]),
        reverse("family-compare", args=[board.family.slug]) + f"?a={board.production.pk}&b={board.candidates[0].pk}",
        reverse("family-detail", args=[board.family.slug]) + "?all=1",
    ]


def test_it_runs_a_constant_number_of_queries_per_page(small_board, staff_page_client, django_assert_num_queries):
    counts = {url: queries_for(staff_page_client, url) for url in urls(small_board)}
    for artifact in add_candidates(small_board, EXTRA_CANDIDATES):
        running_run(small_board, artifact)
    for url, count in counts.items():
        with django_assert_num_queries(count):
            staff_page_client.get(url)
