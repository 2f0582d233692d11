"""Stored XSS through a webhook's PR URL: only http(s) addresses on the configured forge's host are
stored, and no page ever renders a non-http(s) PR link, whatever is in the database."""

import json
import uuid

import pytest

from registry.models import PullRequestLink
from tests.factories import ArtifactFactory, PullRequestFactory, UserFactory
from tests.webhooks.deliveries import github_headers, gitlab_headers, payload

SCRIPT_URL = "javascript:alert(document.domain)"
HOSTILE_URLS = [
    SCRIPT_URL,
    "  JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://evil.example/acme/weights/pull/7",
    "//evil.example/acme/weights/pull/7",
]


def send_github_payload(client, body: dict):
    raw = json.dumps(body).encode()
    return client.post(
        "/hooks/github/", data=raw, content_type="application/json", headers=github_headers("pull_request", raw)
    )


def send_gitlab_payload(client, body: dict):
    return client.post(
        "/hooks/gitlab/",
        data=json.dumps(body).encode(),
        content_type="application/json",
        headers=gitlab_headers(uuid_=str(uuid.uuid4())),
    )


@pytest.fixture
def reader_client(client, db):
    client.force_login(UserFactory(username="pr-reader"))
    return client


def pages_of(client, artifact) -> str:
    return "".join(client.get(url).content.decode() for url in ("/", "/artifacts/", artifact.get_absolute_url()))


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_it_does_not_store_a_hostile_github_pr_url(reader_client, url):
    body = payload("github_pull_request_opened")
    body["pull_request"]["html_url"] = url
    artifact = ArtifactFactory(commit_sha=body["pull_request"]["head"]["sha"])

    response = send_github_payload(reader_client, body)

    assert response.status_code == 200, response.content
    link = PullRequestLink.objects.get()
    assert link.url == ""
    artifact.refresh_from_db()
    assert artifact.pull_request == link
    html = pages_of(reader_client, artifact)
    assert "javascript:" not in html.lower() and "evil.example" not in html and "data:text" not in html


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_it_does_not_store_a_hostile_gitlab_mr_url(reader_client, url):
    body = payload("gitlab_merge_request_open")
    body["object_attributes"]["url"] = url

    response = send_gitlab_payload(reader_client, body)

    assert response.status_code == 200, response.content
    assert PullRequestLink.objects.get().url == ""


def test_it_keeps_the_pr_url_of_the_configured_forge(reader_client):
    response = send_github_payload(reader_client, payload("github_pull_request_opened"))
    assert response.status_code == 200
    assert PullRequestLink.objects.get().url == "https://github.com/acme/weights/pull/7"


@pytest.mark.parametrize("url", [SCRIPT_URL, "vbscript:msgbox(1)", "data:text/html,x"])
def test_the_pr_link_never_renders_a_non_http_href_even_from_stored_data(reader_client, url):
    artifact = ArtifactFactory(pull_request=PullRequestFactory(url=url), pr_url=url)
    html = pages_of(reader_client, artifact)
    assert f'href="{url}' not in html
    assert url.split(":")[0] + ":" not in html
    assert str(artifact.pull_request) in html  # still named, just not linked
