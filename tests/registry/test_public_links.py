"""Links point where the server is: DRIFTBOARD_PUBLIC_URL when it is set; else API answers link to the
scheme and host the request came to, and work done outside a request (pull-request statuses and comments,
alerts) links to the address `manage.py serve --addr` listens on, else http://127.0.0.1:8000."""

import socket

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from driftboard import links
from evals.management.commands.serve import Command
from registry.alerting import slack_message
from registry.models import Alert
from registry.tasks import publish_artifact
from tests.factories import ArtifactFactory, ExperimentFactory, PullRequestFactory, VerdictFactory
from tests.registry.weights import safetensors_bytes

HOST = "driftboard.example:8443"
PUBLIC_URL = "https://driftboard.acme.example"
SERVE_URL = "http://build-box.lan:8000"


@pytest.fixture
def no_public_url(settings):
    settings.DRIFTBOARD_PUBLIC_URL = ""
    settings.DRIFTBOARD_SERVE_URL = ""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "driftboard.example"]


def test_it_links_an_artifact_to_the_host_asked_when_no_public_url_is_set(no_public_url, api_client):
    artifact = ArtifactFactory()

    detail = api_client.get(f"/api/v1/artifacts/{artifact.pk}/", HTTP_HOST=HOST, secure=True).json()
    [listed] = api_client.get("/api/v1/artifacts/", HTTP_HOST=HOST).json()["results"]

    assert detail["url"] == f"https://{HOST}/artifacts/{artifact.pk}/"
    assert detail["api_url"] == f"https://{HOST}/api/v1/artifacts/{artifact.pk}/"
    assert listed["url"] == f"http://{HOST}/artifacts/{artifact.pk}/"


def test_it_links_a_submission_and_a_decision_to_the_host_asked(no_public_url, api_client, staff_client, family):
    weights = SimpleUploadedFile("w.safetensors", safetensors_bytes())
    submitted = api_client.post(
        "/api/v1/artifacts/",
        {"family": family.slug, "commit": "a" * 40, "weights": weights},
        format="multipart",
        HTTP_HOST=HOST,
    )
    assert submitted.status_code == 202, submitted.json()
    pk = submitted.json()["id"]
    halted = staff_client.post(f"/api/v1/artifacts/{pk}/halt/", {"reason": "no"}, format="json", HTTP_HOST=HOST)

    assert submitted.json()["url"] == f"http://{HOST}/artifacts/{pk}/"
    assert halted.json()["url"] == f"http://{HOST}/artifacts/{pk}/"


def test_it_links_experiments_to_the_host_asked(no_public_url, api_client):
    experiment = ExperimentFactory(slug="mar5-gpu0")

    shown = api_client.get(f"/api/v1/experiments/{experiment.slug}/", HTTP_HOST=HOST).json()
    created = api_client.post("/api/v1/experiments/", {"slug": "mar6-gpu1"}, format="json", HTTP_HOST=HOST).json()

    assert shown["url"] == f"http://{HOST}/experiments/mar5-gpu0/"
    assert created["url"] == f"http://{HOST}/experiments/mar6-gpu1/"


def test_it_keeps_the_public_url_whatever_host_was_asked(settings, api_client):
    settings.DRIFTBOARD_PUBLIC_URL, settings.DRIFTBOARD_SERVE_URL = PUBLIC_URL, SERVE_URL
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "driftboard.example"]
    artifact = ArtifactFactory()

    detail = api_client.get(f"/api/v1/artifacts/{artifact.pk}/", HTTP_HOST=HOST).json()

    assert detail["url"] == f"{PUBLIC_URL}/artifacts/{artifact.pk}/"
    assert links.absolute_url("/alerts/") == f"{PUBLIC_URL}/alerts/"


def test_a_pull_request_is_linked_to_the_serve_address_when_no_public_url_is_set(db, forge, settings):
    settings.DRIFTBOARD_PUBLIC_URL, settings.DRIFTBOARD_SERVE_URL = "", SERVE_URL
    artifact = ArtifactFactory(pull_request=PullRequestFactory(repository="acme/weights", number=7), drift_flag="red")
    VerdictFactory(artifact=artifact, outcome="red", delta=-0.08, ci_low=-0.09, ci_high=-0.07)

    publish_artifact.apply(args=[artifact.pk], throw=True)

    [status] = forge.github_statuses
    [comment] = forge.github_comments[("acme/weights", 7)]
    assert status["target_url"] == f"{SERVE_URL}/artifacts/{artifact.pk}/"
    assert f"]({SERVE_URL}/artifacts/{artifact.pk}/)" in comment["body"]


def test_alerts_link_to_the_serve_address_else_to_the_default(db, settings):
    settings.DRIFTBOARD_PUBLIC_URL, settings.DRIFTBOARD_SERVE_URL = "", SERVE_URL
    alert = Alert.objects.create(artifact=ArtifactFactory(), severity="critical", title="Red", message="8 % worse")

    served = slack_message(alert, "trigger")["blocks"][-1]["elements"][0]["url"]
    settings.DRIFTBOARD_SERVE_URL = ""
    default = slack_message(alert, "trigger")["blocks"][-1]["elements"][0]["url"]

    assert served == f"{SERVE_URL}/artifacts/{alert.artifact_id}/"
    assert default == f"http://127.0.0.1:8000/artifacts/{alert.artifact_id}/"


@pytest.mark.parametrize(
    ("addr", "url"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("9000", "http://127.0.0.1:9000"),
        ("build-box.lan:8000", "http://build-box.lan:8000"),
        ("[::1]:8000", "http://[::1]:8000"),
        ("0.0.0.0:8000", f"http://{socket.gethostname()}:8000"),
        ("[::]:8000", f"http://{socket.gethostname()}:8000"),
    ],
)
def test_the_serve_address_becomes_a_url(addr, url):
    assert links.serve_url(addr) == url


def test_serve_hands_its_address_to_the_web_server_and_worker_only_without_a_public_url(settings):
    settings.DRIFTBOARD_PUBLIC_URL = ""
    assert Command().link_env("0.0.0.0:8000") == {"DRIFTBOARD_SERVE_URL": f"http://{socket.gethostname()}:8000"}
    settings.DRIFTBOARD_PUBLIC_URL = PUBLIC_URL
    assert Command().link_env("0.0.0.0:8000") == {}
