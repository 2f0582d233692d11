"""Reads: what a verdict cost and what the caches and sampling saved, per artifact and per family week.

Built from the usage each run recorded (EvalRun.usage, evals/services/costs.py), priced now with
DRIFTBOARD_PRICES. `saved_share` is the share of the samples a full evaluation would have computed
that results taken from the caches, or left out by sequential sampling, avoided.
"""

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from evals.models import EvalRun, EvaluationProfile
from evals.run_records import Usage
from registry.models import Artifact, ModelFamily

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
# Versions and weeks a family's cost charts go back.
FAMILY_COST_VERSIONS = 30
FAMILY_COST_WEEKS = 12


@dataclass(frozen=True)
class Cost:
    worker_seconds: float
    forward_passes: int
    tokens_generated: int
    judge_tokens: int
    amount: float
    currency: str
    saved_share: float

    def as_dict(self) -> dict:
        return {
            "worker_seconds": round(self.worker_seconds, 3),
            "forward_passes": self.forward_passes,
            "tokens_generated": self.tokens_generated,
            "judge_tokens": self.judge_tokens,
            "amount": round(self.amount, 6),
            "currency": self.currency,
            "saved_share": round(self.saved_share, 4),
        }

    @property
    def text(self) -> str:
        """One line for pages and the PR comment: "cost $0.41 · saved 78 %"; without prices, the
        worker-seconds stand in for the money."""
        if prices_set():
            spent = money_text(self.amount, self.currency)
        else:
            spent = f"{self.worker_seconds:.1f} worker-seconds"
        return f"cost {spent} · saved {100 * self.saved_share:.0f} %"


def money_text(amount: float, currency: str) -> str:
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    figure = f"{amount:.2f}" if amount >= 0.01 or amount == 0 else f"{amount:.4f}"
    return f"{symbol}{figure}" if symbol else f"{figure} {currency}"


def runs_cost(runs: Iterable[EvalRun]) -> Cost | None:
    """The cost of the runs that recorded their usage (None if none did: they ran before it was kept)."""
    usages = [run.usage_record for run in runs if run.usage]
    if not usages:
        return None
    prices = settings.DRIFTBOARD_PRICES
    full = sum(usage.samples_full for usage in usages)
    computed = sum(usage.samples_computed for usage in usages)
    return Cost(
        worker_seconds=sum(usage.worker_seconds for usage in usages),
        forward_passes=sum(usage.forward_passes for usage in usages),
        tokens_generated=sum(usage.tokens_generated for usage in usages),
        judge_tokens=sum(usage.judge_tokens for usage in usages),
        amount=sum(usage.amount(prices) for usage in usages),
        currency=prices.currency,
        saved_share=min(1.0, max(0.0, 1 - computed / full)) if full else 0.0,
    )


def artifact_cost(artifact: Artifact) -> Cost | None:
    """The artifact's verdict's cost (its runs prefetched by the detail querysets are used as they are)."""
    return runs_cost(artifact.runs.all())


def prices_set() -> bool:
    prices = settings.DRIFTBOARD_PRICES
    return bool(prices.gpu_hour or prices.judge_1k_tokens)


@dataclass(frozen=True)
class FamilyCosts:
    """A family's cost charts: money when prices are set, worker-seconds otherwise (`unit`)."""

    # (version, spent, saved share) of the latest versions with recorded usage, oldest first.
    per_version: list[tuple[int, float, float]]
    # (Monday of the week, spent) of the latest weeks with recorded usage, oldest first.
    per_week: list[tuple[datetime.date, float]]
    unit: str


def family_costs(family: ModelFamily) -> FamilyCosts:
    runs = EvalRun.objects.filter(artifact__family=family, status=EvalRun.Status.SUCCEEDED).exclude(usage={})
    by_artifact: dict[int, list[EvalRun]] = {}
    by_week: dict[datetime.date, list[EvalRun]] = {}
    for run in runs.only("artifact_id", "finished_at", "usage").order_by("finished_at"):
        by_artifact.setdefault(run.artifact_id, []).append(run)
        day = run.finished_at.date()
        by_week.setdefault(day - datetime.timedelta(days=day.weekday()), []).append(run)
    versions = Artifact.objects.filter(pk__in=by_artifact).order_by("-version").values_list("pk", "version")
    priced = prices_set()

    def spent(cost: Cost) -> float:
        return cost.amount if priced else cost.worker_seconds

    per_version = []
    for artifact_id, version in list(versions[:FAMILY_COST_VERSIONS])[::-1]:
        cost = runs_cost(by_artifact[artifact_id])
        per_version.append((version, spent(cost), cost.saved_share))
    weeks = sorted(by_week)[-FAMILY_COST_WEEKS:]
    return FamilyCosts(
        per_version=per_version,
        per_week=[(week, spent(runs_cost(by_week[week]))) for week in weeks],
        unit=settings.DRIFTBOARD_PRICES.currency if priced else "worker-seconds",
    )


# Recent artifacts a pre-run estimate is drawn from.
ESTIMATE_ARTIFACTS = 10


class BudgetState:
    """Where a family stands against its weekly budget."""

    NONE = "none"  # no budget set
    WITHIN = "within"
    SOFT = "soft"  # past DRIFTBOARD_BUDGET_SOFT_SHARE: sampled runs, non-gating runs off-peak
    OVER = "over"  # past the budget: new runs are deferred, unless staff lifted it this week
    LIFTED = "lifted"  # over, but staff lifted it until the week's end: runs as when soft


def week_start(now: datetime.datetime) -> datetime.datetime:
    """Monday 00:00 UTC of `now`'s week."""
    day = now.astimezone(datetime.UTC).date()
    monday = day - datetime.timedelta(days=day.weekday())
    return datetime.datetime.combine(monday, datetime.time(), tzinfo=datetime.UTC)


def family_week_spent(family: ModelFamily, now: datetime.datetime | None = None) -> float:
    """What the family's runs that finished this week (UTC, from Monday) cost at today's prices."""
    runs = EvalRun.objects.filter(
        artifact__family=family, finished_at__gte=week_start(now or timezone.now()), status=EvalRun.Status.SUCCEEDED
    ).exclude(usage={})
    cost = runs_cost(runs.only("usage"))
    return cost.amount if cost else 0.0


def family_budget_state(family: ModelFamily, now: datetime.datetime | None = None) -> str:
    profile = EvaluationProfile.objects.filter(family=family).first()
    if profile is None or profile.weekly_budget is None:
        return BudgetState.NONE
    now = now or timezone.now()
    spent = family_week_spent(family, now)
    if spent >= profile.weekly_budget:
        lifted = profile.budget_lifted_until is not None and profile.budget_lifted_until > now
        return BudgetState.LIFTED if lifted else BudgetState.OVER
    if spent >= settings.DRIFTBOARD_BUDGET_SOFT_SHARE * profile.weekly_budget:
        return BudgetState.SOFT
    return BudgetState.WITHIN


def artifact_estimated_cost(artifact: Artifact) -> dict | None:
    """What evaluating the artifact should cost, before it runs: the family's recent cost per computed
    sample times the samples its runs hold, less the share that the caches (their recent hit rate) and
    sampling avoided. None until the family has runs with recorded usage."""
    runs = (
        EvalRun.objects.filter(artifact__family=artifact.family, status=EvalRun.Status.SUCCEEDED)
        .exclude(usage={})
        .exclude(artifact=artifact)
    )
    recent = list(runs.order_by("-artifact__version").values_list("artifact_id", flat=True).distinct())
    recent = list(dict.fromkeys(recent))[:ESTIMATE_ARTIFACTS]
    usages = [Usage.from_json(usage) for usage in runs.filter(artifact_id__in=recent).values_list("usage", flat=True)]
    full = sum(usage.samples_full for usage in usages)
    scored = sum(usage.samples_scored for usage in usages)
    cached = sum(usage.samples_cached for usage in usages)
    computed = scored - cached
    if not full or computed <= 0:
        return None
    prices = settings.DRIFTBOARD_PRICES
    samples = sum(artifact.runs.values_list("samples_total", flat=True))
    # The recent runs computed `computed` of `full` samples: the rest came from caches or was sampled away.
    expected = samples * computed / full
    return {
        "amount": round(sum(usage.amount(prices) for usage in usages) / computed * expected, 6),
        "worker_seconds": round(sum(usage.worker_seconds for usage in usages) / computed * expected, 3),
        "currency": prices.currency,
        "cache_hit_rate": round(cached / scored, 4) if scored else 0.0,
        "based_on_artifacts": len(recent),
    }
