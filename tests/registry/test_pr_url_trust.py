"""A registration's pr_url decides where statuses and comments go, so it is trusted only on the
configured forges' hosts and, once webhooks linked the family's repository, only in that repository."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from registry.models import Artifact
from tests.factories import ArtifactFactory, FamilyFactory, PullRequestFactory
from tests.registry.weights import safetensors_bytes, stored_objects

COMMIT = "e" * 40


@pytest.fixture
def forges(settings):
    settings.DRIFTBOARD_GITHUB_API_URL = "https://api.github.com"
    settings.DRIFTBOARD_GITLAB_URL = "https://gitlab.acme.example"


@pytest.fixture
def loose_family(db):
    return FamilyFactory(slug="loose")


def register(client, pr_url: str, seed: int = 1):
    weights = SimpleUploadedFile("w.safetensors", safetensors_bytes(seed=seed))
    body = {"family": "loose", "commit": COMMIT, "weights": weights, "pr_url": pr_url}
    return client.post("/api/v1/artifacts/", body, format="multipart")


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/weights/pull/7",
        "https://api.github.com/acme/weights/pull/7",
        "https://gitlab.acme.example/ml/support-assistant/-/merge_requests/12",
        "http://GitHub.com/acme/weights/pull/7",
    ],
)
def test_it_takes_a_pull_request_on_a_configured_forge(api_client, forges, loose_family, url):
    response = register(api_client, url)
    assert response.status_code == 202, response.json()
    assert Artifact.objects.get().pr_url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/acme/weights/pull/7",
        "https://github.com.evil.example/acme/weights/pull/7",
        "https://gitlab.com/acme/weights/-/merge_requests/7",
        "https://github.com/acme/weights/-/merge_requests/7",
        "https://gitlab.acme.example/acme/weights/pull/7",
        "https://github.com/acme/weights",
        "ftp://github.com/acme/weights/pull/7",
    ],
)
def test_it_refuses_a_pr_url_elsewhere_and_stores_nothing(api_client, forges, loose_family, session_artifact_root, url):
    objects = stored_objects(session_artifact_root)
    response = register(api_client, url)
    assert response.status_code == 400
    assert "pr_url" in str(response.json())
    assert not Artifact.objects.exists()
    assert stored_objects(session_artifact_root) == objects


def test_once_webhooks_linked_the_family_only_its_repository_is_taken(api_client, forges, loose_family):
    webhook_link = PullRequestFactory(repository="acme/weights", number=3, state="open")
    ArtifactFactory(family=loose_family, pull_request=webhook_link)

    other_repository = register(api_client, "https://github.com/mallory/elsewhere/pull/1")
    same_repository = register(api_client, "https://github.com/acme/weights/pull/9", seed=2)

    assert other_repository.status_code == 400
    assert "acme/weights" in other_repository.json()["detail"]
    assert same_repository.status_code == 202, same_repository.json()


def test_links_made_from_earlier_pr_urls_do_not_pin_the_repository(api_client, forges, loose_family):
    url_link = PullRequestFactory(repository="someone/else", number=4, state="")
    ArtifactFactory(family=loose_family, pull_request=url_link)
    assert register(api_client, "https://github.com/acme/weights/pull/9").status_code == 202
