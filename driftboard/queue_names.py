"""The Celery queues, named once: every module, the worker command and the tests take them from here."""

import re

from django.db.models import TextChoices


class Queue(TextChoices):
    SCORING = "scoring", "Scoring (GPU workers, one run at a time)"
    PUBLISH = "publish", "Publish (pull-request statuses and comments, alerts, sweeps)"
    OFFPEAK = "offpeak", "Off-peak (completion of sampled runs)"
    JUDGE = "judge", "Judge (LLM-judge calls on stored answers: network-bound, no GPU)"
    TRAFFIC = "traffic", "Traffic (production model on uploaded traffic windows)"


# What a default worker listens on. Workers by memory size listen on `scoring-<N>g` queues as well
# (see `evals.scoring.memory.size_class`): a run whose weights did not fit is retried there.
QUEUES = tuple(Queue.values)
SIZE_CLASS_QUEUE = re.compile(r"^scoring-[1-9][0-9]{0,3}g$")


def scoring_queue(name: str) -> bool:
    """Whether runs may be sent to `name`: the scoring queue or a scoring queue of a memory size class."""
    return name == Queue.SCORING or bool(SIZE_CLASS_QUEUE.match(name))
