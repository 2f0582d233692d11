"""The life of an EvalRun: created with its artifact, dispatched under backpressure, claimed by a
conditional UPDATE, scored with a lease, archived as snapshots, and swept if its worker vanished.

The row is the source of truth. A Celery message only says "look at run N"; a duplicate or
redelivered message finds the run taken or finished and does nothing.
"""

import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, transaction
from django.db.models import F, Q
from django.utils import timezone

from driftboard.db import DATABASE_DOWN, database_retry, database_unreachable
from driftboard.errors import without_server_paths
from driftboard.queue_names import SIZE_CLASS_QUEUE, Queue, scoring_queue
from driftboard.queues import enqueue, queue_depth
from evals.models import EvalRun, EvaluationProfile, GoldenDataset, MetricSnapshot
from evals.run_kinds import RUN_KINDS
from evals.run_records import Judging
from evals.scoring.judges import judge_heartbeat
from evals.scoring.scorers import METRICS
from evals.scoring.summary import summarise
from evals.selectors import dataset_version, evaluation_profile
from evals.services import budgets, engine
from evals.services.run_states import (
    CLAIM,
    DEFER,
    FAIL,
    QUEUE,
    RECOVER,
    RELEASE,
    RETRY,
    SUCCEED,
    UNQUEUE,
    TransitionRefused,
    held_by,
)
from registry.models import Artifact, ModelFamily

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 1.0


# Errors a retry can cure: the database or the broker was briefly away.
TRANSIENT_ERRORS = (DatabaseError, InterfaceError, ConnectionError)
# Before the error of an attempt that is retried; the run's final error, if it gives up, keeps the rest.
RETRYING = "Transient error, retrying: "


class LeaseLost(Exception):
    """Another worker took the run over after this one's lease expired."""


def eval_runs_create_for_artifact(*, artifact: Artifact) -> list[EvalRun]:
    """One run per golden dataset the family pins, put on the broker once the transaction commits (sampled
    when the family is past its weekly budget: evals/services/budgets.py)."""
    family = artifact.family
    sequential = evaluation_profile(family).sampling == EvaluationProfile.Sampling.SEQUENTIAL
    kind = budgets.full_run_kind(family=family, sampled=sequential)
    runs = []
    for name in family.datasets:
        dataset = _pinned_dataset(family, name)
        if dataset is None:
            logger.warning("Family %s names an unknown golden dataset %r", family.slug, name)
            continue
        runs.append(EvalRun(artifact=artifact, dataset=dataset, kind=kind, samples_total=dataset.sample_count))
    if runs:
        EvalRun.objects.bulk_create(runs)
        transaction.on_commit(eval_runs_dispatch)
    return runs


def _pinned_dataset(family: ModelFamily, name: str) -> GoldenDataset | None:
    """The version the family pins (its first run pins the latest: `pipeline.family_datasets_pin_first`), so
    a later upload changes no verdict until someone moves the pin."""
    pinned = family.dataset_pins.get(name)
    return None if pinned is None else dataset_version(name, pinned)


def _send(run_id: int, queue: str) -> bool:
    from evals.tasks import score_run

    return enqueue(score_run, run_id, queue=queue, what="the run stays pending; the sweeper retries")


def _enqueue(run_id: int, queue: str) -> bool:
    """Queue the run and send its message; False if the broker refused it (the run is pending again)."""
    try:
        QUEUE.move(run_id, enqueued_at=timezone.now())
    except TransitionRefused:
        return True  # another dispatcher queued it first
    if _send(run_id, queue):
        return True
    with suppress(TransitionRefused):  # a worker may have claimed it already
        UNQUEUE.move(run_id)
    return False


def scoring_busy() -> bool:
    return EvalRun.objects.filter(
        queue=Queue.SCORING, status__in=[EvalRun.Status.QUEUED, EvalRun.Status.RUNNING]
    ).exists()


def in_offpeak_window(now=None) -> bool:
    window = settings.DRIFTBOARD_OFFPEAK_WINDOW
    if not window:
        return False
    start, end = (time.strptime(part.strip(), "%H:%M") for part in window.split("-"))
    minute = (now or timezone.now()).hour * 60 + (now or timezone.now()).minute
    lo, hi = start.tm_hour * 60 + start.tm_min, end.tm_hour * 60 + end.tm_min
    return lo <= minute < hi if lo <= hi else minute >= lo or minute < hi


def eval_runs_dispatch() -> int:
    """Put waiting runs on the broker up to DRIFTBOARD_MAX_QUEUED_RUNS; defer the rest.

    The budget is the candidates' (the `scoring` queue): traffic and judge runs wait on queues of their
    own, held to their own caps, so no upload of theirs defers a candidate.
    """
    queued = EvalRun.objects.filter(queue=Queue.SCORING, status=EvalRun.Status.QUEUED).count()
    capacity = max(0, settings.DRIFTBOARD_MAX_QUEUED_RUNS - queued)
    waiting = EvalRun.objects.filter(
        queue=Queue.SCORING, status__in=[EvalRun.Status.PENDING, EvalRun.Status.DEFERRED]
    ).order_by("created_at", "id")
    sent = 0
    for run_id in list(waiting.values_list("pk", flat=True)[:capacity]):
        if not _enqueue(run_id, Queue.SCORING):
            return sent
        sent += 1
    if capacity - sent <= 0:
        DEFER.apply(waiting)
    return sent + _dispatch_size_classes() + _dispatch_offpeak() + _dispatch_judging() + _dispatch_traffic()


def _dispatch_size_classes() -> int:
    """Runs retried on a scoring queue of a memory size class: only workers that big listen there."""
    return _send_pending(EvalRun.objects.filter(queue__regex=SIZE_CLASS_QUEUE.pattern))


def _dispatch_judging() -> int:
    """Judge runs wait on the network, not on a GPU: sent at once, without the scoring backpressure."""
    return _send_pending(EvalRun.objects.filter(queue=Queue.JUDGE))


def _dispatch_traffic() -> int:
    """Traffic runs are sent at once to the `traffic` queue: their number is capped per family at upload
    (DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS), and a worker takes turns between its queues."""
    return _send_pending(EvalRun.objects.filter(queue=Queue.TRAFFIC))


def _send_pending(runs) -> int:
    """Put the pending runs among `runs` on their queues, stopping at the first broker error."""
    sent = 0
    for run_id, queue in runs.filter(status=EvalRun.Status.PENDING).values_list("pk", "queue"):
        if not _enqueue(run_id, queue):
            break
        sent += 1
    return sent


def eval_run_retry(*, run: EvalRun, queue: str | None = None) -> EvalRun:
    """Put a failed run back on a scoring queue (a bigger worker's, after `needs ~X GiB`), as if new.

    A judge run goes back to the judge queue, and only there: a scoring worker builds no judge.
    """
    kind = RUN_KINDS[run.kind]
    queue = queue or kind.retry_queue
    if not kind.retried_on(queue) and scoring_queue(kind.retry_queue):
        raise ValueError(f"{queue!r} is not a scoring queue (`scoring` or `scoring-<N>g`).")
    if not kind.retried_on(queue):
        raise ValueError(
            f"Run {run.pk} is a {run.kind} run: it is retried on the `{kind.retry_queue}` queue only, not {queue!r}."
        )
    with transaction.atomic():
        try:
            RETRY.move(run.pk, queue=queue, attempts=0, finished_at=None, started_at=None, worker="", error="")
        except TransitionRefused as exc:
            raise ValueError(f"Run {run.pk} has not failed: only a failed run is retried ({exc})") from exc
        transaction.on_commit(eval_runs_dispatch)
    run.refresh_from_db()
    return run


def _dispatch_offpeak() -> int:
    if scoring_busy() and not in_offpeak_window():
        return 0
    return _send_pending(EvalRun.objects.filter(queue=Queue.OFFPEAK))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def eval_run_take(*, run_id: int, worker: str) -> EvalRun | None:
    """Take the run for this worker, or return None if someone else has it or it is finished.

    The error of an earlier attempt stays until the run succeeds: it is what a run that gives up says.
    """
    now = timezone.now()
    # A run this very process holds is one of its own earlier attempts that died (one task at a time).
    claimable = Q(status=EvalRun.Status.QUEUED) | Q(lease_expires_at__lt=now) | Q(worker=worker)
    try:
        taken = CLAIM.move(
            run_id,
            guard=claimable,
            attempts=F("attempts") + 1,
            worker=worker,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=settings.DRIFTBOARD_RUN_LEASE_SECONDS),
        )
    except TransitionRefused:
        return None  # a duplicate message: the run is finished, or waits for a message of its own
    if not taken:
        return None
    return EvalRun.objects.select_related("artifact__family", "dataset").get(pk=run_id)


def eval_run_gave_up(run: EvalRun) -> str:
    """Why a run taken once more than its attempts allow is failed; empty while it may still be scored."""
    if run.attempts <= settings.DRIFTBOARD_RUN_MAX_ATTEMPTS:
        return ""
    attempts = f"Gave up after {run.attempts - 1} attempts"
    last_error = run.error.removeprefix(RETRYING)
    return f"{attempts}; the last error: {last_error}" if last_error else f"{attempts}; the worker kept disappearing."


class ProgressWriter:
    """Writes samples done and renews the lease, at most once a second. While the database is
    unreachable the write is skipped and scoring goes on; the next one renews the lease."""

    def __init__(self, run: EvalRun):
        self.run = run
        self.last = 0.0
        self.samples_done = 0

    def renew(self) -> None:
        """The heartbeat of a run waiting on something else than its samples (a judge's replies)."""
        self(self.samples_done)

    def __call__(self, samples_done: int, force: bool = False) -> None:
        self.samples_done = samples_done
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_INTERVAL_SECONDS:
            return
        self.last = now
        lease = timezone.now() + timedelta(seconds=settings.DRIFTBOARD_RUN_LEASE_SECONDS)
        mine = EvalRun.objects.filter(held_by(self.run.worker), pk=self.run.pk, status=EvalRun.Status.RUNNING)
        try:
            updated = mine.update(samples_done=samples_done, lease_expires_at=lease)
        except DATABASE_DOWN as exc:
            if not database_unreachable():
                raise
            logger.warning("Run %s: database unreachable, progress not written, scoring goes on: %s", self.run.pk, exc)
            return
        if not updated:
            raise LeaseLost(f"Run {self.run.pk} was taken over by another worker.")


class RunFailed(Exception):
    """A permanent error while scoring: the message is the run's error."""


def eval_run_score(*, run: EvalRun, score: Callable[..., "engine.RunResult"]) -> bool:
    """Score a claimed run with `score(run=…, progress=…)` and archive the snapshots.

    True once the scores are saved. A permanent error raises RunFailed (the pipeline fails the run and
    its artifact) and a lost lease leaves it to its new owner (False); transient errors propagate for a retry. While a judge is awaited, the
    lease is renewed all the same: a slow judge never lets a second worker take the run.
    """
    progress = ProgressWriter(run)
    try:
        with judge_heartbeat(progress.renew):
            result = score(run=run, progress=progress)
    except engine.PermanentScoringError as exc:
        raise RunFailed(str(exc)) from exc
    except LeaseLost:
        logger.warning("Run %s: lease lost, leaving it to the worker that took it over", run.pk)
        return False
    except (*TRANSIENT_ERRORS, SoftTimeLimitExceeded):
        raise
    except Exception as exc:  # any other error from loading or scoring would recur on every retry
        logger.exception("Run %s: unexpected error while scoring", run.pk)
        raise RunFailed(f"Scoring failed: {type(exc).__name__}: {exc}") from exc
    # The scores are in memory: wait out a database restart rather than score again.
    try:
        database_retry(lambda: snapshots_save(run=run, result=result), what=f"saving the scores of run {run.pk}")
    except LeaseLost:
        logger.warning("Run %s: lease lost before its scores were saved; the worker that took it over saves", run.pk)
        return False
    database_retry(eval_runs_dispatch, what="dispatching waiting runs")
    return True


def snapshots_save(*, run: EvalRun, result: engine.RunResult) -> None:
    """Archive the scores and mark the run succeeded, only while this worker still holds it
    (LeaseLost otherwise, nothing written): a run finishes once."""
    with transaction.atomic():
        _run_succeeded(run=run, result=result)
        for metric, (positions, numerators, denominators) in result.arrays.items():
            fingerprint = result.fingerprints[metric]
            summary = summarise(
                METRICS[metric],
                numerators,
                denominators,
                result.categories_for(positions),
                n_boot=settings.DRIFTBOARD_BOOTSTRAP_RESAMPLES,
                seed=run.artifact_id,
            )
            MetricSnapshot.objects.update_or_create(
                artifact=run.artifact,
                dataset=run.dataset,
                metric=metric,
                defaults={
                    "run": run,
                    "scorer_version": fingerprint["scorer_version"],
                    "commit_sha": run.artifact.commit_sha,
                    "value": summary.value,
                    "n": summary.n,
                    "std": summary.std,
                    "ci_low": summary.ci_low,
                    "ci_high": summary.ci_high,
                    # Every sample the metric applies to (a prompt-only metric skips the rest).
                    "complete": result.complete,
                    "positions": np.asarray(positions, dtype=np.int32).tobytes(),
                    "numerators": np.asarray(numerators, dtype=np.float64).tobytes(),
                    "denominators": np.asarray(denominators, dtype=np.float64).tobytes(),
                    "per_category": summary.per_category,
                    "fingerprint": fingerprint,
                },
            )
        if RUN_KINDS[run.kind].judged and result.judging.model:
            _judge_run_create(run=run, judging=result.judging)


def _run_succeeded(*, run: EvalRun, result: engine.RunResult) -> None:
    succeeded = SUCCEED.move(
        run.pk,
        guard=held_by(run.worker),
        samples_done=result.samples_scored,
        tokens=result.tokens,
        tokens_per_second=result.tokens_per_second,
        forward_passes=result.forward_passes,
        cached_samples=result.cached_samples,
        device=result.device,
        sampling=result.sampling.to_json(),
        drafting=result.drafting,
        judging=result.judging.to_json(),
        error="",
    )
    if not succeeded:
        raise LeaseLost(f"Run {run.pk} was taken over by another worker.")


def _judge_run_create(*, run: EvalRun, judging: Judging) -> EvalRun:
    """The answers are stored: their judging goes to the judge queue (in the scoring run's own
    transaction, so the artifact is never judged ready in between)."""
    judge_run = EvalRun.objects.create(
        artifact=run.artifact,
        dataset=run.dataset,
        kind=EvalRun.Kind.JUDGE,
        queue=RUN_KINDS[EvalRun.Kind.JUDGE].queue,
        samples_total=engine.judge_run_size(run.artifact.family, run.dataset),
        judging=Judging(model=judging.model, scoring_run=run.pk).to_json(),
    )
    transaction.on_commit(eval_runs_dispatch)
    return judge_run


def eval_run_failed(*, run: EvalRun, message: str) -> bool:
    """Mark the run failed with `message`, while `run.worker` still holds it (False otherwise, nothing
    written); the pipeline fails its artifact in the same transaction."""
    if not FAIL.move(run.pk, guard=held_by(run.worker), error=message[:5000]):
        logger.warning("Run %s: taken over by another worker, its failure is not recorded", run.pk)
        return False
    return True


def eval_run_running(*, run_id: int, worker: str) -> EvalRun | None:
    """The run, while this worker holds it running."""
    mine = EvalRun.objects.select_related("artifact").filter(held_by(worker), pk=run_id, status=EvalRun.Status.RUNNING)
    return mine.first()


def eval_run_release(*, run_id: int, worker: str, message: str) -> None:
    """Hand a run back after a transient error (`message`) so the retry (or another worker) can claim it."""
    message = without_server_paths(RETRYING + message)
    with suppress(TransitionRefused):  # the error came before this worker claimed it, or after it finished
        RELEASE.move(run_id, guard=held_by(worker), error=message[:5000])


def eval_runs_reclaim_dead(*, hostname: str) -> int:
    """At a worker's start: the runs that this host's dead worker processes left `running` are put back
    on the queue at once, instead of waiting for their lease (or the broker's visibility timeout)."""
    mine = EvalRun.objects.filter(status=EvalRun.Status.RUNNING, worker__startswith=f"{hostname}:")
    dead = [pk for pk, worker in mine.values_list("pk", "worker") if not _process_alive(worker)]
    if not dead:
        return 0
    reclaimed = RECOVER.apply(EvalRun.objects.filter(pk__in=dead))
    logger.warning("Reclaimed %d run(s) left running by dead workers on %s", reclaimed, hostname)
    eval_runs_dispatch()
    return reclaimed


def _process_alive(worker: str) -> bool:
    """Whether the process named `host:pid` still runs on this host (unknown means alive: the lease decides)."""
    try:
        os.kill(int(worker.rsplit(":", 1)[1]), 0)
    except (ValueError, IndexError):
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def eval_runs_sweep() -> dict[str, int]:
    """Re-queue runs whose worker vanished, re-send queued runs whose message was lost, dispatch."""
    now = timezone.now()
    recovered = RECOVER.apply(EvalRun.objects.filter(lease_expires_at__lt=now))
    resent = _resend_lost_messages(now)
    return {"recovered": recovered, "resent": resent, "dispatched": eval_runs_dispatch()}


def _resend_lost_messages(now) -> int:
    """A queued run older than a lease, while the broker's queue is empty, lost its message."""

    stale = EvalRun.objects.filter(
        status=EvalRun.Status.QUEUED,
        enqueued_at__lt=now - timedelta(seconds=settings.DRIFTBOARD_RUN_LEASE_SECONDS),
    )
    resent = 0
    for queue in set(stale.values_list("queue", flat=True)):
        if queue_depth(queue) != 0:
            continue
        for run_id in stale.filter(queue=queue).values_list("pk", flat=True):
            if _send(run_id, queue):
                EvalRun.objects.filter(pk=run_id).update(enqueued_at=timezone.now())
                resent += 1
    return resent
