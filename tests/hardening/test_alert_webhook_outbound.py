"""The alert webhook goes through the same outbound policy as judges: its own host is reached (an
operator's receiver may be internal), a redirect is never followed elsewhere, and a failing
receiver's body never reaches the alert's stored delivery error."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry.models import Alert
from registry.services import alert_deliver
from tests.factories import ArtifactFactory

INTERNAL = "INTERNAL-ONLY body 9c1e"


@pytest.fixture
def receiver():
    """A webhook receiver answering `state["reply"] = (status, headers, body)`; records what it got."""
    state = {"reply": (204, {}, b""), "received": []}

    class Handler(BaseHTTPRequestHandler):
        def do_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            state["received"].append((self.command, self.path, self.rfile.read(length)))
            status, headers, body = state["reply"]
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_any

        def log_message(self, *args):
            pass

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"], state["other"] = (f"http://127.0.0.1:{server.server_port}/hook" for server in servers)
    yield state
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def alert(db):
    return Alert.objects.create(artifact=ArtifactFactory(), severity="critical", title="red", message="m", payload={})


def test_it_delivers_to_the_configured_receiver_even_on_loopback(settings, receiver, alert):
    settings.DRIFTBOARD_JUDGE_HOSTS = []
    settings.DRIFTBOARD_ALERT_WEBHOOK_URL = receiver["url"]
    alert_deliver(alert=alert)
    [(method, path, body)] = receiver["received"]
    assert (method, path, json.loads(body)["title"]) == ("POST", "/hook", "red")


def test_a_redirecting_receiver_is_an_error_and_nothing_goes_elsewhere(settings, receiver, alert):
    settings.DRIFTBOARD_ALERT_WEBHOOK_URL = receiver["url"]
    receiver["reply"] = (307, {"Location": receiver["other"]}, b"")
    with pytest.raises(OSError, match="HTTP 307"):
        alert_deliver(alert=alert)
    assert len(receiver["received"]) == 1  # the configured hook only: the redirect was not followed


def test_a_failing_receiver_s_body_is_described_not_quoted(settings, receiver, alert):
    settings.DRIFTBOARD_ALERT_WEBHOOK_URL = receiver["url"]
    receiver["reply"] = (500, {"Content-Type": "text/plain"}, INTERNAL.encode())
    with pytest.raises(OSError) as raised:
        alert_deliver(alert=alert)
    assert INTERNAL not in str(raised.value) and "HTTP 500" in str(raised.value) and "text/plain" in str(raised.value)
