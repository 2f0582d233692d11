"""The Celery queues, named once: every module, the worker command and the tests take them from here."""

from django.db.models import TextChoices


class Queue(TextChoices):
    SCORING = "scoring", "Scoring (GPU workers, one run at a time)"
    PUBLISH = "publish", "Publish (pull-request statuses and comments, alerts, sweeps)"
    OFFPEAK = "offpeak", "Off-peak (completion of sampled runs)"


QUEUES = tuple(Queue.values)
