"""Thin Celery tasks: ids in, claim the row, call one service."""

import logging
import socket

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.conf import settings

from evals.scoring.scorers import PLUGIN_ERRORS
from evals.services import pipeline
from evals.services.runs import (
    TRANSIENT_ERRORS,
    eval_run_release,
    eval_runs_reclaim_dead,
    eval_runs_sweep,
    worker_name,
)
from registry.models import Artifact

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
    soft_time_limit=settings.CELERY_SCORING_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_SCORING_TIME_LIMIT,
)
def score_run(self, run_id: int) -> None:
    worker = worker_name()
    try:
        pipeline.eval_run_process(run_id=run_id, worker=worker)
    except SoftTimeLimitExceeded:
        pipeline.eval_run_fail_by_id(run_id=run_id, worker=worker, message="Scoring exceeded its time limit.")
    except TRANSIENT_ERRORS as exc:
        try:
            eval_run_release(run_id=run_id, worker=worker, message=str(exc))
        except TRANSIENT_ERRORS:
            pass  # the retry claims the run as this worker's own, or the sweeper re-queues it
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc


@shared_task(ignore_result=True)
def sweep_runs() -> dict[str, int]:
    return eval_runs_sweep()


@shared_task(ignore_result=True)
def refresh_human_metrics(artifact_id: int) -> None:
    """Reviewers labelled an artifact's answers: its human metrics and, where they gate, its verdict."""
    artifact = Artifact.objects.select_related("family").filter(pk=artifact_id).first()
    if artifact is not None:
        pipeline.artifact_labels_changed(artifact=artifact)


@shared_task(ignore_result=True)
def release_budget_holds() -> int:
    """Dispatch the runs held over a weekly budget once their family is no longer over it (a new week)."""
    return pipeline.budget_holds_release()


@worker_ready.connect
def reclaim_dead_runs(**_kwargs) -> None:
    """A worker restarted after a crash takes back what its dead processes left running."""
    try:
        eval_runs_reclaim_dead(hostname=socket.gethostname())
    except TRANSIENT_ERRORS as exc:  # the sweeper (or the lease) recovers them later
        logger.warning("Could not reclaim dead runs at start-up: %s", exc)


@worker_ready.connect
def report_scorer_plugins(**_kwargs) -> None:
    """A scorer plug-in that could not be loaded is named in the worker's log as it starts."""
    for name, problem in sorted(PLUGIN_ERRORS.items()):
        logger.error("The scorer plug-in %r could not be loaded: %s", name, problem)
