"""Where links to Driftboard's own pages and API point: one decision, used by every absolute link.

- `DRIFTBOARD_PUBLIC_URL`, when it is set, whatever the request.
- Else, inside a request (API answers), the scheme and host the request came to.
- Else (pull-request statuses and comments, alerts, commands), the address `manage.py serve --addr`
  listens on (`DRIFTBOARD_SERVE_URL`, which serve sets for its web server and worker), else
  http://127.0.0.1:8000.
"""

import socket

from django.conf import settings
from django.http import HttpRequest

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# runserver's own default host when --addr names a port alone.
DEFAULT_HOST = "127.0.0.1"
# Listening on every interface says nothing about the name others reach it by: the machine's name is the best guess.
UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::", "[::]", "0"})


def base_url(request: HttpRequest | None = None) -> str:
    """Scheme and host, without a trailing slash, that absolute links start with."""
    if settings.DRIFTBOARD_PUBLIC_URL:
        return settings.DRIFTBOARD_PUBLIC_URL.rstrip("/")
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return (settings.DRIFTBOARD_SERVE_URL or DEFAULT_BASE_URL).rstrip("/")


def absolute_url(path: str, request: HttpRequest | None = None) -> str:
    """`path` (from `reverse` or `get_absolute_url`) on the base decided above."""
    return base_url(request) + path


def serve_url(addr: str) -> str:
    """`manage.py serve --addr` (`port`, `host:port`, `[v6]:port`) as the URL others open."""
    host, _, port = addr.rpartition(":")
    if not host and not port.isdigit():
        host, port = addr, ""
    host = host or DEFAULT_HOST
    if host in UNSPECIFIED_HOSTS:
        host = socket.gethostname()
    return f"http://{host}:{port}" if port else f"http://{host}"
