import hashlib
import logging
import time

import pytest

from registry import publishing
from registry.http import HttpError
from registry.models import Artifact, ModelFamily, PullRequestLink
from registry.publishing import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    SECONDARY_LIMIT_MIN_SECONDS,
    RateLimited,
    artifact_publish,
    forge_for,
    registration_publish_enqueue,
    retry_delay,
    verdict_publish_enqueue,
)
from registry.tasks import publish_artifact
from tests.factories import ArtifactFactory, FamilyFactory, PullRequestFactory, VerdictFactory
from tests.publishing.forge import GITHUB_TOKEN

PUBLIC_URL = "https://driftboard.acme.example"


def commit(n: int) -> str:
    return hashlib.sha1(f"push {n}".encode()).hexdigest()


def scored(family: ModelFamily, pr: PullRequestLink, outcome: str, delta: float, n: int) -> Artifact:
    """An artifact on the pull request with one verdict against the family's production baseline."""
    baseline = family.artifacts.filter(stage=Artifact.Stage.PRODUCTION).first() or ArtifactFactory(
        family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED
    )
    artifact = ArtifactFactory(
        family=family,
        pull_request=pr,
        commit_sha=commit(n),
        drift_flag=outcome,
        status=Artifact.Status.HALTED if outcome == "red" else Artifact.Status.HELD,
    )
    VerdictFactory(
        artifact=artifact,
        baseline=baseline,
        outcome=outcome,
        delta=delta,
        ci_low=delta - 0.01,
        ci_high=delta + 0.01,
        reasons=[f"bits per byte {delta * 100:+.1f} %"],
    )
    return artifact


def publish(artifact: Artifact) -> None:
    """The task body, with retries run at once the way Celery runs them eagerly."""
    result = publish_artifact.apply(args=[artifact.pk], throw=False)
    assert result.successful(), result.traceback


def test_it_posts_pending_with_a_link_to_the_artifact_page(db, forge, eager):
    artifact = ArtifactFactory(pull_request=PullRequestFactory(repository="acme/weights"))

    registration_publish_enqueue(artifact_id=artifact.pk)

    [call] = forge.calls
    assert (call.method, call.path) == ("POST", f"/repos/acme/weights/statuses/{artifact.commit_sha}")
    assert call.body["state"] == "pending"
    assert call.body["context"] == f"driftboard/{artifact.family.slug}"
    assert call.body["target_url"] == f"{PUBLIC_URL}/artifacts/{artifact.pk}/"
    assert call.headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert call.headers["accept"] == "application/vnd.github+json"
    assert call.status == 201


def test_it_edits_one_comment_across_three_verdicts(db, forge):
    family, pr = FamilyFactory(), PullRequestFactory(number=7)

    artifacts = []
    for n, (outcome, delta) in enumerate([("red", -0.08), ("amber", -0.015), ("green", 0.004)]):
        artifacts.append(scored(family, pr, outcome, delta, n))
        publish(artifacts[-1])

    assert len(forge.calls_to("POST", r"/issues/7/comments$")) == 1
    assert len(forge.calls_to("PATCH", r"/issues/comments/\d+$")) == 2
    [comment] = forge.github_comments[("acme/weights", 7)]
    assert f"v{artifacts[-1].version} is **green**" in comment["body"]
    assert comment["body"].startswith(f"<!-- driftboard:{family.slug} -->")
    pr.refresh_from_db()
    assert pr.comment_id == str(comment["id"])
    assert [(s["sha"], s["state"]) for s in forge.github_statuses] == [
        (commit(0), "failure"),
        (commit(1), "success"),
        (commit(2), "success"),
    ]


@pytest.mark.parametrize(
    ("outcome", "amber_check", "state"),
    [
        ("green", "success", "success"),
        ("amber", "success", "success"),
        ("amber", "failure", "failure"),
        ("incomparable", "failure", "failure"),
        ("red", "success", "failure"),
    ],
)
def test_it_turns_the_flag_into_a_commit_state(db, forge, outcome, amber_check, state):
    artifact = scored(FamilyFactory(amber_check=amber_check), PullRequestFactory(), outcome, -0.01, 0)

    publish(artifact)

    [status] = forge.github_statuses
    assert status["state"] == state
    assert outcome in status["description"]
    assert len(status["description"]) <= 140


def test_it_finds_its_comment_by_the_marker_when_the_id_was_not_kept(db, forge):
    family, pr = FamilyFactory(), PullRequestFactory(number=7)
    publish(scored(family, pr, "red", -0.05, 0))
    PullRequestLink.objects.filter(pk=pr.pk).update(comment_id="")

    publish(scored(family, pr, "green", 0.001, 1))

    assert len(forge.github_comments[("acme/weights", 7)]) == 1
    assert len(forge.calls_to("PATCH", r"/issues/comments/")) == 1


def test_it_starts_a_new_comment_when_someone_deleted_it(db, forge):
    family, pr = FamilyFactory(), PullRequestFactory(number=7)
    publish(scored(family, pr, "red", -0.05, 0))
    pr.refresh_from_db()
    forge.delete_github_comment("acme/weights", pr.comment_id)

    publish(scored(family, pr, "green", 0.001, 1))

    [comment] = forge.github_comments[("acme/weights", 7)]
    pr.refresh_from_db()
    assert pr.comment_id == str(comment["id"])


def test_it_keeps_one_comment_per_family(db, forge):
    pr = PullRequestFactory(number=7)
    tokenizer, embedder = FamilyFactory(slug="tokenizer-lm"), FamilyFactory(slug="embedder")

    for n, family in enumerate([tokenizer, embedder, tokenizer, embedder]):
        publish(scored(family, pr, "green", 0.001, n))

    comments = forge.github_comments[("acme/weights", 7)]
    assert sorted(c["body"].splitlines()[0] for c in comments) == [
        "<!-- driftboard:embedder -->",
        "<!-- driftboard:tokenizer-lm -->",
    ]
    assert len(forge.calls_to("PATCH", r"/issues/comments/")) == 2


def test_it_leaves_the_comment_to_a_newer_artifact(db, forge):
    family, pr = FamilyFactory(), PullRequestFactory(number=7)
    older, newer = scored(family, pr, "red", -0.05, 0), scored(family, pr, "green", 0.001, 1)
    publish(newer)

    publish(older)

    [comment] = forge.github_comments[("acme/weights", 7)]
    assert f"v{newer.version} is **green**" in comment["body"]
    assert [s["state"] for s in forge.github_statuses] == ["success", "failure"]


def test_it_publishes_nothing_for_an_artifact_without_pull_request(db, forge, eager):
    artifact = ArtifactFactory(drift_flag="red")

    verdict_publish_enqueue(artifact_id=artifact.pk)
    registration_publish_enqueue(artifact_id=artifact.pk)

    assert forge.calls == []


def test_it_publishes_nothing_without_a_token(db, forge, settings):
    settings.DRIFTBOARD_GITHUB_TOKEN = ""

    publish(scored(FamilyFactory(), PullRequestFactory(), "red", -0.05, 0))

    assert forge.calls == []


@pytest.mark.parametrize(
    ("status", "headers", "message"),
    [
        (429, {"Retry-After": "7"}, "You have exceeded a secondary rate limit."),
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{reset}"}, "API rate limit exceeded for user."),
    ],
)
def test_it_retries_a_rate_limited_call_then_succeeds(db, forge, status, headers, message):
    headers = {k: v.format(reset=int(time.time()) + 30) for k, v in headers.items()}
    forge.answer_next(status, {"message": message, "documentation_url": "https://docs.github.com/rest"}, headers)
    artifact = scored(FamilyFactory(), PullRequestFactory(), "red", -0.05, 0)

    publish(artifact)

    assert [c.status for c in forge.calls_to("POST", r"/statuses/")] == [status, 201]
    assert [s["state"] for s in forge.github_statuses] == ["failure"]


def failed_call(forge, status: int, body: dict, headers: dict[str, str]) -> HttpError:
    forge.answer_next(status, body, headers)
    link = PullRequestFactory()
    with pytest.raises(HttpError) as failure:
        forge_for(link).status_set(link, sha=commit(0), state="pending", description="", context="c", target_url="")
    return failure.value


def test_it_waits_as_long_as_retry_after_says(db, forge):
    error = failed_call(forge, 429, {"message": "You have exceeded a secondary rate limit."}, {"Retry-After": "7"})

    assert retry_delay(error, attempt=0) == 7


def test_it_waits_until_an_exhausted_window_resets(db, forge):
    reset = int(time.time()) + 40
    error = failed_call(
        forge,
        403,
        {"message": "API rate limit exceeded"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
    )

    assert reset - time.time() - 1 <= retry_delay(error, attempt=0) <= reset - time.time() + 2


def test_it_waits_a_minute_on_a_secondary_limit_without_retry_after(db, forge):
    error = failed_call(forge, 403, {"message": "You have exceeded a secondary rate limit."}, {})

    assert retry_delay(error, attempt=0) >= SECONDARY_LIMIT_MIN_SECONDS


def test_it_backs_off_exponentially_with_a_cap_on_server_errors(db, forge):
    error = failed_call(forge, 502, {"message": "Server Error"}, {})

    delays = [retry_delay(error, attempt) for attempt in range(12)]

    assert delays[:3] == [BACKOFF_BASE_SECONDS, 2 * BACKOFF_BASE_SECONDS, 4 * BACKOFF_BASE_SECONDS]
    assert max(delays) == BACKOFF_CAP_SECONDS


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_it_does_not_retry_what_waiting_cannot_fix(db, forge, status):
    assert retry_delay(failed_call(forge, status, {"message": "Not Found"}, {}), attempt=0) is None


def test_it_stops_before_calling_once_the_window_is_used_up(db, forge):
    forge.answer_next(
        201,
        {"id": 1, "state": "failure"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 30)},
    )
    artifact = scored(FamilyFactory(), PullRequestFactory(), "red", -0.05, 0)

    with pytest.raises(RateLimited) as stopped:
        artifact_publish(artifact=artifact)

    assert len(forge.calls) == 1
    assert 28 <= retry_delay(stopped.value, attempt=0) <= 32


def test_it_gives_up_on_a_permanent_error_without_logging_the_token(db, forge, caplog):
    forge.answer_next(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
    artifact = scored(FamilyFactory(), PullRequestFactory(), "red", -0.05, 0)

    with caplog.at_level(logging.DEBUG):
        publish(artifact)

    assert len(forge.calls) == 1
    assert "failed for good" in caplog.text
    assert GITHUB_TOKEN not in caplog.text
    assert GITHUB_TOKEN not in repr(forge_for(artifact.pull_request))


def test_it_reads_github_and_gitlab_pull_request_urls():
    github = publishing.pull_request_info_from_url("https://github.com/acme/weights/pull/42/files")
    gitlab = publishing.pull_request_info_from_url("https://gitlab.acme.example/ml/nlp/assistant/-/merge_requests/9")

    assert (github.provider, github.repository, github.number) == ("github", "acme/weights", 42)
    assert (gitlab.provider, gitlab.repository, gitlab.number) == ("gitlab", "ml/nlp/assistant", 9)
    assert publishing.pull_request_info_from_url("https://github.com/acme/weights/issues/42") is None
    assert publishing.pull_request_info_from_url("") is None
