"""The EvalRun life cycle: every status change is one of these named transitions.

    pending ─queue→ queued ─claim→ running ─succeed→ succeeded
    pending ─defer→ deferred ─queue→ queued          running ─fail→ failed ─retry→ pending
    queued ─unqueue→ pending (the broker refused it)  running ─release→ queued (a transient error)
    running ─recover→ pending (its worker vanished)    running ─claim→ running (an expired lease)
    pending ─hold→ budget (its family is over its weekly budget) ─lift→ pending (staff lifted it)

Each is a conditional UPDATE on the source statuses (and on a caller's guard, such as "this worker
still holds it"), so two workers or dispatchers racing for a run never both win: a transition that
moves no row writes nothing. Moving one run from a status that is not a source raises
`TransitionRefused`, naming the statuses; moving a queryset moves only the rows that may move.
"""

from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.utils import timezone

from evals.models import EvalRun

Status = EvalRun.Status


class TransitionRefused(ValueError):
    """The run is in a status the transition cannot take it from."""

    def __init__(self, *, run_id: int, current: str | None, transition: "Transition"):
        self.run_id, self.current, self.transition = run_id, current, transition
        sources = " or ".join(sorted(transition.sources))
        super().__init__(
            f"Run {run_id} cannot {transition.name}: it is {current or 'gone'} ({current} → {transition.target} "
            f"refused; {transition.name} moves a {sources} run)."
        )


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[str]
    target: str

    def apply(self, runs: QuerySet[EvalRun], **fields) -> int:
        """Move those of `runs` that are in a source status; the number moved."""
        return runs.filter(status__in=self.sources).update(status=self.target, **self._stamped(fields))

    def move(self, run_id: int, *, guard: Q | None = None, **fields) -> bool:
        """Move one run, writing `fields` with its status. False when the run is in a source status
        but `guard` no longer holds (another worker has it): nothing is written then."""
        if self.apply(EvalRun.objects.filter(guard or Q(), pk=run_id), **fields):
            return True
        current = EvalRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        if current not in self.sources:
            raise TransitionRefused(run_id=run_id, current=current, transition=self)
        return False

    def _stamped(self, fields: dict) -> dict:
        # Only a running run holds a lease; a finished one records when it finished.
        stamps = {} if self.target == Status.RUNNING else {"lease_expires_at": None}
        if self.target in (Status.SUCCEEDED, Status.FAILED):
            stamps["finished_at"] = timezone.now()
        return stamps | fields


QUEUE = Transition("queue", frozenset({Status.PENDING, Status.DEFERRED}), Status.QUEUED)
DEFER = Transition("defer", frozenset({Status.PENDING}), Status.DEFERRED)
UNQUEUE = Transition("unqueue", frozenset({Status.QUEUED}), Status.PENDING)
CLAIM = Transition("claim", frozenset({Status.QUEUED, Status.RUNNING}), Status.RUNNING)
RELEASE = Transition("release", frozenset({Status.RUNNING}), Status.QUEUED)
RECOVER = Transition("recover", frozenset({Status.RUNNING}), Status.PENDING)
SUCCEED = Transition("succeed", frozenset({Status.RUNNING}), Status.SUCCEEDED)
FAIL = Transition("fail", frozenset({Status.RUNNING}), Status.FAILED)
RETRY = Transition("retry", frozenset({Status.FAILED}), Status.PENDING)
HOLD = Transition("hold", frozenset({Status.PENDING}), Status.BUDGET)
LIFT = Transition("lift", frozenset({Status.BUDGET}), Status.PENDING)

TRANSITIONS = (QUEUE, DEFER, UNQUEUE, CLAIM, RELEASE, RECOVER, SUCCEED, FAIL, RETRY, HOLD, LIFT)


def held_by(worker: str) -> Q:
    """The guard of a worker's own writes: the run is still this worker's."""
    return Q(worker=worker)
