"""The conclusions of a commit's own CI, from GitHub check suites and workflow runs and GitLab pipelines."""

import pytest

from registry.models import CommitCheck, WebhookDelivery
from tests.webhooks.deliveries import (
    github_headers,
    payload,
    payload_bytes,
    send_github,
    send_github_json,
    send_gitlab,
    send_gitlab_json,
)

GITHUB_SHA = payload("github_workflow_run_completed")["workflow_run"]["head_sha"]
GITLAB_SHA = payload("gitlab_pipeline_success")["object_attributes"]["sha"]
PIPELINE = "Pipeline Hook"


def workflow_run(**changes) -> dict:
    data = payload("github_workflow_run_completed")
    data["workflow_run"].update(changes)
    return data


def pipeline(**changes) -> dict:
    data = payload("gitlab_pipeline_success")
    data["object_attributes"].update(changes)
    return data


def test_it_records_a_completed_check_suite(client, db):
    response = send_github(client, "github_check_suite_completed", "check_suite")

    assert response.status_code == 200
    suite = payload("github_check_suite_completed")["check_suite"]
    check = CommitCheck.objects.get()
    assert (check.provider, check.repository, check.commit_sha) == ("github", "acme/weights", GITHUB_SHA)
    assert check.name == f"GitHub Actions suite {suite['id']}"
    assert (check.conclusion, check.raw_conclusion) == ("passed", "success")
    assert check.url == f"https://github.com/acme/weights/commit/{GITHUB_SHA}/checks?check_suite_id={suite['id']}"
    assert response.json()["conclusion"] == "passed"
    assert WebhookDelivery.objects.filter(provider="github", event="check_suite").count() == 1


def test_it_records_a_workflow_run_by_its_workflow_name(client, db):
    response = send_github(client, "github_workflow_run_completed", "workflow_run")

    assert response.status_code == 200
    check = CommitCheck.objects.get()
    assert (check.name, check.commit_sha, check.conclusion) == ("Train and test", GITHUB_SHA, "passed")
    assert check.url == payload("github_workflow_run_completed")["workflow_run"]["html_url"]


@pytest.mark.parametrize("event", ["check_suite", "workflow_run"])
def test_it_refuses_a_wrong_signature(client, db, event):
    body = payload_bytes(f"github_{event}_completed")

    response = client.post(
        "/hooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(event, body, secret="not-the-secret"),
    )

    assert response.status_code == 401
    assert not CommitCheck.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_it_refuses_a_body_changed_after_signing(client, db):
    body = payload_bytes("github_workflow_run_completed")
    headers = github_headers("workflow_run", body)

    response = client.post(
        "/hooks/github/",
        data=body.replace(b'"conclusion": "success"', b'"conclusion": "failure"'),
        content_type="application/json",
        headers=headers,
    )

    assert response.status_code == 401
    assert not CommitCheck.objects.exists()


def test_it_handles_a_repeated_delivery_once(client, db):
    delivery = "5d6f1a70-e2b4-11ee-8c1b-3f2a9c4d7e10"

    first = send_github(client, "github_workflow_run_completed", "workflow_run", delivery=delivery)
    again = send_github(client, "github_workflow_run_completed", "workflow_run", delivery=delivery)

    assert first.status_code == again.status_code == 200
    assert again.json() == {"duplicate": True, "delivery": delivery}
    assert CommitCheck.objects.count() == 1
    assert WebhookDelivery.objects.count() == 1


def test_a_later_run_of_the_workflow_updates_the_conclusion(client, db):
    send_github(client, "github_workflow_run_completed", "workflow_run")
    rerun = workflow_run(conclusion="failure", run_attempt=2, updated_at="2024-03-14T10:02:40Z")

    assert send_github_json(client, rerun, "workflow_run").status_code == 200

    check = CommitCheck.objects.get()
    assert (check.conclusion, check.raw_conclusion) == ("failed", "failure")


def test_a_report_that_concluded_earlier_arriving_late_changes_nothing(client, db):
    send_github(client, "github_workflow_run_completed", "workflow_run")
    earlier = workflow_run(conclusion="failure", updated_at="2024-03-14T09:00:00Z")

    response = send_github_json(client, earlier, "workflow_run")

    assert response.status_code == 200
    assert response.json()["applied"] is False
    assert CommitCheck.objects.get().conclusion == "passed"


@pytest.mark.parametrize(
    ("raw", "conclusion"),
    [("timed_out", "failed"), ("startup_failure", "failed"), ("cancelled", "other"), ("skipped", "other")],
)
def test_it_words_github_conclusions_as_passed_failed_or_other(client, db, raw, conclusion):
    send_github_json(client, workflow_run(conclusion=raw), "workflow_run")

    check = CommitCheck.objects.get()
    assert (check.conclusion, check.raw_conclusion) == (conclusion, raw)


def test_checks_that_have_not_completed_are_ignored(client, db):
    started = payload("github_check_suite_completed")
    started["action"] = "requested"
    started["check_suite"].update(status="queued", conclusion=None)

    response = send_github_json(client, started, "check_suite")

    assert response.status_code == 202
    assert not CommitCheck.objects.exists()


def test_unknown_events_are_still_ignored(client, db):
    assert send_github(client, "github_check_suite_completed", "check_run").status_code == 202
    assert send_gitlab(client, "gitlab_pipeline_success", event="Job Hook").status_code == 202
    assert not CommitCheck.objects.exists()


def test_it_refuses_a_check_whose_commit_is_no_sha(client, db):
    response = send_github_json(client, workflow_run(head_sha="main; drop table"), "workflow_run")

    assert response.status_code == 400
    assert not CommitCheck.objects.exists()


def test_a_check_address_off_the_forge_is_not_kept(client, db):
    send_github_json(client, workflow_run(html_url="javascript:alert(1)"), "workflow_run")

    assert CommitCheck.objects.get().url == ""


def test_it_records_a_finished_gitlab_pipeline(client, db):
    response = send_gitlab(client, "gitlab_pipeline_success", event=PIPELINE)

    assert response.status_code == 200
    check = CommitCheck.objects.get()
    assert (check.provider, check.repository, check.commit_sha) == ("gitlab", "ml/support-assistant", GITLAB_SHA)
    assert (check.name, check.conclusion, check.raw_conclusion) == (
        "pipeline (merge_request_event)",
        "passed",
        "success",
    )
    assert check.url == "https://gitlab.acme.example/ml/support-assistant/-/pipelines/120734"
    assert check.reported_at.isoformat() == "2024-03-14T09:31:40+00:00"


def test_a_retried_gitlab_pipeline_updates_the_conclusion(client, db):
    send_gitlab_json(client, pipeline(status="failed", finished_at="2024-03-14 09:31:40 UTC"), PIPELINE)
    assert CommitCheck.objects.get().conclusion == "failed"

    send_gitlab_json(client, pipeline(status="success", finished_at="2024-03-14 10:12:05 UTC"), PIPELINE)

    assert CommitCheck.objects.get().conclusion == "passed"


@pytest.mark.parametrize("status", ["canceled", "skipped"])
def test_a_cancelled_or_skipped_pipeline_is_no_pass(client, db, status):
    send_gitlab_json(client, pipeline(status=status), PIPELINE)

    assert CommitCheck.objects.get().conclusion == "other"


@pytest.mark.parametrize("status", ["created", "pending", "running", "manual"])
def test_a_pipeline_that_has_not_finished_is_ignored(client, db, status):
    response = send_gitlab_json(client, pipeline(status=status, finished_at=None), PIPELINE)

    assert response.status_code == 202
    assert not CommitCheck.objects.exists()


def test_a_branch_and_a_merge_request_pipeline_of_one_commit_are_two_checks(client, db):
    send_gitlab(client, "gitlab_pipeline_success", event=PIPELINE)
    send_gitlab_json(client, pipeline(id=120733, source="push", status="failed"), PIPELINE)

    assert dict(CommitCheck.objects.values_list("name", "conclusion")) == {
        "pipeline (merge_request_event)": "passed",
        "pipeline (push)": "failed",
    }


def test_it_handles_a_repeated_gitlab_event_once(client, db):
    event = "2a0c3d1e-9f4b-4c55-8e21-6b7d0c9a1f42"

    send_gitlab(client, "gitlab_pipeline_success", event=PIPELINE, uuid_=event)
    again = send_gitlab(client, "gitlab_pipeline_success", event=PIPELINE, uuid_=event)

    assert again.json() == {"duplicate": True, "delivery": event}
    assert CommitCheck.objects.count() == 1


def test_it_refuses_a_pipeline_with_a_wrong_token(client, db):
    response = send_gitlab(client, "gitlab_pipeline_success", event=PIPELINE, token="guess")

    assert response.status_code == 401
    assert not CommitCheck.objects.exists()
    assert not WebhookDelivery.objects.exists()
