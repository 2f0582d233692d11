"""Which forge addresses are trusted: http(s) URLs on the hosts of the configured GitHub and GitLab.

GitHub's web host is its API host without `api.` (`api.github.com` → `github.com`; an Enterprise API
under `https://ghe.example.com/api/v3` serves the web from the same host). Ports are ignored.
"""

from urllib.parse import urlsplit

from django.conf import settings

from registry.models import PullRequestLink

HTTP_SCHEMES = ("http", "https")


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # an unbalanced IPv6 bracket, a bad port
        return ""


def forge_hosts() -> dict[str, set[str]]:
    github = _host(settings.DRIFTBOARD_GITHUB_API_URL)
    return {
        PullRequestLink.Provider.GITHUB: {github, github.removeprefix("api.")} - {""},
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
