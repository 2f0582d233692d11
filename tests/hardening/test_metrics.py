"""/metrics: who may read it, and whether its figures match the rows and messages they describe."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from driftboard.celery import app
from driftboard.dashboard.prometheus import WAIT_BUCKETS
from evals.models import DriftVerdict, EvalRun
from tests.factories import EvalRunFactory, VerdictFactory

TOKEN = "scrape-token-for-tests"


@pytest.fixture
def metrics_token(settings):
    settings.DRIFTBOARD_METRICS_TOKEN = TOKEN
    settings.DRIFTBOARD_METRICS_ALLOWED_IPS = []


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# Access


@pytest.mark.parametrize(
    ("token", "allowed_ips", "remote_addr", "authorization", "expected"),
    [
        ("", [], "127.0.0.1", "", 404),
        (TOKEN, [], "127.0.0.1", "", 401),
        (TOKEN, [], "127.0.0.1", "Bearer wrong-token", 401),
        (TOKEN, [], "127.0.0.1", f"Token {TOKEN}", 401),
        (TOKEN, [], "203.0.113.9", f"Bearer {TOKEN}", 200),
        ("", ["10.0.0.0/8", "192.0.2.7"], "127.0.0.1", "", 403),
        ("", ["10.0.0.0/8", "192.0.2.7"], "10.20.30.40", "", 200),
        ("", ["10.0.0.0/8", "192.0.2.7"], "192.0.2.7", "", 200),
        (TOKEN, ["10.0.0.0/8"], "10.1.1.1", "", 401),
        (TOKEN, ["10.0.0.0/8"], "172.16.0.1", f"Bearer {TOKEN}", 403),
        (TOKEN, ["10.0.0.0/8"], "10.1.1.1", f"Bearer {TOKEN}", 200),
    ],
)
def test_it_lets_only_the_configured_scrapers_in(
    client, db, settings, token, allowed_ips, remote_addr, authorization, expected
):
    settings.DRIFTBOARD_METRICS_TOKEN = token
    settings.DRIFTBOARD_METRICS_ALLOWED_IPS = allowed_ips
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", REMOTE_ADDR=remote_addr, **headers)
    assert response.status_code == expected
    if expected == 200:
        assert b"driftboard_runs" in response.content


# Figures


def run_waiting(queue: str, wait_seconds: float, started_ago: timedelta, **fields) -> EvalRun:
    started_at = timezone.now() - started_ago
    return EvalRunFactory(
        queue=queue, enqueued_at=started_at - timedelta(seconds=wait_seconds), started_at=started_at, **fields
    )


def test_it_reports_the_queue_wait_histogram_of_recent_runs(client, db, metrics_token, settings):
    settings.DRIFTBOARD_METRICS_WINDOW_SECONDS = 3600
    waits = {"scoring": [0.5, 3.0, 12.0, 45.0, 700.0, 9000.0], "offpeak": [20.0, 40.0]}
    for queue, seconds in waits.items():
        for wait in seconds:
            run_waiting(queue, wait, started_ago=timedelta(minutes=5), status=EvalRun.Status.RUNNING)
    run_waiting("scoring", 1.0, started_ago=timedelta(hours=3), status=EvalRun.Status.SUCCEEDED)  # outside the window
    samples = scrape(client)
    for queue, seconds in waits.items():
        for bound in WAIT_BUCKETS:
            le = "+Inf" if np.isinf(bound) else repr(bound)
            expected = int(np.sum(np.asarray(seconds) <= bound))
            assert value(samples, "driftboard_run_wait_seconds_bucket", queue=queue, le=le) == expected
        assert value(samples, "driftboard_run_wait_seconds_gsum", queue=queue) == pytest.approx(sum(seconds))
    assert value(samples, "driftboard_run_wait_seconds_gcount", queue="publish") == 0


def test_it_counts_runs_by_status_and_ages_the_oldest_waiting_run(client, db, metrics_token):
    statuses = [EvalRun.Status.QUEUED] * 3 + [EvalRun.Status.RUNNING] * 2 + [EvalRun.Status.FAILED]
    now = timezone.now()
    for age_minutes, status in enumerate(statuses, start=1):
        EvalRunFactory(status=status, queue="scoring", enqueued_at=now - timedelta(minutes=age_minutes))
    samples = scrape(client)
    for status in EvalRun.Status.values:
        assert value(samples, "driftboard_runs", status=status) == statuses.count(status)
    oldest_queued_minutes = max(i for i, s in enumerate(statuses, start=1) if s == EvalRun.Status.QUEUED)
    oldest = value(samples, "driftboard_oldest_waiting_run_seconds", queue="scoring")
    assert oldest == pytest.approx(60 * oldest_queued_minutes, abs=5)


def test_it_reports_scoring_throughput_as_tokens_over_run_time(client, db, metrics_token):
    finished = timezone.now() - timedelta(minutes=1)
    runs = [(12_000, 10.0), (30_000, 50.0), (500, 2.0)]
    for tokens, seconds in runs:
        EvalRunFactory(
            status=EvalRun.Status.SUCCEEDED,
            tokens=tokens,
            finished_at=finished,
            started_at=finished - timedelta(seconds=seconds),
        )
    EvalRunFactory(
        status=EvalRun.Status.FAILED, tokens=99_999, finished_at=finished, started_at=finished - timedelta(seconds=1)
    )
    samples = scrape(client)
    expected = sum(t for t, _ in runs) / sum(s for _, s in runs)
    assert value(samples, "driftboard_scoring_tokens_per_second", queue="scoring") == pytest.approx(expected)


def test_it_counts_verdicts_by_outcome(client, db, metrics_token):
    outcomes = ["red", "red", "green", "amber", "green", "green"]
    for outcome in outcomes:
        VerdictFactory(outcome=outcome)
    samples = scrape(client)
    for outcome in DriftVerdict.Outcome.values:
        assert value(samples, "driftboard_verdicts", outcome=outcome) == outcomes.count(outcome)


def test_it_reports_the_messages_waiting_on_each_queue(client, db, metrics_token):
    from tests.conftest import purge_broker

    purge_broker()
    with app.producer_or_acquire() as producer:
        for _ in range(3):
            producer.publish({"probe": True}, routing_key="offpeak", declare=[app.amqp.queues["offpeak"]])
    try:
        samples = scrape(client)
    finally:
        purge_broker()
    assert value(samples, "driftboard_broker_up") == 1
    assert value(samples, "driftboard_queue_depth", queue="offpeak") == 3
    assert value(samples, "driftboard_queue_depth", queue="scoring") == 0


def test_it_observes_the_latency_of_each_request_by_view(client, api_client, metrics_token):
    labels = {"method": "GET", "view": "api-artifact-list", "status": "200"}
    before = value(scrape(client), "driftboard_http_request_duration_seconds_count", **labels) or 0
    assert api_client.get("/api/v1/artifacts/").status_code == 200
    api_client.get("/api/v1/artifacts/?page=99")  # a 404 is counted under its own status
    after = scrape(client)
    assert value(after, "driftboard_http_request_duration_seconds_count", **labels) == before + 1
    assert value(after, "driftboard_http_request_duration_seconds_count", **{**labels, "status": "404"}) >= 1
