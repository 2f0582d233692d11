import pytest

from tests.publishing.forge import run_tasks_eagerly, running_forge


@pytest.fixture
def forge(settings):
    with running_forge(settings) as forge:
        yield forge


@pytest.fixture
def eager(settings):
    run_tasks_eagerly(settings)
