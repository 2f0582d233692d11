"""The README's access rules hold: members of the admin group open the Django admin and manage tokens
there; the API's schema and docs are for signed-in users only; run errors shown to users never carry
absolute server paths."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient

from driftboard.roles import ADMIN, READER, REVIEWER
from evals.models import EvalRun
from evals.services.pipeline import eval_run_fail
from tests.conftest import token_client
from tests.factories import ArtifactFactory, DatasetFactory, EvalRunFactory, UserFactory


def group_member(role: str):
    user = UserFactory(username=f"{role}-in-group")
    user.groups.add(Group.objects.get(name=role))
    return user


def test_an_admin_group_member_who_is_not_staff_opens_the_admin_and_its_token_pages(db):
    client = Client()
    client.force_login(group_member(ADMIN))
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 200
    assert client.get("/admin/evals/threshold/").status_code == 200


@pytest.mark.parametrize("role", [READER, REVIEWER])
def test_readers_and_reviewers_still_cannot_open_the_admin(db, role):
    client = Client()
    client.force_login(group_member(role))
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_anonymous_users_read_neither_the_schema_nor_the_docs(db):
    assert APIClient().get("/api/schema/").status_code == 401
    docs = Client().get("/api/docs/")
    assert docs.status_code == 302 and docs["Location"].startswith("/accounts/login/")


def test_signed_in_users_read_the_schema_and_the_docs(db):
    user = UserFactory(username="schema-reader")
    assert token_client(user).get("/api/schema/").status_code == 200
    client = Client()
    client.force_login(user)
    assert client.get("/api/docs/").status_code == 200


def test_run_errors_shown_to_users_carry_no_absolute_server_path(db, settings):
    user = UserFactory(username="error-reader")
    artifact = ArtifactFactory()
    run = EvalRunFactory(artifact=artifact, dataset=DatasetFactory(samples=2), status=EvalRun.Status.RUNNING)
    weights = f"{settings.DRIFTBOARD_ARTIFACT_ROOT}/objects/ab/{artifact.sha256}/config.json"

    eval_run_fail(run=run, message=f"OSError: Unable to load weights from {weights} (see /usr/lib/x/y.py)")

    body = token_client(user).get(f"/api/v1/runs/{run.pk}/").json()
    assert body["error"] == "OSError: Unable to load weights from config.json (see y.py)"
    client = Client()
    client.force_login(user)
    pages = client.get(artifact.get_absolute_url()).content.decode() + client.get("/queues/").content.decode()
    assert str(settings.DRIFTBOARD_ARTIFACT_ROOT) not in pages and "/usr/lib" not in pages
