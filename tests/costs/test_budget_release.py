"""Runs held over a family's weekly budget are dispatched by beat, once, as soon as the family is no longer
over it: when the new week begins (Monday 00:00 UTC), or when its budget was raised."""

import datetime
import logging

import pytest
from django.utils import timezone

from driftboard.prices import Prices
from driftboard.queues import queue_depth
from evals.costs import week_start
from evals.models import EvalRun
from evals.services import eval_runs_sweep
from evals.services.pipeline import artifact_runs_create, budget_holds_release
from evals.tasks import release_budget_holds
from registry.models import Alert
from tests.conftest import purge_broker
from tests.factories import ArtifactFactory, DatasetFactory, EvalRunFactory, FamilyFactory

# One worker-second on a CPU costs one dollar.
PRICES = Prices(currency="USD", gpu_hour={"cpu": 3600.0})


@pytest.fixture
def broker():
    purge_broker()
    yield
    purge_broker()


@pytest.fixture
def family(db, settings):
    settings.DRIFTBOARD_PRICES = PRICES
    dataset = DatasetFactory(samples=4)
    return FamilyFactory(datasets=[dataset.name], weekly_budget=10.0)


def over_budget(family) -> list[EvalRun]:
    """Spend $10.50 of the $10 budget this week, then register two versions: their runs are held."""
    usage = {"device_kind": "cpu", "worker_seconds": 10.5, "samples_full": 4, "samples_scored": 4}
    EvalRunFactory(
        artifact=ArtifactFactory(family=family),
        status=EvalRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        usage=usage,
    )
    held = []
    for _ in range(2):
        artifact = ArtifactFactory(family=family)
        artifact_runs_create(artifact=artifact)
        held += list(artifact.runs.all())
    return held


def statuses(runs) -> list[str]:
    return sorted(EvalRun.objects.filter(pk__in=[run.pk for run in runs]).values_list("status", flat=True))


def test_it_dispatches_held_runs_once_when_the_new_week_begins(
    family, broker, django_capture_on_commit_callbacks, caplog
):
    held = over_budget(family)
    assert statuses(held) == ["budget", "budget"]
    [alert] = Alert.objects.filter(dedup_key=f"{family.slug}:budget", resolved_at=None)
    next_week = week_start(timezone.now()) + datetime.timedelta(days=7, minutes=1)

    assert budget_holds_release(now=next_week - datetime.timedelta(minutes=2)) == 0  # Sunday 23:59: still over
    assert statuses(held) == ["budget", "budget"]

    caplog.set_level(logging.INFO, logger="evals.services.budgets")
    with django_capture_on_commit_callbacks(execute=True):
        assert budget_holds_release(now=next_week) == 2
    eval_runs_sweep()  # the sweep message the release sent, as the publish worker runs it

    assert statuses(held) == ["queued", "queued"]
    assert queue_depth("scoring") == 2
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert f"Released 2 run(s) of {family.slug} held over its weekly budget" in caplog.text
    enqueued = sorted(EvalRun.objects.filter(pk__in=[run.pk for run in held]).values_list("enqueued_at", flat=True))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert budget_holds_release(now=next_week) == 0
    eval_runs_sweep()

    assert callbacks == []
    assert queue_depth("scoring") == 2  # no second message for either run
    assert sorted(EvalRun.objects.filter(pk__in=[r.pk for r in held]).values_list("enqueued_at", flat=True)) == enqueued


def test_beat_releases_the_runs_of_a_family_whose_budget_was_raised(
    family, broker, settings, django_capture_on_commit_callbacks
):
    held = over_budget(family)
    other = FamilyFactory(datasets=family.datasets, weekly_budget=10.0)
    still_held = over_budget(other)
    family.evaluation.weekly_budget = 50.0
    family.evaluation.save()

    with django_capture_on_commit_callbacks(execute=True):
        assert release_budget_holds() == 2  # the task body, as beat's message runs it
    eval_runs_sweep()

    assert statuses(held) == ["queued", "queued"]
    assert statuses(still_held) == ["budget", "budget"]
    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["evals.tasks.release_budget_holds"] == settings.CELERY_BEAT_BUDGET_RELEASE_SECONDS
