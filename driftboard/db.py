"""Riding out a database restart.

A worker that has spent minutes scoring must not lose the result because PostgreSQL restarted under
it: writes wait for the database to come back (up to ``DRIFTBOARD_DB_OUTAGE_SECONDS``) on a fresh
connection. An error from a database that is up (a constraint, a missing table) is raised at once.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

DATABASE_DOWN = (OperationalError, InterfaceError)
T = TypeVar("T")


def database_unreachable() -> bool:
    """Whether the database cannot be reached, judged by dropping the connection and opening a fresh one.

    Inside a transaction the answer is no: the transaction is lost whatever the cause, and only the
    code that opened it can start it again.
    """
    if connection.in_atomic_block:
        return False
    try:
        connection.close()
    except DATABASE_DOWN:
        pass
    try:
        connection.ensure_connection()
        return not connection.is_usable()
    except DATABASE_DOWN:
        return True


def database_retry(operation: Callable[[], T], *, what: str, timeout: float | None = None) -> T:
    """Run `operation`; while the database is unreachable, wait with backoff and run it again."""
    limit = settings.DRIFTBOARD_DB_OUTAGE_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + limit
    delay = 0.25
    while True:
        try:
            return operation()
        except DATABASE_DOWN as exc:
            if not database_unreachable():
                raise
            if time.monotonic() + delay > deadline:
                logger.error("Database still unreachable after %.0f s while %s", limit, what)
                raise
            logger.warning("Database unreachable while %s; retrying in %.2f s: %s", what, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
