"""Signed-in users make their own API tokens at /account/tokens/: named, scoped `read` or `submit`, the secret
shown once and only its hash stored; a token is used as `Authorization: Token <key>` beside the older DRF
tokens, records its last use (at most once a minute) and is revoked from the same page."""

import datetime
import hashlib
import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from driftboard.accounts.models import ApiToken
from driftboard.roles import ADMIN
from evals.models import Experiment
from tests.conftest import token_client
from tests.factories import UserFactory

PAGE = "/account/tokens/"
SECRET = re.compile(r'<code id="new-token">(?P<key>[^<]+)</code>')


@pytest.fixture
def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def create(page_client: Client, name: str = "ci", scope: str = "submit") -> str:
    response = page_client.post(PAGE, {"name": name, "scope": scope})
    assert response.status_code == 200, response.content
    return SECRET.search(response.content.decode())["key"]


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_it_shows_the_secret_once_and_stores_only_its_hash(page_client, user):
    created = page_client.post(PAGE, {"name": "nightly eval", "scope": "submit"})
    key = SECRET.search(created.content.decode())["key"]

    token = ApiToken.objects.get(user=user)
    assert (token.name, token.scope) == ("nightly eval", "submit")
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {str(value) for value in ApiToken.objects.values().get().values()}
    assert "no-store" in created["Cache-Control"]
    listing = page_client.get(PAGE).content.decode()
    assert key not in listing and "nightly eval" in listing


def test_a_read_token_reads_and_is_refused_every_write(page_client):
    key = create(page_client, scope="read")

    assert api(key).get("/api/v1/artifacts/").status_code == 200
    refused = api(key).post("/api/v1/experiments/", {"slug": "from-a-read-token"}, format="json")

    assert refused.status_code == 403
    assert "read" in refused.json()["detail"]
    assert not Experiment.objects.filter(slug="from-a-read-token").exists()


def test_a_submit_token_submits(page_client):
    key = create(page_client, scope="submit")

    response = api(key).post("/api/v1/experiments/", {"slug": "from-a-submit-token"}, format="json")

    assert response.status_code == 201, response.json()


def test_a_revoked_token_is_refused(page_client, user):
    key = create(page_client)
    token = ApiToken.objects.get(user=user)
    assert api(key).get("/api/v1/artifacts/").status_code == 200

    response = page_client.post(f"{PAGE}{token.pk}/revoke/")

    assert response.status_code == 302 and response["Location"] == PAGE
    assert api(key).get("/api/v1/artifacts/").status_code == 401
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_an_unknown_or_malformed_key_is_refused(db):
    assert api("dbt_" + "x" * 43).get("/api/v1/artifacts/").status_code == 401
    assert api("not-a-key").get("/api/v1/artifacts/").status_code == 401


def test_it_records_the_last_use_at_most_once_a_minute(page_client, user):
    key = create(page_client)
    token = ApiToken.objects.get(user=user)
    assert token.last_used_at is None

    api(key).get("/api/v1/artifacts/")
    token.refresh_from_db()
    first = token.last_used_at
    api(key).get("/api/v1/artifacts/")
    token.refresh_from_db()
    assert first is not None and token.last_used_at == first

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - datetime.timedelta(minutes=2))
    api(key).get("/api/v1/artifacts/")
    token.refresh_from_db()
    assert token.last_used_at > first - datetime.timedelta(seconds=1)
    assert timezone.now() - token.last_used_at < datetime.timedelta(minutes=1)


def test_the_page_lists_name_scope_and_times(page_client, user):
    create(page_client, name="reader bot", scope="read")
    token = ApiToken.objects.get(user=user)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())

    content = page_client.get(PAGE).content.decode()

    row = re.search(rf'<tr data-token="{token.pk}">.*?</tr>', content, re.DOTALL)[0]
    assert "reader bot" in row and "read" in row
    assert "never" not in row and row.count("<time") == 2


def test_drf_tokens_made_in_the_shell_keep_working(user):
    assert token_client(user).get("/api/v1/artifacts/").status_code == 200
    assert token_client(user).post("/api/v1/experiments/", {"slug": "old-token"}, format="json").status_code == 201


def test_the_page_escapes_a_hostile_token_name(page_client):
    create(page_client, name="<script>alert(1)</script>")

    content = page_client.get(PAGE).content.decode()

    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_the_forms_need_the_csrf_token(user):
    token = ApiToken.objects.create(user=user, name="kept", scope="read", key_hash="0" * 64)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.post(PAGE, {"name": "forged", "scope": "submit"}).status_code == 403
    assert client.post(f"{PAGE}{token.pk}/revoke/").status_code == 403
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["kept"]
    form = client.get(PAGE).content.decode()
    assert form.count('name="csrfmiddlewaretoken"') >= 3  # log out, create, revoke


def test_one_revokes_only_ones_own_tokens(page_client):
    other = ApiToken.objects.create(user=UserFactory(username="other"), name="theirs", scope="read", key_hash="1" * 64)

    assert page_client.post(f"{PAGE}{other.pk}/revoke/").status_code == 404
    assert ApiToken.objects.filter(pk=other.pk).exists()
    assert "theirs" not in page_client.get(PAGE).content.decode()


def test_it_refuses_a_nameless_token_or_an_unknown_scope(page_client):
    assert "This field is required" in page_client.post(PAGE, {"name": " ", "scope": "read"}).content.decode()
    assert page_client.post(PAGE, {"name": "x", "scope": "admin"}).status_code == 200
    assert not ApiToken.objects.exists()


def test_the_navigation_links_to_the_page_and_strangers_are_sent_to_sign_in(page_client, db):
    assert f'href="{PAGE}"' in page_client.get("/").content.decode()
    response = Client().get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_members_of_the_admin_group_see_and_revoke_tokens_in_the_admin(user):
    admin = UserFactory(username="admin-in-group")
    admin.groups.add(Group.objects.get(name=ADMIN))
    token = ApiToken.objects.create(user=user, name="someone's", scope="submit", key_hash="2" * 64)
    client = Client()
    client.force_login(admin)

    assert "someone&#x27;s" in client.get("/admin/accounts/apitoken/").content.decode()
    response = client.post(f"/admin/accounts/apitoken/{token.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not ApiToken.objects.filter(pk=token.pk).exists()
