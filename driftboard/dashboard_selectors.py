"""Reads for the dashboard pages. Every function runs a fixed number of queries, whatever the data size;
per-sample arrays are loaded only for the one comparison a page charts."""

import datetime
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from evals.models import DriftVerdict, EvalRun, GoldenSample, MetricSnapshot, Threshold
from evals.scoring.drift import METRICS, historical_band
from evals.scoring.summary import per_sample_values
from registry import selectors as registry_selectors
from registry.models import Artifact, ModelFamily, PromotionEvent, TelemetryTag

ARRAY_FIELDS = ("positions", "numerators", "denominators")
PROMOTING_ACTIONS = (PromotionEvent.Action.PROMOTE, PromotionEvent.Action.BASELINE)
RECENT_LIMIT = 10
TOP_REGRESSIONS = 20
EXCERPT_CHARS = 160
BYTES_PER_SAMPLE = 4 + 8 + 8  # MetricSnapshot: int32 position, float64 numerator and denominator
SERIES_ARTIFACT_FIELDS = ("id", "family_id", "version", "commit_sha", "branch", "created_at")
SERIES_SNAPSHOT_FIELDS = (
    "artifact_id",
    "dataset_id",
    "value",
    "ci_low",
    "ci_high",
    "metric",
    "dataset__name",
    "dataset__version",
    "complete",
)


# Home


@dataclass(frozen=True)
class FamilySummary:
    family: ModelFamily
    production: Artifact | None


def families_with_production() -> list[FamilySummary]:
    """Each family with its production artifact: the newest on the base branch, else the newest at all."""
    families = list(ModelFamily.objects.all())
    by_family: dict[int, list[Artifact]] = defaultdict(list)
    for artifact in Artifact.objects.filter(stage=Artifact.Stage.PRODUCTION).select_related("family"):
        by_family[artifact.family_id].append(artifact)
    production = {
        family_id: max(artifacts, key=lambda a: (a.branch == a.family.base_branch, a.version))
        for family_id, artifacts in by_family.items()
    }
    return [FamilySummary(family, production.get(family.pk)) for family in families]


def family_production(family: ModelFamily) -> Artifact | None:
    return registry_selectors.production_artifact(family) or (
        family.artifacts.filter(stage=Artifact.Stage.PRODUCTION).order_by("-version").first()
    )


def latest_candidates(limit: int = RECENT_LIMIT) -> list[Artifact]:
    return list(
        Artifact.objects.filter(stage=Artifact.Stage.STAGING)
        .select_related("family", "pull_request")
        .order_by("-created_at", "-id")[:limit]
    )


def flag_counts() -> list[tuple[str, str, int]]:
    """(flag, label, count) for every drift flag, zeros included, in the order of the choices."""
    counts = dict(Artifact.objects.values_list("drift_flag").annotate(count=Count("id")).order_by())
    return [(value, label, counts.get(value, 0)) for value, label in Artifact.DriftFlag.choices]


def overdue_thresholds() -> list[Threshold]:
    return list(
        Threshold.objects.filter(enabled=True, review_by__lt=timezone.now().date())
        .select_related("family")
        .order_by("review_by")
    )


def failed_runs(limit: int = RECENT_LIMIT) -> list[EvalRun]:
    return list(
        EvalRun.objects.filter(status=EvalRun.Status.FAILED)
        .select_related("artifact__family", "dataset")
        .order_by("-finished_at", "-id")[:limit]
    )


# Artifact list


def artifact_page_queryset(filters: dict[str, str]) -> QuerySet[Artifact]:
    return registry_selectors.artifact_list(filters=filters).order_by("-created_at", "-id")


def artifact_filter_choices() -> dict[str, list[str]]:
    return {
        "families": list(ModelFamily.objects.values_list("slug", flat=True)),
        "branches": list(Artifact.objects.values_list("branch", flat=True).distinct().order_by("branch")),
    }


# Artifact review page


def artifact_review(pk: int) -> Artifact:
    """The artifact with everything the review page lists, prefetched; per-sample arrays left out."""
    return (
        Artifact.objects.select_related("family", "pull_request", "parent")
        .prefetch_related(
            Prefetch("tags", queryset=TelemetryTag.objects.order_by("key")),
            Prefetch("children", queryset=Artifact.objects.order_by("version")),
            Prefetch("runs", queryset=EvalRun.objects.select_related("dataset").order_by("created_at", "id")),
            Prefetch("events", queryset=PromotionEvent.objects.select_related("actor").order_by("-created_at", "-id")),
            Prefetch(
                "snapshots",
                queryset=MetricSnapshot.objects.select_related("dataset")
                .defer(*ARRAY_FIELDS)
                .order_by("dataset__name", "metric"),
            ),
            Prefetch(
                "verdicts",
                queryset=DriftVerdict.objects.select_related("dataset", "threshold__family", "baseline").order_by(
                    "dataset__name", "metric"
                ),
            ),
        )
        .get(pk=pk)
    )


def artifact_progress(pk: int) -> tuple[Artifact, list[EvalRun]]:
    artifact = Artifact.objects.only("id", "status", "drift_flag").get(pk=pk)
    runs = list(EvalRun.objects.filter(artifact_id=pk).select_related("dataset").order_by("created_at", "id"))
    return artifact, runs


@dataclass(frozen=True)
class SampleRegression:
    position: int
    sample_id: str
    category: str
    excerpt: str
    candidate: float
    baseline: float
    delta: float


@dataclass(frozen=True)
class PairedSamples:
    """Candidate and baseline per-sample values of one metric, aligned sample by sample."""

    metric: str
    direction: str
    positions: np.ndarray
    candidate: np.ndarray
    baseline: np.ndarray

    @property
    def deltas(self) -> np.ndarray:
        """Per-sample change in metric units, signed so that negative means worse."""
        sign = 1.0 if self.direction == "higher" else -1.0
        return sign * (self.candidate - self.baseline)


def paired_samples(verdict: DriftVerdict) -> PairedSamples | None:
    """Load both snapshots' arrays for one verdict (two queries) and pair them by dataset position."""
    if verdict.baseline_id is None:
        return None
    snapshots = {
        snapshot.artifact_id: snapshot
        for snapshot in MetricSnapshot.objects.filter(
            artifact_id__in=[verdict.artifact_id, verdict.baseline_id],
            dataset_id=verdict.dataset_id,
            metric=verdict.metric,
        )
    }
    candidate, baseline = snapshots.get(verdict.artifact_id), snapshots.get(verdict.baseline_id)
    if candidate is None or baseline is None:
        return None
    spec = METRICS[verdict.metric]
    cand_pos, cand_num, cand_den = candidate.arrays()
    base_pos, base_num, base_den = baseline.arrays()
    common, cand_idx, base_idx = np.intersect1d(cand_pos, base_pos, assume_unique=True, return_indices=True)
    return PairedSamples(
        metric=verdict.metric,
        direction=spec.direction,
        positions=common,
        candidate=per_sample_values(spec, cand_num[cand_idx], cand_den[cand_idx]),
        baseline=per_sample_values(spec, base_num[base_idx], base_den[base_idx]),
    )


def top_regressions(pairs: PairedSamples, dataset_id: int, limit: int = TOP_REGRESSIONS) -> list[SampleRegression]:
    """The samples whose per-sample value got worse the most, with a text excerpt of each (one query)."""
    deltas = pairs.deltas
    finite = np.flatnonzero(np.isfinite(deltas))
    worst = finite[np.argsort(deltas[finite], kind="stable")][:limit]
    worst = [i for i in worst if deltas[i] < 0]
    samples = GoldenSample.objects.filter(dataset_id=dataset_id, position__in=[int(pairs.positions[i]) for i in worst])
    by_position = {sample.position: sample for sample in samples}
    rows = []
    for i in worst:
        sample = by_position.get(int(pairs.positions[i]))
        text = sample.text if sample else ""
        rows.append(
            SampleRegression(
                position=int(pairs.positions[i]),
                sample_id=sample.sample_id if sample else "",
                category=sample.category if sample else "",
                excerpt=text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…",
                candidate=float(pairs.candidate[i]),
                baseline=float(pairs.baseline[i]),
                delta=float(deltas[i]),
            )
        )
    return rows


# Time series per family × metric × dataset


@dataclass(frozen=True)
class SeriesPoint:
    artifact: Artifact
    value: float
    ci_low: float
    ci_high: float
    baseline_value: float | None
    outcome: str
    marker: str  # "promoted", "halted" or ""
    band_low: float | None
    band_high: float | None


@dataclass
class Series:
    metric: str
    dataset_id: int
    dataset_label: str
    direction: str
    band_k: float
    thresholds: list[Threshold] = field(default_factory=list)
    points: list[SeriesPoint] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.metric}-{self.dataset_id}"


@dataclass(frozen=True)
class _SeriesInputs:
    """Everything a family's series are built from, loaded once (rows as tuples: thousands of points)."""

    artifacts: dict[int, Artifact]
    verdicts: dict[tuple[int, int, str], tuple[float | None, str]]
    markers: dict[int, str]
    thresholds: list[Threshold]


def family_series(family: ModelFamily, *, metric: str = "", dataset_id: int | None = None) -> list[Series]:
    """One series per metric × dataset of the family (optionally just one), points in creation order."""
    snapshots = MetricSnapshot.objects.filter(artifact__family=family)
    if metric:
        snapshots = snapshots.filter(metric=metric)
    if dataset_id:
        snapshots = snapshots.filter(dataset_id=dataset_id)
    inputs = _SeriesInputs(
        artifacts={a.pk: a for a in family.artifacts.only(*SERIES_ARTIFACT_FIELDS)},
        verdicts={
            (artifact_id, dataset, name): (baseline_value, outcome)
            for artifact_id, dataset, name, baseline_value, outcome in DriftVerdict.objects.filter(
                artifact__family=family
            ).values_list("artifact_id", "dataset_id", "metric", "baseline_value", "outcome")
        },
        markers=artifact_markers(family),
        thresholds=list(
            Threshold.objects.filter(Q(family=family) | Q(family__isnull=True), enabled=True).order_by("id")
        ),
    )
    grouped: dict[tuple[str, int], list] = defaultdict(list)
    for row in snapshots.values_list(*SERIES_SNAPSHOT_FIELDS, named=True):
        grouped[(row.metric, row.dataset_id)].append(row)
    ordered = sorted(grouped.values(), key=lambda rows: (rows[0].dataset__name, rows[0].metric))
    return [_series(rows, inputs) for rows in ordered]


def artifact_markers(family: ModelFamily) -> dict[int, str]:
    """'promoted' or 'halted' by artifact id, whichever of those events came last."""
    events = PromotionEvent.objects.filter(
        artifact__family=family, action__in=[*PROMOTING_ACTIONS, PromotionEvent.Action.HALT]
    ).order_by("created_at", "id")
    return {
        artifact_id: "halted" if action == PromotionEvent.Action.HALT else "promoted"
        for artifact_id, action in events.values_list("artifact_id", "action")
    }


def _series(rows: list, inputs: _SeriesInputs) -> Series:
    """rows: one metric × dataset of the family, as named tuples of SERIES_SNAPSHOT_FIELDS."""
    metric, dataset_id, dataset_name = rows[0].metric, rows[0].dataset_id, rows[0].dataset__name
    applying = [t for t in inputs.thresholds if t.metric == metric and t.dataset_name in ("", dataset_name)]
    band_rule = next((t for t in applying if t.rule == Threshold.Rule.BAND), None)
    window = band_rule.band_window if band_rule else settings.DRIFTBOARD_BAND_WINDOW
    series = Series(
        metric=metric,
        dataset_id=dataset_id,
        dataset_label=f"{dataset_name} v{rows[0].dataset__version}",
        direction=METRICS[metric].direction,
        band_k=band_rule.limit if band_rule else settings.DRIFTBOARD_BAND_K,
        thresholds=applying,
    )
    rows.sort(key=lambda row: (inputs.artifacts[row.artifact_id].created_at, row.artifact_id))
    production_values: list[float] = []
    band_edges: tuple[float | None, float | None] = (None, None)
    for row in rows:
        baseline_value, outcome = inputs.verdicts.get((row.artifact_id, dataset_id, metric), (None, ""))
        marker = inputs.markers.get(row.artifact_id, "")
        series.points.append(
            SeriesPoint(
                artifact=inputs.artifacts[row.artifact_id],
                value=row.value,
                ci_low=row.ci_low,
                ci_high=row.ci_high,
                baseline_value=baseline_value,
                outcome=outcome,
                marker=marker,
                band_low=band_edges[0],
                band_high=band_edges[1],
            )
        )
        if marker == "promoted" and row.complete:
            production_values.append(row.value)
            band = historical_band(production_values[-window:], robust=band_rule.band_robust if band_rule else False)
            band_edges = band.edges(series.band_k) if band else (None, None)
    return series


# Thresholds


def threshold_list() -> list[Threshold]:
    """Current records with their latest change (who, when, why) annotated from the history."""
    history = Threshold.history.model.objects.filter(id=OuterRef("pk")).order_by("-history_id")
    return list(
        Threshold.objects.select_related("family")
        .annotate(
            changed_at=Subquery(history.values("history_date")[:1]),
            changed_by=Subquery(history.values("history_user__username")[:1]),
            change_reason=Subquery(history.values("history_change_reason")[:1]),
        )
        .order_by("family__slug", "metric", "id")
    )


def threshold_detail(pk: int) -> Threshold:
    return Threshold.objects.select_related("family").get(pk=pk)


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: object
    new: object


@dataclass(frozen=True)
class HistoryEntry:
    record: object  # a HistoricalThreshold row
    changes: list[FieldChange]


def threshold_history(threshold: Threshold) -> list[HistoryEntry]:
    """Newest first; each entry with the fields it changed against the version before it."""
    records = list(threshold.history.select_related("history_user").order_by("-history_id"))
    family_slugs = dict(ModelFamily.objects.values_list("pk", "slug"))
    entries = []
    for newer, older in zip(records, [*records[1:], None], strict=True):
        changes = (
            []
            if older is None
            else [
                FieldChange(change.field, *_readable(change.field, (change.old, change.new), family_slugs))
                for change in newer.diff_against(older).changes
            ]
        )
        entries.append(HistoryEntry(record=newer, changes=changes))
    return entries


def _readable(field_name: str, values: tuple[object, object], family_slugs: dict[int, str]) -> tuple[object, object]:
    if field_name != "family":
        return values
    return tuple(family_slugs.get(value, "all families") if value else "all families" for value in values)


# Queues


@dataclass(frozen=True)
class QueueStats:
    wait_p50: float | None
    wait_p95: float | None
    waits_counted: int
    finished_last_day: int
    runs_per_hour: float
    tokens_per_second: float | None
    hourly_finished: list[tuple[datetime.datetime, int]]


def runs_in_status(status: str, limit: int = 50) -> list[EvalRun]:
    return list(
        EvalRun.objects.filter(status=status)
        .select_related("artifact__family", "dataset")
        .order_by("created_at", "id")[:limit]
    )


def run_status_counts() -> dict[str, int]:
    counts = Counter(dict(EvalRun.objects.values_list("status").annotate(count=Count("id")).order_by()))
    return {label: counts.get(value, 0) for value, label in EvalRun.Status.choices}


def queue_stats(now: datetime.datetime | None = None) -> QueueStats:
    """Wait times (started − enqueued) and throughput over the last 24 hours."""
    now = now or timezone.now()
    since = now - datetime.timedelta(hours=24)
    started = EvalRun.objects.filter(started_at__gte=since, enqueued_at__isnull=False)
    waits = np.array([(s - e).total_seconds() for e, s in started.values_list("enqueued_at", "started_at")])
    finished = list(
        EvalRun.objects.filter(status=EvalRun.Status.SUCCEEDED, finished_at__gte=since).values_list(
            "started_at", "finished_at", "tokens"
        )
    )
    busy_seconds = sum((end - start).total_seconds() for start, end, _ in finished if start)
    tokens = sum(count for start, _, count in finished if start)
    return QueueStats(
        wait_p50=float(np.percentile(waits, 50)) if len(waits) else None,
        wait_p95=float(np.percentile(waits, 95)) if len(waits) else None,
        waits_counted=len(waits),
        finished_last_day=len(finished),
        runs_per_hour=len(finished) / 24,
        tokens_per_second=tokens / busy_seconds if busy_seconds > 0 else None,
        hourly_finished=_hourly_counts([end for _, end, _ in finished], since, now),
    )


def _hourly_counts(
    moments: list[datetime.datetime], since: datetime.datetime, now: datetime.datetime
) -> list[tuple[datetime.datetime, int]]:
    """Counts per clock hour from `since` to `now`, empty hours included, oldest first."""

    def hour_of(moment: datetime.datetime) -> datetime.datetime:
        return moment.replace(minute=0, second=0, microsecond=0)

    first, last = hour_of(since), hour_of(now)
    hours = [first + datetime.timedelta(hours=i) for i in range(int((last - first).total_seconds() // 3600) + 1)]
    counts = Counter(hour_of(moment) for moment in moments)
    return [(hour, counts.get(hour, 0)) for hour in hours]


def snapshot_storage_by_day(days: int = 30) -> list[tuple[datetime.date, int, int]]:
    """(day, MetricSnapshot rows created, bytes of per-sample arrays stored) for each of the last `days` days.

    Bytes come from n: each sample stores an int32 position and two float64 values. Summing n reads
    no blob, where LENGTH() over the arrays would read (or detoast) every one of them.
    """
    today = timezone.now().date()
    first = today - datetime.timedelta(days=days - 1)
    stored = {
        day: (rows, total or 0)
        for day, rows, total in MetricSnapshot.objects.filter(created_at__date__gte=first)
        .annotate(day=TruncDate("created_at"))
        .values_list("day")
        .annotate(rows=Count("id"), stored=Sum("n") * BYTES_PER_SAMPLE)
        .order_by("day")
    }
    calendar = [first + datetime.timedelta(days=offset) for offset in range(days)]
    return [(day, *stored.get(day, (0, 0))) for day in calendar]
