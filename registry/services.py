"""Registry writes: families, artifact registration, stage transitions, telemetry tags, CI conclusions."""

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from driftboard.outbound import webhook_policy
from driftboard.queues import enqueue
from registry import adapters, alerting, forges, object_store, storage, weights_check
from registry.http import post_json
from registry.models import (
    Alert,
    AlertDelivery,
    Artifact,
    CommitCheck,
    DatasetPinChange,
    ModelFamily,
    PromotionEvent,
    PullRequestLink,
    TelemetryTag,
)
from registry.registration import Registration, RegistrationError

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
FILE_FORMATS = {".safetensors": Artifact.Format.SAFETENSORS, ".bin": Artifact.Format.BIN}


def family_create(
    *,
    slug: str,
    kind: str,
    base_path: str = "",
    base_branch: str = "main",
    datasets: list[str] | None = None,
    **options,
) -> ModelFamily:
    """Create a family (the evaluation pipeline adds its settings and thresholds in the same transaction)."""
    return ModelFamily.objects.create(
        slug=slug, kind=kind, base_path=base_path, base_branch=base_branch, datasets=datasets or [], **options
    )


@transaction.atomic
def family_dataset_pin(
    *, family: ModelFamily, dataset: str, version: int, reason: str, actor=None, only_if_unpinned: bool = False
) -> int:
    """Pin the version of a golden dataset that the family's runs score, and record who moved it and why.

    With `only_if_unpinned` (a family's first run) an existing pin wins, so two first runs agree.
    Returns the version now pinned.
    """
    locked = ModelFamily.objects.select_for_update().get(pk=family.pk)
    current = locked.dataset_pins.get(dataset)
    if current == version or (only_if_unpinned and current is not None):
        family.dataset_pins = locked.dataset_pins
        return current
    locked.dataset_pins = {**locked.dataset_pins, dataset: version}
    locked.save(update_fields=["dataset_pins"])
    DatasetPinChange.objects.create(
        family=locked, dataset=dataset, from_version=current, to_version=version, reason=reason, actor=actor
    )
    family.dataset_pins = locked.dataset_pins
    return version


def family_base_folder(family: ModelFamily) -> Path | None:
    if not family.base_path:
        return None
    folder = Path(family.base_path)
    try:
        has_config = (folder / "config.json").is_file()
    except OSError as exc:  # a name too long for the file system, a folder we may not read
        raise RegistrationError(f"The family's base folder cannot be read: {exc.strerror}.") from exc
    if not has_config:
        raise RegistrationError(f"The family's base folder {family.base_path!r} has no config.json.")
    return folder


def _suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in ARCHIVE_SUFFIXES + tuple(FILE_FORMATS):
        if lowered.endswith(suffix):
            return suffix
    return Path(lowered).suffix


def _stage_upload(upload: UploadedFile) -> tuple[Path, str, int, str]:
    staged, sha256, size = storage.stage_uploaded(upload)
    return staged, sha256, size, upload.name or "weights"


def _stage_path(raw_path: str) -> tuple[Path, str | None, int | None, str]:
    source = storage.resolve_import_path(raw_path)
    if source.is_dir():
        return storage.copy_dir_to_staging(source), None, None, source.name
    staged, sha256, size = storage.copy_file_to_staging(source, _suffix(source.name))
    return staged, sha256, size, source.name


def _store(
    staged: Path, sha256: str | None, size: int | None, name: str, base: Path | None, scratch: list[Path]
) -> tuple[storage.StoredContent, str, dict]:
    """Health-check a staged upload and move it to its content address; unpacked folders go in `scratch`."""
    suffix = _suffix(name)
    if staged.is_dir() or suffix in ARCHIVE_SUFFIXES:
        folder = staged if staged.is_dir() else storage.extract_archive(staged, name)
        scratch.append(folder)
        summary = adapters.check_folder(folder, base)
        return storage.commit_dir(folder), Artifact.Format.HF_DIR, summary
    if suffix not in FILE_FORMATS:
        raise RegistrationError(f"Unsupported weights file {name!r}: send .safetensors, .bin, .tar or .zip.")
    summary = weights_check.check(staged, base)
    return storage.commit_file(staged, sha256, size, suffix), FILE_FORMATS[suffix], summary


@dataclass(frozen=True)
class StoredWeights:
    """Weights stored at their content address and health-checked, not yet recorded as an artifact."""

    content: storage.StoredContent
    format: str
    health: dict
    name: str


def artifact_store(
    *, family: ModelFamily, upload: UploadedFile | None = None, path: str | None = None, pr_url: str = ""
) -> StoredWeights:
    """Store, hash and health-check weights (file work: call it outside any transaction)."""
    if (upload is None) == (path is None):
        raise RegistrationError("Send either a weights file or a server-side path, not both.")
    if refusal := forges.pr_url_refusal(family=family, url=pr_url):
        raise RegistrationError(refusal)
    staged, name = None, upload.name if upload is not None else str(path)
    scratch: list[Path] = []
    try:
        staged, sha256, size, name = _stage_upload(upload) if upload is not None else _stage_path(path)
        scratch.append(staged)
        stored, fmt, summary = _store(staged, sha256, size, name, family_base_folder(family), scratch)
    except (storage.StorageError, weights_check.HealthCheckError) as exc:
        message = str(exc).replace(staged.name, Path(name).name) if staged is not None else str(exc)
        raise RegistrationError(message, status_code=getattr(exc, "status_code", 400)) from exc
    finally:
        # Whatever went wrong (or right: committed content has moved away), nothing stays in staging.
        for leftover in scratch:
            storage.discard(leftover)
    object_store.object_publish(stored)
    return StoredWeights(content=stored, format=fmt, health=summary, name=name)


def artifact_record(
    *,
    family: ModelFamily,
    weights: StoredWeights,
    commit_sha: str,
    branch: str = "",
    pr_url: str = "",
    parent: Artifact | None = None,
    user: AbstractBaseUser | None = None,
) -> Registration:
    """Record stored weights as a staging artifact; the same weights and commit registered before are
    answered with their artifact (`created=False`)."""
    stored = weights.content
    existing = Artifact.objects.filter(family=family, sha256=stored.sha256, commit_sha=commit_sha).first()
    if existing:
        return Registration(existing, created=False)
    for _ in range(5):
        try:
            with transaction.atomic():
                artifact = _create_artifact(family, weights, commit_sha, branch, pr_url, parent, user)
            return Registration(artifact, created=True)
        except IntegrityError:
            existing = Artifact.objects.filter(family=family, sha256=stored.sha256, commit_sha=commit_sha).first()
            if existing:
                return Registration(existing, created=False)
    raise RegistrationError("Could not allocate a version number under concurrent registrations; retry.")


def artifact_register(
    *,
    family: ModelFamily,
    commit_sha: str,
    branch: str = "",
    upload: UploadedFile | None = None,
    path: str | None = None,
    pr_url: str = "",
    parent: Artifact | None = None,
    user: AbstractBaseUser | None = None,
) -> Registration:
    """Store, hash and health-check weights, then record a staging artifact (nothing queued: the
    evaluation pipeline's `artifact_submit` does both and queues the scoring)."""
    weights = artifact_store(family=family, upload=upload, path=path, pr_url=pr_url)
    return artifact_record(
        family=family, weights=weights, commit_sha=commit_sha, branch=branch, pr_url=pr_url, parent=parent, user=user
    )


def _create_artifact(family, weights: StoredWeights, commit_sha, branch, pr_url, parent, user) -> Artifact:
    ModelFamily.objects.select_for_update().filter(pk=family.pk).first()
    version = (family.artifacts.aggregate(v=Max("version"))["v"] or 0) + 1
    stored = weights.content
    artifact = Artifact.objects.create(
        family=family,
        version=version,
        sha256=stored.sha256,
        size_bytes=stored.size_bytes,
        format=weights.format,
        storage_path=stored.relative_path,
        original_name=weights.name[:300],
        health=weights.health,
        commit_sha=commit_sha,
        branch=branch or family.base_branch,
        pr_url=pr_url,
        pull_request=PullRequestLink.objects.filter(head_sha=commit_sha).first(),
        parent=parent,
        created_by=user if user and user.is_authenticated else None,
    )
    tags_set(artifact=artifact, tags=adapters.adapter_tags(weights.health))
    PromotionEvent.objects.create(
        artifact=artifact,
        action=PromotionEvent.Action.REGISTER,
        to_stage=artifact.stage,
        to_status=artifact.status,
        actor=artifact.created_by,
        automatic=artifact.created_by is None,
    )
    return artifact


@dataclass(frozen=True)
class CommitCheckReport:
    """A commit's CI check as a forge's webhook reports it once it concluded."""

    provider: str
    repository: str
    commit_sha: str
    name: str
    conclusion: str
    raw_conclusion: str = ""
    url: str = ""
    reported_at: datetime | None = None


@transaction.atomic
def commit_check_record(*, report: CommitCheckReport) -> tuple[CommitCheck, bool]:
    """Store the check's conclusion, replacing an earlier report of the same check; a report that concluded
    before the stored one (a late redelivery) changes nothing. Returns the check and whether it was applied."""
    fields = {
        "conclusion": report.conclusion,
        "raw_conclusion": report.raw_conclusion,
        "url": report.url,
        "reported_at": report.reported_at,
    }
    check, created = CommitCheck.objects.select_for_update().get_or_create(
        provider=report.provider,
        repository=report.repository,
        commit_sha=report.commit_sha.lower(),
        name=report.name,
        defaults=fields,
    )
    if created:
        return check, True
    if report.reported_at and check.reported_at and report.reported_at < check.reported_at:
        return check, False
    for name, value in fields.items():
        setattr(check, name, value)
    check.save()
    return check, True


def tags_set(*, artifact: Artifact, tags: dict[str, object]) -> None:
    for key, value in tags.items():
        TelemetryTag.objects.update_or_create(artifact=artifact, key=key, defaults={"value": str(value)[:500]})


def artifact_status_set(*, artifact: Artifact, status: str, only_from: tuple[str, ...] = ()) -> bool:
    """Move the artifact along its scoring statuses (queued, scoring, scored); no event is recorded.

    With `only_from`, only an artifact in one of those statuses moves (a conditional UPDATE).
    """
    rows = Artifact.objects.filter(pk=artifact.pk)
    if only_from:
        rows = rows.filter(status__in=only_from)
    moved = bool(rows.update(status=status))
    if moved:
        artifact.status = status
    return moved


def artifact_flag_set(*, artifact: Artifact, flag: str, tags: dict[str, object]) -> None:
    """Record the drift flag (a column, for filtering) and the verdict's telemetry tags."""
    now = timezone.now()
    Artifact.objects.filter(pk=artifact.pk).update(drift_flag=flag, scored_at=now)
    artifact.drift_flag, artifact.scored_at = flag, now
    tags_set(artifact=artifact, tags={"drift_flag": flag, "scored_at": now.isoformat(), **tags})


@transaction.atomic
def artifact_fail(*, artifact: Artifact, reason: str) -> bool:
    """Mark an artifact whose scoring failed; only one still waiting for scores changes."""
    waiting = (Artifact.Status.QUEUED, Artifact.Status.SCORING, Artifact.Status.REGISTERED)
    artifact = Artifact.objects.select_for_update().get(pk=artifact.pk)
    if artifact.status not in waiting:
        return False
    _transition(
        artifact,
        action=PromotionEvent.Action.FAIL,
        status=Artifact.Status.FAILED,
        stage=None,
        reason=reason[:2000],
        actor=None,
        automatic=True,
    )
    return True


def _transition(
    artifact: Artifact, *, action: str, status: str, stage: str | None, reason: str, actor, automatic: bool
) -> Artifact:
    before_stage, before_status = artifact.stage, artifact.status
    artifact.status = status
    if stage:
        artifact.stage = stage
    artifact.save(update_fields=["status", "stage"])
    PromotionEvent.objects.create(
        artifact=artifact,
        action=action,
        from_stage=before_stage,
        to_stage=artifact.stage,
        from_status=before_status,
        to_status=status,
        reason=reason,
        actor=actor,
        automatic=automatic,
    )
    return artifact


@transaction.atomic
def artifact_promote(
    *, artifact: Artifact, reason: str = "", actor=None, action: str = PromotionEvent.Action.PROMOTE
) -> Artifact:
    """Make the artifact its family's production baseline, archiving the previous one."""
    previous = (
        Artifact.objects.select_for_update()
        .filter(family=artifact.family, stage=Artifact.Stage.PRODUCTION)
        .exclude(pk=artifact.pk)
    )
    for old in previous:
        _transition(
            old,
            action=PromotionEvent.Action.ARCHIVE,
            status=old.status,
            stage=Artifact.Stage.ARCHIVED,
            reason=f"Replaced by v{artifact.version}.",
            actor=actor,
            automatic=actor is None,
        )
    return _transition(
        artifact,
        action=action,
        status=Artifact.Status.PROMOTED,
        stage=Artifact.Stage.PRODUCTION,
        reason=reason,
        actor=actor,
        automatic=actor is None,
    )


@transaction.atomic
def artifact_hold(*, artifact: Artifact, reason: str) -> Artifact:
    return _transition(
        artifact,
        action=PromotionEvent.Action.HOLD,
        status=Artifact.Status.HELD,
        stage=None,
        reason=reason,
        actor=None,
        automatic=True,
    )


@transaction.atomic
def artifact_halt(*, artifact: Artifact, reason: str, actor=None) -> Artifact:
    """Stop the artifact from reaching production; a production artifact is archived."""
    stage = Artifact.Stage.ARCHIVED if artifact.stage == Artifact.Stage.PRODUCTION else None
    return _transition(
        artifact,
        action=PromotionEvent.Action.HALT,
        status=Artifact.Status.HALTED,
        stage=stage,
        reason=reason,
        actor=actor,
        automatic=actor is None,
    )


def alert_raise(
    *, artifact: Artifact, severity: str, title: str, message: str, payload: dict, cause: str = ""
) -> Alert:
    """Store an alert, log it, and deliver it to the configured webhook and the alert channels after commit.

    One alert per family and `cause` (by default the payload's `flag`) is open at a time: raised again
    unchanged, the open one is returned and nobody is told twice; changed, it replaces the open one."""
    from registry.tasks import deliver_alert

    key = f"{artifact.family.slug}:{cause or payload.get('flag') or 'alert'}"
    current = Alert.objects.filter(dedup_key=key, resolved_at=None).first()
    if current and (current.severity, current.title, current.message) == (severity, title, message):
        return current
    if current:
        Alert.objects.filter(pk=current.pk).update(resolved_at=timezone.now())
    alert = Alert.objects.create(
        artifact=artifact, severity=severity, title=title, message=message, payload=payload, dedup_key=key
    )
    logger.warning("ALERT %s: %s — %s", severity, title, message)
    alerting.alert_deliveries_create(alert=alert, action=AlertDelivery.Action.TRIGGER)
    if settings.DRIFTBOARD_ALERT_WEBHOOK_URL:
        transaction.on_commit(lambda: enqueue(deliver_alert, alert.pk, what="the alert row stays undelivered"))
    return alert


def alert_acknowledge(*, alert: Alert, actor: AbstractBaseUser, note: str = "") -> Alert:
    """Close an open alert: who, when and why are kept; acknowledging twice keeps the first record."""
    updated = Alert.objects.filter(pk=alert.pk, acknowledged_at=None).update(
        acknowledged_at=timezone.now(), acknowledged_by=actor, acknowledgement_note=note
    )
    if updated:
        logger.info("Alert %s acknowledged by %s", alert.pk, actor)
    alert.refresh_from_db()
    return alert


def alert_deliver(*, alert: Alert) -> None:
    """POST the alert as JSON to DRIFTBOARD_ALERT_WEBHOOK_URL. Raises on failure so the task retries."""

    alert.delivery_attempts += 1
    alert.save(update_fields=["delivery_attempts"])
    body = {
        "title": alert.title,
        "severity": alert.severity,
        "message": alert.message,
        "artifact": alert.artifact_id,
        "created_at": alert.created_at.isoformat(),
        **alert.payload,
    }
    url = settings.DRIFTBOARD_ALERT_WEBHOOK_URL
    post_json(url, body, headers={}, outbound=webhook_policy(url, setting="DRIFTBOARD_ALERT_WEBHOOK_URL"))
    alert.delivered_at = timezone.now()
    alert.delivery_error = ""
    alert.save(update_fields=["delivered_at", "delivery_error"])
