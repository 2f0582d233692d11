"""Alert channels: a red alert reaches Slack and PagerDuty stand-ins (speaking their request and response
shapes, errors included) once, resolves on recovery, and is logged per delivery; every URL goes through
the alert outbound policy, and no redirect carries a Slack URL or a routing key elsewhere."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry import alerting
from registry import services as registry_services
from registry.models import Alert, AlertChannel, AlertDelivery
from tests.factories import ArtifactFactory
from tests.publishing.forge import run_tasks_eagerly

SLACK_PATH = "/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX"
ROUTING_KEY = "R0123456789abcdef0123456789abcde"
PD_SEVERITIES = {"critical", "error", "warning", "info"}


class StandIn:
    """Slack's incoming webhooks and PagerDuty's Events API v2 on one local server. `replies` queues
    (status, headers, body) overrides; otherwise each answers as the real service does."""

    def __init__(self):
        self.slack: list[dict] = []
        self.pagerduty: list[dict] = []
        self.replies: list[tuple[int, dict, bytes]] = []
        self.archived = False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, body = stand_in.answer(self.path, raw)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, path: str, raw: bytes) -> tuple[int, dict, bytes]:
        if self.replies:
            return self.replies.pop(0)
        body = json.loads(raw)
        if path.startswith("/services/"):
            return self.slack_answer(path, body)
        if path == "/v2/enqueue":
            return self.pagerduty_answer(body)
        return 404, {}, b"Not Found"

    def slack_answer(self, path: str, body: dict) -> tuple[int, dict, bytes]:
        text = {"Content-Type": "text/html"}
        if path != SLACK_PATH:
            return 404, text, b"no_service"
        if self.archived:
            return 410, text, b"channel_is_archived"
        if not isinstance(body.get("text"), str) or not isinstance(body.get("blocks", []), list):
            return 400, text, b"invalid_payload"
        self.slack.append(body)
        return 200, text, b"ok"

    def pagerduty_answer(self, event: dict) -> tuple[int, dict, bytes]:
        errors = []
        if len(event.get("routing_key") or "") != 32:
            errors.append("'routing_key' is missing or blank")
        if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        if event.get("event_action") == "trigger":
            payload = event.get("payload") or {}
            if not payload.get("summary") or not payload.get("source"):
                errors.append("'payload.summary' and 'payload.source' are required")
            if payload.get("severity") not in PD_SEVERITIES:
                errors.append("'payload.severity' is invalid")
        elif not event.get("dedup_key"):
            errors.append("'dedup_key' is required to resolve")
        kind = {"Content-Type": "application/json"}
        if errors:
            answer = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            return 400, kind, json.dumps(answer).encode()
        self.pagerduty.append(event)
        answer = {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key")}
        return 202, kind, json.dumps(answer).encode()


@pytest.fixture
def services(settings):
    run_tasks_eagerly(settings)
    settings.DRIFTBOARD_ALERT_HOSTS = ["127.0.0.1:*"]
    stand_in = StandIn()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


@pytest.fixture
def artifact(db):
    return ArtifactFactory()


def channel(client, **body) -> dict:
    response = client.post("/api/v1/alert-channels/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def raise_red(artifact, capture, message="bits_per_byte worse by 4.1 %") -> Alert:
    with capture(execute=True):
        return registry_services.alert_raise(
            artifact=artifact,
            severity=Alert.Severity.CRITICAL,
            title=f"{artifact.family.slug} v{artifact.version} halted: drift flag red",
            message=message,
            payload={"family": artifact.family.slug, "version": artifact.version, "flag": "red"},
            cause="drift:bits_per_byte",
        )


def test_it_reaches_slack_and_pagerduty_once_and_resolves_on_recovery(
    staff_client, services, artifact, django_capture_on_commit_callbacks
):
    slack = channel(staff_client, kind="slack", url=services.base + SLACK_PATH)
    pagerduty = channel(
        staff_client,
        kind="pagerduty",
        url=services.base + "/v2/enqueue",
        routing_key=ROUTING_KEY,
        min_severity="critical",
    )
    assert SLACK_PATH not in json.dumps(slack) and ROUTING_KEY not in json.dumps(pagerduty)  # secrets not shown

    first = raise_red(artifact, django_capture_on_commit_callbacks)
    again = raise_red(artifact, django_capture_on_commit_callbacks)  # the same verdict reported twice

    assert again.pk == first.pk and len(services.slack) == 1 and len(services.pagerduty) == 1
    [message] = services.slack
    assert message["blocks"][0]["text"]["text"] == first.title
    assert "bits_per_byte worse by 4.1 %" in message["blocks"][1]["text"]["text"]
    assert message["blocks"][-1]["elements"][0]["url"].endswith(artifact.get_absolute_url())
    [trigger] = services.pagerduty
    assert (trigger["event_action"], trigger["payload"]["severity"], trigger["routing_key"]) == (
        "trigger",
        "critical",
        ROUTING_KEY,
    )
    assert trigger["dedup_key"] == f"driftboard:{artifact.family.slug}:drift:bits_per_byte"

    with django_capture_on_commit_callbacks(execute=True):
        alerting.alerts_resolve(family=artifact.family, cause_prefix="drift:")
    resolve = services.pagerduty[-1]
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
    assert services.slack[-1]["blocks"][0]["text"]["text"].startswith("Resolved:")

    log = staff_client.get(f"/api/v1/alert-channels/{pagerduty['id']}/deliveries/").json()["results"]
    assert [(row["action"], row["status"]) for row in log] == [("resolve", "delivered"), ("trigger", "delivered")]


def test_it_notifies_again_only_when_the_alert_changes(
    staff_client, services, artifact, django_capture_on_commit_callbacks
):
    channel(staff_client, kind="slack", url=services.base + SLACK_PATH)
    raise_red(artifact, django_capture_on_commit_callbacks)
    raise_red(artifact, django_capture_on_commit_callbacks, message="bits_per_byte worse by 9.0 %")
    assert len(services.slack) == 2
    assert Alert.objects.filter(resolved_at=None).count() == 1  # one open alert per family and cause


def test_it_routes_by_family_and_severity(staff_client, services, artifact, django_capture_on_commit_callbacks):
    other = ArtifactFactory()
    channel(staff_client, kind="slack", url=services.base + SLACK_PATH, families=[other.family.slug])
    channel(staff_client, kind="slack", url=services.base + SLACK_PATH, min_severity="critical")
    with django_capture_on_commit_callbacks(execute=True):
        registry_services.alert_raise(
            artifact=artifact, severity="warning", title="amber", message="m", payload={}, cause="budget"
        )
    assert services.slack == []
    raise_red(artifact, django_capture_on_commit_callbacks)
    assert len(services.slack) == 1  # the critical channel for every family; not the other family's


def test_it_logs_slack_s_error_code_without_the_url_and_does_not_retry_it(
    staff_client, services, artifact, django_capture_on_commit_callbacks
):
    created = channel(staff_client, kind="slack", url=services.base + SLACK_PATH)
    services.archived = True
    raise_red(artifact, django_capture_on_commit_callbacks)
    [delivery] = AlertDelivery.objects.filter(channel_id=created["id"])
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error == "Slack answered HTTP 410 (channel_is_archived)"


def test_it_retries_pagerduty_throttling_with_back_off_then_delivers(
    staff_client, settings, services, artifact, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_EAGER_PROPAGATES = False  # an eager retry runs again at once only unpropagated
    channel(staff_client, kind="pagerduty", url=services.base + "/v2/enqueue", routing_key=ROUTING_KEY)
    throttled = (429, {"Content-Type": "application/json", "Retry-After": "0"}, b'{"status":"throttle event"}')
    services.replies = [throttled, (503, {}, b"")]
    raise_red(artifact, django_capture_on_commit_callbacks)
    [delivery] = AlertDelivery.objects.all()
    assert (delivery.status, delivery.attempts) == ("delivered", 3) and len(services.pagerduty) == 1


def test_it_logs_pagerduty_s_refusal_of_a_bad_routing_key(
    staff_client, services, artifact, django_capture_on_commit_callbacks
):
    channel(staff_client, kind="pagerduty", url=services.base + "/v2/enqueue", routing_key="too-short")
    raise_red(artifact, django_capture_on_commit_callbacks)
    [delivery] = AlertDelivery.objects.all()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "HTTP 400: the event is invalid" in delivery.error and "too-short" not in delivery.error


def test_it_never_follows_a_redirect_with_the_routing_key(
    staff_client, services, artifact, django_capture_on_commit_callbacks
):
    elsewhere = StandIn()
    try:
        channel(staff_client, kind="pagerduty", url=services.base + "/v2/enqueue", routing_key=ROUTING_KEY)
        services.replies = [(307, {"Location": elsewhere.base + "/v2/enqueue"}, b"")]
        raise_red(artifact, django_capture_on_commit_callbacks)
        [delivery] = AlertDelivery.objects.all()
        assert delivery.status == "failed" and "redirect, not followed" in delivery.error
        assert elsewhere.pagerduty == []
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()


def test_it_refuses_a_url_outside_the_alert_hosts(staff_client, settings, services, artifact):
    settings.DRIFTBOARD_ALERT_HOSTS = ["hooks.slack.com"]
    response = staff_client.post(
        "/api/v1/alert-channels/", {"kind": "slack", "url": services.base + SLACK_PATH}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"url": ["the URL's host is not in DRIFTBOARD_ALERT_HOSTS."]}
    response = staff_client.post("/api/v1/alert-channels/", {"kind": "pagerduty"}, format="json")
    assert response.json() == {"routing_key": ["a pagerduty channel needs `routing_key`."]}


def test_it_sends_nothing_to_loopback_unless_listed(
    staff_client, settings, services, artifact, django_capture_on_commit_callbacks
):
    created = channel(staff_client, kind="slack", url=services.base + SLACK_PATH)
    settings.DRIFTBOARD_ALERT_HOSTS = []
    raise_red(artifact, django_capture_on_commit_callbacks)
    [delivery] = AlertDelivery.objects.filter(channel_id=created["id"])
    assert delivery.status == "failed" and "loopback" in delivery.error and services.slack == []


def test_it_mails_the_alert_through_django_s_backend(
    staff_client, settings, services, artifact, mailoutbox, django_capture_on_commit_callbacks
):
    channel(staff_client, kind="email", to="oncall@example.com, ml@example.com")
    raise_red(artifact, django_capture_on_commit_callbacks)
    [mail] = mailoutbox
    assert mail.to == ["oncall@example.com", "ml@example.com"] and "halted" in mail.subject


def test_it_lets_only_admins_create_channels(api_client, services):
    response = api_client.post("/api/v1/alert-channels/", {"kind": "email", "to": "a@example.com"}, format="json")
    assert response.status_code == 403
    assert not AlertChannel.objects.exists()
