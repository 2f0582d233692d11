"""A pull request from opened to merged, driven by webhook deliveries, CI registrations and verdicts."""

from django.db import transaction

from registry.models import Artifact, PullRequestLink, WebhookDelivery
from registry.publishing import verdict_publish_enqueue
from tests.client.weights import write_safetensors
from tests.factories import ArtifactFactory, FamilyFactory, VerdictFactory
from tests.webhooks.deliveries import payload, send_github

OPENED = payload("github_pull_request_opened")["pull_request"]["head"]["sha"]
SYNCHRONIZED = payload("github_pull_request_synchronize")["after"]


def ci_registers(api_client, tmp_path, family, commit: str, seed: int) -> Artifact:
    with write_safetensors(tmp_path / f"adapter-{seed}.safetensors", seed=seed).open("rb") as weights:
        response = api_client.post(
            "/api/v1/artifacts/", {"family": family.slug, "commit": commit, "weights": weights}, format="multipart"
        )
    assert response.status_code == 202
    return Artifact.objects.get(pk=response.json()["id"])


def verdict_arrives(artifact: Artifact, baseline: Artifact, outcome: str, delta: float) -> None:
    """What the verdict service leaves behind, and its publish hook after commit."""
    Artifact.objects.filter(pk=artifact.pk).update(drift_flag=outcome, status=Artifact.Status.HELD)
    VerdictFactory(artifact=artifact, baseline=baseline, outcome=outcome, delta=delta)
    transaction.on_commit(lambda: verdict_publish_enqueue(artifact_id=artifact.pk))


def test_it_ends_with_one_comment_and_a_status_per_commit(
    client, api_client, db, forge, eager, tmp_path, django_capture_on_commit_callbacks
):
    family = FamilyFactory(slug="support-lm")
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    with django_capture_on_commit_callbacks(execute=True):
        send_github(client, "github_pull_request_opened")
        first = ci_registers(api_client, tmp_path, family, OPENED, seed=1)
    with django_capture_on_commit_callbacks(execute=True):
        verdict_arrives(first, baseline, "red", -0.07)
    with django_capture_on_commit_callbacks(execute=True):
        second = ci_registers(api_client, tmp_path, family, SYNCHRONIZED, seed=2)  # CI beats the webhook
    with django_capture_on_commit_callbacks(execute=True):
        send_github(client, "github_pull_request_synchronize")
    with django_capture_on_commit_callbacks(execute=True):
        verdict_arrives(second, baseline, "green", 0.003)
    with django_capture_on_commit_callbacks(execute=True):
        send_github(client, "github_pull_request_edited")
        send_github(client, "github_pull_request_closed")

    [comment] = forge.github_comments[("acme/weights", 7)]
    assert f"v{second.version} is **green**" in comment["body"]
    states = {sha: [s["state"] for s in forge.github_statuses if s["sha"] == sha] for sha in (OPENED, SYNCHRONIZED)}
    assert states == {OPENED: ["pending", "failure"], SYNCHRONIZED: ["pending", "success"]}
    assert {s["context"] for s in forge.github_statuses} == {"driftboard/support-lm"}
    link = PullRequestLink.objects.get()
    assert (link.state, link.merged, link.comment_id) == ("closed", True, str(comment["id"]))
    assert link.title == payload("github_pull_request_closed")["pull_request"]["title"]
    assert set(link.artifacts.values_list("pk", flat=True)) == {first.pk, second.pk}
    assert WebhookDelivery.objects.count() == 4
