"""Judges: a stored reply about an answer, the judge and settings a snapshot was judged with, what judging cost."""

import datetime
from dataclasses import dataclass

from django.db.models import Count, FloatField, Max, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from evals.models import EvalRun, MetricSnapshot
from evals.run_kinds import JUDGING_KINDS
from evals.scoring.errors import ScoringError
from evals.scoring.judges.judging import JudgeSettings
from evals.scoring.judges.templates import TEMPLATE_VERSION

JUDGE_COUNTS = ("calls", "failures", "retries", "judge_errors", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class JudgeTotals:
    """The judge runs' `judging["stats"]` summed: judge calls, calls that failed past their retries,
    retries, judge errors (samples no valid reply judged), tokens, call seconds and the slowest call."""

    runs: int
    calls: int
    failures: int
    retries: int
    judge_errors: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    slowest: float | None

    @property
    def mean_latency(self) -> float | None:
        return self.seconds / self.calls if self.calls else None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _judge_stat(name: str) -> Cast:
    return Cast(KT(f"judging__stats__{name}"), FloatField())


def judge_totals(since: datetime.datetime | None = None) -> JudgeTotals:
    """What the judge runs finished since `since` (else ever) cost, summed in the database (one query)."""
    runs = EvalRun.objects.filter(kind__in=JUDGING_KINDS, judging__has_key="stats")
    if since is not None:
        runs = runs.filter(finished_at__gte=since)
    totals = runs.order_by().aggregate(
        runs=Count("id"),
        seconds=Sum(_judge_stat("seconds")),
        slowest=Max(_judge_stat("slowest")),
        **{name: Sum(_judge_stat(name)) for name in JUDGE_COUNTS},
    )
    return JudgeTotals(
        runs=totals["runs"],
        seconds=float(totals["seconds"] or 0.0),
        slowest=totals["slowest"],
        **{name: round(totals[name] or 0) for name in JUDGE_COUNTS},
    )


@dataclass(frozen=True)
class JudgeReply:
    """One stored judge reply about an answer (judge output: untrusted text) and what it meant."""

    repeat: int
    reply: str
    value: float | None
    error: str


JudgeFacts = tuple[str, JudgeSettings]


def judge_facts_of(snapshot: MetricSnapshot | None) -> JudgeFacts | None:
    """(judge identity, settings) a pointwise judge metric's snapshot was judged with, from its fingerprint;
    None for any other metric, or for another template version (its requests cannot be rebuilt)."""
    settings = ((snapshot.fingerprint or {}).get("settings") if snapshot else None) or {}
    if not isinstance(settings, dict) or not settings.get("judge") or settings.get("template") != TEMPLATE_VERSION:
        return None
    try:
        judging = JudgeSettings(
            mode=settings.get("mode", "pointwise"),
            repeats=int(settings.get("repeats") or 1),
            rubric=settings.get("rubric") or None,
        )
    except (ScoringError, TypeError, ValueError):
        return None
    return (str(settings["judge"]), judging) if judging.mode == "pointwise" else None
