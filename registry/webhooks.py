"""Inbound webhooks from GitHub and GitLab — pull requests, pushes and the conclusions of the commits' own
CI (check suites, workflow runs, pipelines): authenticated, size-capped, handled once.

A delivery is recorded (WebhookDelivery) in the same transaction as its effect, so a replayed or
concurrently repeated delivery finds its id taken and changes nothing, while a delivery whose handling
failed leaves no record and is handled when the provider redelivers it.
"""

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from urllib.parse import parse_qs

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from driftboard.parsers import json_depth, too_deep_message
from registry.forges import forge_of_url
from registry.models import CommitCheck, PullRequestLink, WebhookDelivery
from registry.publishing import PullRequestInfo, pull_request_push, pull_request_record
from registry.services import CommitCheckReport, commit_check_record

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
GITHUB = PullRequestLink.Provider.GITHUB
GITLAB = PullRequestLink.Provider.GITLAB
GITHUB_PULL_REQUEST_ACTIONS = frozenset({"opened", "synchronize", "reopened", "edited", "closed"})
GITHUB_CHECK_EVENTS = ("check_suite", "workflow_run")
GITHUB_EVENTS = ("pull_request", "push", *GITHUB_CHECK_EVENTS)
GITLAB_MERGE_REQUEST_EVENT = "Merge Request Hook"
GITLAB_PIPELINE_EVENT = "Pipeline Hook"
GITLAB_EVENTS = (GITLAB_MERGE_REQUEST_EVENT, GITLAB_PIPELINE_EVENT)
GITLAB_FINISHED = frozenset({"success", "failed", "canceled", "skipped"})
PASSED, FAILED, OTHER = CommitCheck.Conclusion.PASSED, CommitCheck.Conclusion.FAILED, CommitCheck.Conclusion.OTHER
# Only success passes: cancelled, skipped, neutral, stale or action_required is no yes from CI.
GITHUB_CONCLUSIONS = {"success": PASSED, "failure": FAILED, "timed_out": FAILED, "startup_failure": FAILED}
GITLAB_CONCLUSIONS = {"success": PASSED, "failed": FAILED}
CHECK_NAME_LENGTH = 200
GITLAB_STATES = {"opened": "open", "merged": "closed"}
DELETED_REF_SHA = "0" * 40
MAX_PR_NUMBER = 2**31 - 1  # the largest number the database column holds
SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")

Effect = Callable[[], dict]


class Rejected(Exception):
    """The request is refused with this HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _read_body(request: HttpRequest) -> bytes:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise Rejected(400, "Invalid Content-Length.") from None
    if declared > MAX_BODY_BYTES:
        raise Rejected(413, f"Payloads are limited to {MAX_BODY_BYTES} bytes.")
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise Rejected(413, f"Payloads are limited to {MAX_BODY_BYTES} bytes.")
    return body


def _check_github_signature(request: HttpRequest, body: bytes) -> None:
    secret = settings.DRIFTBOARD_GITHUB_WEBHOOK_SECRET
    if not secret:
        logger.warning("GitHub webhook refused: DRIFTBOARD_GITHUB_WEBHOOK_SECRET is not set")
        raise Rejected(401, "This server has no GitHub webhook secret configured.")
    received = request.headers.get("X-Hub-Signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not received or not hmac.compare_digest(expected.encode(), received.encode()):
        raise Rejected(401, "Missing or invalid X-Hub-Signature-256.")


def _check_gitlab_token(request: HttpRequest) -> None:
    secret = settings.DRIFTBOARD_GITLAB_WEBHOOK_SECRET
    if not secret:
        logger.warning("GitLab webhook refused: DRIFTBOARD_GITLAB_WEBHOOK_SECRET is not set")
        raise Rejected(401, "This server has no GitLab webhook secret configured.")
    received = request.headers.get("X-Gitlab-Token", "")
    if not received or not hmac.compare_digest(secret.encode(), received.encode()):
        raise Rejected(401, "Missing or invalid X-Gitlab-Token.")


def _payload(body: bytes, content_type: str) -> dict:
    """JSON, or GitHub's form encoding (`payload=<json>`)."""
    try:
        if content_type == "application/x-www-form-urlencoded":
            body = parse_qs(body.decode(), strict_parsing=True)["payload"][0].encode()
        payload = json.loads(body)
    except (ValueError, KeyError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise Rejected(400, f"The body is not valid JSON: {exc}") from None
    if json_depth(payload) > settings.DRIFTBOARD_MAX_JSON_DEPTH:
        raise Rejected(400, too_deep_message())
    if not isinstance(payload, dict):
        raise Rejected(400, "The body must be a JSON object.")
    return payload


def _field(payload: dict, *path: str):
    value = payload
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise Rejected(400, f"The payload has no {'.'.join(path)}.")
        value = value[key]
    return value


def _number(value: object) -> int:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_PR_NUMBER):
        raise Rejected(400, f"{ascii(value)[:50]} is not a pull request number.")
    return int(text)


def _text(value: object, name: str, max_length: int | None) -> str:
    """A string (or number) field as stored: no NUL byte, valid UTF-8, at most `max_length` characters."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Rejected(400, f"The payload's {name} is not text.")
    text = str(value)
    if "\x00" in text or not _is_utf8(text):
        raise Rejected(400, f"The payload's {name} contains a NUL byte or invalid UTF-8.")
    if max_length is not None and len(text) > max_length:
        raise Rejected(400, f"The payload's {name} is longer than {max_length} characters.")
    return text


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        return False
    return True


def _sha(value: object, name: str) -> str:
    text = _text(value, name, 64)
    if not SHA.match(text):
        raise Rejected(400, f"The payload's {name} is not a commit sha.")
    return text


def _forge_url(value: object, provider: str) -> str:
    """The pull request's address, kept only when it is http(s) on the configured forge's host."""
    url = _text(value, "url", None)
    if len(url) > 500 or forge_of_url(url) != provider:
        logger.warning("Webhook PR URL dropped: not an http(s) address on the configured %s host", provider)
        return ""
    return url


def _object(payload: dict, *path: str) -> dict:
    value = _field(payload, *path)
    if not isinstance(value, dict):
        raise Rejected(400, f"The payload's {'.'.join(path)} is not an object.")
    return value


def github_pull_request_info(payload: dict) -> PullRequestInfo:
    pull = _object(payload, "pull_request")
    return PullRequestInfo(
        provider=GITHUB,
        repository=_text(_field(payload, "repository", "full_name"), "repository.full_name", 300),
        number=_number(_field(payload, "pull_request", "number")),
        url=_forge_url(pull.get("html_url"), GITHUB),
        title=_text(pull.get("title"), "pull_request.title", None)[:500],
        head_sha=_sha(_field(payload, "pull_request", "head", "sha"), "pull_request.head.sha"),
        base_ref=_text(_field(payload, "pull_request", "base", "ref"), "pull_request.base.ref", 200),
        state=_text(_field(payload, "pull_request", "state"), "pull_request.state", 20),
        merged=bool(pull.get("merged")),
    )


def gitlab_merge_request_info(payload: dict) -> PullRequestInfo:
    attributes = _object(payload, "object_attributes")
    project = _object(payload, "project")
    state = _text(attributes.get("state"), "object_attributes.state", 20)
    return PullRequestInfo(
        provider=GITLAB,
        repository=_text(_field(payload, "project", "path_with_namespace"), "project.path_with_namespace", 300),
        number=_number(_field(payload, "object_attributes", "iid")),
        project_id=_text(project.get("id"), "project.id", 50),
        url=_forge_url(attributes.get("url"), GITLAB),
        title=_text(attributes.get("title"), "object_attributes.title", None)[:500],
        head_sha=_sha(_field(payload, "object_attributes", "last_commit", "id"), "object_attributes.last_commit.id"),
        base_ref=_text(attributes.get("target_branch"), "object_attributes.target_branch", 200),
        state=GITLAB_STATES.get(state, state)[:20],
        merged=state == "merged",
    )


def _check_url(value: object, provider: str) -> str:
    return _forge_url(value, provider) if value else ""


def _identifier(value: object, name: str) -> str:
    text = _text(value, name, 20)
    if not (text.isascii() and text.isdigit()):
        raise Rejected(400, f"The payload's {name} is not an id.")
    return text


def _moment(value: object) -> datetime | None:
    """GitHub's ISO 8601 or GitLab's `2024-05-01 12:00:00 UTC`; None when absent or unreadable."""
    text = value.strip() if isinstance(value, str) else ""
    if text.endswith(" UTC"):
        text = text.removesuffix(" UTC") + "+00:00"
    try:
        moment = parse_datetime(text)
    except ValueError:
        return None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment


def _check_report(provider: str, repository: str, sha: str, name: str, raw: str, **details) -> CommitCheckReport:
    conclusions = GITHUB_CONCLUSIONS if provider == GITHUB else GITLAB_CONCLUSIONS
    return CommitCheckReport(
        provider=provider,
        repository=repository,
        commit_sha=sha,
        name=name[:CHECK_NAME_LENGTH],
        conclusion=conclusions.get(raw.lower(), OTHER),
        raw_conclusion=raw,
        **details,
    )


def github_check_suite_report(payload: dict) -> CommitCheckReport:
    """A check suite is one app's checks of a commit; GitHub Actions makes one per workflow run, so suites
    are told apart by id (re-running a suite keeps its id)."""
    suite = _object(payload, "check_suite")
    app = suite.get("app") if isinstance(suite.get("app"), dict) else {}
    suite_id = _identifier(_field(payload, "check_suite", "id"), "check_suite.id")
    sha = _sha(_field(payload, "check_suite", "head_sha"), "check_suite.head_sha")
    repository = _object(payload, "repository")
    page = (
        f"{_text(repository.get('html_url'), 'repository.html_url', 300)}/commit/{sha}/checks?check_suite_id={suite_id}"
    )
    return _check_report(
        GITHUB,
        _text(_field(payload, "repository", "full_name"), "repository.full_name", 300),
        sha,
        f"{_text(app.get('name'), 'check_suite.app.name', None) or 'check'} suite {suite_id}",
        _text(suite.get("conclusion"), "check_suite.conclusion", 30),
        url=_check_url(page if repository.get("html_url") else "", GITHUB),
        reported_at=_moment(suite.get("updated_at")),
    )


def github_workflow_run_report(payload: dict) -> CommitCheckReport:
    """A workflow's run on a commit, named by its workflow: a re-run or a later run replaces it."""
    run = _object(payload, "workflow_run")
    name = _text(run.get("name"), "workflow_run.name", None) or _text(run.get("path"), "workflow_run.path", None)
    return _check_report(
        GITHUB,
        _text(_field(payload, "repository", "full_name"), "repository.full_name", 300),
        _sha(_field(payload, "workflow_run", "head_sha"), "workflow_run.head_sha"),
        name or "workflow",
        _text(run.get("conclusion"), "workflow_run.conclusion", 30),
        url=_check_url(run.get("html_url"), GITHUB),
        reported_at=_moment(run.get("updated_at")),
    )


def gitlab_pipeline_report(payload: dict) -> CommitCheckReport:
    """A pipeline, named by its name and source (a branch pipeline and a merge request pipeline of one
    commit are two checks); a later pipeline of the same name and source replaces it."""
    attributes = _object(payload, "object_attributes")
    project = _object(payload, "project")
    name = _text(attributes.get("name"), "object_attributes.name", None) or "pipeline"
    source = _text(attributes.get("source"), "object_attributes.source", 50)
    pipeline_id = _identifier(_field(payload, "object_attributes", "id"), "object_attributes.id")
    web_url = _text(project.get("web_url"), "project.web_url", 300)
    page = attributes.get("url") or (f"{web_url}/-/pipelines/{pipeline_id}" if web_url else "")
    return _check_report(
        GITLAB,
        _text(_field(payload, "project", "path_with_namespace"), "project.path_with_namespace", 300),
        _sha(_field(payload, "object_attributes", "sha"), "object_attributes.sha"),
        f"{name} ({source})" if source else name,
        _text(attributes.get("status"), "object_attributes.status", 30),
        url=_check_url(page, GITLAB),
        reported_at=_moment(attributes.get("finished_at")),
    )


def _record_check(report: CommitCheckReport) -> dict:
    check, applied = commit_check_record(report=report)
    return {"commit_check": check.pk, "commit": check.commit_sha, "conclusion": check.conclusion, "applied": applied}


def _record(info: PullRequestInfo) -> dict:
    link, linked = pull_request_record(info=info)
    return {"pull_request": link.pk, "head_sha": link.head_sha, "linked_artifacts": linked}


def _push(repository: str, ref: str, before: str, after: str) -> dict:
    linked = pull_request_push(
        provider=GITHUB, repository=repository, branch=ref.removeprefix("refs/heads/"), before=before, after=after
    )
    return {"linked_artifacts": linked}


def _github_effect(event: str, payload: dict) -> Effect | None:
    """What a GitHub event changes, or None when Driftboard has nothing to do with it."""
    if event in GITHUB_CHECK_EVENTS:
        if payload.get("action") != "completed":
            return None
        report = github_check_suite_report if event == "check_suite" else github_workflow_run_report
        return partial(_record_check, report(payload))
    if event == "pull_request":
        if payload.get("action") not in GITHUB_PULL_REQUEST_ACTIONS:
            return None
        return partial(_record, github_pull_request_info(payload))
    if payload.get("deleted") or _field(payload, "after") == DELETED_REF_SHA:
        return None
    return partial(
        _push,
        _text(_field(payload, "repository", "full_name"), "repository.full_name", 300),
        _text(_field(payload, "ref"), "ref", 300),
        _sha(_field(payload, "before"), "before"),
        _sha(_field(payload, "after"), "after"),
    )


def _apply_once(provider: str, delivery_id: str, event: str, effect: Effect) -> JsonResponse:
    """Record the delivery and apply its effect in one transaction; a repeat finds the delivery recorded."""
    try:
        with transaction.atomic():
            if delivery_id:
                WebhookDelivery.objects.create(provider=provider, delivery_id=delivery_id[:100], event=event[:50])
            result = effect()
    except IntegrityError:
        if not WebhookDelivery.objects.filter(provider=provider, delivery_id=delivery_id[:100]).exists():
            raise
        return JsonResponse({"duplicate": True, "delivery": delivery_id})
    return JsonResponse({"delivery": delivery_id, **result})


def _ignored(reason: str) -> JsonResponse:
    return JsonResponse({"ignored": reason}, status=202)


def _github(request: HttpRequest) -> JsonResponse:
    body = _read_body(request)
    _check_github_signature(request, body)
    event = request.headers.get("X-GitHub-Event", "")
    if event == "ping":
        return JsonResponse({"pong": True})
    if event not in GITHUB_EVENTS:
        return _ignored(f"event {event!r}")
    payload = _payload(body, request.content_type)
    effect = _github_effect(event, payload)
    if effect is None:
        return _ignored(f"{event} {payload.get('action') or 'deleted branch'}")
    return _apply_once(GITHUB, _text(request.headers.get("X-GitHub-Delivery"), "delivery id", None), event, effect)


def _gitlab_effect(event: str, payload: dict) -> Effect | None:
    """What a GitLab event changes, or None for a pipeline that has not finished."""
    if event == GITLAB_MERGE_REQUEST_EVENT:
        return partial(_record, gitlab_merge_request_info(payload))
    status = _text(_object(payload, "object_attributes").get("status"), "object_attributes.status", 30)
    return partial(_record_check, gitlab_pipeline_report(payload)) if status in GITLAB_FINISHED else None


def _gitlab(request: HttpRequest) -> JsonResponse:
    body = _read_body(request)
    _check_gitlab_token(request)
    event = request.headers.get("X-Gitlab-Event", "")
    if event not in GITLAB_EVENTS:
        return _ignored(f"event {event!r}")
    effect = _gitlab_effect(event, _payload(body, request.content_type))
    if effect is None:
        return _ignored("pipeline not finished")
    # Idempotency-Key (GitLab 17.4+) stays the same across retries of one event.
    delivery_id = request.headers.get("Idempotency-Key") or request.headers.get("X-Gitlab-Event-UUID", "")
    delivery_id = _text(delivery_id, "delivery id", None)
    return _apply_once(GITLAB, delivery_id, event, effect)


def _answer(handler: Callable[[HttpRequest], JsonResponse], request: HttpRequest) -> JsonResponse:
    try:
        return handler(request)
    except Rejected as exc:
        return JsonResponse({"detail": exc.message}, status=exc.status)


@csrf_exempt
@require_POST
def github_webhook(request: HttpRequest) -> JsonResponse:
    """GitHub: ping, pull_request (opened, synchronize, reopened, edited, closed), push, and check_suite and
    workflow_run (completed)."""
    return _answer(_github, request)


@csrf_exempt
@require_POST
def gitlab_webhook(request: HttpRequest) -> JsonResponse:
    """GitLab: Merge Request Hook and Pipeline Hook (finished pipelines)."""
    return _answer(_gitlab, request)
