import datetime

import numpy as np
from django.urls import reverse
from django.utils import timezone

from driftboard.dashboard.selectors import queue_stats, snapshot_storage_by_day
from evals.models import EvalRun, MetricSnapshot
from tests.factories import EvalRunFactory


def test_it_measures_wait_percentiles_and_throughput_over_the_last_day(db):
    now = timezone.now()
    waits = np.random.default_rng(3).exponential(30.0, size=40)
    for wait in waits:
        started = now - datetime.timedelta(hours=2)
        EvalRunFactory(
            status=EvalRun.Status.SUCCEEDED,
            enqueued_at=started - datetime.timedelta(seconds=wait),
            started_at=started,
            finished_at=started + datetime.timedelta(seconds=100),
            tokens=5000,
        )
    EvalRunFactory(
        status=EvalRun.Status.SUCCEEDED,
        enqueued_at=now - datetime.timedelta(days=3),
        started_at=now - datetime.timedelta(days=2),
        finished_at=now - datetime.timedelta(days=2),
        tokens=1,
    )
    stats = queue_stats(now=now)
    assert np.isclose(stats.wait_p50, np.percentile(waits, 50), atol=1e-3)
    assert np.isclose(stats.wait_p95, np.percentile(waits, 95), atol=1e-3)
    assert stats.finished_last_day == 40
    assert np.isclose(stats.runs_per_hour, 40 / 24)
    assert np.isclose(stats.tokens_per_second, 5000 / 100)
    assert sum(n for _, n in stats.hourly_finished) == 40


def test_it_counts_stored_metric_rows_and_bytes_per_day(board):
    days = snapshot_storage_by_day()
    snapshots = list(MetricSnapshot.objects.all())
    assert sum(rows for _, rows, _ in days) == len(snapshots)
    assert sum(stored for _, _, stored in days) == sum(s.stored_bytes for s in snapshots)


def test_it_shows_running_deferred_and_failed_runs(board, reader_client):
    deferred = EvalRunFactory(artifact=board.candidate("green"), dataset=board.dataset, status=EvalRun.Status.DEFERRED)
    running = EvalRunFactory(
        artifact=board.candidate("red"),
        dataset=board.dataset,
        status=EvalRun.Status.RUNNING,
        samples_done=5,
        samples_total=60,
    )
    response = reader_client.get(reverse("queues"))
    assert response.context["deferred"] == [deferred]
    assert response.context["running"] == [running]
    assert b"CUDA out of memory" in response.content
    assert set(response.context["depths"]) == {"scoring", "traffic", "publish", "offpeak", "judge"}
