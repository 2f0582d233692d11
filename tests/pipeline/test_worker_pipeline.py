"""The whole asynchronous flow on a real Celery worker process and the configured broker and database."""

import threading

import pytest
from rest_framework.test import APIClient

from evals.models import EvalRun, MetricSnapshot
from evals.services import eval_runs_sweep
from registry.models import Alert, Artifact
from tests.conftest import broker_unreachable, wait_for

pytestmark = pytest.mark.worker

SETTLED = {"promoted", "held", "halted", "failed", "scored"}


def register(client, family, path, commit, branch="main"):
    response = client.post(
        "/api/v1/artifacts/",
        {"family": family.slug, "commit": commit, "branch": branch, "path": str(path)},
        format="json",
    )
    assert response.status_code == 202, response.json()
    return Artifact.objects.get(pk=response.json()["id"])


def settled(artifact: Artifact, timeout: float = 180) -> Artifact:
    def done():
        artifact.refresh_from_db()
        return artifact.status in SETTLED

    wait_for(done, timeout=timeout, message=f"{artifact} to be scored")
    return artifact


def test_it_promotes_the_improved_model_and_halts_the_drifted_one(
    celery_worker_factory, settings, api_client, demo_family, demo_imports, alert_receiver
):
    url, received = alert_receiver
    settings.DRIFTBOARD_ALERT_WEBHOOK_URL = url
    celery_worker_factory()

    base = settled(register(api_client, demo_family, demo_imports["base"], "1" * 40))
    assert (base.status, base.stage) == ("promoted", "production")

    improved = settled(register(api_client, demo_family, demo_imports["improved"], "2" * 40))
    drifted = settled(register(api_client, demo_family, demo_imports["drifted"], "3" * 40, branch="finetune"))

    assert (improved.drift_flag, improved.status, improved.stage) == ("green", "promoted", "production")
    assert (drifted.drift_flag, drifted.status) == ("red", "halted")
    base.refresh_from_db()
    assert base.stage == "archived"
    verdict = drifted.verdicts.get(metric="bits_per_byte")
    assert verdict.baseline_id == improved.pk and verdict.ci_high < -0.02
    assert drifted.tags.get(key="drift_flag").value == "red"
    alert = Alert.objects.get(artifact=drifted)
    wait_for(lambda: received, timeout=30, message="the alert webhook")
    assert received[0]["title"] == alert.title and received[0]["flag"] == "red"
    body = api_client.get(f"/api/v1/artifacts/{drifted.pk}/").json()
    assert {m["metric"] for m in body["metrics"]} == {"bits_per_byte", "perplexity"}
    assert {v["outcome"] for v in body["verdicts"] if v["metric"] == "bits_per_byte"} == {"red"}


def test_a_run_survives_its_worker_being_killed(
    celery_worker_factory, api_client, demo_family, demo_imports, demo_build
):
    first = celery_worker_factory()
    artifact = register(api_client, demo_family, demo_imports["base"], "4" * 40)
    run = artifact.runs.get()
    wait_for(
        lambda: EvalRun.objects.filter(pk=run.pk, status="running").exists(),
        timeout=60,
        interval=0.05,
        message="the run to start",
    )
    first.kill()

    celery_worker_factory()
    wait_for(
        lambda: eval_runs_sweep()["recovered"] or EvalRun.objects.get(pk=run.pk).status != "running",
        timeout=60,
        interval=0.5,
        message="the sweeper to recover the run",
    )
    settled(artifact)

    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 2)
    assert MetricSnapshot.objects.filter(artifact=artifact).count() == 2
    assert sorted(MetricSnapshot.objects.filter(artifact=artifact).values_list("metric", flat=True)) == [
        "bits_per_byte",
        "perplexity",
    ]


def test_a_submit_while_the_broker_is_down_is_recovered(celery_worker_factory, api_client, demo_family, demo_imports):
    celery_worker_factory()
    with broker_unreachable():
        artifact = register(api_client, demo_family, demo_imports["base"], "5" * 40)
    assert artifact.runs.get().status == "pending"

    eval_runs_sweep()

    assert settled(artifact).status == "promoted"


def test_concurrent_submits_make_one_run_each(transactional_db, api_client, demo_family, demo_imports):
    errors = []

    def submit(i: int) -> None:
        try:
            client = APIClient()
            client.credentials(**api_client._credentials)
            register(client, demo_family, demo_imports["base"], f"{i:040x}")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i + 1,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Artifact.objects.filter(family=demo_family).count() == 20
    assert sorted(Artifact.objects.values_list("version", flat=True)) == list(range(1, 21))
    assert EvalRun.objects.count() == 20
    assert all(a.runs.count() == 1 for a in Artifact.objects.all())
