"""Weights too big for a worker fail the run at once with what they need, and the run can be retried on
the scoring queue of a bigger memory size class, where only such workers listen."""

import pytest

from evals.models import EvalRun
from evals.scoring.loading import MODEL_CACHE
from evals.services.pipeline import artifact_submit, eval_run_process
from registry.models import Artifact
from tests.conftest import wait_for


@pytest.fixture
def failed_for_memory(transactional_db, demo_family, demo_imports, monkeypatch):
    registration = artifact_submit(family=demo_family, commit_sha="8" * 40, path=str(demo_imports["base"]))
    run = EvalRun.objects.get(artifact=registration.artifact)
    EvalRun.objects.filter(pk=run.pk).update(status=EvalRun.Status.QUEUED)
    MODEL_CACHE.clear()  # a worker that has not loaded these weights yet (earlier tests may have)
    monkeypatch.setenv("DRIFTBOARD_WORKER_MEMORY_GIB", "0.0001")  # this worker: about 100 KiB
    eval_run_process(run_id=run.pk, worker="small-worker:1")
    monkeypatch.delenv("DRIFTBOARD_WORKER_MEMORY_GIB")
    run.refresh_from_db()
    return run


def test_weights_that_do_not_fit_fail_the_run_at_once_naming_the_size_class(failed_for_memory):
    run = failed_for_memory
    assert run.status == EvalRun.Status.FAILED and run.attempts == 1
    assert "needs ~" in run.error and "GiB free" in run.error and "scoring-16g" in run.error
    assert Artifact.objects.get(pk=run.artifact_id).status == Artifact.Status.FAILED


@pytest.mark.worker
def test_a_retry_on_the_size_class_queue_is_scored_by_a_worker_that_listens_there(
    failed_for_memory, celery_worker_factory, staff_client
):
    run = failed_for_memory
    response = staff_client.post(f"/api/v1/runs/{run.pk}/retry/", {"queue": "scoring-16g"}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["queue"] == "scoring-16g"
    assert Artifact.objects.get(pk=run.artifact_id).status == Artifact.Status.QUEUED

    celery_worker_factory(queues=("scoring-16g",))
    wait_for(
        lambda: EvalRun.objects.get(pk=run.pk).status == EvalRun.Status.SUCCEEDED,
        timeout=120,
        message="the big worker to score the retried run",
    )
    run.refresh_from_db()
    assert (run.queue, run.attempts, run.error) == ("scoring-16g", 1, "")
    # The verdict follows the run's success in its own transaction: the family's first is promoted.
    wait_for(
        lambda: Artifact.objects.get(pk=run.artifact_id).status == Artifact.Status.PROMOTED,
        timeout=60,
        message="the retried run's artifact to be promoted",
    )


def test_only_a_failed_run_is_retried_and_only_on_a_scoring_queue(failed_for_memory, staff_client, api_client):
    run = failed_for_memory
    assert api_client.post(f"/api/v1/runs/{run.pk}/retry/", {}, format="json").status_code == 403
    response = staff_client.post(f"/api/v1/runs/{run.pk}/retry/", {"queue": "publish"}, format="json")
    assert response.status_code == 400 and "not a scoring queue" in response.json()["detail"]

    assert staff_client.post(f"/api/v1/runs/{run.pk}/retry/", {}, format="json").status_code == 202
    response = staff_client.post(f"/api/v1/runs/{run.pk}/retry/", {}, format="json")
    assert response.status_code == 400 and "has not failed" in response.json()["detail"]
