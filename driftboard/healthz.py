"""`/healthz`: can this process reach its database and its broker?"""

from django.db import connection
from django.http import JsonResponse

from driftboard.celery import app


def database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, "ok"
    except Exception as exc:  # any driver error means unreachable
        return False, str(exc)[:200]


def broker_ok() -> tuple[bool, str]:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel  # noqa: B018 - opening a channel proves the broker answers
        return True, "ok"
    except Exception as exc:  # kombu raises transport-specific errors
        return False, str(exc)[:200]


def healthz(request) -> JsonResponse:
    db_up, db_detail = database_ok()
    broker_up, broker_detail = broker_ok()
    body = {"status": "ok" if db_up and broker_up else "unavailable", "database": db_detail, "broker": broker_detail}
    return JsonResponse(body, status=200 if db_up and broker_up else 503)
