"""A judge behind an OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp, OpenAI).

`POST {url}/chat/completions` with `model`, `messages`, `temperature` 0 and `max_tokens`; the reply
is `choices[0].message.content`, the tokens used `usage`. Calls run `concurrency` at a time on
threads, start no faster than `rate_per_second`, and are retried on 429, 5xx, timeouts, refused
connections, broken HTTP and malformed bodies, waiting what `Retry-After` says (else an exponential
backoff), `max_retries` times at most. The API key is sent as `Authorization: Bearer …` and nowhere
else: it is never part of the identity, a log line or an error message.

Where a call may go is an `Outbound` policy's decision (driftboard/outbound.py, handed in by the
Django app or by the caller): it resolves and checks the host at call time and connects to the
address it checked. A redirect is never followed (the key would travel with it): it is an error
naming the `Location`. `timeout` bounds the whole call (connect, request and every read), replies
are read up to the policy's `max_reply_bytes`, and an error says what came back (status, content
type, size), never the body: an endpoint's words do not reach readers raw.
"""

import email.utils
import http.client
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from evals.scoring.errors import ScoringError
from evals.scoring.judges.protocol import CallFailure, Completion, JudgeRequest, JudgeStats

logger = logging.getLogger(__name__)

URL_ENV, MODEL_ENV, KEY_ENV = "DRIFTBOARD_JUDGE_URL", "DRIFTBOARD_JUDGE_MODEL", "DRIFTBOARD_JUDGE_API_KEY"
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_MAX_TOKENS = 512
# No server's Retry-After keeps a run waiting longer than this per retry.
MAX_RETRY_WAIT = 60.0
# Upper bounds of a family's judge settings: one family cannot tie up a worker or flood an endpoint.
MAX_CONCURRENCY = 64
MAX_TIMEOUT = 600.0
MAX_RATE_PER_SECOND = 1000.0
MAX_TOKENS_LIMIT = 8192
_RETRIED_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_SHOWN_LOCATION_CHARS = 200
_MEDIA_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
_READ_CHUNK = 64 * 1024


class Outbound(Protocol):
    """Where judge calls may connect (driftboard.outbound.OutboundPolicy)."""

    max_reply_bytes: int

    def connect(self, url: str, *, timeout: float) -> http.client.HTTPConnection:
        """A connection to the URL's origin on an address checked now; PermissionError when refused."""
        ...


_default_outbound: Callable[[], Outbound] | None = None


def outbound_set(factory: Callable[[], Outbound]) -> None:
    """The policy of judges built without one (the Django app's, read from its settings per call)."""
    global _default_outbound
    _default_outbound = factory


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class _Permanent(Exception):
    pass


@dataclass(frozen=True)
class EndpointSettings:
    url: str
    model: str
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    rate_per_second: float | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    # First wait when the server names none (doubling per retry).
    backoff_seconds: float = 0.5

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ScoringError(f"the judge URL must start with http:// or https://, not {self.url!r}")
        if not self.model:
            raise ScoringError("the judge needs a model name")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ScoringError(f"judge concurrency must be from 1 to {MAX_CONCURRENCY}, not {self.concurrency}")
        if not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            raise ScoringError(f"judge max_tokens must be from 1 to {MAX_TOKENS_LIMIT}, not {self.max_tokens}")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ScoringError(f"judge timeout must be above 0 and at most {MAX_TIMEOUT:g} s, not {self.timeout}")
        if self.rate_per_second is not None and not 0 < self.rate_per_second <= MAX_RATE_PER_SECOND:
            raise ScoringError(
                f"judge rate_per_second must be above 0 and at most {MAX_RATE_PER_SECOND:g}, not {self.rate_per_second}"
            )

    @classmethod
    def from_env(cls, url: str | None = None, model: str | None = None, **options) -> "EndpointSettings":
        url, model = url or os.environ.get(URL_ENV, ""), model or os.environ.get(MODEL_ENV, "")
        if not url:
            raise ScoringError(f"no judge endpoint: pass a judge URL or set ${URL_ENV}")
        return cls(url=url.rstrip("/"), model=model, **options)


class RateLimiter:
    """Call starts spaced by at least 1 / rate seconds, across threads."""

    def __init__(self, rate_per_second: float | None) -> None:
        self.interval = 1.0 / rate_per_second if rate_per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(max(0.0, start - now))


class OpenAIJudge:
    def __init__(
        self, settings: EndpointSettings, *, api_key: str | None = None, outbound: Outbound | None = None
    ) -> None:
        self.settings = settings
        self.identity = f"openai:{settings.url}|{settings.model}"
        self._api_key = api_key if api_key is not None else os.environ.get(KEY_ENV, "")
        self._outbound = outbound
        self._limiter = RateLimiter(settings.rate_per_second)
        self._lock = threading.Lock()
        self.stats = JudgeStats()

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.identity!r})"

    def complete_many(self, requests: Sequence[JudgeRequest]) -> list[Completion | CallFailure]:
        if not requests:
            return []
        workers = min(self.settings.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
            return list(pool.map(self.complete, requests))

    def complete(self, request: JudgeRequest) -> Completion | CallFailure:
        """One call with its retries; a call that never succeeds is a CallFailure, not an exception."""
        for attempt in range(self.settings.max_retries + 1):
            self._limiter.wait()
            started = time.perf_counter()
            try:
                completion = self._call(request)
            except _Retryable as error:
                self._record(started, failed=True)
                if attempt == self.settings.max_retries:
                    return CallFailure(self._redact(f"{error} (after {attempt + 1} attempts)"))
                wait = min(
                    MAX_RETRY_WAIT, error.wait if error.wait is not None else self.settings.backoff_seconds * 2**attempt
                )
                logger.warning("judge %s: %s; retry in %.1f s", self.identity, self._redact(str(error)), wait)
                with self._lock:
                    self.stats.retries += 1
                time.sleep(wait)
            except _Permanent as error:
                self._record(started, failed=True)
                return CallFailure(self._redact(str(error)))
            else:
                self._record(started, completion=completion)
                return completion
        raise AssertionError("unreachable")

    def _call(self, request: JudgeRequest) -> Completion:
        body = {
            "model": self.settings.model,
            "messages": request.messages,
            "temperature": 0,
            "max_tokens": self.settings.max_tokens,
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        status, response_headers, raw = self._exchange(json.dumps(body).encode(), headers)
        if 300 <= status < 400:
            location = ascii(response_headers.get("Location", ""))[:_SHOWN_LOCATION_CHARS]
            raise _Permanent(
                f"judge endpoint redirected (HTTP {status}) to {location}; redirects are not followed "
                "(the API key stays with the configured origin): configure the URL it points to"
            )
        if not 200 <= status < 300:
            message = f"judge endpoint answered HTTP {status} ({_described(response_headers, raw)})"
            if status in _RETRIED_STATUSES:
                raise _Retryable(message, _retry_after(response_headers.get("Retry-After")))
            raise _Permanent(message)
        return _parse_completion(raw, response_headers)

    def _exchange(self, body: bytes, headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        """POST to the endpoint within `timeout` in all; the status, headers and capped body."""
        outbound = self._outbound or (_default_outbound() if _default_outbound else None)
        if outbound is None:
            raise _Permanent("judge endpoint refused: this judge client has no outbound policy")
        url = f"{self.settings.url}/chat/completions"
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        deadline = time.monotonic() + self.settings.timeout
        try:
            connection = outbound.connect(url, timeout=self.settings.timeout)
        except PermissionError as error:
            raise _Permanent(f"judge endpoint refused: {error}") from None
        except (OSError, http.client.HTTPException) as error:
            raise _Retryable(f"judge endpoint unreachable: {_failure(error)}") from None
        # Socket timeouts bound each read; this bounds them all (a reply trickled byte by byte too).
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, args=(connection,))
        watchdog.start()
        try:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, _read_capped(response, outbound.max_reply_bytes)
        except (OSError, http.client.HTTPException) as error:
            if time.monotonic() >= deadline:
                raise _Retryable(f"judge endpoint did not answer within {self.settings.timeout:g} s") from None
            raise _Retryable(f"judge endpoint unreachable: {_failure(error)}") from None
        finally:
            watchdog.cancel()
            connection.close()

    def _record(self, started: float, *, failed: bool = False, completion: Completion | None = None) -> None:
        elapsed = time.perf_counter() - started
        with self._lock:
            self.stats.calls += 1
            self.stats.failures += failed
            self.stats.seconds += elapsed
            self.stats.slowest = max(self.stats.slowest, elapsed)
            if completion is not None:
                self.stats.prompt_tokens += completion.prompt_tokens
                self.stats.completion_tokens += completion.completion_tokens

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text


def _parse_completion(raw: bytes, headers: http.client.HTTPMessage) -> Completion:
    try:
        body = json.loads(raw)
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        raise _Retryable(f"judge endpoint sent a malformed body ({_described(headers, raw)})") from None
    if not isinstance(content, str):
        raise _Retryable("judge endpoint sent a reply whose content is not text")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return Completion(
        text=content,
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _read_capped(response: http.client.HTTPResponse, limit: int) -> bytes:
    declared = response.getheader("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Retryable(_too_large(limit))
    chunks, size = [], 0
    while chunk := response.read1(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _Retryable(_too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"judge endpoint sent a reply larger than the {limit:,} bytes allowed (DRIFTBOARD_JUDGE_MAX_REPLY_BYTES)"


def _described(headers: http.client.HTTPMessage, raw: bytes) -> str:
    """What came back, in the server's words only where they are a media type: type and size."""
    media = _MEDIA_TYPE.match(headers.get_content_type() if headers.get("Content-Type") else "")
    return f"{media.group(0) if media else 'no content type'}, {len(raw):,} bytes"


def _failure(error: BaseException) -> str:
    """A transport failure by its kind (an HTTP parser's message can quote the server's bytes)."""
    if isinstance(error, http.client.HTTPException):
        return f"broken HTTP reply ({type(error).__name__})"
    return getattr(error, "strerror", None) or type(error).__name__


def _cut(connection: http.client.HTTPConnection) -> None:
    if connection.sock is not None:
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
