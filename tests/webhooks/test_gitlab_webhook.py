from registry.models import PullRequestLink, WebhookDelivery
from tests.webhooks.deliveries import gitlab_headers, payload, payload_bytes, send_gitlab


def test_it_records_a_merge_request(client, db):
    response = send_gitlab(client, "gitlab_merge_request_open")

    assert response.status_code == 200
    sent = payload("gitlab_merge_request_open")
    link = PullRequestLink.objects.get()
    assert (link.provider, link.repository, link.project_id) == ("gitlab", "ml/support-assistant", "1843")
    assert (link.number, link.url) == (sent["object_attributes"]["iid"], sent["object_attributes"]["url"])
    assert (link.head_sha, link.base_ref) == (sent["object_attributes"]["last_commit"]["id"], "main")
    assert (link.state, link.merged) == ("open", False)


def test_it_follows_new_commits_and_the_merge(client, db):
    for name in ("open", "update", "merge"):
        assert send_gitlab(client, f"gitlab_merge_request_{name}").status_code == 200

    link = PullRequestLink.objects.get()
    assert link.head_sha == payload("gitlab_merge_request_update")["object_attributes"]["last_commit"]["id"]
    assert (link.state, link.merged) == ("closed", True)


def test_it_refuses_a_wrong_token(client, db):
    response = send_gitlab(client, "gitlab_merge_request_open", token="guess")

    assert response.status_code == 401
    assert not PullRequestLink.objects.exists()


def test_it_refuses_a_missing_token(client, db):
    headers = gitlab_headers()
    del headers["X-Gitlab-Token"]

    response = client.post(
        "/hooks/gitlab/",
        data=payload_bytes("gitlab_merge_request_open"),
        content_type="application/json",
        headers=headers,
    )

    assert response.status_code == 401
    assert not PullRequestLink.objects.exists()


def test_it_handles_a_repeated_event_uuid_once(client, db):
    event = "13b3a1ee-8b3f-4c77-a1ee-3b3c2e1f9a0d"
    send_gitlab(client, "gitlab_merge_request_open", uuid_=event)
    PullRequestLink.objects.update(title="renamed since")

    repeat = send_gitlab(client, "gitlab_merge_request_open", uuid_=event)

    assert repeat.json()["duplicate"] is True
    assert PullRequestLink.objects.get().title == "renamed since"
    assert WebhookDelivery.objects.filter(provider="gitlab").count() == 1


def test_it_accepts_and_ignores_other_hooks(client, db):
    response = client.post(
        "/hooks/gitlab/",
        data=b'{"object_kind": "push"}',
        content_type="application/json",
        headers=gitlab_headers("Push Hook"),
    )

    assert response.status_code == 202
    assert not WebhookDelivery.objects.exists()


def test_it_rejects_malformed_json(client, db):
    response = client.post(
        "/hooks/gitlab/",
        data=b'{"object_kind": "merge_request",',
        content_type="application/json",
        headers=gitlab_headers(),
    )

    assert response.status_code == 400
