"""Traffic windows scored by the production model on a real Celery worker, then compared with its golden set."""

import io
import json

import pytest
from django.utils import timezone

from evals.models import EvalRun, TrafficWindow
from evals.services.demo import demo_traffic_rows
from registry.models import Alert, Artifact
from tests.conftest import wait_for

pytestmark = pytest.mark.worker

T0 = 1_760_000_000 - 1_760_000_000 % 86400


def golden_rows(path):
    """The golden passages as traffic would log them: the text alone (no prompt to answer)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{key: row[key] for key in ("id", "text", "category")} for row in rows]


def upload(client, family, rows, name="log.jsonl"):
    body = io.BytesIO("\n".join(json.dumps(r) for r in rows).encode())
    body.name = name
    response = client.post(
        f"/api/v1/families/{family.slug}/traffic/", {"file": body, "window": "1d"}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    return response.json()["windows"]


def scored(number: int) -> TrafficWindow:
    def done():
        window = TrafficWindow.objects.get(number=number)
        return window if window.outcome else None

    return wait_for(done, timeout=240, message=f"traffic window {number} to be compared")


def test_it_watches_the_production_model_on_prose_and_code_windows(
    celery_worker_factory, api_client, reviewer_client, demo_family, demo_imports, demo_build
):
    celery_worker_factory()
    response = api_client.post(
        "/api/v1/artifacts/",
        {"family": demo_family.slug, "commit": "a" * 40, "branch": "main", "path": str(demo_imports["base"])},
        format="json",
    )
    base = Artifact.objects.get(pk=response.json()["id"])
    wait_for(lambda: Artifact.objects.get(pk=base.pk).stage == "production", timeout=180, message="the baseline")

    golden_subset = [
        {**row, "id": f"g{i}", "timestamp": T0 + i} for i, row in enumerate(golden_rows(demo_build.golden)[::2])
    ]
    upload(reviewer_client, demo_family, golden_subset)
    upload(reviewer_client, demo_family, demo_traffic_rows(timezone.now()))

    like_golden = scored(1)
    assert like_golden.outcome == "green", like_golden.reasons
    # The golden samples of the window were scored before: their results are reused, not recomputed.
    assert EvalRun.objects.get(pk=like_golden.run_id).cached_samples == len(golden_subset)
    # The demo's two days: the prose the model was trained on (it does better there: no alarm), then code.
    scored(2), scored(3)
    windows = list(TrafficWindow.objects.select_related("dataset").order_by("starts_at"))
    seen = [(w.number, w.starts_at, w.dataset.categories, w.outcome, w.reasons) for w in windows]
    prose, code = windows[-2], windows[-1]
    assert "code" not in prose.dataset.categories and code.dataset.categories["code"] == 160, seen
    assert prose.outcome == "green", seen
    assert code.outcome == "red", seen
    assert any("'code'" in reason for reason in code.reasons)
    assert any("worse" in reason for reason in code.reasons)
    assert EvalRun.objects.get(pk=code.run_id).kind == "traffic"
    base.refresh_from_db()
    assert base.tags.get(key="traffic_drift").value == "red"
    assert Alert.objects.filter(artifact=base, title__contains="traffic drift red on window 3").exists()

    detail = api_client.get(f"/api/v1/families/{demo_family.slug}/traffic/3/").json()
    assert detail["outcome"] == "red"
    assert detail["most_surprising"][0]["category"] == "code"
    assert detail["statistics"]["worse_sigma"] > 0.2
