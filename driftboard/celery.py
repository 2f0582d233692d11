"""The Celery app. Three queues: `scoring` (GPU workers), `publish` (outbound calls), `offpeak`."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "driftboard.settings")

app = Celery("driftboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue="scoring",
    task_queues=(Queue("scoring"), Queue("publish"), Queue("offpeak")),
    task_routes={
        "evals.tasks.score_run": {"queue": "scoring"},
        "evals.tasks.score_offpeak_run": {"queue": "offpeak"},
        "evals.tasks.sweep_runs": {"queue": "publish"},
        "registry.tasks.*": {"queue": "publish"},
    },
    # A scoring message is acknowledged only once the run is finished, one at a time per process,
    # so a worker that dies mid-run hands the message back instead of losing it.
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
app.autodiscover_tasks()
