"""Inputs that used to hurt: a family regex that backtracks catastrophically returns at once (or stops at
its time budget with an error naming the sample), embedder and local-judge folders must lie under the
model roots (and a refusal never shows a server path), and a deeply nested JSON body is a 400 naming
the limit on every endpoint, the forge webhooks included."""

import json
import threading

import pytest

from evals.scoring.answers import regex_match
from evals.scoring.errors import ScoringError
from tests.factories import FamilyFactory
from tests.webhooks.deliveries import GITHUB_SECRET, github_headers

NESTED = 100  # past DRIFTBOARD_MAX_JSON_DEPTH, well within what the parser can hold
DEEP = 100_000  # past what a recursive parser can hold


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_catastrophic_regex_returns():
    results: list = []
    worker = threading.Thread(target=lambda: results.append(regex_match(["a" * 40 + "b"], r"^(a+)+$")), daemon=True)
    worker.start()
    worker.join(timeout=5)  # liveness, not speed: with backtracking `re` this runs for days
    assert results and results[0].tolist() == [0.0]


def test_a_regex_past_its_time_budget_is_an_error_naming_the_sample():
    with pytest.raises(ScoringError, match="position 1"):
        regex_match(["fine", "x" * 5000], r"(x+x+)+y")


@pytest.mark.parametrize(
    ("section", "settings_of"),
    [("generation", lambda folder: {"embedder": folder}), ("judge", lambda folder: {"local": folder})],
)
def test_model_folders_outside_the_roots_are_refused_without_showing_them(
    staff_client, import_root, tmp_path, section, settings_of
):
    outside = tmp_path / "elsewhere" / "model"
    outside.mkdir(parents=True)
    link = import_root / f"link-to-{section}"
    link.symlink_to(outside)
    for folder in (str(outside), str(link), "/etc"):
        response = staff_client.post(
            "/api/v1/families/", {"slug": "rooted", "kind": "causal-lm", section: settings_of(folder)}, format="json"
        )
        assert response.status_code == 400, response.json()
        message = str(response.json()[section])
        assert "DRIFTBOARD_MODEL_ROOTS" in message
        assert folder not in message and str(outside) not in message


def test_model_folders_under_the_roots_are_accepted(staff_client, import_root, settings, tmp_path):
    inside = import_root / "minilm"
    inside.mkdir(exist_ok=True)
    response = staff_client.post(
        "/api/v1/families/",
        {"slug": "rooted", "kind": "causal-lm", "generation": {"embedder": str(inside)}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    settings.DRIFTBOARD_MODEL_ROOTS = [tmp_path.resolve()]
    response = staff_client.patch(
        "/api/v1/families/rooted/", {"judge": {"local": str(tmp_path / "judge")}}, format="json"
    )
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("depth", [NESTED, DEEP], ids=["nested-100", "nested-100000"])
@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/api/v1/families/", lambda deep: f'{{"slug": "x", "kind": "causal-lm", "generation": {deep}}}'),
        ("patch", "/api/v1/families/nested/", lambda deep: f'{{"judge": {deep}}}'),
        ("post", "/api/v1/thresholds/", lambda deep: f'{{"family": "nested", "metric": {deep}}}'),
        ("post", "/api/v1/experiments/", lambda deep: f'{{"name": {deep}}}'),
        ("post", "/api/v1/artifacts/", lambda deep: f'{{"family": "nested", "path": {deep}}}'),
    ],
    ids=["family-create", "family-patch", "threshold", "experiment", "artifact-path"],
)
def test_a_deeply_nested_body_is_a_400_naming_the_limit(staff_client, method, url, body, depth):
    FamilyFactory(slug="nested")
    response = getattr(staff_client, method)(url, data=body(nested(depth)), content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "DRIFTBOARD_MAX_JSON_DEPTH" in response.json()["detail"]


def test_a_deeply_nested_webhook_delivery_is_a_400_naming_the_limit(client, db, settings):
    settings.DRIFTBOARD_GITHUB_WEBHOOK_SECRET = GITHUB_SECRET
    raw = json.dumps({"action": "opened", "pull_request": json.loads(nested(NESTED))}).encode()
    response = client.post(
        "/hooks/github/", data=raw, content_type="application/json", headers=github_headers("pull_request", raw)
    )
    assert response.status_code == 400
    assert "DRIFTBOARD_MAX_JSON_DEPTH" in response.json()["detail"]
