"""The broker side of the queues: sending a task, and queue depths for backpressure, /queues/ and /metrics."""

import logging

from driftboard.celery import app
from driftboard.queue_names import QUEUES

logger = logging.getLogger(__name__)


def queue_depth(queue: str) -> int | None:
    """Messages waiting in the broker's queue (not counting ones a worker has reserved); None if unknown.

    The queue is declared as the workers declare it, not checked passively: Redis keeps no trace of
    an empty queue, so a passive check would call every empty queue unknown.
    """
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            declared = app.amqp.queues[queue].bind(conn.default_channel).queue_declare()
            return int(declared.message_count)
    except Exception as exc:  # broker down or queue not declared yet
        logger.debug("Depth of %s unknown: %s", queue, exc)
        return None


def queue_depths() -> dict[str, int | None]:
    return {queue: queue_depth(queue) for queue in QUEUES}


def enqueue(task, *args, queue: str | None = None, what: str = "") -> bool:
    """Put a task message on the broker, or log why not: the row that needs the work stays behind to be
    retried (by the sweeper, a later publish, or by hand), so a broker outage never fails the caller."""
    try:
        task.apply_async(args=args, queue=queue, retry=False)
        return True
    except Exception as exc:  # any broker error
        logger.warning("Could not queue %s%r%s: %s", task.name, args, f" ({what})" if what else "", exc)
        return False
