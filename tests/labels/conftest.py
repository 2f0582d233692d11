"""Labels are about judged answers: the local judge server and a pairwise-judged drifted candidate."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from driftboard.roles import REVIEWER
from tests.factories import UserFactory
from tests.judges.conftest import judge_server  # noqa: F401  (fixture)
from tests.judges.test_judge_preference_verdicts import candidate, drifted_answers, judged, pairwise  # noqa: F401


def reviewer_named(name: str):
    user = UserFactory(username=name)
    # get_or_create: a transactional test before this one flushed the groups the migration made.
    user.groups.add(Group.objects.get_or_create(name=REVIEWER)[0])
    return user


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def judged_candidate(pairwise):  # noqa: F811
    """A candidate that answers the first 6 prompts as the baseline does and the rest otherwise, judged
    pairwise: the judge calls the first 6 a tie and prefers the baseline on the other 24."""
    family, dataset, baseline = pairwise
    artifact = candidate(family, dataset, drifted_answers(right=6))
    judged(artifact, dataset)
    return family, dataset, baseline, artifact
