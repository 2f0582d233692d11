"""An artifact and its pull request meet whichever arrives first: the webhook or the weights."""

from registry.models import Artifact, PullRequestLink
from tests.client.weights import write_safetensors
from tests.factories import ArtifactFactory, FamilyFactory, VerdictFactory
from tests.webhooks.deliveries import payload, send_github

HEAD_AFTER_PUSH = payload("github_push")["after"]
HEAD_AFTER_SYNC = payload("github_pull_request_synchronize")["after"]


def open_and_synchronize(client) -> None:
    for name in ("opened", "synchronize"):
        assert send_github(client, f"github_pull_request_{name}").status_code == 200


def register(api_client, tmp_path, family, commit: str, pr_url: str = "") -> Artifact:
    with write_safetensors(tmp_path / "adapter.safetensors").open("rb") as weights:
        response = api_client.post(
            "/api/v1/artifacts/",
            {"family": family.slug, "commit": commit, "weights": weights, "pr_url": pr_url},
            format="multipart",
        )
    assert response.status_code == 202, response.content
    return Artifact.objects.get(pk=response.json()["id"])


def statuses_for(forge, sha: str) -> list[dict]:
    return [s for s in forge.github_statuses if s["sha"] == sha]


def test_it_links_an_existing_artifact_when_the_push_arrives(
    client, db, forge, eager, django_capture_on_commit_callbacks
):
    open_and_synchronize(client)
    artifact = ArtifactFactory(commit_sha=HEAD_AFTER_PUSH)

    with django_capture_on_commit_callbacks(execute=True):
        response = send_github(client, "github_push", event="push")

    assert response.json()["linked_artifacts"] == [artifact.pk]
    link = PullRequestLink.objects.get()
    assert link.head_sha == HEAD_AFTER_PUSH
    artifact.refresh_from_db()
    assert artifact.pull_request == link
    [status] = statuses_for(forge, HEAD_AFTER_PUSH)
    assert status["state"] == "pending"
    assert status["context"] == f"driftboard/{artifact.family.slug}"
    assert status["target_url"] == f"https://driftboard.acme.example/artifacts/{artifact.pk}/"


def test_it_links_an_artifact_registered_after_the_push(
    client, api_client, db, forge, eager, tmp_path, django_capture_on_commit_callbacks
):
    open_and_synchronize(client)
    send_github(client, "github_push", event="push")
    family = FamilyFactory()

    with django_capture_on_commit_callbacks(execute=True):
        artifact = register(api_client, tmp_path, family, HEAD_AFTER_PUSH)

    artifact.refresh_from_db()
    assert artifact.pull_request == PullRequestLink.objects.get()
    assert [s["state"] for s in statuses_for(forge, HEAD_AFTER_PUSH)] == ["pending"]


def test_it_posts_the_verdict_of_an_artifact_scored_before_its_pull_request_was_known(
    client, db, forge, eager, django_capture_on_commit_callbacks
):
    send_github(client, "github_pull_request_opened")
    artifact = ArtifactFactory(commit_sha=HEAD_AFTER_SYNC, drift_flag="red", status=Artifact.Status.HALTED)
    VerdictFactory(artifact=artifact, baseline=ArtifactFactory(family=artifact.family))

    with django_capture_on_commit_callbacks(execute=True):
        send_github(client, "github_pull_request_synchronize")

    assert [s["state"] for s in statuses_for(forge, HEAD_AFTER_SYNC)] == ["failure"]
    [comments] = forge.github_comments.values()
    assert len(comments) == 1
    assert f"<!-- driftboard:{artifact.family.slug} -->" in comments[0]["body"]
    assert PullRequestLink.objects.get().comment_id == str(comments[0]["id"])


def test_it_creates_the_link_from_the_pr_url_sent_at_registration(
    api_client, db, forge, eager, tmp_path, django_capture_on_commit_callbacks
):
    commit = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"

    with django_capture_on_commit_callbacks(execute=True):
        artifact = register(api_client, tmp_path, FamilyFactory(), commit, "https://github.com/acme/weights/pull/31")

    artifact.refresh_from_db()
    link = artifact.pull_request
    assert (link.provider, link.repository, link.number, link.head_sha) == ("github", "acme/weights", 31, commit)
    assert [s["state"] for s in statuses_for(forge, commit)] == ["pending"]


def test_it_posts_nothing_for_an_artifact_without_pull_request(
    api_client, db, forge, eager, tmp_path, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        artifact = register(api_client, tmp_path, FamilyFactory(), "abcdef1234567890")

    artifact.refresh_from_db()
    assert artifact.pull_request is None
    assert forge.calls == []
