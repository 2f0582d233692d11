"""Traffic logs are uploaded by reviewers (a window can raise a red alert on the production model)."""

import pytest
from rest_framework.test import APIClient

from driftboard.roles import REVIEWER
from tests.hardening.conftest import api_client_as


@pytest.fixture
def reviewer_client(db) -> APIClient:
    return api_client_as(REVIEWER)
