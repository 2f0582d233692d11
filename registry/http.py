"""Outbound JSON over HTTP with the standard library. Tokens travel in headers and are never logged."""

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from driftboard.outbound import OutboundPolicy

TIMEOUT_SECONDS = 10


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: object


class HttpError(OSError):
    """A non-2xx answer. An OSError, like a refused connection, so callers retry both alike."""

    def __init__(self, status: int, headers: dict[str, str], body: str, url: str):
        super().__init__(f"HTTP {status} from {url}: {body[:300]}")
        self.status = status
        self.headers = headers
        self.body = body


def header(headers: dict[str, str], name: str) -> str | None:
    """A response header by name, whatever case the server spelled it in."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def request_json(
    method: str,
    url: str,
    body: object | None = None,
    headers: dict[str, str] | None = None,
    *,
    outbound: OutboundPolicy | None = None,
) -> HttpResponse:
    """With an `outbound` policy the exchange goes through it (checked address, no redirect followed,
    capped reply) and an error describes the reply instead of quoting it."""
    data = None if body is None else json.dumps(body).encode()
    if outbound is not None:
        return _request_through(outbound, method, url, data, headers or {})
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    request.add_header("User-Agent", "driftboard")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            raw = response.read().decode() or "null"
            return HttpResponse(response.status, dict(response.headers), json.loads(raw))
    except urllib.error.HTTPError as exc:
        raise HttpError(exc.code, dict(exc.headers or {}), exc.read().decode(errors="replace"), url) from None


def _request_through(
    outbound: OutboundPolicy, method: str, url: str, data: bytes | None, headers: dict[str, str]
) -> HttpResponse:
    sent = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "driftboard"} | headers
    try:
        status, received, raw = outbound.request(method, url, body=data, headers=sent, timeout=TIMEOUT_SECONDS)
    except http.client.HTTPException as exc:
        raise OSError(f"broken HTTP reply from {url} ({type(exc).__name__})") from None
    if not 200 <= status < 300:
        media = ascii((header(received, "Content-Type") or "no content type").split(";")[0].strip())[1:-1][:60]
        described = f"{media}, {len(raw):,} bytes"
        raise HttpError(status, received, described, url)
    try:
        return HttpResponse(status, received, json.loads(raw or b"null"))
    except (ValueError, RecursionError):
        return HttpResponse(status, received, None)


def post_json(
    url: str, body: object, headers: dict[str, str], *, outbound: OutboundPolicy | None = None
) -> HttpResponse:
    return request_json("POST", url, body, headers, outbound=outbound)
