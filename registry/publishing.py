"""Pull-request link-through: which pull request an artifact belongs to, and what goes back to it.

Every artifact on a pull request gets a commit status `driftboard/<family>` on its commit, and every
family keeps one comment per pull request, created once and then edited in place. The posting runs on
the `publish` queue (registry.tasks.publish_artifact); it always posts the artifact's *current* state,
so a late, repeated or reordered message cannot move a status backwards.
"""

import logging
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.db import transaction

from driftboard import links
from driftboard.queues import enqueue
from registry.extensions import Report, extension
from registry.http import HttpError, HttpResponse, header, request_json
from registry.models import Artifact, ModelFamily, PullRequestLink

logger = logging.getLogger(__name__)

STATUS_DESCRIPTION_LIMIT = 140  # GitHub refuses longer commit status descriptions
COMMENT_PAGE_SIZE = 100
COMMENT_PAGES_MAX = 30
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 600.0
WAIT_CAP_SECONDS = 3600.0  # a primary rate-limit window never lasts longer than an hour
SECONDARY_LIMIT_MIN_SECONDS = 60.0  # GitHub: without Retry-After, wait at least a minute
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

GITHUB_PR_PATH = re.compile(r"^/(?P<repository>[^/]+/[^/]+)/pull/(?P<number>\d+)(?:/.*)?$")
GITLAB_MR_PATH = re.compile(r"^/(?P<repository>.+?)/-/merge_requests/(?P<number>\d+)(?:/.*)?$")


@dataclass(frozen=True)
class PullRequestInfo:
    """A pull (merge) request as a webhook or a URL describes it. Empty fields are unknown."""

    provider: str
    repository: str
    number: int
    url: str = ""
    project_id: str = ""
    title: str = ""
    head_sha: str = ""
    base_ref: str = ""
    state: str = ""
    merged: bool = False


def pull_request_info_from_url(url: str) -> PullRequestInfo | None:
    """`https://github.com/o/r/pull/7` or `https://gitlab.example/g/p/-/merge_requests/7`; None otherwise."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https"):
        return None
    for provider, pattern in (
        (PullRequestLink.Provider.GITLAB, GITLAB_MR_PATH),
        (PullRequestLink.Provider.GITHUB, GITHUB_PR_PATH),
    ):
        match = pattern.match(parts.path)
        if match:
            return PullRequestInfo(provider, match["repository"], int(match["number"]), url=url)
    return None


def pull_request_record(*, info: PullRequestInfo) -> tuple[PullRequestLink, list[int]]:
    """Create or refresh the link from a webhook, then attach the artifacts built from its head."""
    link, _ = PullRequestLink.objects.update_or_create(
        provider=info.provider,
        repository=info.repository,
        number=info.number,
        defaults={
            "url": info.url,
            "project_id": info.project_id,
            "title": info.title[:500],
            "head_sha": info.head_sha.lower(),
            "base_ref": info.base_ref[:200],
            "state": info.state[:20],
            "merged": info.merged,
        },
    )
    return link, pull_request_link_artifacts(link=link)


def pull_request_push(*, provider: str, repository: str, branch: str, before: str, after: str) -> list[int]:
    """`branch` moved from `before` to `after`: open pull requests whose head was `before` follow it.

    Pull requests *into* that branch stay where they are. Returns the ids of the artifacts this linked.
    """
    heads = PullRequestLink.objects.filter(provider=provider, repository=repository)
    moved = heads.filter(head_sha=before.lower()).exclude(state="closed").exclude(base_ref=branch)
    moved.update(head_sha=after.lower())
    linked: list[int] = []
    for link in heads.filter(head_sha=after.lower()):
        linked += pull_request_link_artifacts(link=link)
    return linked


def pull_request_link_artifacts(*, link: PullRequestLink) -> list[int]:
    """Attach the unlinked artifacts whose commit is the head; publish their state once committed."""
    if not link.head_sha:
        return []
    artifact_ids = list(
        Artifact.objects.filter(commit_sha=link.head_sha, pull_request=None).values_list("pk", flat=True)
    )
    Artifact.objects.filter(pk__in=artifact_ids, pull_request=None).update(pull_request=link)
    for artifact_id in artifact_ids:
        transaction.on_commit(partial(publish_enqueue, artifact_id), robust=True)
    return artifact_ids


def _link_from_url(artifact: Artifact) -> PullRequestLink | None:
    info = pull_request_info_from_url(artifact.pr_url)
    if info is None:
        return None
    link, _ = PullRequestLink.objects.get_or_create(
        provider=info.provider,
        repository=info.repository,
        number=info.number,
        defaults={"url": info.url, "head_sha": artifact.commit_sha},
    )
    return link


def _attach_pull_request(artifact: Artifact) -> bool:
    """Link an artifact registered without a pull request: its pr_url first, else a PR whose head is its commit.

    Runs after the registration committed, so a webhook that committed meanwhile is seen here.
    """
    link = _link_from_url(artifact) or PullRequestLink.objects.filter(head_sha=artifact.commit_sha).first()
    if link is None:
        return False
    Artifact.objects.filter(pk=artifact.pk, pull_request=None).update(pull_request=link)
    return True


def registration_publish_enqueue(*, artifact_id: int) -> None:
    """After a registration commits: find the artifact's pull request and queue its `pending` status."""
    artifact = Artifact.objects.filter(pk=artifact_id).first()
    if artifact is None:
        return
    if artifact.pull_request_id is None and not _attach_pull_request(artifact):
        return
    publish_enqueue(artifact_id)


def verdict_publish_enqueue(*, artifact_id: int) -> None:
    """After a verdict commits: queue the status and comment; nothing when the artifact has no pull request."""
    if Artifact.objects.filter(pk=artifact_id, pull_request__isnull=False).exists():
        publish_enqueue(artifact_id)


def publish_enqueue(artifact_id: int) -> None:
    from registry.tasks import publish_artifact

    enqueue(publish_artifact, artifact_id, what="publishing to the pull request")


# --- What is posted -------------------------------------------------------------------------------


def artifact_page_url(artifact: Artifact) -> str:
    return links.absolute_url(artifact.get_absolute_url())


def status_context(family: ModelFamily) -> str:
    return f"driftboard/{family.slug}"


def comment_marker(family: ModelFamily) -> str:
    return f"<!-- driftboard:{family.slug} -->"


def artifact_report(artifact: Artifact) -> Report:
    """What the pull request is told of the artifact now: its commit status and, once judged, the family's
    comment. The artifact page previews exactly this."""
    return extension().report(artifact, comment_marker(artifact.family), artifact_page_url(artifact))


def artifact_publish(*, artifact: Artifact) -> None:
    """Post the artifact's commit status and, once it has a verdict, its family's comment on the PR."""
    link = artifact.pull_request
    forge = forge_for(link)
    if forge is None:
        logger.info("No %s token configured: nothing posted for %s", link.provider, link)
        return
    marker = comment_marker(artifact.family)
    report = artifact_report(artifact)
    forge.status_set(
        link,
        sha=artifact.commit_sha,
        state=report.state,
        description=report.description,
        context=status_context(artifact.family),
        target_url=artifact_page_url(artifact),
    )
    if report.comment is not None and not comment_superseded(artifact):
        comment_publish(forge=forge, link=link, marker=marker, body=report.comment)


def comment_superseded(artifact: Artifact) -> bool:
    """A newer artifact of the family on the same pull request has a verdict: the comment shows that one."""
    return (
        Artifact.objects.filter(
            pull_request_id=artifact.pull_request_id, family_id=artifact.family_id, version__gt=artifact.version
        )
        .exclude(drift_flag="")
        .exists()
    )


def comment_publish(*, forge: "Forge", link: PullRequestLink, marker: str, body: str) -> str:
    """Edit the family's comment (found by its marker) on the pull request in place, or create it."""
    comment_id = _our_comment(forge, link, marker)
    if comment_id:
        forge.comment_update(link, comment_id, body)
    else:
        comment_id = forge.comment_create(link, body)
    if link.comment_id != comment_id:
        PullRequestLink.objects.filter(pk=link.pk).update(comment_id=comment_id)
        link.comment_id = comment_id
    return comment_id


def _our_comment(forge: "Forge", link: PullRequestLink, marker: str) -> str | None:
    """The stored comment when it carries this family's marker (it may be another family's), else a search."""
    if link.comment_id:
        body = forge.comment_body(link, link.comment_id)
        if body is not None and marker in body:
            return link.comment_id
    return forge.comment_find(link, marker)


# --- Retrying -------------------------------------------------------------------------------------


class RateLimited(OSError):
    """The provider said to stop until a given time; raised before sending, not after."""

    def __init__(self, wait_seconds: float):
        super().__init__(f"rate limited for {wait_seconds:.0f} s")
        self.wait_seconds = wait_seconds


def requested_wait(headers: dict[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: Retry-After, or an exhausted rate-limit window's reset."""
    now = time.time() if now is None else now
    retry_after = header(headers, "Retry-After")
    if retry_after:
        return _retry_after_seconds(retry_after.strip(), now)
    for prefix in ("X-RateLimit", "RateLimit"):  # GitHub, GitLab
        remaining, reset = header(headers, f"{prefix}-Remaining"), header(headers, f"{prefix}-Reset")
        if remaining is not None and remaining.strip() == "0" and reset and reset.strip().isdigit():
            return max(0.0, int(reset) - now) + 1.0
    return None


def _retry_after_seconds(value: str, now: float) -> float | None:
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def retry_delay(error: OSError, attempt: int) -> float | None:
    """How long to wait before publishing again after `error`; None when retrying cannot help."""
    if isinstance(error, RateLimited):
        return min(error.wait_seconds, WAIT_CAP_SECONDS)
    backoff = min(BACKOFF_BASE_SECONDS * 2**attempt, BACKOFF_CAP_SECONDS)
    if not isinstance(error, HttpError):
        return backoff  # refused connection, timeout, DNS: the network, not us
    asked = requested_wait(error.headers)
    if asked is not None and error.status in (403, *TRANSIENT_STATUSES):
        return min(asked, WAIT_CAP_SECONDS)
    if error.status in (403, 429) and "rate limit" in error.body.lower():
        return max(backoff, SECONDARY_LIMIT_MIN_SECONDS)
    return backoff if error.status in TRANSIENT_STATUSES else None


# --- Providers ------------------------------------------------------------------------------------


class Forge(ABC):
    """One provider's API: commit statuses and one comment per family. Tokens only travel in headers."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._resume_at = 0.0
        self._account: dict | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the token."""

    def call(self, method: str, path: str, body: object | None = None) -> HttpResponse:
        """One request; stops early when the last answer said the rate-limit window is used up."""
        wait = self._resume_at - time.time()
        if wait > 0:
            raise RateLimited(wait)
        response = request_json(method, self.base_url + path, body, self.auth_headers())
        self._resume_at = time.time() + (requested_wait(response.headers) or 0.0)
        return response

    def comment_find(self, link: PullRequestLink, marker: str) -> str | None:
        """Our comment carrying the marker; anyone may paste the marker, so the author must be us too."""
        for page in range(1, COMMENT_PAGES_MAX + 1):
            comments = self.call("GET", f"{self.comments_path(link)}?per_page={COMMENT_PAGE_SIZE}&page={page}").body
            found = next((c["id"] for c in comments if marker in (c.get("body") or "") and self.written_by_us(c)), None)
            if found is not None:
                return str(found)
            if len(comments) < COMMENT_PAGE_SIZE:
                return None
        return None

    def comment_body(self, link: PullRequestLink, comment_id: str) -> str | None:
        """The body of our comment; None when it was deleted or is not ours."""
        try:
            comment = self.call("GET", self.comment_path(link, comment_id)).body
        except HttpError as exc:
            if exc.status == 404:  # deleted by someone: search again, or start a new one
                return None
            raise
        return (comment.get("body") or "") if self.written_by_us(comment) else None

    def account(self) -> dict:
        """The account our token acts as (asked once per client)."""
        if self._account is None:
            self._account = self.call("GET", self.account_path).body
        return self._account

    @abstractmethod
    def written_by_us(self, comment: dict) -> bool:
        """Whether the comment's author is the bot's own account."""

    def comment_create(self, link: PullRequestLink, body: str) -> str:
        return str(self.call("POST", self.comments_path(link), {"body": body}).body["id"])

    @abstractmethod
    def comments_path(self, link: PullRequestLink) -> str:
        """Where the pull request's comments are listed and created."""

    @abstractmethod
    def comment_path(self, link: PullRequestLink, comment_id: str) -> str:
        """Where one comment is read and edited."""

    @abstractmethod
    def comment_update(self, link: PullRequestLink, comment_id: str, body: str) -> None:
        """Replace the comment's body."""

    @abstractmethod
    def status_set(
        self, link: PullRequestLink, *, sha: str, state: str, description: str, context: str, target_url: str
    ) -> None:
        """Set the commit status `context` on `sha`; `state` is pending, success, failure or error."""


class GitHubForge(Forge):
    """REST v3: POST /repos/{o}/{r}/statuses/{sha}; issue comments, edited with PATCH.

    The bot's login is DRIFTBOARD_GITHUB_BOT_LOGIN (needed for a GitHub App, whose token cannot read
    /user; its comments are by `<app>[bot]`), else the login of the token's own account (GET /user).
    """

    account_path = "/user"

    def written_by_us(self, comment: dict) -> bool:
        login = settings.DRIFTBOARD_GITHUB_BOT_LOGIN or self.account().get("login") or ""
        author = (comment.get("user") or {}).get("login") or ""
        return bool(login) and author.lower() == login.lower()

    def auth_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def repo_path(self, link: PullRequestLink) -> str:
        return "/repos/" + "/".join(quote(part, safe="") for part in link.repository.split("/"))

    def comments_path(self, link: PullRequestLink) -> str:
        return f"{self.repo_path(link)}/issues/{link.number}/comments"

    def comment_path(self, link: PullRequestLink, comment_id: str) -> str:
        return f"{self.repo_path(link)}/issues/comments/{quote(comment_id, safe='')}"

    def comment_update(self, link: PullRequestLink, comment_id: str, body: str) -> None:
        self.call("PATCH", self.comment_path(link, comment_id), {"body": body})

    def status_set(self, link, *, sha, state, description, context, target_url) -> None:
        self.call(
            "POST",
            f"{self.repo_path(link)}/statuses/{sha}",
            {
                "state": state,
                "target_url": target_url,
                "context": context,
                "description": description[:STATUS_DESCRIPTION_LIMIT],
            },
        )


GITLAB_STATES = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}


class GitLabForge(Forge):
    """API v4: POST /projects/:id/statuses/:sha; merge-request notes, edited with PUT.

    The bot is DRIFTBOARD_GITLAB_BOT_USERNAME when set, else the token's own account (GET /user, by id).
    """

    account_path = "/api/v4/user"

    def written_by_us(self, comment: dict) -> bool:
        author = comment.get("author") or {}
        if settings.DRIFTBOARD_GITLAB_BOT_USERNAME:
            return author.get("username") == settings.DRIFTBOARD_GITLAB_BOT_USERNAME
        return author.get("id") is not None and author.get("id") == self.account().get("id")

    def auth_headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self._token}

    def project_path(self, link: PullRequestLink) -> str:
        return f"/api/v4/projects/{link.project_id or quote(link.repository, safe='')}"

    def comments_path(self, link: PullRequestLink) -> str:
        return f"{self.project_path(link)}/merge_requests/{link.number}/notes"

    def comment_path(self, link: PullRequestLink, comment_id: str) -> str:
        return f"{self.comments_path(link)}/{quote(comment_id, safe='')}"

    def comment_update(self, link: PullRequestLink, comment_id: str, body: str) -> None:
        self.call("PUT", self.comment_path(link, comment_id), {"body": body})

    def status_set(self, link, *, sha, state, description, context, target_url) -> None:
        try:
            self.call(
                "POST",
                f"{self.project_path(link)}/statuses/{sha}",
                {
                    "state": GITLAB_STATES[state],
                    "name": context,
                    "target_url": target_url,
                    "description": description[:STATUS_DESCRIPTION_LIMIT],
                },
            )
        except HttpError as exc:
            # GitLab answers 400 when the status already has that state (pending → pending).
            if exc.status != 400 or "cannot transition status" not in exc.body.lower():
                raise


def forge_configured(provider: str = "") -> bool:
    """Whether anything is posted to `provider` (to any forge when none is named): its token is set."""
    tokens = {
        PullRequestLink.Provider.GITHUB: settings.DRIFTBOARD_GITHUB_TOKEN,
        PullRequestLink.Provider.GITLAB: settings.DRIFTBOARD_GITLAB_TOKEN,
    }
    return any(token for name, token in tokens.items() if provider in ("", name))


def forge_for(link: PullRequestLink) -> Forge | None:
    """The configured client for the link's provider; None when its token is not set."""
    if not forge_configured(link.provider):
        return None
    if link.provider == PullRequestLink.Provider.GITHUB:
        return GitHubForge(settings.DRIFTBOARD_GITHUB_API_URL, settings.DRIFTBOARD_GITHUB_TOKEN)
    return GitLabForge(settings.DRIFTBOARD_GITLAB_URL, settings.DRIFTBOARD_GITLAB_TOKEN)


# --- The comment ----------------------------------------------------------------------------------
