"""Webhook deliveries as GitHub and GitLab send them: the payload files' bytes plus the real headers."""

import hashlib
import hmac
import json
import uuid
from pathlib import Path

PAYLOADS = Path(__file__).parent / "payloads"
GITHUB_SECRET = "s3cr3t-shared-with-github"
GITLAB_SECRET = "s3cr3t-shared-with-gitlab"


def payload_bytes(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def payload(name: str) -> dict:
    return json.loads(payload_bytes(name))


def github_headers(event: str, body: bytes, *, delivery: str | None = None, secret: str = GITHUB_SECRET) -> dict:
    return {
        "User-Agent": "GitHub-Hookshot/6b02022",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "503211877",
        "X-GitHub-Hook-Installation-Target-ID": "786541203",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def gitlab_headers(event: str = "Merge Request Hook", *, uuid_: str | None = None, token: str = GITLAB_SECRET) -> dict:
    event_uuid = uuid_ or str(uuid.uuid4())
    return {
        "User-Agent": "GitLab/17.11.1-ee",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Instance": "https://gitlab.acme.example",
        "X-Gitlab-Webhook-UUID": "9d9a5bd5-0f0e-4d06-97ad-4b2e5f1a1f3c",
        "X-Gitlab-Event-UUID": event_uuid,
    }


def send_github(client, name: str, event: str = "pull_request", **header_options):
    body = payload_bytes(name)
    return client.post(
        "/hooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(event, body, **header_options),
    )


def send_gitlab(client, name: str, **header_options):
    return client.post(
        "/hooks/gitlab/",
        data=payload_bytes(name),
        content_type="application/json",
        headers=gitlab_headers(**header_options),
    )


def send_github_json(client, data: dict, event: str, **header_options):
    """A delivery of a payload changed from a recorded one (another conclusion, commit or time), signed as sent."""
    body = json.dumps(data).encode()
    return client.post(
        "/hooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(event, body, **header_options),
    )


def send_gitlab_json(client, data: dict, event: str, **header_options):
    return client.post(
        "/hooks/gitlab/",
        data=json.dumps(data).encode(),
        content_type="application/json",
        headers=gitlab_headers(event, **header_options),
    )
