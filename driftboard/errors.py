"""Error pages that speak JSON under /api/: an API client gets a body it can parse, never an HTML page.

A URL the router cannot match at all (`/api/v1/artifacts/0.5/`) never reaches DRF, so its 404
comes from here; pages keep Django's own templates.
"""

import re

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

API_PREFIX = "/api/"
# An absolute path of two or more parts, not inside a URL (`http://host/a/b`) or a relative path (`a/b`).
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:/[^\s'\"/:,;()\[\]]+)+/([^\s'\"/:,;()\[\]]+)")


def without_server_paths(message: str) -> str:
    """The message with each absolute server path cut to its last part (`/srv/…/config.json` → `config.json`)."""
    return ABSOLUTE_PATH.sub(r"\1", message)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)
