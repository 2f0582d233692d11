"""`/metrics` for Prometheus: queues, runs, throughput, judging, verdicts, cost, savings and budget use read at
scrape time, plus HTTP latency.

The database and broker figures are computed on each scrape (a few aggregate queries), so every
web process reports the same values. HTTP latency is observed by RequestLatencyMiddleware; under
gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR so that all workers' observations are
merged (see docs/deploy.md).

Access: DRIFTBOARD_METRICS_TOKEN (sent as `Authorization: Bearer …`) and/or
DRIFTBOARD_METRICS_ALLOWED_IPS (addresses or networks); with neither set the endpoint is off.
"""

import hmac
import ipaddress
import os
import time
from collections import defaultdict
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from driftboard.queues import QUEUES, queue_depths
from evals.cost_selectors import budget_uses, usage_totals
from evals.models import DriftVerdict, EvalRun
from evals.selectors import drafting_totals, judge_totals

WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, float("inf"))
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

HTTP_LATENCY = Histogram(
    "driftboard_http_request_duration_seconds",
    "Time from request to response, by method, view name and status code.",
    ["method", "view", "status"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)


# Scrape-time figures


def _window_start() -> datetime:
    return timezone.now() - timedelta(seconds=settings.DRIFTBOARD_METRICS_WINDOW_SECONDS)


def queue_depth_metrics() -> list[GaugeMetricFamily]:
    depths = queue_depths()
    depth = GaugeMetricFamily("driftboard_queue_depth", "Messages waiting on the broker, by queue.", labels=["queue"])
    for queue, count in depths.items():
        if count is not None:
            depth.add_metric([queue], count)
    reachable = all(count is not None for count in depths.values())
    broker = GaugeMetricFamily("driftboard_broker_up", "1 when every queue's depth could be read from the broker.")
    broker.add_metric([], 1 if reachable else 0)
    return [depth, broker]


def runs_by_status_metric() -> GaugeMetricFamily:
    counts = dict(EvalRun.objects.order_by().values_list("status").annotate(n=Count("id")))
    family = GaugeMetricFamily("driftboard_runs", "Evaluation runs by status.", labels=["status"])
    for status in EvalRun.Status.values:
        family.add_metric([status], counts.get(status, 0))
    return family


def wait_histogram_metric(since: datetime) -> GaugeHistogramMetricFamily:
    """Queue wait (started − enqueued) of the runs that started within the window, per queue."""
    waits: dict[str, list[float]] = defaultdict(list)
    started = EvalRun.objects.filter(started_at__gte=since, enqueued_at__isnull=False).order_by()
    for queue, enqueued_at, started_at in started.values_list("queue", "enqueued_at", "started_at"):
        waits[queue].append(max(0.0, (started_at - enqueued_at).total_seconds()))
    family = GaugeHistogramMetricFamily(
        "driftboard_run_wait_seconds",
        "Queue wait of the runs started in the last DRIFTBOARD_METRICS_WINDOW_SECONDS, by queue.",
        labels=["queue"],
    )
    for queue in sorted(set(QUEUES) | set(waits)):
        values = waits.get(queue, [])
        buckets = [(floatToGoString(bound), sum(1 for v in values if v <= bound)) for bound in WAIT_BUCKETS]
        family.add_metric([queue], buckets, gsum_value=sum(values))
    return family


def oldest_waiting_metric(now: datetime) -> GaugeMetricFamily:
    """How long the oldest run still waiting on each queue has waited: the alert for a stuck queue."""
    waiting = EvalRun.objects.filter(status__in=EvalRun.WAITING, enqueued_at__isnull=False).order_by()
    oldest = waiting.values_list("queue").annotate(first=Min("enqueued_at"))
    family = GaugeMetricFamily(
        "driftboard_oldest_waiting_run_seconds", "Age of the oldest enqueued run not yet started.", labels=["queue"]
    )
    for queue, first in oldest:
        family.add_metric([queue], max(0.0, (now - first).total_seconds()))
    return family


def throughput_metric(since: datetime) -> GaugeMetricFamily:
    """Tokens scored per second of run time, over the runs that finished within the window."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    finished = EvalRun.objects.filter(
        status=EvalRun.Status.SUCCEEDED, finished_at__gte=since, started_at__isnull=False, tokens__gt=0
    ).order_by()
    for queue, tokens, started_at, finished_at in finished.values_list("queue", "tokens", "started_at", "finished_at"):
        totals[queue][0] += tokens
        totals[queue][1] += (finished_at - started_at).total_seconds()
    family = GaugeMetricFamily(
        "driftboard_scoring_tokens_per_second",
        "Σ tokens / Σ run seconds of the runs finished in the last DRIFTBOARD_METRICS_WINDOW_SECONDS.",
        labels=["queue"],
    )
    for queue, (tokens, seconds) in sorted(totals.items()):
        if seconds > 0:
            family.add_metric([queue], tokens / seconds)
    return family


def judge_metrics(since: datetime) -> list[CounterMetricFamily | GaugeMetricFamily]:
    """What the finished judge runs cost (counters over all of them) and their judge calls' latency
    (gauges over the runs finished within the window)."""
    ever, recent = judge_totals(), judge_totals(since)
    counters = [
        ("driftboard_judge_calls", "Calls the judge runs made to their judges.", ever.calls),
        ("driftboard_judge_failures", "Judge calls that failed past their retries.", ever.failures),
        ("driftboard_judge_retries", "Judge calls retried after a transient error.", ever.retries),
        (
            "driftboard_judge_errors",
            "Samples no valid judge reply judged (left out of their metric).",
            ever.judge_errors,
        ),
        ("driftboard_judge_call_seconds", "Seconds spent waiting on judge calls.", ever.seconds),
    ]
    families: list[CounterMetricFamily | GaugeMetricFamily] = [
        CounterMetricFamily(name, documentation, value=value) for name, documentation, value in counters
    ]
    tokens = CounterMetricFamily("driftboard_judge_tokens", "Tokens the judges reported, by kind.", labels=["kind"])
    tokens.add_metric(["prompt"], ever.prompt_tokens)
    tokens.add_metric(["completion"], ever.completion_tokens)
    latency = GaugeMetricFamily(
        "driftboard_judge_latency_seconds",
        "Mean judge call latency of the judge runs finished in the last DRIFTBOARD_METRICS_WINDOW_SECONDS.",
    )
    slowest = GaugeMetricFamily(
        "driftboard_judge_slowest_call_seconds",
        "Slowest judge call of the judge runs finished in the last DRIFTBOARD_METRICS_WINDOW_SECONDS.",
    )
    if recent.mean_latency is not None:
        latency.add_metric([], recent.mean_latency)
        slowest.add_metric([], recent.slowest or 0.0)
    return [*families, tokens, latency, slowest]


DRAFT_COUNTERS = {
    "answers": "Greedy answers drafted from stored answers.",
    "drafted_tokens": "Draft tokens fed to candidates.",
    "accepted_tokens": "Draft tokens the candidates' own greedy choices accepted.",
    "audited_answers": "Drafted answers also decoded plainly (the audit share).",
    "audited_tokens": "Tokens of the audited answers.",
    "audit_mismatches": "Audited answers whose drafted and plain decodings differed (the plain one was stored).",
    "forward_passes_saved": "Forward passes plain decoding of the same batches would have run beyond those run.",
}


def drafting_metrics() -> list[CounterMetricFamily]:
    """What drafting answers did over every finished run (counters)."""
    totals = drafting_totals().as_dict()
    return [
        CounterMetricFamily(f"driftboard_draft_{name}", documentation, value=totals[name])
        for name, documentation in DRAFT_COUNTERS.items()
    ]


USAGE_COUNTERS = {
    "forward_passes": "Forward passes the finished runs made.",
    "tokens_scored": "Tokens the finished runs scored.",
    "tokens_generated": "Answer tokens the finished runs generated.",
    "samples_full": "Samples full evaluations of the finished runs' golden sets would have computed.",
    "samples_scored": "Samples the finished runs scored (computed or taken from the caches).",
    "samples_cached": "Per-scorer sample results the finished runs took from the caches instead of computing them.",
}


def cost_metrics() -> list[CounterMetricFamily | GaugeMetricFamily]:
    """What every finished run used and cost (counters) and what the caches and sampling saved."""
    totals = usage_totals()
    amount = CounterMetricFamily(
        "driftboard_cost_amount",
        "Money of the finished runs, at today's DRIFTBOARD_PRICES (a corrected price list reprices it).",
        labels=["currency"],
    )
    amount.add_metric([totals.currency], totals.amount)
    seconds = CounterMetricFamily(
        "driftboard_worker_seconds", "Worker-seconds of the finished runs, by device kind.", labels=["device"]
    )
    for device, value in sorted(totals.worker_seconds.items()):
        seconds.add_metric([device], value)
    counters = [
        CounterMetricFamily(f"driftboard_{name}", documentation, value=getattr(totals, name))
        for name, documentation in USAGE_COUNTERS.items()
    ]
    sampled_out = GaugeMetricFamily(
        "driftboard_samples_sampled_out",
        "Samples sequential runs reached their verdicts without that no completion run has scored yet.",
        value=totals.samples_sampled_out,
    )
    saved = GaugeMetricFamily(
        "driftboard_saved_share",
        "Share of the finished runs' full-evaluation samples that the caches and sampling avoided computing.",
        value=totals.saved_share,
    )
    return [amount, seconds, *counters, sampled_out, saved]


def budget_metrics() -> list[GaugeMetricFamily]:
    """Where each family with a weekly budget stands this week (UTC, from Monday)."""
    ratio = GaugeMetricFamily(
        "driftboard_family_budget_used_ratio",
        "Share of its weekly budget a family's runs spent this week (1 or more: new runs are deferred).",
        labels=["family"],
    )
    spent = GaugeMetricFamily(
        "driftboard_family_budget_spent", "Money a family's runs spent this week.", labels=["family", "currency"]
    )
    budget = GaugeMetricFamily(
        "driftboard_family_weekly_budget", "A family's weekly budget.", labels=["family", "currency"]
    )
    currency = settings.DRIFTBOARD_PRICES.currency
    for use in budget_uses():
        ratio.add_metric([use.family], use.used_ratio)
        spent.add_metric([use.family, currency], use.spent)
        budget.add_metric([use.family, currency], use.weekly_budget)
    return [ratio, spent, budget]


def verdicts_metric() -> GaugeMetricFamily:
    counts = dict(DriftVerdict.objects.order_by().values_list("outcome").annotate(n=Count("id")))
    family = GaugeMetricFamily("driftboard_verdicts", "Drift verdicts recorded, by outcome.", labels=["outcome"])
    for outcome in DriftVerdict.Outcome.values:
        family.add_metric([outcome], counts.get(outcome, 0))
    return family


class DriftboardCollector(Collector):
    def collect(self):
        since = _window_start()
        yield from queue_depth_metrics()
        yield runs_by_status_metric()
        yield wait_histogram_metric(since)
        yield oldest_waiting_metric(timezone.now())
        yield throughput_metric(since)
        yield from judge_metrics(since)
        yield from drafting_metrics()
        yield verdicts_metric()
        yield from cost_metrics()
        yield from budget_metrics()


def metrics_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(HTTP_LATENCY)
    registry.register(DriftboardCollector())
    return registry


# Access


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DRIFTBOARD_METRICS_ALLOWED_IPS: {exc}") from exc


def address_allowed(address: str, entries: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(entries)))


def bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def access_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the scraper may read the metrics, else the response that says why not."""
    token, allowed_ips = settings.DRIFTBOARD_METRICS_TOKEN, settings.DRIFTBOARD_METRICS_ALLOWED_IPS
    if not (token or allowed_ips):
        return _plain("Metrics are off: set DRIFTBOARD_METRICS_TOKEN or DRIFTBOARD_METRICS_ALLOWED_IPS.", 404)
    if allowed_ips and not address_allowed(request.META.get("REMOTE_ADDR", ""), allowed_ips):
        return _plain("This address may not read the metrics.", 403)
    if token and not bearer_matches(request, token):
        response = _plain("A valid bearer token is required.", 401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return None


def _plain(message: str, status: int) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = access_refusal(request)
    if refusal is not None:
        return refusal
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(metrics_registry()), content_type=content_type)


# Request latency


def _view_label(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.view_name or match.route


class RequestLatencyMiddleware:
    """Observes every response's latency; labels stay few (view names, not paths)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in KNOWN_METHODS else "other"
        HTTP_LATENCY.labels(method, _view_label(request), str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response
