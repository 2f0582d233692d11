"""A judge endpoint reaches only judges: no redirect carries the key, loopback and private addresses
need their host listed, the address is checked when the call is made (not when the URL was set),
what the endpoint answers never reaches readers raw, replies are capped, broken HTTP is a retried
failure, and the family API bounds every judge setting."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from driftboard.outbound import OutboundPolicy
from evals.scoring.judges import CallFailure, EndpointSettings, JudgeRequest, OpenAIJudge
from tests.judges.conftest import ok

REQUEST = JudgeRequest(messages=[{"role": "user", "content": "Rate this."}], verdicts=("1",), verdict_prefix="[[")
SECRET = "sk-test-never-elsewhere"
INTERNAL = "INTERNAL-ONLY metadata token 7f3a"


@pytest.fixture
def elsewhere():
    """A second server on another port (another origin) that records every request it receives."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_any(self):
            received.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_any

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", received
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def raw_server():
    """A TCP server that answers every connection with `reply` bytes, then closes; counts connections."""
    state = {"reply": b"", "connections": 0}
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                state["connections"] += 1
                connection.recv(65536)
                connection.sendall(state["reply"])

    threading.Thread(target=serve, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    yield state
    listener.close()


def judge_for(url: str, **options) -> OpenAIJudge:
    settings = EndpointSettings(url=url, model="judge-test", backoff_seconds=0, **options)
    return OpenAIJudge(settings, api_key=SECRET)


def test_it_never_follows_a_redirect_with_the_key(judge_server, elsewhere):
    target, received = elsewhere
    judge_server.replier = lambda body, n: (302, {"Location": f"{target}/steal"}, {})
    [failure] = judge_server.judge(api_key=SECRET).complete_many([REQUEST])
    assert received == []
    assert isinstance(failure, CallFailure)
    assert "redirect" in failure.message and f"{target}/steal" in failure.message
    assert judge_server.calls == 1  # a redirect is not retried either


def test_it_refuses_loopback_unless_its_host_is_listed(judge_server, settings):
    judge_server.replier = lambda body, n: ok("Rating: [[5]]")
    settings.DRIFTBOARD_JUDGE_HOSTS = []
    [failure] = judge_server.judge(max_retries=3).complete_many([REQUEST])
    assert isinstance(failure, CallFailure) and "DRIFTBOARD_JUDGE_HOSTS" in failure.message
    assert judge_server.calls == 0

    settings.DRIFTBOARD_JUDGE_HOSTS = ["127.0.0.1"]
    [completion] = judge_server.judge().complete_many([REQUEST])
    assert completion.text == "Rating: [[5]]"


def test_a_name_that_resolves_to_loopback_is_refused_by_default(judge_server, settings):
    settings.DRIFTBOARD_JUDGE_HOSTS = []
    judge_server.replier = lambda body, n: ok("Rating: [[5]]")
    url = judge_server.url.replace("127.0.0.1", "localhost")
    [failure] = judge_for(url).complete_many([REQUEST])
    assert isinstance(failure, CallFailure) and "loopback" in failure.message
    assert judge_server.calls == 0


def test_a_listed_allow_list_refuses_every_other_host(judge_server, settings):
    settings.DRIFTBOARD_JUDGE_HOSTS = ["judge.internal:8000"]
    [failure] = judge_server.judge().complete_many([REQUEST])
    assert isinstance(failure, CallFailure) and "not in DRIFTBOARD_JUDGE_HOSTS" in failure.message
    assert judge_server.calls == 0


def test_the_address_is_checked_at_call_time_and_the_connection_goes_to_it(judge_server):
    """DNS rebinding: the name the URL was accepted with answers a loopback address when the call is made."""
    port = judge_server.url.split(":")[2].split("/")[0]
    url = f"http://judge.rebind.test:{port}/v1"
    answers = {"judge.rebind.test": ["127.0.0.1"]}
    resolver = lambda host, port: answers[host]  # noqa: E731
    judge_server.replier = lambda body, n: ok("Rating: [[6]]")

    refused = OpenAIJudge(
        EndpointSettings(url=url, model="m", max_retries=0), outbound=OutboundPolicy(resolve=resolver)
    ).complete(REQUEST)
    assert isinstance(refused, CallFailure) and "loopback" in refused.message
    assert judge_server.calls == 0

    listed = OutboundPolicy(allowed_hosts=("*.rebind.test",), resolve=resolver)
    completion = OpenAIJudge(EndpointSettings(url=url, model="m"), outbound=listed).complete(REQUEST)
    assert completion.text == "Rating: [[6]]"
    # The resolved address was connected to, and the request still names the configured host.
    assert judge_server.headers[0]["Host"] == f"judge.rebind.test:{port}"


def test_a_body_echoing_error_is_described_not_shown(judge_server, caplog):
    judge_server.replier = lambda body, n: (500, {"Retry-After": "0"}, {"error": INTERNAL})
    [failure] = judge_server.judge(max_retries=1).complete_many([REQUEST])
    assert INTERNAL not in failure.message and INTERNAL not in caplog.text
    assert "HTTP 500" in failure.message and "application/json" in failure.message and "bytes" in failure.message


def test_a_malformed_reply_is_described_not_shown(judge_server):
    judge_server.replier = lambda body, n: (200, {}, f"<html>{INTERNAL}</html>".encode())
    [failure] = judge_server.judge(max_retries=0).complete_many([REQUEST])
    assert INTERNAL not in failure.message and "malformed" in failure.message


def test_a_huge_reply_is_cut_off_at_the_limit(judge_server, settings):
    settings.DRIFTBOARD_JUDGE_MAX_REPLY_BYTES = 10_000
    judge_server.replier = lambda body, n: ok("x" * 1_000_000)
    [failure] = judge_server.judge(max_retries=0).complete_many([REQUEST])
    assert isinstance(failure, CallFailure)
    assert "larger than the 10,000 bytes" in failure.message and "DRIFTBOARD_JUDGE_MAX_REPLY_BYTES" in failure.message


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"NOT-HTTP " + INTERNAL.encode() + b"\r\n\r\n", id="bad-status-line"),
        pytest.param(b'HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{"choices": ', id="incomplete-read"),
        pytest.param(b"", id="closed-without-reply"),
    ],
)
def test_broken_http_is_retried_like_a_transient_failure(raw_server, reply):
    raw_server["reply"] = reply
    [failure] = judge_for(raw_server["url"], max_retries=2).complete_many([REQUEST])
    assert isinstance(failure, CallFailure) and "3 attempts" in failure.message
    assert INTERNAL not in failure.message
    assert raw_server["connections"] == 3


def test_a_reply_trickled_past_the_timeout_ends_the_call(judge_server):
    stop = threading.Event()

    def replier(body, n):
        stop.wait(10)  # far past the judge's whole-call timeout
        return ok("Rating: [[1]]")

    judge_server.replier = replier
    finished: list = []
    worker = threading.Thread(
        target=lambda: finished.append(judge_server.judge(timeout=0.5, max_retries=0).complete(REQUEST))
    )
    worker.start()
    worker.join(timeout=5)  # liveness: the call ends on its own deadline, not the server's
    stop.set()
    assert finished and isinstance(finished[0], CallFailure) and "within" in finished[0].message


@pytest.mark.parametrize(
    ("judge", "named"),
    [
        ({"repeats": 1000}, "at most 20"),
        ({"concurrency": 10_000}, "at most 64"),
        ({"rate_per_second": 1e9}, "at most 1000"),
        ({"timeout": 86_400}, "at most 600"),
        ({"rubric": "r" * 10_001}, "10,000 characters"),
        ({"url": "http://user:pw@judge:8000/v1", "model": "m"}, "user-info"),
        ({"url": "http://judge:8000/v1\r\nX-Injected: 1", "model": "m"}, "CR/LF"),
        ({"url": "http://judge:80a/v1", "model": "m"}, "numeric port"),
    ],
)
def test_the_families_api_bounds_the_judge_settings(staff_client, judge, named):
    response = staff_client.post(
        "/api/v1/families/", {"slug": "bounded", "kind": "causal-lm", "judge": judge}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert named in str(response.json()["judge"])


@pytest.mark.parametrize(
    ("generation", "named"),
    [({"max_new_tokens": 1_000_000}, "8192"), ({"stop": ["x"] * 17}, "16 strings"), ({"stop": ["x" * 201]}, "200")],
)
def test_the_families_api_bounds_the_generation_settings(staff_client, generation, named):
    response = staff_client.post(
        "/api/v1/families/", {"slug": "bounded", "kind": "causal-lm", "generation": generation}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert named in str(response.json()["generation"])
