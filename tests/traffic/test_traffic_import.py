"""Traffic windows in: the API upload and `import_traffic`, splitting by timestamp, and every refusal."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from evals.models import EvalRun, GoldenDataset, TrafficWindow
from evals.selectors import dataset_latest
from registry.models import Artifact
from tests.factories import ArtifactFactory, FamilyFactory

DAY = 86400
T0 = 1_760_000_000 - 1_760_000_000 % DAY  # a UTC midnight


def jsonl(rows) -> io.BytesIO:
    upload = io.BytesIO("\n".join(json.dumps(r) for r in rows).encode())
    upload.name = "log.jsonl"
    return upload


def log_rows(days=3, per_day=4):
    return [
        {"prompt": f"question {d}-{i}", "timestamp": T0 + d * DAY + i * 600, "category": ["faq", "code"][i % 2]}
        for d in range(days)
        for i in range(per_day)
    ]


def post(client, family, rows, window="1d"):
    return client.post(
        f"/api/v1/families/{family.slug}/traffic/", {"file": jsonl(rows), "window": window}, format="multipart"
    )


@pytest.fixture
def family(db):
    return FamilyFactory(slug="support", datasets=["support-golden"])


def test_it_splits_a_log_into_daily_windows_kept_apart_from_golden_sets(reviewer_client, family):
    response = post(reviewer_client, family, log_rows())

    assert response.status_code == 201, response.json()
    windows = response.json()["windows"]
    assert [w["window"] for w in windows] == [1, 2, 3]
    assert [w["samples"] for w in windows] == [4, 4, 4]
    assert windows[1]["starts_at"].startswith("2025-10-1")
    stored = list(TrafficWindow.objects.order_by("number"))
    assert [(w.ends_at - w.starts_at).total_seconds() for w in stored] == [DAY] * 3
    assert all(w.starts_at.timestamp() % DAY == 0 for w in stored)
    assert {w.dataset.purpose for w in stored} == {GoldenDataset.Purpose.TRAFFIC}
    assert [w.dataset.version for w in stored] == [1, 2, 3]
    assert stored[0].dataset.samples.get(position=0).text == "question 0-0"
    assert stored[0].dataset.categories == {"faq": 2, "code": 2}
    assert dataset_latest("support-traffic") is None  # never picked as a golden set
    assert EvalRun.objects.count() == 0  # no production artifact to watch yet
    assert "No production artifact" in stored[0].reasons[0]

    listed = reviewer_client.get(f"/api/v1/families/{family.slug}/traffic/").json()
    assert [w["outcome"] for w in listed["windows"]] == ["pending"] * 3


def test_it_queues_the_production_model_on_each_new_window_and_samples_big_ones(
    reviewer_client, family, settings, django_capture_on_commit_callbacks
):
    settings.DRIFTBOARD_TRAFFIC_SAMPLE_SIZE = 25
    production = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    rows = log_rows(days=1, per_day=20) + log_rows(days=2, per_day=30)[30:]

    with django_capture_on_commit_callbacks():
        response = post(reviewer_client, family, rows)

    assert response.status_code == 201
    runs = list(EvalRun.objects.order_by("id"))
    assert [(r.artifact_id, r.kind, r.queue) for r in runs] == [(production.pk, "traffic", "traffic")] * 2
    assert runs[0].sampling == {} and runs[0].samples_total == 20
    assert runs[1].samples_total == 25 and len(runs[1].sampling["positions"]) == 25
    assert "seed" in runs[1].sampling


def test_it_returns_the_same_window_for_the_same_log(reviewer_client, family):
    post(reviewer_client, family, log_rows(days=1))
    again = post(reviewer_client, family, log_rows(days=1))
    assert again.status_code == 201
    assert again.json()["windows"][0]["window"] == 1
    assert TrafficWindow.objects.count() == 1


@pytest.mark.parametrize(
    ("rows", "window", "row", "words"),
    [
        ([{"query": "x"}], "1d", None, "no 'text' or 'prompt' column"),
        ([{"text": "ok", "timestamp": T0}, {"text": "  ", "timestamp": T0}], "1d", 2, "empty text"),
        (
            [{"text": "a", "timestamp": T0}, {"text": "b", "timestamp": T0}, {"text": "c", "timestamp": "yesterday"}],
            "1d",
            3,
            "timestamp",
        ),
        ([{"text": "a", "timestamp": T0}, {"text": "b"}], "1d", 2, "no timestamp"),
        ([{"text": "a", "timestamp": T0}], "1y", None, "not a window length"),
        ([{"text": "a", "timestamp": True}], "1d", 1, "timestamp"),
    ],
)
def test_it_refuses_bad_logs_with_the_row_and_stores_nothing(reviewer_client, family, rows, window, row, words):
    response = post(reviewer_client, family, rows, window)

    assert response.status_code == 400
    assert words in response.json()["detail"]
    assert response.json()["row"] == row
    assert not GoldenDataset.objects.exists() and not TrafficWindow.objects.exists()


def test_it_refuses_logs_and_windows_over_the_limits(reviewer_client, family, settings):
    settings.DRIFTBOARD_MAX_TRAFFIC_ROWS = 10
    too_many = post(reviewer_client, family, log_rows(days=3))
    assert too_many.status_code == 400 and too_many.json()["row"] == 11

    settings.DRIFTBOARD_MAX_TRAFFIC_ROWS = 100
    settings.DRIFTBOARD_MAX_DATASET_ROWS = 3
    too_big = post(reviewer_client, family, log_rows(days=2))
    assert too_big.status_code == 400
    assert "shorter --window" in too_big.json()["detail"] and too_big.json()["row"] == 4

    settings.DRIFTBOARD_MAX_SAMPLE_CHARS = 5
    too_long = post(reviewer_client, family, [{"text": "far too long", "timestamp": T0}])
    assert too_long.status_code == 400 and too_long.json()["row"] == 1
    assert not TrafficWindow.objects.exists()


def test_it_needs_a_known_family_and_a_file(reviewer_client, family):
    assert post(reviewer_client, FamilyFactory.build(slug="nope"), log_rows()).status_code == 404
    response = reviewer_client.post(f"/api/v1/families/{family.slug}/traffic/", {}, format="multipart")
    assert response.status_code == 400


def test_the_command_imports_a_csv_split_by_day(family, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "id,text,timestamp,category\n"
        "a,hello there,2025-10-09T10:00:00Z,faq\n"
        "b,how do I,2025-10-09T23:59:59+00:00,faq\n"
        "c,def f(): pass,2025-10-10 08:00:00,code\n"
    )
    out = io.StringIO()
    call_command("import_traffic", "support", str(path), "--window", "1d", stdout=out)

    assert "2 traffic window(s)" in out.getvalue()
    first, second = TrafficWindow.objects.order_by("number")
    assert list(first.dataset.samples.values_list("sample_id", flat=True)) == ["a", "b"]
    assert second.dataset.samples.get().category == "code"


def test_the_command_names_the_bad_row(family, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("text,timestamp\nfine,2025-10-09\nbad,10/09/2025\n")
    with pytest.raises(CommandError, match="row 2: timestamp"):
        call_command("import_traffic", "support", str(path), "--window", "1d")
    with pytest.raises(CommandError, match="No family"):
        call_command("import_traffic", "nobody", str(path))


def test_an_embedding_familys_window_is_scored_only_with_references(
    reviewer_client, db, django_capture_on_commit_callbacks
):
    family = FamilyFactory(slug="embedder", kind="embedding")
    ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    assert post(reviewer_client, family, log_rows(days=1)).status_code == 201
    window = TrafficWindow.objects.get()
    assert window.outcome == "incomparable" and "needs a `reference`" in window.reasons[0]
    assert not EvalRun.objects.exists()

    pairs = [{**row, "reference": f"answer to {row['prompt']}"} for row in log_rows(days=1, per_day=20)]
    with django_capture_on_commit_callbacks():
        assert post(reviewer_client, family, pairs).status_code == 201
    assert EvalRun.objects.get().dataset.samples.filter(reference="").count() == 0
