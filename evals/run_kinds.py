"""What each kind of EvalRun is: where it is sent, how it is scored, what it gates and what follows it.

One table, read by the services that create, dispatch, score and finish runs instead of an `if` per
kind. It sits below those services (they all read it), so it names their functions by dotted path,
as Django settings name backends; `tests/pipeline/test_run_life_cycle.py` checks that each resolves.
"""

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.utils.module_loading import import_string

from driftboard.queue_names import Queue, scoring_queue
from evals.models import EvalRun

Kind = EvalRun.Kind


@dataclass(frozen=True)
class RunKind:
    kind: str
    # Where a new run of the kind is sent, and where a failed one goes back to by default.
    queue: str
    retry_queue: str
    # Its snapshots gate the artifact: the verdict waits for it, and its stored answers serve as a
    # baseline's in pairwise judging.
    gates_artifact: bool
    # Answers it stores for the family's judges are judged by a judge run created with its scores.
    judged: bool
    # It judges stored answers: its `judging` records what the judge calls cost.
    judges: bool
    # `score(run=…, progress=…) -> engine.RunResult`.
    score: str
    # Called with `run=` once its scores are archived (after the verdict step when it gates the artifact),
    # outside any transaction: it may load a model. What it returns is handed to `record`.
    then: str = ""
    # Then called with `run=` and `prepared=` (what `then` returned) in one transaction with the
    # `RegistryChange` it returns, which the pipeline writes.
    record: str = ""

    def scorer(self) -> Any:
        return _resolved(self.score)

    def follow_up(self) -> Any:
        return _resolved(self.then) if self.then else None

    def recorder(self) -> Any:
        return _resolved(self.record) if self.record else None

    def retried_on(self, queue: str) -> bool:
        """Whether a failed run may be sent again to `queue`: a scoring run to any scoring queue (a
        memory size class's included), any other only to its own."""
        return scoring_queue(queue) if self.retry_queue == Queue.SCORING else queue == self.retry_queue


@cache
def _resolved(path: str) -> Any:
    return import_string(path)


RUN_KINDS: dict[str, RunKind] = {
    Kind.FULL: RunKind(
        kind=Kind.FULL,
        queue=Queue.SCORING,
        retry_queue=Queue.SCORING,
        gates_artifact=True,
        judged=True,
        judges=False,
        score="evals.services.engine.score_full_run",
    ),
    Kind.SEQUENTIAL: RunKind(
        kind=Kind.SEQUENTIAL,
        queue=Queue.SCORING,
        retry_queue=Queue.SCORING,
        gates_artifact=True,
        judged=True,
        judges=False,
        score="evals.services.sampling.score_sequential_run",
        then="evals.services.sampling.completion_schedule",
    ),
    Kind.COMPLETION: RunKind(
        kind=Kind.COMPLETION,
        queue=Queue.OFFPEAK,
        retry_queue=Queue.SCORING,
        gates_artifact=False,
        judged=False,
        judges=False,
        score="evals.services.sampling.score_completion_run",
        record="evals.services.sampling.completion_recheck",
    ),
    Kind.TRAFFIC: RunKind(
        kind=Kind.TRAFFIC,
        queue=Queue.TRAFFIC,
        retry_queue=Queue.SCORING,
        gates_artifact=False,
        judged=False,
        judges=False,
        score="evals.services.traffic.score_traffic_run",
        then="evals.services.traffic.traffic_window_measure",
        record="evals.services.traffic.traffic_window_record",
    ),
    Kind.JUDGE: RunKind(
        kind=Kind.JUDGE,
        queue=Queue.JUDGE,
        retry_queue=Queue.JUDGE,
        gates_artifact=True,
        judged=False,
        judges=True,
        score="evals.services.engine.score_judge_run",
    ),
}

GATING_KINDS = [kind for kind, run_kind in RUN_KINDS.items() if run_kind.gates_artifact]
JUDGING_KINDS = [kind for kind, run_kind in RUN_KINDS.items() if run_kind.judges]
