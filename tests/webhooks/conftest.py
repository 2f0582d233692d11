import pytest

from tests.webhooks.deliveries import GITHUB_SECRET, GITLAB_SECRET


@pytest.fixture(autouse=True)
def webhook_secrets(settings):
    settings.DRIFTBOARD_GITHUB_WEBHOOK_SECRET = GITHUB_SECRET
    settings.DRIFTBOARD_GITLAB_WEBHOOK_SECRET = GITLAB_SECRET
    # The recorded deliveries come from github.com and this self-hosted GitLab (their PR URLs are kept).
    settings.DRIFTBOARD_GITLAB_URL = "https://gitlab.acme.example"
