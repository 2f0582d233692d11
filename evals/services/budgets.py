"""A family's weekly budget, applied when its runs are created: past DRIFTBOARD_BUDGET_SOFT_SHARE of it,
full runs sample sequentially and non-gating runs wait for the off-peak queue; past it, new runs are
held as `deferred (budget)` with an alert, until a staff user lifts the budget for the rest of the week
with a reason, or the family is no longer over it (a new week began, its budget was raised): beat then
releases them. Spend is read from the runs' recorded usage (evals/costs.py)."""

import datetime
import logging

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from driftboard.queue_names import Queue
from driftboard.queues import enqueue
from evals.costs import BudgetState, family_budget_state, family_week_spent, money_text, week_start
from evals.models import EvalRun, EvaluationProfile
from evals.registry_changes import AlertNotice
from evals.services.run_states import HOLD, LIFT
from registry.models import Alert, Artifact, ModelFamily

logger = logging.getLogger(__name__)

# The cause of a family's budget alert, resolved when its held runs are let go.
BUDGET_CAUSE = "budget"

# States in which the family saves: sampled full runs, non-gating runs off-peak.
SAVING = (BudgetState.SOFT, BudgetState.OVER, BudgetState.LIFTED)


def full_run_kind(*, family: ModelFamily, sampled: bool) -> str:
    """The kind of a new gating run: sequential when the family samples, or when it is past its soft share."""
    if sampled or family_budget_state(family) in SAVING:
        return EvalRun.Kind.SEQUENTIAL
    return EvalRun.Kind.FULL


def non_gating_queue(*, family: ModelFamily, queue: str) -> str:
    """Where a new non-gating run goes: its own queue, or off-peak once the family is past its soft share."""
    return Queue.OFFPEAK if family_budget_state(family) in SAVING else queue


def artifact_runs_hold(*, artifact: Artifact, runs: list[EvalRun]) -> AlertNotice | None:
    """Hold the artifact's new runs when its family is over its weekly budget (and not lifted); the alert
    to raise then (one per family until the budget is lifted), None when not held."""
    family = artifact.family
    if family_budget_state(family) != BudgetState.OVER:
        return None
    HOLD.apply(EvalRun.objects.filter(pk__in=[run.pk for run in runs]))
    budget = EvaluationProfile.objects.get(family=family).weekly_budget
    currency = settings.DRIFTBOARD_PRICES.currency
    return AlertNotice(
        severity=Alert.Severity.WARNING,
        title=f"{family.slug} is over its weekly budget: new runs are deferred",
        message=f"{family.slug} spent {money_text(family_week_spent(family), currency)} of its weekly budget of "
        f"{money_text(budget, currency)}; its new runs wait until the week ends or staff lift the budget.",
        payload={"family": family.slug, "version": artifact.version, "weekly_budget": budget},
        cause=BUDGET_CAUSE,
    )


def family_budget_lift(
    *, family: ModelFamily, actor: AbstractBaseUser, reason: str, now: datetime.datetime | None = None
) -> int:
    """Let the family's runs past its budget until the week ends: who and why are kept on its profile, its
    held runs go back to pending and are dispatched. The runs released; the pipeline resolves the family's
    budget alert (`pipeline.family_budget_lift`)."""
    until = week_start(now or timezone.now()) + datetime.timedelta(days=7)
    with transaction.atomic():
        EvaluationProfile.objects.update_or_create(
            family=family,
            defaults={"budget_lifted_until": until, "budget_lifted_by": actor, "budget_lift_reason": reason},
        )
        released = LIFT.apply(EvalRun.objects.filter(artifact__family=family, status=EvalRun.Status.BUDGET))
        transaction.on_commit(_dispatch)
    return released


def families_to_release(*, now: datetime.datetime) -> list[ModelFamily]:
    """The families holding runs over a weekly budget that they are no longer over (a new week began at
    Monday 00:00 UTC, or the budget was raised)."""
    family_ids = set(EvalRun.objects.filter(status=EvalRun.Status.BUDGET).values_list("artifact__family_id", flat=True))
    return [
        family
        for family in ModelFamily.objects.filter(pk__in=family_ids).order_by("slug")
        if family_budget_state(family, now) != BudgetState.OVER
    ]


def family_holds_release(*, family: ModelFamily, now: datetime.datetime) -> int:
    """Send the family's held runs back to pending and dispatch them once the transaction commits. The runs
    released: the conditional UPDATE decides, so a concurrent release moves none of these rows."""
    released = LIFT.apply(EvalRun.objects.filter(artifact__family=family, status=EvalRun.Status.BUDGET))
    if released:
        transaction.on_commit(_dispatch)
        logger.info(
            "Released %d run(s) of %s held over its weekly budget: it is no longer over it (week from %s).",
            released,
            family.slug,
            week_start(now).date().isoformat(),
        )
    return released


def _dispatch() -> None:
    from evals.tasks import sweep_runs

    enqueue(sweep_runs, what="the released runs wait for the next sweep")
