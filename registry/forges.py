"""Which forge addresses are trusted: http(s) URLs on the hosts of the configured GitHub and GitLab.

GitHub's web host is DRIFTBOARD_GITHUB_URL's, and its API host without `api.` (`api.github.com` →
`github.com`; an Enterprise API under `https://ghe.example.com/api/v3` serves the web from the same
host). Ports are ignored.
"""

from urllib.parse import urlsplit

from django.conf import settings

from registry import selectors
from registry.models import ModelFamily, PullRequestLink
from registry.publishing import pull_request_info_from_url

HTTP_SCHEMES = ("http", "https")


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # an unbalanced IPv6 bracket, a bad port
        return ""


def forge_hosts() -> dict[str, set[str]]:
    github = _host(settings.DRIFTBOARD_GITHUB_API_URL)
    return {
        PullRequestLink.Provider.GITHUB: {github, github.removeprefix("api."), _host(settings.DRIFTBOARD_GITHUB_URL)}
        - {""},
        PullRequestLink.Provider.GITLAB: {_host(settings.DRIFTBOARD_GITLAB_URL)} - {""},
    }


def is_http_url(url: str) -> bool:
    try:
        return urlsplit(url or "").scheme.lower() in HTTP_SCHEMES and bool(urlsplit(url).hostname)
    except ValueError:
        return False


def forge_of_url(url: str) -> str | None:
    """The provider whose configured host serves this http(s) URL, or None."""
    if not is_http_url(url):
        return None
    host = _host(url)
    return next((provider for provider, hosts in forge_hosts().items() if host in hosts), None)


def pr_url_refusal(*, family: ModelFamily, url: str) -> str | None:
    """Why a registration's `pr_url` is not trusted, or None when it is (or is empty).

    It must be a pull (merge) request on a configured forge's host; once webhooks have linked the
    family's artifacts to a repository, it must be in that repository too. Statuses and comments are
    posted wherever it points, so a reader may not point them at another project.
    """
    if not url:
        return None
    info = pull_request_info_from_url(url)
    provider = forge_of_url(url)
    if info is None or provider is None or info.provider != provider:
        hosts = ", ".join(sorted(host for group in forge_hosts().values() for host in group))
        return f"pr_url must be a pull or merge request on a configured forge ({hosts})."
    repositories = selectors.family_webhook_repositories(family)
    if repositories and (info.provider, info.repository) not in repositories:
        expected = ", ".join(sorted(repository for _, repository in repositories))
        return f"pr_url must point at the family's repository ({expected}), which its webhooks linked."
    return None
