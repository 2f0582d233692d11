"""The one place where evaluation and the registry meet, and the one evaluation module that changes
registry state (`tests/architecture/test_dependencies.py` checks it).

"A family was created → its default thresholds", "weights were submitted → their runs",
"a run was claimed → scored the way its kind says → archived → the artifact judged → promoted,
held or halted → reported to the pull request". The evaluation services decide (verdicts, sampling,
traffic and budgets return a `RegistryChange`); this module writes what they decided through the
registry services, in their transaction. The registry itself knows nothing of evaluation.
"""

import datetime
import logging
from collections.abc import Callable
from functools import partial

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from driftboard.errors import without_server_paths
from evals.models import EvalRun
from evals.registry_changes import RegistryChange
from evals.run_kinds import RUN_KINDS
from evals.selectors import dataset_latest
from evals.services import budgets, costs, engine, human_metrics, profiles, runs, verdicts
from evals.services.thresholds import thresholds_create_defaults
from registry import alerting
from registry import publishing as forge_publishing
from registry import services as registry_services
from registry.models import Artifact, ModelFamily, PromotionEvent

logger = logging.getLogger(__name__)


def family_create(**fields) -> ModelFamily:
    """A new family (see `registry.services.family_create`) with its evaluation profile (the settings named
    in `profiles.PROFILE_SETTINGS`) and the default thresholds of its kind, all in one transaction."""
    profile_settings = {name: fields.pop(name) for name in profiles.PROFILE_SETTINGS if name in fields}
    with transaction.atomic():
        family = registry_services.family_create(**fields)
        profiles.evaluation_profile_update(family=family, **profile_settings)
        thresholds_create_defaults(family=family)
    return family


def artifact_submit(
    *,
    family: ModelFamily,
    commit_sha: str,
    upload: UploadedFile | None = None,
    path: str | None = None,
    pr_url: str = "",
    **record: object,
) -> registry_services.Registration:
    """Store and record weights (see `registry.services.artifact_register`) and, for new ones, queue their
    scoring in the transaction that records them; the pull request hears of them once it commits."""
    weights = registry_services.artifact_store(family=family, upload=upload, path=path, pr_url=pr_url)
    with transaction.atomic():
        registration = registry_services.artifact_record(
            family=family, weights=weights, commit_sha=commit_sha, pr_url=pr_url, **record
        )
        if registration.created:
            artifact = registration.artifact
            artifact_runs_create(artifact=artifact)
            transaction.on_commit(
                partial(forge_publishing.registration_publish_enqueue, artifact_id=artifact.pk), robust=True
            )
    return registration


def family_dataset_pin(*, family: ModelFamily, dataset: str, version: int, reason: str, actor=None) -> int:
    """Move the golden version the family's runs score (see `registry.services.family_dataset_pin`)."""
    return registry_services.family_dataset_pin(
        family=family, dataset=dataset, version=version, reason=reason, actor=actor
    )


def family_datasets_pin_first(*, family: ModelFamily) -> None:
    """A family's first run pins the latest version of each golden dataset it names and has no pin for, so
    a later upload changes no verdict until someone moves the pin (an existing pin wins a race)."""
    for name in family.datasets:
        latest = None if name in family.dataset_pins else dataset_latest(name)
        if latest is not None:
            registry_services.family_dataset_pin(
                family=family,
                dataset=name,
                version=latest.version,
                reason="First run of the family.",
                only_if_unpinned=True,
            )


def artifact_runs_create(*, artifact: Artifact) -> list[EvalRun]:
    """The artifact's runs, one per golden dataset of its family (see `runs.eval_runs_create_for_artifact`),
    and the artifact queued; held with an alert when its family is over its weekly budget."""
    family_datasets_pin_first(family=artifact.family)
    created = runs.eval_runs_create_for_artifact(artifact=artifact)
    if created:
        held = budgets.artifact_runs_hold(artifact=artifact, runs=created)
        registry_change_apply(
            RegistryChange(artifact=artifact, status=Artifact.Status.QUEUED, alerts=(held,) if held else ())
        )
    return created


def eval_run_retry(*, run: EvalRun, queue: str | None = None) -> EvalRun:
    """Send a failed run again (see `runs.eval_run_retry`); its failed artifact waits for scores again."""
    with transaction.atomic():
        run = runs.eval_run_retry(run=run, queue=queue)
        registry_services.artifact_status_set(
            artifact=run.artifact, status=Artifact.Status.QUEUED, only_from=(Artifact.Status.FAILED,)
        )
    return run


def eval_run_claim(*, run_id: int, worker: str) -> EvalRun | None:
    """Take the run for this worker (see `runs.eval_run_take`) and mark its artifact scoring; a run taken
    more often than its attempts allow is failed instead. None when there is nothing to score."""
    run = runs.eval_run_take(run_id=run_id, worker=worker)
    if run is None:
        return None
    gave_up = runs.eval_run_gave_up(run)
    if gave_up:
        eval_run_fail(run=run, message=gave_up)
        return None
    registry_services.artifact_status_set(
        artifact=run.artifact,
        status=Artifact.Status.SCORING,
        only_from=(Artifact.Status.REGISTERED, Artifact.Status.QUEUED),
    )
    return run


def eval_run_execute(*, run: EvalRun, score: Callable[..., engine.RunResult]) -> bool:
    """Score a claimed run and archive its snapshots (see `runs.eval_run_score`): True once saved; a
    permanent error fails the run and its artifact (False)."""
    try:
        return runs.eval_run_score(run=run, score=score)
    except runs.RunFailed as exc:
        eval_run_fail(run=run, message=str(exc))
        return False


def eval_run_fail(*, run: EvalRun, message: str) -> bool:
    """Fail the run and its artifact, while `run.worker` still holds it (False otherwise, nothing written)."""
    logger.error("Run %s failed: %s", run.pk, message)
    message = without_server_paths(message)  # users see the error; the log above keeps the paths
    with transaction.atomic():
        if not runs.eval_run_failed(run=run, message=message):
            return False
        registry_services.artifact_fail(artifact=run.artifact, reason=message)
    runs.eval_runs_dispatch()
    return True


def eval_run_fail_by_id(*, run_id: int, worker: str, message: str) -> None:
    run = runs.eval_run_running(run_id=run_id, worker=worker)
    if run is not None:
        eval_run_fail(run=run, message=message)


def eval_run_process(*, run_id: int, worker: str) -> None:
    """Claim a run, score it as its kind says, archive the scores and act on the outcome."""
    run = eval_run_claim(run_id=run_id, worker=worker)
    if run is None:
        return
    scored: list[engine.RunResult] = []

    def score(**kwargs) -> engine.RunResult:
        scored.append(RUN_KINDS[run.kind].scorer()(**kwargs))
        return scored[-1]

    if eval_run_execute(run=run, score=score):
        costs.run_usage_record(run=run, result=scored[-1])
        run_finished(run=run)


def run_finished(*, run: EvalRun) -> None:
    """After a run's snapshots are saved: judge the artifact once all the runs that gate it are in,
    then what the run's kind does next (a traffic run compares its window with the reference) and
    records, with the registry change it decided, in one transaction."""
    kind = RUN_KINDS[run.kind]
    if kind.gates_artifact and verdicts.artifact_ready(run.artifact):
        artifact_evaluate(artifact=run.artifact)
    follow_up, recorder = kind.follow_up(), kind.recorder()
    prepared = follow_up(run=run) if follow_up is not None else None
    if recorder is not None:
        with transaction.atomic():
            change = recorder(run=run, prepared=prepared)
            if change is not None:
                registry_change_apply(change)


def artifact_evaluate(*, artifact: Artifact) -> str:
    """Compare every metric with the baseline, then in one transaction store the verdicts, set the flag,
    apply the family's policy and report to the pull request once it commits. The flag."""
    compared = verdicts.artifact_compare(artifact=artifact)
    with transaction.atomic():
        change = verdicts.artifact_judge(compared=compared)
        registry_change_apply(change)
        verdicts.verdict_publish(change.artifact)
    return change.flag


def artifact_labels_changed(*, artifact: Artifact) -> None:
    """Reviewers labelled the artifact's answers: its human metrics are written anew. A judged artifact still
    awaiting a decision (held, or scored under a manual policy) is judged again — labels may have
    calibrated its judge, or a threshold may gate a human metric — with flag, policy and pull request;
    a decided one (promoted, halted) keeps its decision and only gains the human metrics' verdicts."""
    changed = human_metrics.human_snapshots_refresh(artifact=artifact)
    if not artifact.verdicts.exists():
        return
    if artifact.status in (Artifact.Status.HELD, Artifact.Status.SCORED):
        artifact_evaluate(artifact=artifact)
    elif changed:
        with transaction.atomic():
            verdicts.artifact_verdicts_add(artifact=artifact, metrics=changed)


def family_budget_lift(*, family: ModelFamily, actor, reason: str) -> int:
    """Staff let the family's runs past its weekly budget (`budgets.family_budget_lift`): its budget alert
    is resolved in the same transaction. The runs released."""
    with transaction.atomic():
        released = budgets.family_budget_lift(family=family, actor=actor, reason=reason)
        alerting.alerts_resolve(family=family, cause_prefix=budgets.BUDGET_CAUSE)
    return released


def budget_holds_release(*, now: datetime.datetime | None = None) -> int:
    """Release the held runs of every family no longer over its weekly budget (beat, every
    CELERY_BEAT_BUDGET_RELEASE_SECONDS) and resolve its budget alert. The runs released; a second call
    releases nothing again."""
    now = now or timezone.now()
    released = 0
    for family in budgets.families_to_release(now=now):
        with transaction.atomic():
            count = budgets.family_holds_release(family=family, now=now)
            if count:
                alerting.alerts_resolve(family=family, cause_prefix=budgets.BUDGET_CAUSE)
        released += count
    return released


def registry_change_apply(change: RegistryChange) -> None:
    """Write what an evaluation step decided through the registry services, in the record's field order."""
    artifact = change.artifact
    if change.status:
        registry_services.artifact_status_set(artifact=artifact, status=change.status)
    if change.flag:
        registry_services.artifact_flag_set(artifact=artifact, flag=change.flag, tags=change.flag_tags)
    if change.tags:
        registry_services.tags_set(artifact=artifact, tags=change.tags)
    if change.resolve_alerts:
        alerting.alerts_resolve(family=artifact.family, cause_prefix=change.resolve_alerts)
    if change.decision == "promote":
        action = change.promotion_action or PromotionEvent.Action.PROMOTE
        registry_services.artifact_promote(artifact=artifact, reason=change.reason, action=action)
    elif change.decision == "hold":
        registry_services.artifact_hold(artifact=artifact, reason=change.reason)
    elif change.decision == "halt":
        registry_services.artifact_halt(artifact=artifact, reason=change.reason)
    for alert in change.alerts:
        registry_services.alert_raise(
            artifact=artifact,
            severity=alert.severity,
            title=alert.title,
            message=alert.message,
            payload=alert.payload,
            cause=alert.cause,
        )
