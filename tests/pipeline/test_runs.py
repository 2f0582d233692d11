"""Run lifecycle rules, exercised on the real database (task bodies called directly)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from evals.models import EvalRun
from evals.selectors import artifact_queue_position
from evals.services import artifact_runs_create, eval_run_claim, eval_runs_dispatch, eval_runs_sweep
from tests.conftest import purge_broker
from tests.factories import ArtifactFactory, DatasetFactory, EvalRunFactory, FamilyFactory


@pytest.fixture
def clean_broker():
    purge_broker()
    yield
    purge_broker()


def test_it_creates_one_run_per_dataset_and_enqueues_after_commit(db, django_capture_on_commit_callbacks, clean_broker):
    DatasetFactory(name="golden-a", samples=4)
    DatasetFactory(name="golden-b", samples=6)
    artifact = ArtifactFactory(family=FamilyFactory(datasets=["golden-a", "golden-b"]))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        runs = artifact_runs_create(artifact=artifact)
    assert len(callbacks) == 1
    assert {r.status for r in EvalRun.objects.filter(artifact=artifact)} == {"pending"}

    callbacks[0]()

    assert sorted(r.samples_total for r in runs) == [4, 6]
    assert {r.status for r in EvalRun.objects.filter(artifact=artifact)} == {"queued"}
    artifact.refresh_from_db()
    assert artifact.status == "queued"


def test_a_new_dataset_version_is_what_new_artifacts_are_scored_on(db):
    DatasetFactory(name="golden", version=1, samples=3)
    newer = DatasetFactory(name="golden", version=2, samples=5)
    artifact = ArtifactFactory(family=FamilyFactory(datasets=["golden"]))

    (run,) = artifact_runs_create(artifact=artifact)

    assert run.dataset == newer


def test_a_run_is_claimed_once(db):
    run = EvalRunFactory(status="queued")

    first = eval_run_claim(run_id=run.pk, worker="w1")
    second = eval_run_claim(run_id=run.pk, worker="w2")

    assert first is not None and second is None
    run.refresh_from_db()
    assert (run.status, run.worker, run.attempts) == ("running", "w1", 1)


def test_a_finished_run_is_never_claimed_again(db):
    run = EvalRunFactory(status="succeeded")

    assert eval_run_claim(run_id=run.pk, worker="w1") is None


def test_an_expired_lease_lets_another_worker_take_over(db):
    run = EvalRunFactory(
        status="running", worker="gone", attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    claimed = eval_run_claim(run_id=run.pk, worker="w2")

    assert claimed is not None and (claimed.worker, claimed.attempts) == ("w2", 2)


def test_a_worker_retrying_its_own_attempt_reclaims_the_run_before_its_lease_ends(db):
    # The attempt died on a transient error and could not hand the run back (the database was down).
    run = EvalRunFactory(
        status="running", worker="w1", attempts=1, lease_expires_at=timezone.now() + timedelta(seconds=60)
    )

    assert eval_run_claim(run_id=run.pk, worker="w2") is None
    claimed = eval_run_claim(run_id=run.pk, worker="w1")

    assert claimed is not None and (claimed.worker, claimed.attempts) == ("w1", 2)


def test_a_run_that_keeps_losing_its_worker_fails(db, settings):
    settings.DRIFTBOARD_RUN_MAX_ATTEMPTS = 2
    run = EvalRunFactory(
        status="running", worker="gone", attempts=2, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert eval_run_claim(run_id=run.pk, worker="w3") is None

    run.refresh_from_db()
    assert run.status == "failed" and "Gave up after 2 attempts" in run.error
    assert run.artifact.events.filter(action="fail").exists()


def test_the_sweeper_requeues_runs_whose_worker_vanished(db, clean_broker):
    stale = EvalRunFactory(status="running", lease_expires_at=timezone.now() - timedelta(seconds=5))
    alive = EvalRunFactory(status="running", lease_expires_at=timezone.now() + timedelta(seconds=60))

    result = eval_runs_sweep()

    assert result["recovered"] == 1
    stale.refresh_from_db()
    alive.refresh_from_db()
    assert stale.status == "queued" and alive.status == "running"


def test_backpressure_defers_runs_beyond_the_limit_and_releases_them(db, settings, clean_broker):
    settings.DRIFTBOARD_MAX_QUEUED_RUNS = 2
    runs = [EvalRunFactory() for _ in range(5)]

    eval_runs_dispatch()

    statuses = [EvalRun.objects.get(pk=r.pk).status for r in runs]
    assert statuses == ["queued", "queued", "deferred", "deferred", "deferred"]
    assert artifact_queue_position(runs[3].artifact) == 4

    EvalRun.objects.filter(pk=runs[0].pk).update(status="succeeded")
    eval_runs_dispatch()

    assert [EvalRun.objects.get(pk=r.pk).status for r in runs] == [
        "succeeded",
        "queued",
        "queued",
        "deferred",
        "deferred",
    ]


def test_offpeak_runs_wait_while_scoring_is_busy(db, settings, clean_broker):
    settings.DRIFTBOARD_OFFPEAK_WINDOW = ""
    busy = EvalRunFactory(status="running", lease_expires_at=timezone.now() + timedelta(seconds=60))
    offpeak = EvalRunFactory(queue="offpeak", kind="completion")

    eval_runs_dispatch()
    assert EvalRun.objects.get(pk=offpeak.pk).status == "pending"

    EvalRun.objects.filter(pk=busy.pk).update(status="succeeded")
    eval_runs_dispatch()
    assert EvalRun.objects.get(pk=offpeak.pk).status == "queued"


def test_the_api_reports_a_run(api_client):
    run = EvalRunFactory(status="running", samples_done=3, samples_total=12)

    body = api_client.get(f"/api/v1/runs/{run.pk}/").json()

    assert (body["status"], body["samples_done"], body["samples_total"], body["progress"]) == ("running", 3, 12, 0.25)
