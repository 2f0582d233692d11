"""Old findings, re-tested: a loader error never leaves a run `running`, a PR comment carrying our marker
but written by someone else is never edited, markup in chart labels is shown as text, and over-long or
NUL-bearing fields are a 400, not a 500. CI runs this file on SQLite and again on PostgreSQL + Redis,
where the last one matters: only PostgreSQL refuses to store those values."""

import json
import os

import pytest
from django.db import connection
from django.utils.html import json_script

from driftboard.dashboard import charts
from evals.models import EvalRun
from evals.services import pipeline
from registry.models import ModelFamily
from registry.publishing import artifact_publish, comment_marker
from registry.selectors import artifact_weights_path
from tests.factories import (
    ArtifactFactory,
    DatasetFactory,
    EvalRunFactory,
    FamilyFactory,
    PullRequestFactory,
    VerdictFactory,
)
from tests.publishing.forge import GITHUB_OTHER_USER

LONG = "x" * 10_000
MARKUP = "<b>bold</b><script>alert(1)</script>"


@pytest.fixture(autouse=True)
def _on_the_configured_database(db):
    """With DATABASE_URL set these tests are about PostgreSQL: make sure that is where they run."""
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        assert connection.vendor == "postgresql"


def test_it_fails_a_run_whose_weights_cannot_be_loaded_with_the_message(db):
    artifact = ArtifactFactory(family=FamilyFactory(datasets=["golden"]))
    path = artifact_weights_path(artifact)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"these are not safetensors")
    run = EvalRunFactory(artifact=artifact, dataset=DatasetFactory(name="golden", samples=2), status="queued")

    pipeline.eval_run_process(run_id=run.pk, worker="loader-test")

    run.refresh_from_db()
    assert run.status == EvalRun.Status.FAILED
    assert "could not be loaded" in run.error or "Scoring failed" in run.error
    assert str(path.parent) not in run.error


def test_it_never_edits_a_comment_with_our_marker_written_by_another_user(forge):
    family = FamilyFactory(slug="old-findings")
    baseline = ArtifactFactory(family=family, stage="production", status="promoted")
    artifact = ArtifactFactory(family=family, pull_request=PullRequestFactory(repository="acme/w", number=3))
    VerdictFactory(artifact=artifact, baseline=baseline, outcome="green", delta=0.001, ci_low=-0.01, ci_high=0.01)
    artifact.drift_flag = "green"
    artifact.save()
    planted = forge.github_comment_as(GITHUB_OTHER_USER, "acme/w", 3, f"{comment_marker(family)}\nplanted")

    artifact_publish(artifact=artifact)

    assert planted["body"].endswith("planted")
    assert not forge.calls_to("PATCH", rf"/issues/comments/{planted['id']}$")
    artifact.pull_request.refresh_from_db()
    assert artifact.pull_request.comment_id not in ("", str(planted["id"]))


def test_it_shows_markup_in_chart_labels_as_text():
    figure = charts.category_delta_figure(
        {MARKUP: {"delta": -0.1, "n": 3}, "prose": {"delta": 0.0, "n": 5}}, "bits_per_byte"
    )

    dumped = json.dumps(figure)
    page = json_script(figure, "chart-categories")
    assert "<b>" not in dumped and "<script>" not in dumped
    assert "&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;" in figure["data"][0]["y"][0]
    assert "<script>alert" not in page and page.count("<script") == 1


OVER_LONG_OR_NUL = {
    "family-slug-over-long": ("post", "/api/v1/families/", {"slug": LONG, "kind": "causal-lm"}),
    "family-branch-over-long": ("patch", "/api/v1/families/hardened/", {"base_branch": LONG}),
    "family-description-nul": ("patch", "/api/v1/families/hardened/", {"description": "a\u0000b"}),
    "family-datasets-over-long": ("patch", "/api/v1/families/hardened/", {"datasets": [LONG]}),
    "family-datasets-nul": ("patch", "/api/v1/families/hardened/", {"datasets": ["a\u0000"]}),
    "family-generation-nul": ("patch", "/api/v1/families/hardened/", {"generation": {"stop": ["a\u0000"]}}),
    "family-judge-nul": ("patch", "/api/v1/families/hardened/", {"judge": {"rubric": "a\u0000"}}),
    "pin-reason-nul": (
        "post",
        "/api/v1/families/hardened/pin/",
        {"dataset": "golden", "version": 1, "reason": "a\u0000"},
    ),
    "threshold-rationale-nul": (
        "post",
        "/api/v1/thresholds/",
        {"metric": "bits_per_byte", "rule": "relative", "limit": 0.02, "severity": "block", "rationale": "a\u0000"},
    ),
    "threshold-owner-over-long": (
        "post",
        "/api/v1/thresholds/",
        {
            "metric": "bits_per_byte",
            "rule": "relative",
            "limit": 0.02,
            "severity": "block",
            "rationale": "ok",
            "owner": LONG,
        },
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(OVER_LONG_OR_NUL.values()), ids=list(OVER_LONG_OR_NUL))
def test_it_answers_400_not_500_to_over_long_or_nul_fields(staff_client, case):
    FamilyFactory(slug="hardened", datasets=["golden"])
    DatasetFactory(name="golden")
    method, url, body = case

    response = getattr(staff_client, method)(url, body, format="json")

    assert response.status_code == 400, response.content
    assert ModelFamily.objects.get(slug="hardened").description == ""
