"""Broker-side queue depths, for backpressure decisions, the queues page and /metrics."""

import logging

from driftboard.celery import app

logger = logging.getLogger(__name__)

QUEUES = ("scoring", "publish", "offpeak")


def queue_depth(queue: str) -> int | None:
    """Messages waiting in the broker's queue (not counting ones a worker has reserved); None if unknown."""
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:  # broker down or queue not declared yet
        logger.debug("Depth of %s unknown: %s", queue, exc)
        return None


def queue_depths() -> dict[str, int | None]:
    return {queue: queue_depth(queue) for queue in QUEUES}
