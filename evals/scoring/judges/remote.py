"""A judge behind an OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp, OpenAI).

`POST {url}/chat/completions` with `model`, `messages`, `temperature` 0 and `max_tokens`; the reply
is `choices[0].message.content`, the tokens used `usage`. Calls run `concurrency` at a time on
threads, start no faster than `rate_per_second`, and are retried on 429, 5xx, timeouts, refused
connections and malformed bodies, waiting what `Retry-After` says (else an exponential backoff),
`max_retries` times at most. The API key is sent as `Authorization: Bearer …` and nowhere else:
it is never part of the identity, a log line or an error message.
"""

import email.utils
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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
_RETRIED_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_SHOWN_BODY_CHARS = 200


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
        if self.concurrency < 1:
            raise ScoringError(f"judge concurrency must be at least 1, not {self.concurrency}")

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
    def __init__(self, settings: EndpointSettings, *, api_key: str | None = None) -> None:
        self.settings = settings
        self.identity = f"openai:{settings.url}|{settings.model}"
        self._api_key = api_key if api_key is not None else os.environ.get(KEY_ENV, "")
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
        http_request = urllib.request.Request(
            f"{self.settings.url}/chat/completions", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(http_request, timeout=self.settings.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise self._status_error(error) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise _Retryable(f"judge endpoint unreachable: {reason}") from None
        return _parse_completion(raw)

    def _status_error(self, error: urllib.error.HTTPError) -> Exception:
        shown = _shown_body(error.read())
        message = f"judge endpoint answered HTTP {error.code}: {shown}"
        if error.code in _RETRIED_STATUSES:
            return _Retryable(message, _retry_after(error.headers.get("Retry-After")))
        return _Permanent(message)

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


def _parse_completion(raw: bytes) -> Completion:
    try:
        body = json.loads(raw)
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retryable(f"judge endpoint sent a malformed body: {_shown_body(raw)}") from None
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


def _shown_body(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return repr(text[:_SHOWN_BODY_CHARS] + ("…" if len(text) > _SHOWN_BODY_CHARS else ""))


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
