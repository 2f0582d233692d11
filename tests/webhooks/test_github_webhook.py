import json
import threading
import urllib.request
from urllib.parse import urlencode

import pytest

from registry.models import PullRequestLink, WebhookDelivery
from registry.webhooks import MAX_BODY_BYTES
from tests.webhooks.deliveries import github_headers, payload, payload_bytes, send_github


def test_it_records_an_opened_pull_request(client, db):
    response = send_github(client, "github_pull_request_opened")

    assert response.status_code == 200
    sent = payload("github_pull_request_opened")["pull_request"]
    link = PullRequestLink.objects.get()
    assert (link.provider, link.repository, link.number) == ("github", "acme/weights", sent["number"])
    assert (link.title, link.url, link.head_sha) == (sent["title"], sent["html_url"], sent["head"]["sha"])
    assert (link.base_ref, link.state, link.merged) == ("main", "open", False)
    assert WebhookDelivery.objects.filter(provider="github", event="pull_request").count() == 1


def test_it_follows_the_pull_request_through_synchronize_edited_and_merged(client, db):
    for name in ("opened", "synchronize", "edited", "closed"):
        assert send_github(client, f"github_pull_request_{name}").status_code == 200

    closed = payload("github_pull_request_closed")["pull_request"]
    link = PullRequestLink.objects.get()
    assert (link.head_sha, link.title) == (closed["head"]["sha"], closed["title"])
    assert (link.state, link.merged) == ("closed", True)


def test_it_refuses_a_bad_signature(client, db):
    body = payload_bytes("github_pull_request_opened")
    headers = github_headers("pull_request", body, secret="not-the-secret")

    response = client.post("/hooks/github/", data=body, content_type="application/json", headers=headers)

    assert response.status_code == 401
    assert not PullRequestLink.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_it_refuses_a_body_changed_after_signing(client, db):
    body = payload_bytes("github_pull_request_opened")
    headers = github_headers("pull_request", body)

    response = client.post(
        "/hooks/github/",
        data=body.replace(b"acme/weights", b"evil/weights"),
        content_type="application/json",
        headers=headers,
    )

    assert response.status_code == 401
    assert not PullRequestLink.objects.exists()


def test_it_refuses_a_missing_signature(client, db):
    body = payload_bytes("github_pull_request_opened")
    headers = github_headers("pull_request", body)
    del headers["X-Hub-Signature-256"]

    response = client.post("/hooks/github/", data=body, content_type="application/json", headers=headers)

    assert response.status_code == 401
    assert not PullRequestLink.objects.exists()


def test_it_refuses_everything_when_no_secret_is_configured(client, db, settings):
    settings.DRIFTBOARD_GITHUB_WEBHOOK_SECRET = ""

    assert send_github(client, "github_pull_request_opened").status_code == 401
    assert not PullRequestLink.objects.exists()


def test_it_rejects_malformed_json(client, db):
    body = payload_bytes("github_pull_request_opened")[:-40]

    response = client.post(
        "/hooks/github/", data=body, content_type="application/json", headers=github_headers("pull_request", body)
    )

    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists()


def test_it_rejects_a_pull_request_payload_without_its_head(client, db):
    document = payload("github_pull_request_opened")
    del document["pull_request"]["head"]
    body = json.dumps(document).encode()

    response = client.post(
        "/hooks/github/", data=body, content_type="application/json", headers=github_headers("pull_request", body)
    )

    assert response.status_code == 400
    assert "pull_request.head" in response.json()["detail"]


def test_it_refuses_bodies_over_the_size_limit(client, db):
    document = payload("github_pull_request_opened")
    document["pull_request"]["body"] = "x" * MAX_BODY_BYTES
    body = json.dumps(document).encode()

    response = client.post(
        "/hooks/github/", data=body, content_type="application/json", headers=github_headers("pull_request", body)
    )

    assert response.status_code == 413
    assert not PullRequestLink.objects.exists()


def test_it_accepts_the_form_encoded_content_type(client, db):
    body = urlencode({"payload": payload_bytes("github_pull_request_opened").decode()}).encode()

    response = client.post(
        "/hooks/github/",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=github_headers("pull_request", body),
    )

    assert response.status_code == 200
    assert PullRequestLink.objects.get().number == payload("github_pull_request_opened")["number"]


def test_it_answers_ping(client, db):
    response = send_github(client, "github_ping", event="ping")

    assert response.status_code == 200
    assert response.json() == {"pong": True}


def test_it_accepts_and_ignores_unknown_events(client, db):
    response = send_github(client, "github_pull_request_opened", event="pull_request_review")

    assert response.status_code == 202
    assert not PullRequestLink.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_it_ignores_pull_request_actions_without_bearing_on_weights(client, db):
    response = send_github(client, "github_pull_request_labeled")

    assert response.status_code == 202
    assert not PullRequestLink.objects.exists()


def test_it_only_answers_post(client, db):
    assert client.get("/hooks/github/").status_code == 405


def test_it_handles_a_replayed_delivery_once(client, db):
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    first = send_github(client, "github_pull_request_opened", delivery=delivery)
    PullRequestLink.objects.update(title="renamed since")

    replay = send_github(client, "github_pull_request_opened", delivery=delivery)

    assert first.status_code == replay.status_code == 200
    assert replay.json()["duplicate"] is True
    assert PullRequestLink.objects.get().title == "renamed since"
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_handles_five_concurrent_copies_of_a_delivery_once(live_server):
    body = payload_bytes("github_pull_request_opened")
    headers = {
        **github_headers("pull_request", body, delivery="0b989ba4-242f-11e5-81e1-c7b6966d2516"),
        "Content-Type": "application/json",
    }
    start = threading.Barrier(5)
    answers: list[dict] = []

    def deliver() -> None:
        request = urllib.request.Request(f"{live_server.url}/hooks/github/", data=body, headers=headers)
        start.wait()
        with urllib.request.urlopen(request, timeout=60) as response:
            answers.append({"status": response.status, **json.loads(response.read())})

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a["status"] for a in answers] == [200] * 5
    assert sum(1 for a in answers if not a.get("duplicate")) == 1
    assert WebhookDelivery.objects.count() == 1
    assert PullRequestLink.objects.count() == 1


def test_it_lets_a_delivery_that_failed_be_redelivered(client, db):
    document = payload("github_pull_request_opened")
    document["pull_request"]["number"] = "not-a-number"
    broken = json.dumps(document).encode()
    delivery = "5c4a5e00-0000-4000-8000-000000000001"
    headers = github_headers("pull_request", broken, delivery=delivery)
    assert (
        client.post("/hooks/github/", data=broken, content_type="application/json", headers=headers).status_code == 400
    )

    redelivered = send_github(client, "github_pull_request_opened", delivery=delivery)

    assert redelivered.status_code == 200
    assert "duplicate" not in redelivered.json()
    assert PullRequestLink.objects.count() == 1
