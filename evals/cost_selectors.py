"""Reads for /metrics: what the finished runs used, cost and avoided, all of them together, and where each
family with a weekly budget stands this week.

Summed in the database from the usage each run recorded (EvalRun.usage), per device kind, and priced with
DRIFTBOARD_PRICES as evals/costs.py prices one artifact's runs; only judge runs' judge tokens, keyed by the
judge model, are read row by row.
"""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, FloatField, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from driftboard.prices import Prices
from evals.costs import week_start
from evals.models import EvalRun, EvaluationProfile
from evals.run_kinds import JUDGING_KINDS
from evals.run_records import Usage

COUNTS = ("forward_passes", "tokens_scored", "tokens_generated", "samples_full", "samples_scored", "samples_cached")


@dataclass(frozen=True)
class UsageTotals:
    """The usage of every run that succeeded and recorded it."""

    amount: float
    currency: str
    # Worker-seconds by device: its kind (`cpu`, the GPU's model name), or the device when it has none
    # (`judge`: a judge run waits on its judge).
    worker_seconds: dict[str, float]
    forward_passes: int = 0
    tokens_scored: int = 0
    tokens_generated: int = 0
    samples_full: int = 0  # what full runs would have scored
    samples_scored: int = 0
    samples_cached: int = 0  # results taken from the caches, counted per scorer and sample

    @property
    def samples_sampled_out(self) -> int:
        """Samples that sequential runs decided without and no completion run has scored yet."""
        return max(0, self.samples_full - self.samples_scored)

    @property
    def saved_share(self) -> float:
        """The share of a full evaluation's samples that caches and sampling avoided (as `runs_cost`'s)."""
        if not self.samples_full:
            return 0.0
        return min(1.0, max(0.0, 1 - (self.samples_scored - self.samples_cached) / self.samples_full))


def _finished() -> QuerySet[EvalRun]:
    return EvalRun.objects.filter(status=EvalRun.Status.SUCCEEDED).exclude(usage={})


def _number(name: str) -> Coalesce:
    return Coalesce(Sum(Cast(KT(f"usage__{name}"), FloatField())), 0.0)


def _device_amount(prices: Prices, device_kind: str, seconds: float) -> float:
    return prices.device_hour(device_kind) * seconds / 3600


def _judge_amount(prices: Prices, usage: dict) -> float:
    """What a judge run's judge tokens cost, per judge model."""
    return sum(
        prices.judge_amount(model, prompt_tokens=calls.prompt_tokens, completion_tokens=calls.completion_tokens)
        for model, calls in Usage.from_json(usage).judges.items()
    )


def usage_totals() -> UsageTotals:
    """Every finished run's usage summed (one query, plus one over the judge runs) and priced now."""
    prices = settings.DRIFTBOARD_PRICES
    runs = _finished()
    rows = (
        runs.order_by()
        .annotate(used_kind=KT("usage__device_kind"), used_device=KT("usage__device"))
        .values("used_kind", "used_device")
        .annotate(seconds=_number("worker_seconds"), **{name: _number(name) for name in COUNTS})
    )
    seconds: dict[str, float] = {}
    counts = dict.fromkeys(COUNTS, 0)
    judged = runs.filter(kind__in=JUDGING_KINDS).values_list("usage", flat=True)
    amount = sum(_judge_amount(prices, usage) for usage in judged)
    for row in rows:
        label = row["used_kind"] or row["used_device"] or "unknown"
        seconds[label] = seconds.get(label, 0.0) + row["seconds"]
        amount += _device_amount(prices, row["used_kind"] or "", row["seconds"])
        for name in COUNTS:
            counts[name] += round(row[name])
    return UsageTotals(amount=amount, currency=prices.currency, worker_seconds=seconds, **counts)


@dataclass(frozen=True)
class BudgetUse:
    family: str
    weekly_budget: float
    spent: float  # by its runs finished this week (from Monday 00:00 UTC), at today's prices

    @property
    def used_ratio(self) -> float:
        return self.spent / self.weekly_budget if self.weekly_budget else 0.0


def budget_uses(now: datetime.datetime | None = None) -> list[BudgetUse]:
    """Each family with a weekly budget, by slug, and what its runs spent of it this week (three queries)."""
    prices = settings.DRIFTBOARD_PRICES
    profiles = EvaluationProfile.objects.filter(weekly_budget__isnull=False).order_by("family__slug")
    budgets = {
        family_id: (slug, budget)
        for family_id, slug, budget in profiles.values_list("family_id", "family__slug", "weekly_budget")
    }
    runs = _finished().filter(artifact__family_id__in=budgets, finished_at__gte=week_start(now or timezone.now()))
    spent = dict.fromkeys(budgets, 0.0)
    rows = (
        runs.order_by()
        .annotate(family=F("artifact__family_id"), used_kind=KT("usage__device_kind"))
        .values("family", "used_kind")
        .annotate(seconds=_number("worker_seconds"))
    )
    for row in rows:
        spent[row["family"]] += _device_amount(prices, row["used_kind"] or "", row["seconds"])
    judged = runs.filter(kind__in=JUDGING_KINDS).values_list("artifact__family_id", "usage")
    for family_id, usage in judged:
        spent[family_id] += _judge_amount(prices, usage)
    return [
        BudgetUse(family=slug, weekly_budget=budget, spent=spent[family_id])
        for family_id, (slug, budget) in budgets.items()
    ]
