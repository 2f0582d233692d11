import pytest
from django.urls import reverse

from tests.dashboard.board import Board


def page_urls(board: Board) -> list[str]:
    return [
        reverse("home"),
        reverse("family-detail", args=[board.family.slug]),
        reverse("artifact-list"),
        reverse("artifact-detail", args=[board.candidate("red").pk]),
        reverse("threshold-list"),
        reverse("threshold-detail", args=[board.threshold.pk]),
        reverse("queues"),
        reverse("experiment-list"),
    ]


def test_it_renders_every_page_for_a_logged_in_user(board, reader_client):
    for url in page_urls(board):
        response = reader_client.get(url)
        assert response.status_code == 200, url
        assert b"Log out" in response.content


def test_it_sends_anonymous_visitors_to_the_login_page(board, client):
    for url in [*page_urls(board), reverse("artifact-progress", args=[board.production.pk])]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_it_renders_the_login_page(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_it_renders_pages_with_no_data(reader_client):
    for url in [reverse("home"), reverse("artifact-list"), reverse("threshold-list"), reverse("queues")]:
        assert reader_client.get(url).status_code == 200, url


@pytest.mark.parametrize("name", ["artifact-detail", "threshold-detail", "artifact-progress"])
def test_it_answers_404_for_a_missing_record(reader_client, name):
    assert reader_client.get(reverse(name, args=[999_999])).status_code == 404


def test_it_lists_each_family_with_its_production_artifact_and_what_needs_attention(board, reader_client):
    response = reader_client.get(reverse("home"))
    families = response.context["families"]
    assert [(row.family, row.production) for row in families] == [(board.family, board.production)]
    assert dict((flag, count) for flag, _, count in response.context["flag_counts"]) == {
        "": 0,
        "green": 1 + len(board.history),
        "amber": 1,
        "red": 1,
        "incomparable": 0,
    }
    assert list(response.context["overdue_thresholds"]) == [board.threshold]
    assert [run.artifact for run in response.context["failed_runs"]] == [board.candidate("amber")]
    assert b"Overdue since" in response.content
    assert b"CUDA out of memory" in response.content
