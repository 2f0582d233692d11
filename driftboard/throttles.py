"""Throttles: failed sign-ins per address and user name, and API writes per token.

Counts live in Django's cache (`CACHES`: a file cache under var/ by default, shared by the processes of
one host; Redis with `DRIFTBOARD_CACHE_URL`, shared by every host).

- `/accounts/login/` and `/admin/login/`: after `DRIFTBOARD_LOGIN_MAX_FAILURES` failed attempts for one
  user name from one address within `DRIFTBOARD_LOGIN_WINDOW_SECONDS`, further attempts get 429 with
  `Retry-After` until the window has passed, even with the right password. A success clears the count.
- Token-authenticated writes (POST, PUT, PATCH, DELETE with `Authorization: Token …`) are limited per
  user to `DRIFTBOARD_API_WRITE_RATE` (DRF syntax, e.g. `300/min`); past it, 429 with `Retry-After`.
"""

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from rest_framework import permissions
from rest_framework.throttling import UserRateThrottle

LOGIN_PATHS = frozenset({"/accounts/login/", "/admin/login/"})


def client_address(request: HttpRequest) -> str:
    """The caller's address: behind the TLS proxy, the one the proxy appended to X-Forwarded-For."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.SECURE_PROXY_SSL_HEADER and forwarded:
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _login_key(request: HttpRequest) -> str:
    username = request.POST.get("username", "").strip().lower()
    digest = hashlib.sha256(f"{client_address(request)}\0{username}".encode("utf-8", "replace")).hexdigest()
    return f"login-failures:{digest}"


class LoginThrottleMiddleware:
    """Counts failed sign-ins (the form shown again) and refuses attempts past the limit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path not in LOGIN_PATHS:
            return self.get_response(request)
        key, window = _login_key(request), settings.DRIFTBOARD_LOGIN_WINDOW_SECONDS
        if cache.get(key, 0) >= settings.DRIFTBOARD_LOGIN_MAX_FAILURES:
            message = f"Too many failed sign-ins for this user from your address. Try again in {window // 60 or 1} min."
            return HttpResponse(message, status=429, content_type="text/plain", headers={"Retry-After": str(window)})
        response = self.get_response(request)
        if response.status_code == 200:  # the form came back: the credentials were wrong
            cache.add(key, 0, timeout=window)
            cache.incr(key)
        elif response.status_code in (301, 302, 303):
            cache.delete(key)
        return response


class TokenWriteThrottle(UserRateThrottle):
    """Rate of writes per user, for requests authenticated by an API token (either kind; a session has none)."""

    scope = "token_write"

    def allow_request(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS or request.auth is None:
            return True
        return super().allow_request(request, view)
