"""The experiments API through real URLs: create, summary, runs, live posting, results.tsv import."""

import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evals.models import Experiment, ExperimentRun
from tests.factories import ExperimentFactory, ExperimentRunFactory

BASE = "/api/v1/experiments/"


def upload(content: bytes, name: str = "results.tsv") -> dict:
    return {"file": SimpleUploadedFile(name, content, content_type="text/tab-separated-values")}


def test_it_creates_an_experiment(api_client):
    body = {
        "slug": "mar5-gpu0",
        "objective": "val_bpb",
        "direction": "lower",
        "time_budget_s": 300,
        "hardware": "1× H100 80GB",
    }
    response = api_client.post(BASE, body, format="json")
    assert response.status_code == 201, response.content
    experiment = Experiment.objects.get(slug="mar5-gpu0")
    assert (experiment.time_budget_s, experiment.hardware) == (300, "1× H100 80GB")
    assert response.json()["summary"]["runs"] == 0
    assert response.json()["url"].endswith("/experiments/mar5-gpu0/")


def test_it_refuses_a_duplicate_slug(api_client, experiment):
    response = api_client.post(BASE, {"slug": experiment.slug}, format="json")
    assert response.status_code == 400
    assert "slug" in response.json()


def test_it_summarises_an_imported_experiment(api_client, imported):
    summary = api_client.get(f"{BASE}{imported.slug}/").json()["summary"]
    assert {k: summary[k] for k in ("runs", "kept", "discarded", "crashed", "best_value", "best_commit")} == {
        "runs": 34,
        "kept": 15,
        "discarded": 13,
        "crashed": 6,
        "best_value": 0.9818,
        "best_commit": "cf2a3b4",
    }
    listed = api_client.get(BASE).json()["results"]
    assert [e["summary"] for e in listed if e["slug"] == imported.slug] == [summary]


def test_it_lists_experiments_in_a_constant_number_of_queries(api_client, django_assert_num_queries):
    def add_experiment() -> None:
        experiment = ExperimentFactory()
        ExperimentRunFactory.create_batch(3, experiment=experiment)

    add_experiment()
    with CaptureQueriesContext(connection) as one:
        assert api_client.get(BASE).status_code == 200
    for _ in range(5):
        add_experiment()
    with django_assert_num_queries(len(one.captured_queries)):
        assert len(api_client.get(BASE).json()["results"]) == 6


def test_it_lists_runs_in_a_constant_number_of_queries(api_client, experiment, django_assert_num_queries):
    ExperimentRunFactory(experiment=experiment, sequence=1)
    with CaptureQueriesContext(connection) as one:
        assert api_client.get(f"{BASE}{experiment.slug}/runs/").status_code == 200
    for sequence in range(2, 31):
        ExperimentRunFactory(experiment=experiment, sequence=sequence)
    with django_assert_num_queries(len(one.captured_queries)):
        assert api_client.get(f"{BASE}{experiment.slug}/runs/").json()["count"] == 30


def test_it_pages_the_runs_in_sequence_order(api_client, imported):
    first = api_client.get(f"{BASE}{imported.slug}/runs/?page_size=20").json()
    assert first["count"] == 34
    assert [r["sequence"] for r in first["results"]][:3] == [1, 2, 3]
    assert first["results"][3]["status"] == "crash" and first["results"][3]["objective_value"] is None
    second = api_client.get(f"{BASE}{imported.slug}/runs/?page_size=20&page=2").json()
    assert [r["sequence"] for r in first["results"] + second["results"]] == list(range(1, 35))


def test_it_records_a_run_posted_with_its_log(api_client, experiment, train_log):
    body = {
        "commit": "cf2a3b4",
        "status": "keep",
        "description": "final LR fraction 0.02",
        "log": train_log,
        "started_at": "2025-03-05T02:00:00Z",
        "finished_at": "2025-03-05T02:05:30Z",
    }
    response = api_client.post(f"{BASE}{experiment.slug}/runs/", body, format="json")
    assert response.status_code == 201, response.content
    run = ExperimentRun.objects.get(experiment=experiment)
    assert (run.sequence, run.objective_value, run.memory_gb, run.duration_s) == (1, 0.9818, 51.3, 330.0)
    assert run.summary["mfu_percent"] == 39.8
    assert response.json()["summary"]["depth"] == 9


def test_it_accepts_the_objective_under_its_own_name(api_client, experiment):
    body = {"commit": "a1b2c3d", "status": "keep", "val_bpb": 0.9979, "memory_gb": 44.0}
    response = api_client.post(f"{BASE}{experiment.slug}/runs/", body, format="json")
    assert response.status_code == 201, response.content
    assert ExperimentRun.objects.get(experiment=experiment).objective_value == 0.9979


def test_it_records_a_crash_with_the_last_error_line(api_client, experiment, crash_log):
    body = {
        "commit": "d4e5f60",
        "status": "crash",
        "val_bpb": 0.0,
        "memory_gb": 0.0,
        "description": "double model width",
        "log": crash_log,
    }
    response = api_client.post(f"{BASE}{experiment.slug}/runs/", body, format="json")
    assert response.status_code == 201, response.content
    run = ExperimentRun.objects.get(experiment=experiment)
    assert run.objective_value is None
    assert run.crash_reason.startswith("torch.OutOfMemoryError: CUDA out of memory")


@pytest.mark.parametrize(
    "body",
    [
        {"commit": "abc1234", "status": "keep"},
        {"commit": "abc1234", "status": "kept", "val_bpb": 1.0},
        {"commit": "not a sha", "status": "keep", "val_bpb": 1.0},
        {
            "commit": "abc1234",
            "status": "keep",
            "val_bpb": 1.0,
            "started_at": "2025-03-05T02:00:00Z",
            "finished_at": "2025-03-05T01:00:00Z",
        },
    ],
)
def test_it_refuses_an_incomplete_run(api_client, experiment, body):
    response = api_client.post(f"{BASE}{experiment.slug}/runs/", body, format="json")
    assert response.status_code == 400
    assert not ExperimentRun.objects.exists()


def test_it_imports_a_results_file_and_reports_malformed_lines(api_client, experiment, results_bytes):
    response = api_client.post(f"{BASE}{experiment.slug}/import/", upload(results_bytes), format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["unchanged"]) == (34, 0)
    assert [m["line"] for m in body["malformed"]] == [13, 18, 22, 33]
    again = api_client.post(f"{BASE}{experiment.slug}/import/", upload(results_bytes), format="multipart").json()
    assert (again["created"], again["unchanged"], again["runs"]) == (0, 34, [])
    assert experiment.runs.count() == 34


def test_it_answers_400_for_a_file_with_a_wrong_header(api_client, experiment):
    response = api_client.post(f"{BASE}{experiment.slug}/import/", upload(b"a,b,c\n"), format="multipart")
    assert response.status_code == 400
    assert response.json()["line"] == 1


def test_it_answers_404_for_an_unknown_experiment(api_client, results_bytes):
    response = api_client.post(f"{BASE}nope/import/", upload(results_bytes), format="multipart")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("post", ""),
        ("get", "nanochat-h100/"),
        ("get", "nanochat-h100/runs/"),
        ("post", "nanochat-h100/runs/"),
        ("post", "nanochat-h100/import/"),
    ],
)
def test_it_refuses_anonymous_requests(anonymous_client, experiment, method, path):
    response = getattr(anonymous_client, method)(f"{BASE}{path}", {}, format="json")
    assert response.status_code in (401, 403)
    assert not ExperimentRun.objects.exists()


def test_it_counts_runs_per_day_from_posted_times(api_client, experiment):
    start = datetime.datetime(2025, 3, 5, 0, 0, tzinfo=datetime.UTC)
    for i in range(4):
        finished = (start + datetime.timedelta(hours=8 * i)).isoformat()
        body = {"commit": f"{i:07x}", "status": "discard", "val_bpb": 1.0, "finished_at": finished}
        assert api_client.post(f"{BASE}{experiment.slug}/runs/", body, format="json").status_code == 201
    summary = api_client.get(f"{BASE}{experiment.slug}/").json()["summary"]
    assert summary["runs_per_day"] == pytest.approx(3.0)  # one run every 8 hours
