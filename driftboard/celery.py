"""The Celery app. Three queues: `scoring` (GPU workers), `publish` (outbound calls), `offpeak`."""

import os

from celery import Celery
from kombu import Queue

from driftboard import embedded_broker
from driftboard.queue_names import QUEUES
from driftboard.queue_names import Queue as QueueName

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "driftboard.settings")
# `filesystem://` (the server-less default) is the embedded broker, never kombu's unsafe original.
embedded_broker.register()

app = Celery("driftboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=QueueName.SCORING,
    task_queues=tuple(Queue(name) for name in QUEUES),
    task_routes={
        "evals.tasks.score_run": {"queue": QueueName.SCORING},
        "evals.tasks.sweep_runs": {"queue": QueueName.PUBLISH},
        "evals.tasks.release_budget_holds": {"queue": QueueName.PUBLISH},
        "evals.tasks.refresh_human_metrics": {"queue": QueueName.PUBLISH},
        "registry.tasks.*": {"queue": QueueName.PUBLISH},
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
