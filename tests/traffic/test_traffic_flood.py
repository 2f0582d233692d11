"""Traffic uploads cannot flood scoring: their runs wait on the `traffic` queue outside the candidates'
backpressure budget, an upload holds a bounded number of windows, a family a bounded number of
waiting traffic runs, only reviewers upload, a window too small to compare says so at once, and
windows finished out of order leave the latest window's tag."""

import io
import json

import numpy as np
import pytest

from driftboard.queue_names import Queue
from evals.models import EvalRun, GoldenDataset, TrafficWindow
from evals.services import artifact_runs_create
from evals.services.traffic import traffic_import
from registry.models import Artifact
from tests.conftest import purge_broker
from tests.factories import ArtifactFactory, DatasetFactory, FamilyFactory
from tests.traffic.board import build_traffic_board, scored, window_compared

DAY = 86400
T0 = 1_760_000_000 - 1_760_000_000 % DAY


def log(days: int, per_day: int = 20) -> io.BytesIO:
    rows = [
        {"text": f"question {d}-{i}", "timestamp": T0 + d * DAY + i * 60, "category": ["faq", "code"][i % 2]}
        for d in range(days)
        for i in range(per_day)
    ]
    upload = io.BytesIO("\n".join(json.dumps(r) for r in rows).encode())
    upload.name = "log.jsonl"
    return upload


def upload(client, family, body, window="1d"):
    return client.post(f"/api/v1/families/{family.slug}/traffic/", {"file": body, "window": window}, format="multipart")


@pytest.fixture
def clean_broker():
    purge_broker()
    yield
    purge_broker()


@pytest.fixture
def family(db):
    family = FamilyFactory(slug="support", datasets=["support-golden"])
    ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    return family


def test_it_queues_a_candidate_registered_right_after_a_big_traffic_upload(
    reviewer_client, family, settings, django_capture_on_commit_callbacks, clean_broker
):
    settings.DRIFTBOARD_MAX_QUEUED_RUNS = 2
    DatasetFactory(name="support-golden", samples=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert upload(reviewer_client, family, log(days=6)).status_code == 201
    candidate = ArtifactFactory(family=family)

    with django_capture_on_commit_callbacks(execute=True):
        artifact_runs_create(artifact=candidate)

    traffic = EvalRun.objects.filter(kind=EvalRun.Kind.TRAFFIC)
    assert traffic.count() == 6 and set(traffic.values_list("queue", "status")) == {(Queue.TRAFFIC, "queued")}
    assert list(EvalRun.objects.filter(artifact=candidate).values_list("queue", "status")) == [
        (Queue.SCORING, "queued")
    ]


def test_it_refuses_an_upload_of_more_windows_than_allowed_naming_the_setting(reviewer_client, family, settings):
    settings.DRIFTBOARD_TRAFFIC_MAX_WINDOWS_PER_UPLOAD = 3

    response = upload(reviewer_client, family, log(days=4))

    assert response.status_code == 400
    assert "DRIFTBOARD_TRAFFIC_MAX_WINDOWS_PER_UPLOAD" in response.json()["detail"]
    assert not TrafficWindow.objects.exists() and not EvalRun.objects.exists()


def test_it_answers_429_once_a_family_has_its_fill_of_waiting_traffic_runs(reviewer_client, family, settings):
    settings.DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS = 5
    assert upload(reviewer_client, family, log(days=3)).status_code == 201

    refused = upload(reviewer_client, family, log(days=6))

    assert refused.status_code == 429
    assert "DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS" in refused.json()["detail"]
    assert TrafficWindow.objects.count() == 3 and EvalRun.objects.count() == 3
    EvalRun.objects.update(status=EvalRun.Status.SUCCEEDED)
    assert upload(reviewer_client, family, log(days=5)).status_code == 201


def test_it_lets_only_reviewers_upload_traffic(api_client, reviewer_client, family):
    refused = upload(api_client, family, log(days=2))

    assert refused.status_code == 403 and "reviewers" in refused.json()["detail"]
    assert not TrafficWindow.objects.exists() and not EvalRun.objects.exists()
    assert api_client.get(f"/api/v1/families/{family.slug}/traffic/").status_code == 200
    assert upload(reviewer_client, family, log(days=2)).status_code == 201


def test_it_marks_a_window_of_one_sample_incomparable_with_the_reason(reviewer_client, family):
    response = upload(reviewer_client, family, log(days=1, per_day=1))

    (window,) = response.json()["windows"]
    assert window["outcome"] == "incomparable" and window["run"] is None
    assert window["reasons"] == ["Only 1 samples: a window needs 20 to be compared."]
    assert not EvalRun.objects.exists()
    listed = reviewer_client.get(f"/api/v1/families/{family.slug}/traffic/").json()["windows"]
    assert [w["outcome"] for w in listed] == ["incomparable"]


def test_it_marks_a_window_incomparable_when_its_reference_has_a_single_score(family):
    production = Artifact.objects.get(family=family)
    golden = DatasetFactory(name="support-golden", samples=1, purpose=GoldenDataset.Purpose.GOLDEN)
    scored(production, golden, np.array([1.0]))
    (window,) = traffic_import(family=family, filename="log.jsonl", source=log(days=1).read())
    scored(production, window.dataset, np.linspace(0.9, 1.1, 20))

    window = window_compared(run=window.run)

    assert window.outcome == "incomparable"
    assert window.reasons == ["Not comparable: the reference needs at least two samples."]


def test_an_earlier_window_compared_last_leaves_the_later_windows_tag(db, tmp_path):
    board = build_traffic_board(tmp_path)
    assert board.production.tags.get(key="traffic_drift").value == "red"

    window_compared(run=board.steady.run)  # the traffic queue finishes windows in any order

    tags = dict(board.production.tags.values_list("key", "value"))
    assert (tags["traffic_drift"], tags["traffic_drift.window"]) == ("red", str(board.moved.number))
