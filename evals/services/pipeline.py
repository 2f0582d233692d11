"""The one place where evaluation and the registry meet.

"A family was created → its default thresholds", "weights were submitted → their runs",
"a run was claimed → scored the way its kind says → archived → the artifact judged → promoted,
held or halted → reported to the pull request". Registry state changes only through registry
services; the registry itself knows nothing of evaluation.
"""

import logging
from functools import partial

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from evals.models import EvalRun
from evals.run_kinds import RUN_KINDS
from evals.services import costs, engine, profiles, runs, verdicts
from evals.services.thresholds import thresholds_create_defaults
from registry import publishing as forge_publishing
from registry import services as registry_services
from registry.models import ModelFamily

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
            runs.eval_runs_create_for_artifact(artifact=artifact)
            transaction.on_commit(
                partial(forge_publishing.registration_publish_enqueue, artifact_id=artifact.pk), robust=True
            )
    return registration


def eval_run_process(*, run_id: int, worker: str) -> None:
    """Claim a run, score it as its kind says, archive the scores and act on the outcome."""
    run = runs.eval_run_claim(run_id=run_id, worker=worker)
    if run is None:
        return
    scored: list[engine.RunResult] = []

    def score(**kwargs) -> engine.RunResult:
        scored.append(RUN_KINDS[run.kind].scorer()(**kwargs))
        return scored[-1]

    if runs.eval_run_execute(run=run, score=score):
        costs.run_usage_record(run=run, result=scored[-1])
        run_finished(run=run)


def run_finished(*, run: EvalRun) -> None:
    """After a run's snapshots are saved: judge the artifact once all the runs that gate it are in,
    then what the run's kind does next (a traffic run compares its window with the reference)."""
    kind = RUN_KINDS[run.kind]
    if kind.gates_artifact and verdicts.artifact_ready(run.artifact):
        verdicts.artifact_evaluate(artifact=run.artifact)
    follow_up = kind.follow_up()
    if follow_up is not None:
        follow_up(run=run)
