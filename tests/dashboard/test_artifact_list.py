from django.urls import reverse

from registry.models import Artifact
from tests.dashboard.board import add_candidates
from tests.factories import ArtifactFactory, FamilyFactory

URL = reverse("artifact-list")


def listed(client, **params) -> list[Artifact]:
    response = client.get(URL, params)
    assert response.status_code == 200
    return list(response.context["page"].object_list)


def test_it_filters_by_flag_stage_and_branch(board, reader_client):
    assert listed(reader_client, flag="red") == [board.candidate("red")]
    assert listed(reader_client, stage="production") == [board.production]
    feature = [a for a in board.candidates if a.branch != "main"]
    assert set(listed(reader_client, branch=feature[0].branch)) == {feature[0]}


def test_it_filters_by_family_and_searches_by_commit_prefix(board, reader_client):
    other = ArtifactFactory(family=FamilyFactory(slug="embedder"), commit_sha="abcdef0123456789" * 2 + "abcdef01")
    assert listed(reader_client, family="embedder") == [other]
    assert listed(reader_client, commit="ABCDEF01") == [other]
    target = board.candidate("amber")
    assert listed(reader_client, commit=target.commit_sha[:10]) == [target]


def test_it_paginates_newest_first_keeping_the_filters(board, reader_client):
    add_candidates(board, 30)
    response = reader_client.get(URL, {"family": board.family.slug})
    page = response.context["page"]
    total = len(board.history) + len(board.candidates)
    assert page.paginator.count == total
    assert len(page.object_list) == 25
    assert page.object_list[0] == board.candidates[-1]
    assert f"family={board.family.slug}&amp;page=2".encode() in response.content
    second = reader_client.get(URL, {"family": board.family.slug, "page": 2}).context["page"]
    assert len(second.object_list) == total - 25


def test_it_shows_flag_badges_with_a_text_label_short_shas_and_pr_links(board, reader_client):
    content = reader_client.get(URL).content.decode()
    red = board.candidate("red")
    assert '<span class="badge flag-red">Red</span>' in content
    assert f">{red.short_sha}</code>" in content
    assert red.commit_sha[8:] not in content.replace(f'title="{red.commit_sha}"', "")
    with_pr = next(a for a in board.candidates if a.pull_request)
    assert f'href="{with_pr.pull_request.url}"' in content
