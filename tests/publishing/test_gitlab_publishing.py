from registry.models import Artifact, PullRequestLink
from registry.publishing import registration_publish_enqueue
from registry.tasks import publish_artifact
from tests.factories import ArtifactFactory, FamilyFactory, PullRequestFactory, VerdictFactory
from tests.publishing.forge import GITLAB_TOKEN


def merge_request(**fields) -> PullRequestLink:
    return PullRequestFactory(
        provider="gitlab",
        repository="ml/support-assistant",
        number=12,
        url="https://gitlab.acme.example/ml/support-assistant/-/merge_requests/12",
        **fields,
    )


def scored(family, link, outcome: str, sha: str) -> Artifact:
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION)
    artifact = ArtifactFactory(family=family, pull_request=link, commit_sha=sha, drift_flag=outcome)
    VerdictFactory(artifact=artifact, baseline=baseline, outcome=outcome)
    return artifact


def test_it_sets_a_pending_commit_status_with_the_private_token(db, forge, eager):
    artifact = ArtifactFactory(pull_request=merge_request(project_id="1843"))

    registration_publish_enqueue(artifact_id=artifact.pk)

    [call] = forge.calls
    assert (call.method, call.path) == ("POST", f"/api/v4/projects/1843/statuses/{artifact.commit_sha}")
    assert call.body["state"] == "pending"
    assert call.body["name"] == f"driftboard/{artifact.family.slug}"
    assert call.body["target_url"].endswith(f"/artifacts/{artifact.pk}/")
    assert call.headers["private-token"] == GITLAB_TOKEN


def test_it_accepts_gitlabs_refusal_to_repeat_the_same_state(db, forge, eager):
    artifact = ArtifactFactory(pull_request=merge_request(project_id="1843"))

    registration_publish_enqueue(artifact_id=artifact.pk)
    registration_publish_enqueue(artifact_id=artifact.pk)

    assert [c.status for c in forge.calls] == [201, 400]
    assert [s["status"] for s in forge.gitlab_statuses] == ["pending"]


def test_it_creates_one_note_then_edits_it(db, forge):
    family, link = FamilyFactory(), merge_request(project_id="1843")
    first = scored(family, link, "red", "a" * 40)
    publish_artifact.apply(args=[first.pk], throw=True)
    second = scored(family, link, "green", "b" * 40)
    publish_artifact.apply(args=[second.pk], throw=True)

    [note] = forge.gitlab_notes[("1843", 12)]
    assert f"v{second.version} is **green**" in note["body"]
    assert len(forge.calls_to("POST", r"/merge_requests/12/notes$")) == 1
    assert len(forge.calls_to("PUT", rf"/merge_requests/12/notes/{note['id']}$")) == 1
    link.refresh_from_db()
    assert link.comment_id == str(note["id"])
    assert [(s["sha"], s["status"]) for s in forge.gitlab_statuses] == [("a" * 40, "failed"), ("b" * 40, "success")]


def test_it_addresses_the_project_by_path_when_its_id_is_unknown(db, forge, eager):
    artifact = ArtifactFactory(pull_request=merge_request())

    registration_publish_enqueue(artifact_id=artifact.pk)

    assert forge.calls[0].path == f"/api/v4/projects/ml%2Fsupport-assistant/statuses/{artifact.commit_sha}"
