"""The one place where evaluation and the registry meet.

"A family was created → its default thresholds", "weights were submitted → their runs",
"a run was claimed → scored the way its kind says → archived → the artifact judged → promoted,
held or halted → reported to the pull request". Registry state changes only through registry
services; the registry itself knows nothing of evaluation.
"""

import logging
from functools import partial

from django.db import transaction

from evals.models import EvalRun
from evals.services import engine, profiles, runs, sampling, traffic, verdicts
from evals.services.thresholds import thresholds_create_defaults
from registry import publishing as forge_publishing
from registry import services as registry_services
from registry.models import Artifact, ModelFamily

logger = logging.getLogger(__name__)


def family_create(*, evaluation: dict | None = None, **fields) -> ModelFamily:
    """A new family with the default thresholds of its kind and its scorer options (`evaluation`)."""
    return registry_services.family_create(
        **fields, on_created=lambda family: _family_created(family, evaluation or {})
    )


def _family_created(family: ModelFamily, evaluation: dict) -> None:
    thresholds_create_defaults(family=family)
    if evaluation.get("scorer_options"):
        profiles.evaluation_profile_update(family=family, scorer_options=evaluation["scorer_options"])


def artifact_submit(**fields) -> registry_services.Registration:
    """Register weights (see `registry.services.artifact_register`) and queue their scoring."""
    return registry_services.artifact_register(**fields, on_created=_artifact_created)


def _artifact_created(artifact: Artifact) -> None:
    runs.eval_runs_create_for_artifact(artifact=artifact)
    transaction.on_commit(partial(forge_publishing.registration_publish_enqueue, artifact_id=artifact.pk), robust=True)


def eval_run_process(*, run_id: int, worker: str) -> None:
    """Claim a run, score it as its kind says, archive the scores and act on the outcome."""
    run = runs.eval_run_claim(run_id=run_id, worker=worker)
    if run is None:
        return
    if runs.eval_run_execute(run=run, score=_scorer_of(run)):
        run_finished(run=run)


def _scorer_of(run: EvalRun):
    if run.kind == EvalRun.Kind.FULL:
        return engine.score_full_run
    if run.kind == EvalRun.Kind.JUDGE:
        return engine.score_judge_run
    if run.kind == EvalRun.Kind.TRAFFIC:
        return traffic.score_traffic_run
    return sampling.score_sampled_run


def run_finished(*, run: EvalRun) -> None:
    """After a run's snapshots are saved: judge the artifact once all its runs are in; a traffic
    run instead compares the production model on its window with the reference."""
    if run.kind == EvalRun.Kind.TRAFFIC:
        traffic.traffic_window_compare(run=run)
        return
    if run.kind == EvalRun.Kind.COMPLETION:
        sampling.completion_recheck(run=run)
        return
    if verdicts.artifact_ready(run.artifact):
        verdicts.artifact_evaluate(artifact=run.artifact)
    if run.kind == EvalRun.Kind.SEQUENTIAL:
        sampling.completion_schedule(run=run)
