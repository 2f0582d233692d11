"""Request size limits, answered with 413 and a message a CI log can show.

Weights stream to disk under DRIFTBOARD_MAX_UPLOAD_BYTES (registry/storage.py counts them as they
arrive); everything else that is read into memory is held to DATA_UPLOAD_MAX_MEMORY_SIZE. A body
whose declared length is already past the limit is refused before any of it is read.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import status
from rest_framework.exceptions import APIException


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "payload_too_large"


def body_limit(request: HttpRequest) -> tuple[int | None, str]:
    """The most bytes a request of this content type may declare (None: no limit), and the setting."""
    in_memory = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if request.content_type == "multipart/form-data":
        # Files go to disk under their own limit; the form fields beside them stay in memory.
        return settings.DRIFTBOARD_MAX_UPLOAD_BYTES + (in_memory or 0), "DRIFTBOARD_MAX_UPLOAD_BYTES"
    return in_memory, "DATA_UPLOAD_MAX_MEMORY_SIZE"


def declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class QueryStringMiddleware:
    """A NUL byte in a query parameter can reach no database (PostgreSQL refuses it): 400 up front."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()):
            return JsonResponse({"detail": "Query parameters may not contain NUL bytes."}, status=400)
        return self.get_response(request)


class RequestSizeLimitMiddleware:
    """DRF reads JSON bodies whole and unchecked: refuse oversized ones from their Content-Length."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit, setting = body_limit(request)
        if limit is not None and declared_length(request) > limit:
            message = f"The request body is larger than the {limit:,} bytes allowed ({setting})."
            return JsonResponse({"detail": message}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        return self.get_response(request)
