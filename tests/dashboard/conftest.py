import pytest
from django.test import Client

from tests.dashboard.board import Board, build_board


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
