"""What drafting did, as each run records it (`EvalRun.drafting`): summed on /queues/ for the last
24 hours and ever, and exported to Prometheus as counters."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from evals.models import EvalRun
from evals.scoring.generation import DraftStats
from tests.factories import EvalRunFactory

TOKEN = "drafting-metrics-token"


def drafted_run(finished_ago: timedelta, **stats: int) -> EvalRun:
    return EvalRunFactory(
        status=EvalRun.Status.SUCCEEDED,
        finished_at=timezone.now() - finished_ago,
        drafting=DraftStats(**stats).as_dict(),
    )


@pytest.fixture
def drafted_runs(db):
    drafted_run(timedelta(minutes=10), answers=240, drafted_tokens=9000, accepted_tokens=8000, audited_tokens=150)
    drafted_run(timedelta(days=3), answers=100, drafted_tokens=1000, accepted_tokens=500, audit_mismatches=1)
    EvalRunFactory(status=EvalRun.Status.SUCCEEDED, finished_at=timezone.now())  # nothing drafted


def figures(content: str) -> dict[tuple[str, str], str]:
    card = content[content.index('id="drafting"') :]
    card = card[: card.index("</section>")]
    return {
        (figure, window): text
        for figure, row in re.findall(r'<tr data-drafting-figure="([\w-]+)">(.*?)</tr>', card, re.S)
        for window, text in re.findall(r'data-window="(\w+)">([^<]*)</td>', row)
    }


def test_it_shows_what_drafting_did_today_and_ever_on_the_queues_page(drafted_runs, user):
    client = Client()
    client.force_login(user)
    shown = figures(client.get(reverse("queues")).content.decode())
    assert shown[("answers", "day")] == "240" and shown[("answers", "ever")] == "340"
    assert shown[("drafted-tokens", "ever")] == "10,000" and shown[("accepted-tokens", "day")] == "8,000"
    assert shown[("audited-tokens", "day")] == "150"
    assert shown[("audit-mismatches", "day")] == "0" and shown[("audit-mismatches", "ever")] == "1"


def test_it_exports_what_drafting_did_to_prometheus(drafted_runs, client, settings):
    settings.DRIFTBOARD_METRICS_TOKEN = TOKEN
    settings.DRIFTBOARD_METRICS_ALLOWED_IPS = []
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if sample.name.startswith("driftboard_draft_")
    }
    assert samples["driftboard_draft_answers_total"] == 340
    assert samples["driftboard_draft_accepted_tokens_total"] == 8500
    assert samples["driftboard_draft_audit_mismatches_total"] == 1
    assert samples["driftboard_draft_forward_passes_saved_total"] == 0
