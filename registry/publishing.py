"""Pull-request link-through: which pull request an artifact belongs to, and what goes back to it.

Every artifact on a pull request gets a commit status `driftboard/<family>` on its commit, and every
family keeps one comment per pull request, created once and then edited in place. The posting runs on
the `publish` queue (registry.tasks.publish_artifact); it always posts the artifact's *current* state,
so a late, repeated or reordered message cannot move a status backwards.
"""

import html
import logging
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from urllib.parse import quote, urlsplit

import numpy as np
from django.conf import settings
from django.db import transaction

from evals.models import DriftVerdict, GoldenSample, MetricSnapshot, Threshold
from evals.scoring.drift import METRICS
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

    try:
        publish_artifact.apply_async(args=[artifact_id], retry=False)
    except Exception:  # a broker outage must not fail the request that caused the publish
        logger.exception("Could not queue publishing of artifact %s", artifact_id)


# --- What is posted -------------------------------------------------------------------------------


def artifact_page_url(artifact: Artifact) -> str:
    return f"{settings.DRIFTBOARD_PUBLIC_URL}{artifact.get_absolute_url()}"


def status_context(family: ModelFamily) -> str:
    return f"driftboard/{family.slug}"


def commit_state(artifact: Artifact) -> tuple[str, str]:
    """(state, description) in GitHub's vocabulary: pending, success, failure, error."""
    version = f"v{artifact.version}"
    if artifact.status == Artifact.Status.FAILED:
        return "error", f"{version}: scoring failed"
    flag = artifact.drift_flag
    if not flag:
        return "pending", f"{version} {artifact.get_status_display().lower()}: waiting for its verdict"
    summary = _worst_verdict_summary(artifact)
    if flag == Artifact.DriftFlag.GREEN:
        return "success", f"{version} green{summary}"
    if flag == Artifact.DriftFlag.RED:
        return "failure", f"{version} red{summary}"
    amber_fails = artifact.family.amber_check == ModelFamily.AmberCheck.FAILURE
    return ("failure" if amber_fails else "success"), f"⚠ {version} {flag}, held for review{summary}"


def _worst_verdict_summary(artifact: Artifact) -> str:
    verdicts = [v for v in artifact.verdicts.all() if v.delta is not None]
    if not verdicts:
        return ""
    worst = min(verdicts, key=lambda v: v.delta)
    return f": {worst.metric.replace('_', ' ')} {worst.delta * 100:+.2f} %"


def artifact_publish(*, artifact: Artifact) -> None:
    """Post the artifact's commit status and, once it has a verdict, its family's comment on the PR."""
    link = artifact.pull_request
    forge = forge_for(link)
    if forge is None:
        logger.info("No %s token configured: nothing posted for %s", link.provider, link)
        return
    state, description = commit_state(artifact)
    forge.status_set(
        link,
        sha=artifact.commit_sha,
        state=state,
        description=description,
        context=status_context(artifact.family),
        target_url=artifact_page_url(artifact),
    )
    if artifact.drift_flag and not _superseded(artifact):
        comment_publish(forge=forge, link=link, artifact=artifact)


def _superseded(artifact: Artifact) -> bool:
    """A newer artifact of the family on the same pull request has a verdict: the comment shows that one."""
    return (
        Artifact.objects.filter(
            pull_request_id=artifact.pull_request_id, family_id=artifact.family_id, version__gt=artifact.version
        )
        .exclude(drift_flag="")
        .exists()
    )


def comment_publish(*, forge: "Forge", link: PullRequestLink, artifact: Artifact) -> str:
    """Edit the family's comment on the pull request in place, or create it the first time."""
    marker = comment_marker(artifact.family)
    body = comment_render(artifact=artifact, marker=marker, page_url=artifact_page_url(artifact))
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
        for page in range(1, COMMENT_PAGES_MAX + 1):
            comments = self.call("GET", f"{self.comments_path(link)}?per_page={COMMENT_PAGE_SIZE}&page={page}").body
            found = next((c["id"] for c in comments if marker in (c.get("body") or "")), None)
            if found is not None:
                return str(found)
            if len(comments) < COMMENT_PAGE_SIZE:
                return None
        return None

    def comment_body(self, link: PullRequestLink, comment_id: str) -> str | None:
        try:
            return self.call("GET", self.comment_path(link, comment_id)).body.get("body") or ""
        except HttpError as exc:
            if exc.status == 404:  # deleted by someone: search again, or start a new one
                return None
            raise

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
    """REST v3: POST /repos/{o}/{r}/statuses/{sha}; issue comments, edited with PATCH."""

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
    """API v4: POST /projects/:id/statuses/:sha; merge-request notes, edited with PUT."""

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


def forge_for(link: PullRequestLink) -> Forge | None:
    """The configured client for the link's provider; None when its token is not set."""
    if link.provider == PullRequestLink.Provider.GITHUB and settings.DRIFTBOARD_GITHUB_TOKEN:
        return GitHubForge(settings.DRIFTBOARD_GITHUB_API_URL, settings.DRIFTBOARD_GITHUB_TOKEN)
    if link.provider == PullRequestLink.Provider.GITLAB and settings.DRIFTBOARD_GITLAB_TOKEN:
        return GitLabForge(settings.DRIFTBOARD_GITLAB_URL, settings.DRIFTBOARD_GITLAB_TOKEN)
    return None


# --- The comment ----------------------------------------------------------------------------------

FLAG_ICONS = {"green": "🟢", "amber": "🟠", "red": "🔴", "incomparable": "⚪"}
QUANTILES = (("p5", 0.05), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p95", 0.95))
TOP_REGRESSED = 5
SNIPPET_CHARS = 80
REASON_CHARS = 300
COMMENT_CHARS_MAX = 60_000  # GitHub refuses comment bodies over 65 536 characters
# Markdown punctuation as HTML entities, so dataset text cannot format, link (nor autolink, hence : and .)
# or break a table cell.
MARKDOWN_ENTITIES = {char: f"&#{ord(char)};" for char in "\\`*_[]()|~$:."}
ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True)
class MetricPair:
    """One verdict with the candidate's and the baseline's snapshots of the same metric and dataset."""

    verdict: DriftVerdict
    candidate: MetricSnapshot | None
    baseline: MetricSnapshot | None


def comment_marker(family: ModelFamily) -> str:
    return f"<!-- driftboard:{family.slug} -->"


def markdown_escape(text: str, limit: int = SNIPPET_CHARS) -> str:
    """Text from a dataset or a reason, inert in a Markdown table cell: no HTML, formatting, @mention or #ref."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    # A zero-width space after @ and # keeps GitHub from notifying users or linking issues.
    flat = flat.replace("@", "@" + ZERO_WIDTH_SPACE).replace("#", "#" + ZERO_WIDTH_SPACE)
    return "".join(MARKDOWN_ENTITIES.get(char, char) for char in html.escape(flat, quote=False))


def code_span(text: str) -> str:
    """Inline code: nothing inside is interpreted, once backticks and line breaks are out."""
    return "`" + " ".join(str(text).replace("`", "'").split()) + "`"


def comment_render(*, artifact: Artifact, marker: str, page_url: str) -> str:
    """The pull-request comment for one artifact: flag, metric table, distributions, regressed samples."""
    pairs = metric_pairs(artifact)
    parts = [
        marker,
        _comment_heading(artifact, pairs),
        _verdict_table(pairs),
        _sampling_notes(pairs),
        _distribution_table(artifact, pairs),
        *(_regressed_table(pair) for pair in pairs),
        f"[Open {markdown_escape(artifact.family.slug)} v{artifact.version} in Driftboard]({page_url})",
    ]
    body = "\n\n".join(part for part in parts if part)
    return body if len(body) <= COMMENT_CHARS_MAX else body[:COMMENT_CHARS_MAX] + "\n\n… (shortened)"


def metric_pairs(artifact: Artifact) -> list[MetricPair]:
    verdicts = artifact.verdicts.select_related("dataset", "baseline", "threshold").order_by("dataset__name", "metric")
    snapshots = {(s.dataset_id, s.metric): s for s in artifact.snapshots.all()}
    pairs = []
    for verdict in verdicts:
        baseline = None
        if verdict.baseline_id:
            baseline = MetricSnapshot.objects.filter(
                artifact_id=verdict.baseline_id, dataset_id=verdict.dataset_id, metric=verdict.metric
            ).first()
        pairs.append(MetricPair(verdict, snapshots.get((verdict.dataset_id, verdict.metric)), baseline))
    return pairs


def _comment_heading(artifact: Artifact, pairs: list[MetricPair]) -> str:
    flag = artifact.drift_flag or "pending"
    lines = [
        f"### {FLAG_ICONS.get(flag, '⏳')} Driftboard: {code_span(artifact.family.slug)} "
        f"v{artifact.version} is **{flag}**",
        f"Commit `{artifact.short_sha}` · {artifact.get_status_display().lower()}" + _baseline_note(pairs),
    ]
    reasons = [reason for pair in pairs for reason in pair.verdict.reasons or []]
    lines += [f"- {markdown_escape(reason, REASON_CHARS)}" for reason in reasons[:5]]
    return "\n".join(lines)


def _baseline_note(pairs: list[MetricPair]) -> str:
    baseline = next((pair.verdict.baseline for pair in pairs if pair.verdict.baseline), None)
    if baseline is None:
        return " · no production baseline to compare with yet"
    return f" · compared with v{baseline.version} (`{baseline.short_sha}`)"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.2f} %"


def _verdict_table(pairs: list[MetricPair]) -> str:
    if not pairs:
        return ""
    confidence = next((p.verdict.comparison.get("confidence") for p in pairs if p.verdict.comparison), None) or 0.95
    rows = [
        f"| Dataset | Metric | Candidate | Baseline | Δ | {confidence * 100:g} % CI of Δ | Threshold | Outcome |",
        "|---|---|--:|--:|--:|---|---|---|",
    ]
    for pair in pairs:
        v = pair.verdict
        interval = "—" if v.ci_low is None or v.ci_high is None else f"{_percent(v.ci_low)} … {_percent(v.ci_high)}"
        rows.append(
            f"| {markdown_escape(v.dataset.name)} | {v.metric.replace('_', ' ')} | {_number(v.candidate_value)} "
            f"| {_number(v.baseline_value)} | {_percent(v.delta)} | {interval} | {threshold_text(v)} "
            f"| {FLAG_ICONS.get(v.outcome, '')} {v.outcome} |"
        )
    return "\n".join(rows)


def threshold_text(verdict: DriftVerdict) -> str:
    """The threshold as it was when the verdict applied it (its history record), not as edited since."""
    applied = verdict.threshold
    if verdict.threshold_history_id:
        applied = Threshold.history.filter(history_id=verdict.threshold_history_id).first() or applied
    if applied is None:
        return "none"
    rule = {
        Threshold.Rule.RELATIVE: f"{applied.limit * 100:g} % worse",
        Threshold.Rule.BAND: f"±{applied.limit:g} σ band over {applied.band_window} baselines",
        Threshold.Rule.ABSOLUTE: f"absolute limit {applied.limit:g}",
    }.get(applied.rule, applied.rule)
    severity = "red" if applied.severity == Threshold.Severity.BLOCK else "amber"
    return f"{rule} → {severity}"


def _sampling_notes(pairs: list[MetricPair]) -> str:
    notes = {}
    for pair in pairs:
        v = pair.verdict
        if v.stopped_early and v.samples_total:
            notes[v.dataset.name] = (
                f"Decided on {v.fraction_used * 100:.0f} % of the golden set (n = {v.samples_used} of "
                f"{v.samples_total}) for {code_span(v.dataset.name)}: the verdict was clear before the end."
            )
    return "\n".join(notes.values())


def per_sample_values(snapshot: MetricSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """(dataset positions, per-sample values) with samples whose denominator is zero left out."""
    positions, numerators, denominators = snapshot.arrays()
    spec = METRICS.get(snapshot.metric)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = spec.value(numerators, denominators) if spec else numerators / denominators
    keep = np.isfinite(values)
    return positions[keep], np.asarray(values)[keep]


def _quantile_row(label: str, snapshot: MetricSnapshot | None) -> str:
    if snapshot is None:
        return f"| {label} | 0 |" + " — |" * len(QUANTILES)
    _, values = per_sample_values(snapshot)
    if not len(values):
        return f"| {label} | 0 |" + " — |" * len(QUANTILES)
    cells = " | ".join(f"{q:.4f}" for q in np.quantile(values, [fraction for _, fraction in QUANTILES]))
    return f"| {label} | {len(values)} | {cells} |"


def _distribution_table(artifact: Artifact, pairs: list[MetricPair]) -> str:
    if not pairs:
        return ""
    header = "| Per-sample values | n | " + " | ".join(name for name, _ in QUANTILES) + " |"
    rows = [header, "|---|--:|" + "--:|" * len(QUANTILES)]
    for pair in pairs:
        v = pair.verdict
        what = f"{markdown_escape(v.dataset.name)} · {v.metric.replace('_', ' ')}"
        rows.append(_quantile_row(f"{what} · candidate v{artifact.version}", pair.candidate))
        if v.baseline:
            rows.append(_quantile_row(f"{what} · baseline v{v.baseline.version}", pair.baseline))
    return "<details><summary>Per-sample distributions</summary>\n\n" + "\n".join(rows) + "\n\n</details>"


def regressed_samples(pair: MetricPair, limit: int = TOP_REGRESSED) -> list[tuple[int, float, float, float]]:
    """(position, candidate, baseline, relative delta) of the samples that got most worse, worst first."""
    if pair.candidate is None or pair.baseline is None or pair.verdict.metric not in METRICS:
        return []
    cand_pos, cand_values = per_sample_values(pair.candidate)
    base_pos, base_values = per_sample_values(pair.baseline)
    common, cand_idx, base_idx = np.intersect1d(cand_pos, base_pos, return_indices=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        deltas = METRICS[pair.verdict.metric].relative_delta(cand_values[cand_idx], base_values[base_idx])
    worst = [i for i in np.argsort(deltas) if np.isfinite(deltas[i]) and deltas[i] < 0][:limit]
    return [
        (int(common[i]), float(cand_values[cand_idx[i]]), float(base_values[base_idx[i]]), float(deltas[i]))
        for i in worst
    ]


def _regressed_table(pair: MetricPair) -> str:
    worst = regressed_samples(pair)
    if not worst:
        return ""
    v = pair.verdict
    samples = {
        s.position: s for s in GoldenSample.objects.filter(dataset_id=v.dataset_id, position__in=[p for p, *_ in worst])
    }
    rows = [
        f"**Samples that regressed most** · {markdown_escape(v.dataset.name)} · {v.metric.replace('_', ' ')}",
        "",
        "| Sample | Category | Candidate | Baseline | Δ | Text |",
        "|---|---|--:|--:|--:|---|",
    ]
    for position, candidate, baseline, delta in worst:
        sample = samples.get(position)
        sample_id, category, text = (sample.sample_id, sample.category, sample.text) if sample else (position, "", "")
        rows.append(
            f"| {markdown_escape(sample_id, 40)} | {markdown_escape(category, 30)} | {candidate:.4f} "
            f"| {baseline:.4f} | {_percent(delta)} | {markdown_escape(text)} |"
        )
    return "\n".join(rows)
