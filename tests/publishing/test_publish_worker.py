"""The publish queue on a real Celery worker: a rate-limited call is retried when the provider says."""

import pytest

from registry.publishing import publish_enqueue
from tests.conftest import wait_for
from tests.factories import ArtifactFactory, PullRequestFactory
from tests.publishing.forge import GITHUB_TOKEN

RETRY_AFTER_SECONDS = 2


@pytest.mark.worker
def test_it_waits_for_retry_after_before_trying_again(forge, celery_worker_factory):
    celery_worker_factory(DRIFTBOARD_GITHUB_API_URL=forge.url, DRIFTBOARD_GITHUB_TOKEN=GITHUB_TOKEN)
    artifact = ArtifactFactory(pull_request=PullRequestFactory())
    forge.answer_next(
        429, {"message": "You have exceeded a secondary rate limit."}, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    )

    publish_enqueue(artifact.pk)

    wait_for(lambda: forge.github_statuses, timeout=60, message="the retried status")
    limited, posted = forge.calls_to("POST", r"/statuses/")
    assert (limited.status, posted.status) == (429, 201)
    assert posted.at - limited.at >= RETRY_AFTER_SECONDS
