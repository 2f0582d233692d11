"""Reads for the dashboard pages. Every function runs a fixed number of queries, whatever the data size;
per-sample arrays are loaded only for the one comparison a page charts."""

import datetime
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db.models import (
    CharField,
    Count,
    Exists,
    F,
    FilteredRelation,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, TruncDate
from django.utils import timezone
from django.utils.safestring import SafeString

from driftboard.dashboard.markdown import markdown_html
from evals import label_selectors
from evals.models import Acknowledgement, DriftVerdict, EvalRun, GoldenDataset, MetricSnapshot, Threshold
from evals.scoring.drift import historical_band
from evals.scoring.scorers import METRICS, SCORERS, on_judge_queue
from evals.selectors import (
    attention,
    change_text,
    metric_label,
    verdict_gated_comparable,
    verdict_shown_outcome,
    verdicts_worst_first,
)
from registry import publishing
from registry import selectors as registry_selectors
from registry.models import Artifact, ModelFamily, PromotionEvent, TelemetryTag

ARRAY_FIELDS = ("positions", "numerators", "denominators")
RECENT_LIMIT = 10
TOP_REGRESSIONS = 20
BYTES_PER_SAMPLE = 4 + 8 + 8  # MetricSnapshot: int32 position, float64 numerator and denominator


# Home


@dataclass(frozen=True)
class FamilySummary:
    family: ModelFamily
    production: Artifact | None


def families_with_production() -> list[FamilySummary]:
    """Each family with its production artifact (the registry's rule: newest production on the base branch)."""
    families = list(ModelFamily.objects.all())
    production = registry_selectors.production_artifacts()
    return [FamilySummary(family, production.get(family.pk)) for family in families]


def family_production(family: ModelFamily) -> Artifact | None:
    return registry_selectors.production_artifact(family)


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


def overdue_thresholds(*, unacknowledged: bool = False) -> list[Threshold]:
    """Enabled thresholds past their review date; `unacknowledged`: those no reviewer has acknowledged
    as overdue since that date."""
    thresholds = list(
        Threshold.objects.filter(enabled=True, review_by__lt=timezone.now().date())
        .select_related("family")
        .order_by("review_by")
    )
    for threshold in thresholds:
        # What an acknowledgement of it is about: this threshold, overdue since this date.
        threshold.attention_key = attention.threshold_key(threshold)
    if unacknowledged:
        seen = attention.acknowledged_keys(Acknowledgement.Kind.THRESHOLD)
        thresholds = [t for t in thresholds if t.attention_key not in seen]
    return thresholds


def failed_runs(limit: int | None = RECENT_LIMIT, *, unresolved: bool = False) -> list[EvalRun]:
    """Failed runs, newest first. `unresolved`: only those no later run of the same artifact, dataset and
    kind has taken over (one that succeeded, or is waiting or running) and no reviewer has acknowledged,
    as "Needs attention" lists them."""
    return list(_failed_runs(unresolved=unresolved).order_by("-finished_at", "-id")[:limit])


def unresolved_failed_run(key: str) -> EvalRun | None:
    """The failed run "Needs attention" lists under this acknowledgement key, while it lists it."""
    if not key.isdigit():
        return None
    run = _failed_runs(unresolved=True).filter(pk=int(key)).first()
    return run if run is not None and attention.run_key(run) == key else None


def _failed_runs(*, unresolved: bool) -> QuerySet[EvalRun]:
    runs = EvalRun.objects.filter(status=EvalRun.Status.FAILED)
    if unresolved:
        later = EvalRun.objects.filter(
            artifact=OuterRef("artifact"), dataset=OuterRef("dataset"), kind=OuterRef("kind"), pk__gt=OuterRef("pk")
        ).exclude(status=EvalRun.Status.FAILED)
        acknowledged = Acknowledgement.objects.filter(
            kind=Acknowledgement.Kind.RUN, key=Cast(OuterRef("pk"), CharField())
        )
        runs = runs.exclude(Exists(later)).exclude(Exists(acknowledged))
    return runs.select_related("artifact__family", "dataset")


@dataclass(frozen=True)
class UncalibratedJudge:
    family: ModelFamily
    judge: label_selectors.JudgeAgreement

    @property
    def key(self) -> str:
        """What an acknowledgement of it is about: this family's judge configuration."""
        return attention.judge_key(self.family.pk, self.judge.configuration.key)


def uncalibrated_judges() -> list[UncalibratedJudge]:
    """Judge configurations that fail calibration (the Judges page's rule: too few agreeing labels and no
    staff trust), so cap their verdicts at amber; only those that judged a live artifact (a candidate or
    production), not the configurations of archived versions. One query, then the Judges page's reads for
    each family with such a judge."""
    judge_metrics = [spec.name for scorer in SCORERS.values() if on_judge_queue(scorer) for spec in scorer.metrics]
    live: dict[int, set[label_selectors.JudgeConfiguration]] = defaultdict(set)
    rows = (
        MetricSnapshot.objects.filter(metric__in=judge_metrics)
        .exclude(artifact__stage=Artifact.Stage.ARCHIVED)
        .values_list("artifact__family_id", "metric", "fingerprint")
    )
    for family_id, metric, fingerprint in rows:
        configuration = label_selectors.judge_configuration_of(MetricSnapshot(metric=metric, fingerprint=fingerprint))
        if configuration is not None:
            live[family_id].add(configuration)
    families = ModelFamily.objects.filter(pk__in=live).order_by("slug")
    seen = attention.acknowledged_keys(Acknowledgement.Kind.JUDGE)
    rows = [
        UncalibratedJudge(family, judge)
        for family in families
        for judge in label_selectors.judge_agreements(family)
        if not judge.calibrated and judge.configuration in live[family.pk]
    ]
    return [row for row in rows if row.key not in seen]


# Artifact list


@dataclass(frozen=True)
class Headline:
    """An artifact's headline metric in a list: its worst gated verdict (else its worst verdict)."""

    metric_label: str
    change_text: str
    outcome: str


def with_headlines(artifacts: list[Artifact]) -> list[Artifact]:
    """The artifacts, each with `headline` (a Headline, or None when never compared), in one query."""
    verdicts: dict[int, list[DriftVerdict]] = defaultdict(list)
    rows = DriftVerdict.objects.filter(artifact__in=[artifact.pk for artifact in artifacts]).only(
        "artifact_id", "dataset_id", "metric", "delta", "outcome", "threshold_id", "threshold_history_id", "band_low"
    )
    for verdict in rows:
        verdicts[verdict.artifact_id].append(verdict)
    for artifact in artifacts:
        ranked = verdicts_worst_first(verdicts[artifact.pk])
        first = next((v for v in ranked if verdict_gated_comparable(v)), ranked[0] if ranked else None)
        artifact.headline = (
            Headline(metric_label(first.metric), change_text(first.metric, first.delta), verdict_shown_outcome(first))
            if first
            else None
        )
    return artifacts


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


@dataclass(frozen=True)
class CommentPreview:
    """What the pull request is told of an artifact: its commit status, and the comment once judged."""

    status_context: str
    state: str
    description: str
    markdown: str | None
    posted: bool
    note: str

    @property
    def html(self) -> SafeString | str:
        return markdown_html(self.markdown) if self.markdown else ""


def comment_preview(pk: int) -> CommentPreview:
    """The very status and comment the publish queue sends for the artifact (loaded as it loads it), and
    whether they were sent: the comment is previewed even where no forge is configured."""
    artifact = Artifact.objects.select_related("family", "pull_request").get(pk=pk)
    report = publishing.artifact_report(artifact)
    posted, note = _comment_delivery(artifact, report.comment is not None)
    return CommentPreview(
        status_context=publishing.status_context(artifact.family),
        state=report.state,
        description=report.description,
        markdown=report.comment,
        posted=posted,
        note=note,
    )


def _comment_delivery(artifact: Artifact, judged: bool) -> tuple[bool, str]:
    """(posted, why not): the comment on the pull request shows this artifact, or the reason it does not."""
    link = artifact.pull_request
    if not publishing.forge_configured(link.provider if link else ""):
        where = f" for {link.get_provider_display()}" if link else ""
        return False, f"Not posted: no forge is configured{where}."
    if link is None:
        return False, "Not posted: the artifact is on no pull request."
    if not judged:
        return False, "Not posted yet: the comment is written once the verdict is in."
    if publishing.comment_superseded(artifact):
        return False, "Not posted: the comment shows a newer version on the same pull request."
    if not link.comment_id:
        return False, "Not posted yet: waiting on the publish queue."
    return True, ""


def artifact_progress(pk: int) -> tuple[Artifact, list[EvalRun]]:
    artifact = Artifact.objects.only("id", "status", "drift_flag", "stage").get(pk=pk)
    runs = list(EvalRun.objects.filter(artifact_id=pk).select_related("dataset").order_by("created_at", "id"))
    return artifact, runs


# Time series per family × metric × dataset

SERIES_ROW_FIELDS = (
    "artifact_id",
    "dataset_id",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "complete",
    "dataset__name",
    "dataset__version",
    "tokenizer_hash",
    "judged__outcome",
    "judged__baseline_value",
    "judged__threshold_id",
    "judged__threshold_history_id",
    "judged__band_low",
)
SERIES_ARTIFACT_FIELDS = (
    "id",
    "created_at",
    "version",
    "commit_sha",
    "branch",
    "pr_url",
    "pull_request__repository",
    "pull_request__number",
)
THRESHOLD_HISTORY_FIELDS = (
    "id",
    "history_id",
    "history_type",
    "metric",
    "dataset_name",
    "rule",
    "limit",
    "severity",
    "enabled",
    "band_window",
    "band_robust",
)
# Newest artifacts a time series draws unless asked for all (?all=1): about 12 px apart on a wide screen.
SERIES_WINDOW = 100
GOLDEN = GoldenDataset.Purpose.GOLDEN
MARKING_ACTIONS = {
    PromotionEvent.Action.PROMOTE: "promoted",
    PromotionEvent.Action.BASELINE: "promoted",
    PromotionEvent.Action.HALT: "halted",
    PromotionEvent.Action.HOLD: "held",
}


@dataclass(frozen=True)
class SeriesArtifact:
    """What every series of a family shows of one artifact, loaded once for all of them."""

    id: int
    version: int
    commit_sha: str
    branch: str
    pull_request: str
    created_at: datetime.datetime
    # Threshold id → the history_id of its version in force when the artifact was judged (None: not in force).
    thresholds_in_force: dict[int, int | None]

    @property
    def label(self) -> str:
        """The category on the time axis: `v7 · a1b2c3d`."""
        return f"v{self.version} · {self.commit_sha[:7]}"


@dataclass(frozen=True)
class SeriesPoint:
    artifact: SeriesArtifact
    value: float
    ci_low: float
    ci_high: float
    baseline_value: float | None
    outcome: str  # as shown: green / amber / red / incomparable / ungated; "" when never compared
    marker: str  # "promoted", "halted", "held" or ""
    band_low: float | None
    band_high: float | None
    tokenizer_changed: bool


@dataclass(frozen=True)
class ThresholdStep:
    """One threshold's limit in force at each point of a series (None where it was not in force)."""

    threshold_id: int
    rule: str
    severities: list[str | None]
    limits: list[float | None]


@dataclass
class Series:
    metric: str
    dataset_id: int
    dataset_label: str
    direction: str
    band_k: float
    points: list[SeriesPoint] = field(default_factory=list)
    thresholds: list[ThresholdStep] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.metric}-{self.dataset_id}"


@dataclass(frozen=True)
class _SeriesInputs:
    artifacts: dict[int, SeriesArtifact]  # the drawn ones, in commit order
    anchor: int | None  # the artifact just before the drawn ones: its tokenizer is compared, it is not drawn
    tokenizers: dict[int, str]  # artifact id → the tokenizer hash its snapshots were scored with
    markers: dict[int, str]
    versions: dict[int, tuple]  # history_id → a threshold version (named tuple of THRESHOLD_HISTORY_FIELDS)
    prior_production: dict[tuple[str, int], list[float]]  # (metric, dataset) → production values before the window


def family_series(
    family: ModelFamily, *, metric: str = "", dataset_id: int | None = None, last: int | None = SERIES_WINDOW
) -> list[Series]:
    """One series per metric × dataset of the family (optionally just one), points in commit order.

    Only the `last` newest artifacts are drawn (all of them with last=None): the band before the first one
    comes from the production values before it, which the database picks out. A fixed number of queries
    whatever the size, the database doing the joins and the "which threshold version was in force"
    lookups: threshold history, artifacts, decision events, earlier production values, snapshots with
    their verdicts.
    """
    versions = {
        record.history_id: record
        for record in Threshold.history.filter(Q(family_id=family.pk) | Q(family_id__isnull=True)).values_list(
            *THRESHOLD_HISTORY_FIELDS, named=True
        )
    }
    artifacts = _series_artifacts(family, sorted({v.id for v in versions.values()}), last)
    anchor = next(iter(artifacts)) if last is not None and len(artifacts) > last else None
    drawn = {pk: artifact for pk, artifact in artifacts.items() if pk != anchor}
    markers = artifact_markers(family)
    inputs = _SeriesInputs(
        artifacts=drawn,
        anchor=anchor,
        tokenizers={},
        markers=markers,
        versions=versions,
        prior_production=_prior_production(family, markers, drawn, _band_windows(versions)),
    )
    order = {artifact_id: index for index, artifact_id in enumerate(artifacts)}
    grouped: dict[tuple[str, int], list] = defaultdict(list)
    for row in _series_rows(list(artifacts), metric, dataset_id):
        if row.tokenizer_hash:
            inputs.tokenizers.setdefault(row.artifact_id, row.tokenizer_hash)
        if row.artifact_id != anchor:
            grouped[(row.metric, row.dataset_id)].append(row)
    for rows in grouped.values():
        rows.sort(key=lambda row: order[row.artifact_id])
    gated = _gated_metrics(versions)
    # The gated metrics first, so the page opens on what decides promotion (not on, say, answer length).
    ordered = sorted(
        grouped.values(), key=lambda rows: (rows[0].metric not in gated, rows[0].dataset__name, rows[0].metric)
    )
    return [_series(rows, inputs) for rows in ordered]


def _gated_metrics(versions: dict[int, tuple]) -> set[str]:
    """The metrics a threshold's latest version gates today."""
    latest: dict[int, tuple] = {}
    for history_id in sorted(versions):
        latest[versions[history_id].id] = versions[history_id]
    return {version.metric for version in latest.values() if _in_force(version)}


def _band_windows(versions: dict[int, tuple]) -> int:
    """How many past production values any band of these thresholds (or the default band) looks at."""
    windows = [v.band_window for v in versions.values() if v.rule == Threshold.Rule.BAND]
    return max([settings.DRIFTBOARD_BAND_WINDOW, *windows])


def _prior_production(
    family: ModelFamily, markers: dict[int, str], drawn: dict[int, "SeriesArtifact"], window: int
) -> dict[tuple[str, int], list[float]]:
    """The complete values of the last `window` promoted artifacts before the drawn ones, oldest first."""
    promoted = [pk for pk, marker in markers.items() if marker == "promoted" and pk not in drawn]
    if not promoted:
        return {}
    before = drawn and next(iter(drawn.values()))
    earlier = family.artifacts.filter(pk__in=promoted)
    if before:
        earlier = earlier.filter(
            Q(created_at__lt=before.created_at) | Q(created_at=before.created_at, pk__lt=before.id)
        )
    ids = list(earlier.order_by("-created_at", "-id").values_list("id", flat=True)[:window])
    order = {pk: index for index, pk in enumerate(reversed(ids))}
    values: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
    rows = MetricSnapshot.objects.filter(artifact_id__in=ids, complete=True, dataset__purpose=GOLDEN).order_by()
    for artifact_id, dataset_id, metric, value in rows.values_list("artifact_id", "dataset_id", "metric", "value"):
        values[(metric, dataset_id)].append((order[artifact_id], value))
    return {key: [value for _, value in sorted(pairs)] for key, pairs in values.items()}


def _series_artifacts(family: ModelFamily, threshold_ids: list[int], last: int | None) -> dict[int, SeriesArtifact]:
    """The newest `last` + 1 artifacts (all with None) in commit order, each with the threshold versions in
    force when it was judged."""
    judged_at = Coalesce("scored_at", "created_at")
    in_force = {
        f"in_force_{threshold_id}": Subquery(
            Threshold.history.filter(id=threshold_id, history_date__lte=OuterRef("judged_at"))
            .order_by("-history_date", "-history_id")
            .values("history_id")[:1]
        )
        for threshold_id in threshold_ids
    }
    newest = (
        family.artifacts.annotate(judged_at=judged_at)
        .annotate(**in_force)
        .order_by("-created_at", "-id")
        .values_list(*SERIES_ARTIFACT_FIELDS, *in_force, named=True)
    )
    rows = newest if last is None else newest[: last + 1]
    return {row.id: _series_artifact(row, threshold_ids) for row in reversed(list(rows))}


def _series_artifact(row, threshold_ids: list[int]) -> SeriesArtifact:
    if row.pull_request__number:
        pull_request = f"{row.pull_request__repository}#{row.pull_request__number}"
    else:
        pull_request = row.pr_url
    return SeriesArtifact(
        id=row.id,
        version=row.version,
        commit_sha=row.commit_sha,
        branch=row.branch,
        pull_request=pull_request,
        created_at=row.created_at,
        thresholds_in_force={t: getattr(row, f"in_force_{t}") for t in threshold_ids},
    )


def _series_rows(artifact_ids: list[int], metric: str, dataset_id: int | None):
    judged = FilteredRelation(
        "artifact__verdicts",
        condition=Q(artifact__verdicts__dataset_id=F("dataset_id"), artifact__verdicts__metric=F("metric")),
    )
    # The production model's scores on traffic windows have their own page (the traffic tab).
    snapshots = MetricSnapshot.objects.filter(artifact_id__in=artifact_ids, dataset__purpose=GOLDEN)
    if metric:
        snapshots = snapshots.filter(metric=metric)
    if dataset_id:
        snapshots = snapshots.filter(dataset_id=dataset_id)
    annotated = snapshots.annotate(judged=judged, tokenizer_hash=KT("fingerprint__tokenizer_hash"))
    return annotated.order_by().values_list(*SERIES_ROW_FIELDS, named=True)


def artifact_markers(family: ModelFamily) -> dict[int, str]:
    """'promoted', 'halted' or 'held' by artifact id, whichever of those decisions came last."""
    events = PromotionEvent.objects.filter(artifact__family=family, action__in=list(MARKING_ACTIONS)).order_by(
        "created_at", "id"
    )
    return {artifact_id: MARKING_ACTIONS[action] for artifact_id, action in events.values_list("artifact_id", "action")}


def _series(rows: list, inputs: _SeriesInputs) -> Series:
    """rows: one metric × dataset of the family in commit order, as named tuples of SERIES_ROW_FIELDS."""
    metric, dataset_id, dataset_name = rows[0].metric, rows[0].dataset_id, rows[0].dataset__name
    applying = {
        v.history_id: v for v in inputs.versions.values() if v.metric == metric and v.dataset_name in ("", dataset_name)
    }
    band_rule = _current_band_rule(applying)
    window = band_rule.band_window if band_rule else settings.DRIFTBOARD_BAND_WINDOW
    series = Series(
        metric=metric,
        dataset_id=dataset_id,
        dataset_label=f"{dataset_name} v{rows[0].dataset__version}",
        direction=METRICS[metric].direction,
        band_k=band_rule.limit if band_rule else settings.DRIFTBOARD_BAND_K,
    )
    production_values = list(inputs.prior_production.get((metric, dataset_id), []))
    band_edges = _band_edges(production_values, window, series.band_k, band_rule)
    previous_tokenizer = inputs.tokenizers.get(inputs.anchor)
    for row in rows:
        artifact = inputs.artifacts[row.artifact_id]
        marker = inputs.markers.get(row.artifact_id, "")
        tokenizer = inputs.tokenizers.get(row.artifact_id)
        changed = bool(previous_tokenizer and tokenizer and tokenizer != previous_tokenizer)
        series.points.append(_point(row, artifact, marker, band_edges, changed))
        previous_tokenizer = tokenizer or previous_tokenizer
        if marker == "promoted" and row.complete:
            production_values.append(row.value)
            band_edges = _band_edges(production_values, window, series.band_k, band_rule)
    series.thresholds = _threshold_steps(series.points, applying)
    return series


def _band_edges(values: list[float], window: int, k: float, band_rule) -> tuple[float | None, float | None]:
    band = historical_band(values[-window:], robust=band_rule.band_robust if band_rule else False)
    return band.edges(k) if band else (None, None)


def _current_band_rule(applying: dict[int, tuple]):
    latest: dict[int, tuple] = {}
    for history_id in sorted(applying):
        latest[applying[history_id].id] = applying[history_id]
    return next((v for v in latest.values() if v.rule == Threshold.Rule.BAND and _in_force(v)), None)


def _point(row, artifact: SeriesArtifact, marker: str, band_edges: tuple, tokenizer_changed: bool) -> SeriesPoint:
    outcome = ""
    if row.judged__outcome is not None:
        verdict = _VerdictFields(
            row.judged__outcome, row.judged__threshold_id, row.judged__threshold_history_id, row.judged__band_low
        )
        outcome = verdict_shown_outcome(verdict)
    return SeriesPoint(
        artifact=artifact,
        value=row.value,
        ci_low=row.ci_low,
        ci_high=row.ci_high,
        baseline_value=row.judged__baseline_value,
        outcome=outcome,
        marker=marker,
        band_low=band_edges[0],
        band_high=band_edges[1],
        tokenizer_changed=tokenizer_changed,
    )


@dataclass(frozen=True)
class _VerdictFields:
    outcome: str
    threshold_id: int | None
    threshold_history_id: int | None
    band_low: float | None


def _in_force(version) -> bool:
    return version is not None and version.history_type != "-" and version.enabled


def _threshold_steps(points: list[SeriesPoint], applying: dict[int, tuple]) -> list[ThresholdStep]:
    """For each threshold on this metric and dataset, the version in force when each point was judged."""
    steps = []
    for threshold_id in sorted({v.id for v in applying.values()}):
        in_force = []
        for point in points:
            version = applying.get(point.artifact.thresholds_in_force.get(threshold_id))
            in_force.append(version if _in_force(version) else None)
        if any(in_force):
            steps.append(
                ThresholdStep(
                    threshold_id=threshold_id,
                    rule=next(v.rule for v in reversed(in_force) if v),
                    severities=[v.severity if v else None for v in in_force],
                    limits=[v.limit if v else None for v in in_force],
                )
            )
    return steps


# Thresholds


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
    number: int  # the version as the threshold's own history counts them, 1 as first saved


def threshold_version_numbers(history_ids: list[int | None]) -> dict[int, int]:
    """history_id → the version's number in its own threshold's history (1 as first saved), in one query."""
    wanted = {history_id for history_id in history_ids if history_id is not None}
    if not wanted:
        return {}
    records = Threshold.history.model.objects.order_by("id", "history_id")
    rows = records.filter(id__in=records.filter(history_id__in=wanted).values("id")).values_list("id", "history_id")
    numbers, counts = {}, {}
    for threshold_id, history_id in rows:
        counts[threshold_id] = counts.get(threshold_id, 0) + 1
        if history_id in wanted:
            numbers[history_id] = counts[threshold_id]
    return numbers


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
        entries.append(HistoryEntry(record=newer, changes=changes, number=len(records) - len(entries)))
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
