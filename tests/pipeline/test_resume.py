"""Runs that die part-way resume from the per-sample results they saved, and never hang on an error."""

import json
import os
import socket
import subprocess
import sys

import pytest

from evals.models import EvalRun, MetricSnapshot, SampleResult
from evals.services import dataset_import
from evals.services.pipeline import artifact_submit, eval_run_claim, eval_run_execute, family_create
from evals.services.runs import eval_runs_reclaim_dead
from registry.models import Artifact
from tests.conftest import wait_for

CHUNK = 8


@pytest.fixture
def long_family(transactional_db, demo_build, tmp_path):
    """The demo family on a golden set large enough that scoring lasts several seconds."""
    rows = [json.loads(line) for line in demo_build.golden.read_text().splitlines() if line.strip()]
    golden = tmp_path / "golden-long.jsonl"
    with golden.open("w") as out:
        for copy in range(8):
            for row in rows:
                text = f"{row['text']} ({copy}) {row['text']}"
                out.write(json.dumps({**row, "id": f"{row['id']}-{copy}", "text": text}) + "\n")
    dataset_import(name="long-golden", filename=golden.name, source=golden)
    return family_create(slug="demo", kind="causal-lm", base_path=str(demo_build.base), datasets=["long-golden"])


def dead_worker_name() -> str:
    """`host:pid` of a process of this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}"


def saved_results(artifact: Artifact) -> int:
    return SampleResult.objects.filter(weights_sha256=artifact.sha256).count()


@pytest.mark.worker
def test_a_run_killed_part_way_resumes_from_its_saved_chunks(
    long_family, celery_worker_factory, api_client, demo_imports
):
    body = {"family": long_family.slug, "commit": "5" * 40, "path": str(demo_imports["improved"])}
    response = api_client.post("/api/v1/artifacts/", body, format="json")
    assert response.status_code == 202, response.content
    artifact = Artifact.objects.get(pk=response.json()["id"])
    run = EvalRun.objects.get(artifact=artifact)
    total = run.samples_total

    worker = celery_worker_factory(DRIFTBOARD_RESULT_CHUNK_SAMPLES=str(CHUNK))
    wait_for(lambda: saved_results(artifact) >= total * 0.4, timeout=180, interval=0.02, message="40 % of the run")
    worker.kill()
    saved_before = saved_results(artifact)
    assert EvalRun.objects.get(pk=run.pk).status == EvalRun.Status.RUNNING
    assert CHUNK <= saved_before < total

    # The next worker on this host takes the dead process's run back at once (no lease, no beat).
    celery_worker_factory(DRIFTBOARD_RESULT_CHUNK_SAMPLES=str(CHUNK))
    wait_for(
        lambda: EvalRun.objects.get(pk=run.pk).status in {EvalRun.Status.SUCCEEDED, EvalRun.Status.FAILED},
        timeout=180,
        message="the run to finish on the second worker",
    )
    run.refresh_from_db()
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    assert run.cached_samples >= saved_before
    assert total - run.cached_samples <= total - saved_before  # only what was lost is scored again
    assert saved_results(artifact) == total
    assert MetricSnapshot.objects.get(artifact=artifact, metric="bits_per_byte").n == total


def test_a_dead_process_s_run_goes_back_on_the_queue_at_start_up(db, demo_family, demo_imports):
    registration = artifact_submit(family=demo_family, commit_sha="6" * 40, path=str(demo_imports["base"]))
    run = EvalRun.objects.get(artifact=registration.artifact)
    alive = f"{socket.gethostname()}:{os.getpid()}"
    EvalRun.objects.filter(pk=run.pk).update(status=EvalRun.Status.RUNNING, worker=dead_worker_name())
    other = EvalRun.objects.create(
        artifact=registration.artifact, dataset=run.dataset, status=EvalRun.Status.RUNNING, worker=alive
    )

    assert eval_runs_reclaim_dead(hostname=socket.gethostname()) == 1

    assert EvalRun.objects.get(pk=run.pk).status in {EvalRun.Status.PENDING, EvalRun.Status.QUEUED}
    assert EvalRun.objects.get(pk=other.pk).status == EvalRun.Status.RUNNING  # a live process keeps its run


def test_an_unexpected_error_while_scoring_fails_the_run_at_once_with_its_message(db, demo_family, demo_imports):
    registration = artifact_submit(family=demo_family, commit_sha="7" * 40, path=str(demo_imports["base"]))
    run = EvalRun.objects.get(artifact=registration.artifact)
    EvalRun.objects.filter(pk=run.pk).update(status=EvalRun.Status.QUEUED)
    claimed = eval_run_claim(run_id=run.pk, worker="w1")

    def loader_that_cannot(**_kwargs):
        raise NotImplementedError("this architecture's attention is not implemented")

    assert eval_run_execute(run=claimed, score=loader_that_cannot) is False

    run.refresh_from_db()
    assert run.status == EvalRun.Status.FAILED and run.attempts == 1
    assert run.error == "Scoring failed: NotImplementedError: this architecture's attention is not implemented"
    assert Artifact.objects.get(pk=run.artifact_id).status == Artifact.Status.FAILED
