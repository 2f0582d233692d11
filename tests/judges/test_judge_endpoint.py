"""The OpenAI-compatible judge client against a local server speaking the real JSON: the request it
sends, retries on 429 (honouring Retry-After) and 5xx, malformed bodies, failures that stay
failures, bounded concurrency, the rate limit, and an API key that never leaves the header."""

import logging
import threading
import time

import pytest

from evals.scoring.errors import ScoringError
from evals.scoring.judges import CallFailure, Completion, EndpointSettings, JudgeRequest, OpenAIJudge
from evals.scoring.judges.remote import KEY_ENV, URL_ENV, _retry_after
from tests.conftest import free_port
from tests.judges.conftest import chat_reply, ok

REQUEST = JudgeRequest(
    messages=[{"role": "user", "content": "Rate this."}], verdicts=("1", "2"), verdict_prefix="Rating: [["
)
SECRET = "sk-test-0123456789abcdef-secret"


def test_it_posts_the_chat_completions_json_with_temperature_zero(judge_server):
    judge_server.replier = lambda body, n: ok("Fine. Rating: [[7]]")
    [completion] = judge_server.judge(api_key=SECRET).complete_many([REQUEST])
    assert completion == Completion(text="Fine. Rating: [[7]]", prompt_tokens=100, completion_tokens=20)
    [body] = judge_server.requests
    assert body["model"] == "judge-test"
    assert body["messages"] == REQUEST.messages
    assert body["temperature"] == 0
    assert judge_server.headers[0]["Authorization"] == f"Bearer {SECRET}"


def test_it_sends_no_authorization_without_a_key(judge_server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    judge_server.replier = lambda body, n: ok("Rating: [[3]]")
    judge_server.judge().complete_many([REQUEST])
    assert "Authorization" not in judge_server.headers[0]


def test_it_retries_a_429_after_the_time_retry_after_names(judge_server):
    arrivals = []

    def replier(body, n):
        arrivals.append(time.monotonic())
        if n == 1:
            return 429, {"Retry-After": "1"}, {"error": {"message": "rate limited"}}
        return ok("Rating: [[4]]")

    judge_server.replier = replier
    judge = judge_server.judge()
    [completion] = judge.complete_many([REQUEST])
    assert completion.text == "Rating: [[4]]"
    assert judge_server.calls == 2
    assert arrivals[1] - arrivals[0] >= 1.0
    assert judge.stats.retries == 1 and judge.stats.calls == 2 and judge.stats.failures == 1


def test_it_reads_retry_after_as_seconds_or_an_http_date():
    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 20 < _retry_after(later) <= 31


def test_it_retries_server_errors_and_malformed_bodies(judge_server):
    replies = [(500, {}, {"error": "boom"}), (200, {}, b"<html>gateway</html>"), (200, {}, {"choices": []})]

    def replier(body, n):
        return replies[n - 1] if n <= len(replies) else ok("Rating: [[9]]")

    judge_server.replier = replier
    [completion] = judge_server.judge(backoff_seconds=0.01).complete_many([REQUEST])
    assert completion.text == "Rating: [[9]]"
    assert judge_server.calls == 4


def test_a_call_that_keeps_failing_is_a_failure_not_an_exception(judge_server):
    judge_server.replier = lambda body, n: (503, {"Retry-After": "0"}, {"error": "overloaded"})
    [failure] = judge_server.judge(max_retries=2).complete_many([REQUEST])
    assert isinstance(failure, CallFailure)
    assert "HTTP 503" in failure.message and "3 attempts" in failure.message
    assert judge_server.calls == 3


def test_a_client_error_is_not_retried(judge_server):
    judge_server.replier = lambda body, n: (400, {}, {"error": {"message": "bad model"}})
    [failure] = judge_server.judge().complete_many([REQUEST])
    assert isinstance(failure, CallFailure) and "HTTP 400" in failure.message
    assert judge_server.calls == 1


def test_an_unreachable_endpoint_is_a_failure():
    settings = EndpointSettings(url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=1, backoff_seconds=0)
    judge = OpenAIJudge(settings)
    [failure] = judge.complete_many([REQUEST])
    assert isinstance(failure, CallFailure) and "unreachable" in failure.message


def test_the_key_never_appears_in_logs_or_errors(judge_server, caplog):
    # A hostile or careless server echoes the key back in its error bodies.
    judge_server.replier = lambda body, n: (500, {"Retry-After": "0"}, {"error": f"bad key {SECRET}"})
    judge = judge_server.judge(api_key=SECRET, max_retries=1)
    with caplog.at_level(logging.DEBUG):
        [failure] = judge.complete_many([REQUEST])
    assert SECRET not in failure.message and "HTTP 500" in failure.message
    assert caplog.records and SECRET not in caplog.text
    assert SECRET not in repr(judge) and SECRET not in judge.identity


def test_calls_run_at_most_concurrency_at_a_time(judge_server):
    in_flight, peak, lock = [0], [0], threading.Lock()

    def replier(body, n):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return ok("Rating: [[5]]")

    judge_server.replier = replier
    results = judge_server.judge(concurrency=3).complete_many([REQUEST] * 12)
    assert [r.text for r in results] == ["Rating: [[5]]"] * 12
    assert peak[0] == 3


def test_the_rate_limit_spaces_call_starts(judge_server):
    arrivals = []
    judge_server.replier = lambda body, n: (arrivals.append(time.monotonic()), ok("Rating: [[5]]"))[1]
    started = time.monotonic()
    judge_server.judge(concurrency=4, rate_per_second=10).complete_many([REQUEST] * 5)
    assert max(arrivals) - started >= 0.4


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(URL_ENV, "http://judge:8000/v1/")
    monkeypatch.setenv("DRIFTBOARD_JUDGE_MODEL", "qwen-judge")
    settings = EndpointSettings.from_env()
    assert (settings.url, settings.model) == ("http://judge:8000/v1", "qwen-judge")
    assert OpenAIJudge(settings).identity == "openai:http://judge:8000/v1|qwen-judge"
    with pytest.raises(ScoringError, match="http"):
        EndpointSettings(url="judge:8000", model="m")


def test_usage_is_counted(judge_server):
    judge_server.replier = lambda body, n: (200, {}, chat_reply("Rating: [[2]]", prompt_tokens=7, completion_tokens=3))
    judge = judge_server.judge()
    judge.complete_many([REQUEST] * 4)
    assert (judge.stats.prompt_tokens, judge.stats.completion_tokens, judge.stats.calls) == (28, 12, 4)
    assert 0 < judge.stats.mean_latency <= judge.stats.slowest
