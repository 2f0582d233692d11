"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server; the session's one
browser is the `browser` fixture in tests/conftest.py."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client

from tests.dashboard.board import Board, build_board
from tests.factories import ArtifactFactory, PullRequestFactory, UserFactory

# Playwright's sync API runs an event loop in this thread; the ORM calls made by fixtures are still sequential.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
PASSWORD = "correct horse battery staple"
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def reviewer(transactional_db):
    return UserFactory(username="reviewer", is_staff=True)


@pytest.fixture
def reader(transactional_db):
    return UserFactory(username="reader")


@pytest.fixture
def live_board(transactional_db, reviewer) -> Board:
    # Versions and PR numbers as a fresh board would have them, whatever ran before (screenshots).
    ArtifactFactory.reset_sequence()
    PullRequestFactory.reset_sequence()
    return build_board(candidates=6, samples=200, user=reviewer)


class ConsoleErrors(list):
    """Console errors and uncaught exceptions of one page, collected as they happen."""

    def watch(self, page) -> None:
        page.on("console", lambda message: message.type == "error" and self.append(message.text))
        page.on("pageerror", lambda error: self.append(str(error)))


@pytest.fixture
def open_page(browser, live_server) -> Iterator:
    """open_page(user) -> (page, console errors): a fresh context logged in through a session cookie."""
    contexts = []

    def open_as(user):
        client = Client()
        client.force_login(user)
        context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
        contexts.append(context)
        page = context.new_page()
        errors = ConsoleErrors()
        errors.watch(page)
        return page, errors

    yield open_as
    for context in contexts:
        context.close()
