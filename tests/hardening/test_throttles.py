"""Throttles: failed sign-ins per address and user name on both login pages, and token-authenticated
API writes per user; reads, sessions and other users are not held back."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from driftboard.throttles import TokenWriteThrottle
from tests.conftest import token_client
from tests.factories import ExperimentFactory, UserFactory

PASSWORD = "correct horse battery staple"
LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture
def login_limits(settings):
    settings.DRIFTBOARD_LOGIN_MAX_FAILURES = 5
    settings.DRIFTBOARD_LOGIN_WINDOW_SECONDS = 600


@pytest.fixture
def admin_user(db):
    user = UserFactory(username="ops", is_staff=True, is_superuser=True)
    user.set_password(PASSWORD)
    user.save()
    return user


def sign_in(client: Client, page: str, password: str, username: str = "ops", address: str = "10.0.0.7"):
    return client.post(page, {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_it_refuses_even_the_right_password_after_too_many_failures(admin_user, login_limits, page):
    client = Client()
    for _ in range(5):
        assert sign_in(client, page, "wrong").status_code == 200
    for password in ["wrong"] * 25 + [PASSWORD]:
        refused = sign_in(client, page, password)
        assert refused.status_code == 429
    assert refused["Retry-After"] == "600"
    assert "Too many failed sign-ins" in refused.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_other_addresses_and_other_users_are_not_held_back(admin_user, login_limits, page):
    for _ in range(6):
        sign_in(Client(), page, "wrong")
    assert sign_in(Client(), page, PASSWORD, address="10.0.0.8").status_code == 302
    assert sign_in(Client(), page, "wrong", username="someone-else").status_code == 200


def test_a_successful_sign_in_clears_the_failures(admin_user, login_limits):
    client = Client()
    for _ in range(4):
        sign_in(client, "/accounts/login/", "wrong")
    assert sign_in(client, "/accounts/login/", PASSWORD).status_code == 302
    for _ in range(4):
        assert sign_in(Client(), "/accounts/login/", "wrong").status_code == 200


@pytest.fixture
def write_rate(monkeypatch):
    monkeypatch.setattr(TokenWriteThrottle, "THROTTLE_RATES", {"token_write": "3/min"})


def post_run(client, experiment, commit: str):
    body = {"commit": commit, "status": "keep", "objective_value": 0.9}
    return client.post(f"/api/v1/experiments/{experiment.slug}/runs/", body, format="json")


def test_it_throttles_token_authenticated_writes_past_the_rate(db, write_rate):
    experiment = ExperimentFactory(slug="loop")
    client = token_client(UserFactory(username="ci"))
    assert [post_run(client, experiment, f"abc{i}00").status_code for i in range(3)] == [201, 201, 201]

    refused = post_run(client, experiment, "abc9000")

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert client.get(f"/api/v1/experiments/{experiment.slug}/runs/").status_code == 200
    other = token_client(UserFactory(username="other-ci"))
    assert post_run(other, experiment, "abc8000").status_code == 201


def test_session_writes_are_not_token_throttled(db, write_rate):
    experiment = ExperimentFactory(slug="loop")
    client = APIClient()
    client.force_login(UserFactory(username="browser"))
    assert [post_run(client, experiment, f"def{i}00").status_code for i in range(5)] == [201] * 5
