import pytest
from django.test import Client

from tests.dashboard.board import Board, build_board


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Every test creates users; the production hasher is deliberately slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def board(db, staff_user) -> Board:
    return build_board(user=staff_user)


@pytest.fixture
def reader_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_page_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client
