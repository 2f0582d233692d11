"""Only the bot's own comment is edited: the family's marker can be pasted by anyone, so a comment (or
GitLab note) carrying it is ours only when its author is the token's account (GET /user), or the
configured bot login."""

import pytest

from registry.publishing import artifact_publish, comment_marker
from tests.factories import ArtifactFactory, FamilyFactory, PullRequestFactory, VerdictFactory
from tests.publishing.forge import GITHUB_OTHER_USER, GITLAB_OTHER_USER

REPOSITORY = "acme/weights"


@pytest.fixture
def scored_artifact(db):
    def make(**link):
        family = FamilyFactory(slug="support-bot")
        baseline = ArtifactFactory(family=family, stage="production", status="promoted")
        artifact = ArtifactFactory(family=family, pull_request=PullRequestFactory(**link), drift_flag="green")
        VerdictFactory(artifact=artifact, baseline=baseline, outcome="green", delta=0.001, ci_low=-0.01, ci_high=0.01)
        return artifact

    return make


def test_it_leaves_a_github_comment_with_our_marker_by_someone_else_alone(forge, scored_artifact):
    artifact = scored_artifact(repository=REPOSITORY, number=7)
    planted = forge.github_comment_as(
        GITHUB_OTHER_USER, REPOSITORY, 7, f"{comment_marker(artifact.family)}\nclick [here](https://evil.example)"
    )

    artifact_publish(artifact=artifact)

    comments = forge.github_comments[(REPOSITORY, 7)]
    assert planted in comments and planted["body"].endswith("(https://evil.example)")
    [ours] = [c for c in comments if c["user"]["login"] == "driftboard[bot]"]
    assert comment_marker(artifact.family) in ours["body"]
    assert not forge.calls_to("PATCH", rf"/issues/comments/{planted['id']}$")
    artifact.pull_request.refresh_from_db()
    assert artifact.pull_request.comment_id == str(ours["id"])


def test_a_stored_comment_id_of_someone_elses_comment_is_not_edited(forge, scored_artifact):
    artifact = scored_artifact(repository=REPOSITORY, number=8)
    planted = forge.github_comment_as(GITHUB_OTHER_USER, REPOSITORY, 8, comment_marker(artifact.family))
    artifact.pull_request.comment_id = str(planted["id"])
    artifact.pull_request.save()

    artifact_publish(artifact=artifact)

    assert planted["body"] == comment_marker(artifact.family)
    assert not forge.calls_to("PATCH", rf"/issues/comments/{planted['id']}$")
    assert len(forge.calls_to("POST", r"/issues/8/comments$")) == 1


def test_it_still_edits_its_own_comment_in_place(forge, scored_artifact):
    artifact = scored_artifact(repository=REPOSITORY, number=9)
    artifact_publish(artifact=artifact)
    artifact_publish(artifact=artifact)
    assert len(forge.github_comments[(REPOSITORY, 9)]) == 1
    assert len(forge.calls_to("PATCH", r"/issues/comments/\d+$")) == 1
    assert len(forge.calls_to("GET", r"^/user$")) <= 2  # once per client, not per comment


def test_a_configured_bot_login_is_used_without_asking_the_forge(forge, scored_artifact, settings):
    settings.DRIFTBOARD_GITHUB_BOT_LOGIN = "Driftboard[bot]"
    artifact = scored_artifact(repository=REPOSITORY, number=10)
    artifact_publish(artifact=artifact)
    artifact_publish(artifact=artifact)
    assert len(forge.calls_to("PATCH", r"/issues/comments/\d+$")) == 1
    assert not forge.calls_to("GET", r"^/user$")


def test_it_leaves_a_gitlab_note_with_our_marker_by_someone_else_alone(forge, scored_artifact):
    artifact = scored_artifact(
        provider="gitlab", repository="ml/support-assistant", project_id="1843", number=12, url=""
    )
    planted = forge.gitlab_note_as(GITLAB_OTHER_USER, "1843", 12, comment_marker(artifact.family))

    artifact_publish(artifact=artifact)
    artifact_publish(artifact=artifact)

    notes = forge.gitlab_notes[("1843", 12)]
    assert planted["body"] == comment_marker(artifact.family)
    assert [n["author"]["username"] for n in notes] == ["mallory", "driftboard-bot"]
    assert not forge.calls_to("PUT", rf"/notes/{planted['id']}$")
    assert len(forge.calls_to("PUT", r"/notes/\d+$")) == 1
