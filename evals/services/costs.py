"""What a finished run used, recorded on the run (EvalRun.usage) when it succeeds: the device, the
worker's seconds, forward passes, tokens, judge tokens per judge model, and the samples it did not
compute (taken from the caches, or left out by sequential sampling). Prices turn it into money when it
is read (evals/costs.py)."""

import datetime

import torch
from django.db.models import Sum
from django.utils import timezone

from evals.models import EvalRun
from evals.models import Generation as GenerationRow
from evals.run_records import JudgeCalls, JudgeRunStats, Usage
from evals.services.engine import RunResult


def run_usage_record(*, run: EvalRun, result: RunResult) -> dict:
    """Record on a run that just succeeded what it used, from its engine RunResult `result`."""
    finished_at = EvalRun.objects.values_list("finished_at", flat=True).get(pk=run.pk) or timezone.now()
    usage = run_usage(run=run, result=result, finished_at=finished_at)
    EvalRun.objects.filter(pk=run.pk).update(usage=usage)
    return usage


def run_usage(*, run: EvalRun, result: RunResult, finished_at: datetime.datetime) -> dict:
    """The usage of `run`, scored as `result` (an engine RunResult), finishing at `finished_at`."""
    return Usage(
        device=result.device,
        device_kind=device_kind(result.device),
        worker_seconds=round((finished_at - run.started_at).total_seconds(), 3) if run.started_at else 0.0,
        forward_passes=result.forward_passes,
        tokens_scored=result.tokens,
        tokens_generated=_tokens_generated(run, finished_at),
        judges=judge_tokens(result.judging.stats),
        # A completion run finishes the work its sequential run was counted for: it adds none.
        samples_full=0 if run.kind == EvalRun.Kind.COMPLETION else run.samples_total,
        samples_scored=result.samples_scored,
        samples_cached=result.cached_samples,
    ).to_json()


def device_kind(device: str) -> str:
    """What DRIFTBOARD_PRICES prices a device by: `cpu`, the GPU's model name, or nothing (a judge run
    waits on an endpoint: its judge tokens are its cost)."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu" if device == "cpu" else ""


def judge_tokens(stats: JudgeRunStats | None) -> dict[str, JudgeCalls]:
    """Calls and tokens per judge model, from a judge run's stats (`by_judge` is keyed by the judge's
    identity, `openai:<url>|<model>` or `local:<weights sha256>`): the model is what has a price."""
    tokens: dict[str, JudgeCalls] = {}
    for identity, calls in (stats.by_judge if stats else {}).items():
        model = identity.rsplit("|", 1)[1] if identity.startswith("openai:") else identity.split(":", 1)[0]
        tokens[model] = tokens.get(model, JudgeCalls()) + calls
    return tokens


def _tokens_generated(run: EvalRun, finished_at: datetime.datetime) -> int:
    """Answers are stored as they are generated, keyed by the weights: those stored while this run
    held the artifact's weights are the ones it generated."""
    if run.started_at is None or run.kind == EvalRun.Kind.JUDGE:
        return 0
    made = GenerationRow.objects.filter(
        weights_sha256=run.artifact.sha256, created_at__gte=run.started_at, created_at__lte=finished_at
    )
    return int(made.aggregate(total=Sum("tokens"))["total"] or 0)
