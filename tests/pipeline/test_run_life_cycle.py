"""The EvalRun life cycle: named transitions that refuse a status they cannot come from, conditional
writes that a worker who lost its run cannot make, and one table of run kinds."""

import itertools

import pytest

from driftboard.queue_names import Queue
from evals.models import EvalRun
from evals.run_kinds import RUN_KINDS
from evals.services.pipeline import eval_run_fail, eval_run_fail_by_id
from evals.services.run_states import TRANSITIONS, TransitionRefused, held_by
from registry.models import Artifact
from tests.factories import ArtifactFactory, EvalRunFactory

# (transition, from) pairs that move a run, and where each transition takes it: the life cycle as
# written down, so a change to it shows here.
ALLOWED = {
    ("queue", "pending"),
    ("queue", "deferred"),
    ("defer", "pending"),
    ("unqueue", "queued"),
    ("claim", "queued"),
    ("claim", "running"),
    ("release", "running"),
    ("recover", "running"),
    ("succeed", "running"),
    ("fail", "running"),
    ("retry", "failed"),
    ("hold", "pending"),
    ("lift", "budget"),
}
TARGETS = {
    "queue": "queued",
    "defer": "deferred",
    "unqueue": "pending",
    "claim": "running",
    "release": "queued",
    "recover": "pending",
    "succeed": "succeeded",
    "fail": "failed",
    "retry": "pending",
    "hold": "budget",
    "lift": "pending",
}
BY_NAME = {transition.name: transition for transition in TRANSITIONS}
EVERY_MOVE = list(itertools.product(sorted(TARGETS), EvalRun.Status.values))


def test_it_names_every_transition_of_the_table():
    assert {name: t.target for name, t in BY_NAME.items()} == TARGETS


@pytest.mark.parametrize(("name", "status"), [move for move in EVERY_MOVE if move in ALLOWED])
def test_it_moves_a_run_from_a_status_its_transition_allows(db, name, status):
    run = EvalRunFactory(status=status)

    assert BY_NAME[name].move(run.pk) is True

    run.refresh_from_db()
    assert run.status == TARGETS[name]
    if run.status != EvalRun.Status.RUNNING:
        assert run.lease_expires_at is None
    assert (run.finished_at is not None) == (run.status in (EvalRun.Status.SUCCEEDED, EvalRun.Status.FAILED))


@pytest.mark.parametrize(("name", "status"), [move for move in EVERY_MOVE if move not in ALLOWED])
def test_it_refuses_a_status_a_transition_cannot_come_from(db, name, status):
    run = EvalRunFactory(status=status)

    with pytest.raises(TransitionRefused, match=f"{status} → {TARGETS[name]} refused"):
        BY_NAME[name].move(run.pk, error="written by a refused transition")

    run.refresh_from_db()
    assert (run.status, run.error) == (status, "")


def test_it_moves_only_the_rows_of_a_queryset_that_may_move(db):
    runs = {status: EvalRunFactory(status=status) for status in EvalRun.Status.values}

    assert BY_NAME["recover"].apply(EvalRun.objects.all()) == 1

    assert {run.status for run in EvalRun.objects.all()} == set(EvalRun.Status.values) - {"running"}
    assert EvalRun.objects.get(pk=runs["running"].pk).status == "pending"


def test_it_writes_nothing_when_the_run_was_taken_over_by_another_worker(db):
    run = EvalRunFactory(status="running", worker="w2")

    assert BY_NAME["succeed"].move(run.pk, guard=held_by("w1"), tokens=99) is False

    run.refresh_from_db()
    assert (run.status, run.worker, run.tokens, run.finished_at) == ("running", "w2", 0, None)


def test_it_records_no_failure_from_a_worker_that_lost_the_run(db):
    artifact = ArtifactFactory(status=Artifact.Status.SCORING)
    run = EvalRunFactory(artifact=artifact, status="running", worker="w2")
    stale = EvalRun.objects.get(pk=run.pk)
    stale.worker = "w1"  # the copy the first worker holds, from before its lease expired

    assert eval_run_fail(run=stale, message="CUDA out of memory") is False
    eval_run_fail_by_id(run_id=run.pk, worker="w1", message="Scoring exceeded its time limit.")

    run.refresh_from_db()
    artifact.refresh_from_db()
    assert (run.status, run.error, artifact.status) == ("running", "", Artifact.Status.SCORING)


def test_it_declares_every_run_kind_once(db):
    assert set(RUN_KINDS) == set(EvalRun.Kind.values)
    for kind, run_kind in RUN_KINDS.items():
        assert run_kind.kind == kind
        assert run_kind.queue in Queue.values and run_kind.retried_on(run_kind.retry_queue)
        assert callable(run_kind.scorer())
        assert run_kind.follow_up() is None or callable(run_kind.follow_up())
        assert run_kind.recorder() is None or callable(run_kind.recorder())
