"""A judge run keeps its lease while it waits on the judge, runs once, and says why it failed.

Real judge-queue workers judge answers stored as a scoring run stores them (no model is loaded); the
judge is the local OpenAI-compatible server. The test process plays beat: it runs the sweeper while
it waits, on a lease shorter than the judging takes.
"""

import time

import pytest
from django.utils import timezone

from driftboard.queue_names import Queue
from evals.models import EvalRun, GoldenSample, Judgement, MetricSnapshot
from evals.services import eval_runs_dispatch, eval_runs_sweep
from evals.services.pipeline import family_create
from registry.models import Artifact
from tests.conftest import wait_for
from tests.factories import ArtifactFactory, DatasetFactory
from tests.judges.conftest import ok
from tests.judges.test_judge_preference_verdicts import facts_of, scored, store_answers

pytestmark = pytest.mark.worker

PROMPTS = 6
LEASE_SECONDS = 3
# Each judge call takes this long and the judge answers one call at a time: the judging lasts
# PROMPTS × CALL_SECONDS, three leases.
CALL_SECONDS = 1.5


def slow_rating(_body: dict, _number: int):
    time.sleep(CALL_SECONDS)
    return ok("Fine. Rating: [[8]]")


def refusing(_body: dict, _number: int):
    return 400, {}, {"error": {"message": "The model `judge-test` does not exist"}}


@pytest.fixture
def judge_run(transactional_db, judge_server, settings):
    """A judge run waiting to be sent, on answers its scoring run stored."""
    settings.DRIFTBOARD_RUN_LEASE_SECONDS = LEASE_SECONDS
    family = family_create(
        slug="slow-judge",
        kind="causal-lm",
        datasets=["prompts"],
        scorers=["judge-score"],
        generation={"max_new_tokens": 8},
        judge={"url": judge_server.url, "model": "judge-test", "concurrency": 1},
    )
    dataset = DatasetFactory(name="prompts", samples=PROMPTS)
    samples = list(GoldenSample.objects.filter(dataset=dataset))
    for sample in samples:
        sample.prompt = f"What comes after {sample.position}?"
    GoldenSample.objects.bulk_update(samples, ["prompt"])
    artifact = ArtifactFactory(family=family, status=Artifact.Status.SCORING)
    scoring = scored(artifact, dataset)
    store_answers(artifact, dataset, {i: f"{i + 1} comes next" for i in range(PROMPTS)})
    return EvalRun.objects.create(
        artifact=artifact,
        dataset=dataset,
        kind=EvalRun.Kind.JUDGE,
        queue=Queue.JUDGE,
        samples_total=PROMPTS,
        judging={"model": facts_of(artifact), "scoring_run": scoring.pk},
    )


def judge_workers(celery_worker_factory, count: int = 2) -> list:
    return [
        celery_worker_factory(queues=(Queue.JUDGE,), DRIFTBOARD_RUN_LEASE_SECONDS=str(LEASE_SECONDS))
        for _ in range(count)
    ]


def finished_while_sweeping(run: EvalRun, timeout: float = 120) -> EvalRun:
    """Wait for the run to finish, running the sweeper meanwhile as beat does."""

    def finished():
        eval_runs_sweep()
        current = EvalRun.objects.get(pk=run.pk)
        return current if current.status in (EvalRun.Status.SUCCEEDED, EvalRun.Status.FAILED) else None

    return wait_for(finished, timeout=timeout, interval=0.5, message=f"run {run.pk} to finish")


def test_it_judges_a_run_once_when_the_judge_is_slower_than_the_lease(celery_worker_factory, judge_server, judge_run):
    judge_server.replier = slow_rating
    judge_workers(celery_worker_factory)

    eval_runs_dispatch()
    run = finished_while_sweeping(judge_run)
    # Beat goes on after the end: nothing sends the run again.
    for _ in range(LEASE_SECONDS * 2):
        eval_runs_sweep()
        time.sleep(0.5)

    run.refresh_from_db()
    assert (run.status, run.attempts, run.error) == ("succeeded", 1, "")
    assert judge_server.calls == PROMPTS  # one call per sample × repeat: nobody judged it twice
    assert Judgement.objects.count() == PROMPTS
    snapshot = MetricSnapshot.objects.get(artifact=run.artifact, metric="judge_score")
    assert (snapshot.run_id, snapshot.value) == (run.pk, 8.0)


def test_it_gives_up_on_a_judge_that_keeps_failing_with_the_judges_error_and_retries_on_the_judge_queue(
    celery_worker_factory, judge_server, judge_run, staff_client
):
    judge_server.replier = refusing
    scoring = celery_worker_factory(queues=(Queue.SCORING, Queue.PUBLISH))
    judge_workers(celery_worker_factory, count=1)

    eval_runs_dispatch()
    run = finished_while_sweeping(judge_run)

    assert run.status == "failed" and run.attempts == 4
    assert run.error.startswith("Gave up after 3 attempts; the last error: ")
    assert "judge calls failed" in run.error and "HTTP 400" in run.error, run.error
    assert "kept disappearing" not in run.error and "retrying" not in run.error

    judge_server.replier = slow_rating
    response = staff_client.post(f"/api/v1/runs/{run.pk}/retry/", {}, format="json")
    assert response.status_code == 202, response.json()
    assert (response.json()["queue"], response.json()["error"]) == ("judge", "")
    run = finished_while_sweeping(run)
    assert (run.status, run.attempts) == ("succeeded", 1)
    # Every attempt, Celery's retries and the retry by hand, went to the judge worker.
    assert "score_run[" not in scoring.log_path.read_text()


def test_it_refuses_to_retry_a_judge_run_anywhere_but_the_judge_queue(judge_run, staff_client):
    EvalRun.objects.filter(pk=judge_run.pk).update(status=EvalRun.Status.FAILED, finished_at=timezone.now())

    for queue in ("scoring", "scoring-80g"):
        response = staff_client.post(f"/api/v1/runs/{judge_run.pk}/retry/", {"queue": queue}, format="json")
        assert response.status_code == 400 and "`judge` queue only" in str(response.json()), response.json()

    judge_run.refresh_from_db()
    assert (judge_run.status, judge_run.queue) == ("failed", "judge")
