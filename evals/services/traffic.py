"""Traffic drift: production query logs come in as windows, the production model is scored on each
(through the ordinary worker, cached, sampled beyond DRIFTBOARD_TRAFFIC_SAMPLE_SIZE) and compared
with a reference with unpaired statistics (evals.scoring.traffic); golden subsets are drawn from logs.

A window is a GoldenDataset marked `traffic` (named `<family>-traffic`, one version per window):
hashed and immutable like a golden set, never scored as one. Promoting a window builds a new
version of the family's golden set from it.
"""

import dataclasses
import datetime
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from evals.models import EvalRun, GoldenDataset, MetricSnapshot, Threshold, TrafficWindow
from evals.registry_changes import AlertNotice, RegistryChange
from evals.run_kinds import RUN_KINDS
from evals.run_records import Sampling
from evals.scoring import golden_io
from evals.scoring import traffic as stats
from evals.scoring.cache import score_samples
from evals.scoring.embedding import embed_texts
from evals.scoring.errors import ScoringError
from evals.scoring.golden_io import GoldenFileError
from evals.scoring.scorers import METRICS
from evals.selectors import dataset_latest, evaluation_profile
from evals.services import budgets, engine
from evals.services.datasets import dataset_freeze
from evals.services.runs import eval_runs_dispatch
from evals.services.thresholds import DEFAULT_METRIC, threshold_version
from registry.models import Alert, Artifact, ModelFamily
from registry.selectors import production_artifact

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "prompt")
SEED_BITS = 32
SURPRISING_SHOWN = 20


class TrafficBacklogFull(Exception):
    """The family already has DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS traffic runs waiting or scoring."""


@dataclasses.dataclass(frozen=True)
class TrafficRows:
    samples: list[golden_io.Sample]
    timestamps: list[datetime.datetime | None]


# Reading logs


def traffic_rows_read(content: bytes, filename: str) -> TrafficRows:
    """Validated samples (`text`, else `prompt`) and their timestamps; errors name the row."""
    records = list(
        golden_io.read_records(
            content, filename, text_columns=TEXT_COLUMNS, max_rows=settings.DRIFTBOARD_MAX_TRAFFIC_ROWS
        )
    )
    timestamps = [_timestamp(record.get("timestamp"), row) for row, record in enumerate(records, start=1)]
    texts = [{**record, "text": _text_of(record)} for record in records]
    samples = golden_io.validated_samples(iter(texts), max_chars=settings.DRIFTBOARD_MAX_SAMPLE_CHARS)
    return TrafficRows(samples=samples, timestamps=timestamps)


def _text_of(record: Mapping) -> object:
    text = record.get("text")
    return record.get("prompt") if text is None or text == "" else text


def _timestamp(value: object, row: int) -> datetime.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)) or str(value).strip().lstrip("-").replace(".", "", 1).isdigit():
            return datetime.datetime.fromtimestamp(float(value), tz=datetime.UTC)
        parsed = datetime.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as error:
        raise GoldenFileError(
            f"timestamp {value!r} is neither ISO 8601 nor seconds since the epoch", row=row
        ) from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _split(rows: TrafficRows, window: str | None) -> list[tuple[datetime.datetime, datetime.datetime, list[int]]]:
    """(start, end, row indices) of each window, in time order; one window when `window` is None."""
    if window is None:
        known = [t for t in rows.timestamps if t is not None]
        now = timezone.now()
        return [(min(known, default=now), max(known, default=now), list(range(len(rows.samples))))]
    width = _window_width(window)
    missing = next((i for i, t in enumerate(rows.timestamps) if t is None), None)
    if missing is not None:
        raise GoldenFileError(f"no timestamp, needed to split by --window {window}", row=missing + 1)
    starts = stats.window_starts([t.timestamp() for t in rows.timestamps], width)
    groups: dict[int, list[int]] = defaultdict(list)
    for index, start in enumerate(starts.tolist()):
        groups[start].append(index)
    return [(_utc(start), _utc(start + width), indices) for start, indices in sorted(groups.items())]


def _window_width(window: str) -> int:
    try:
        return stats.parse_duration(window)
    except ValueError as error:
        raise GoldenFileError(str(error)) from error


def _utc(epoch_seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch_seconds, tz=datetime.UTC)


def _require_window_sizes(windows: list[tuple[datetime.datetime, datetime.datetime, list[int]]]) -> None:
    most = settings.DRIFTBOARD_TRAFFIC_MAX_WINDOWS_PER_UPLOAD
    if len(windows) > most:
        raise GoldenFileError(
            f"the log splits into {len(windows)} windows, more than the {most} an upload may hold "
            "(DRIFTBOARD_TRAFFIC_MAX_WINDOWS_PER_UPLOAD): use a longer --window or upload the log in parts"
        )
    limit = settings.DRIFTBOARD_MAX_DATASET_ROWS
    for start, _, indices in windows:
        if len(indices) > limit:
            raise GoldenFileError(
                f"the window from {start.isoformat()} has {len(indices)} rows, more than the {limit} "
                "a window may hold: use a shorter --window",
                row=indices[limit] + 1,
            )


# Windows


def traffic_import(
    *, family: ModelFamily, filename: str, source: BinaryIO | Path | str | bytes, window: str | None = None, user=None
) -> list[TrafficWindow]:
    """Validate a traffic log, split it by timestamp into windows, store each and queue its scoring.

    Raises GoldenFileError (with the row) and stores nothing on bad input, TrafficBacklogFull when
    the family's traffic runs would pass DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS. A window identical to
    the family's latest one is that window, not a copy.
    """
    content = source.read() if hasattr(source, "read") else source
    rows = traffic_rows_read(content, filename)
    windows = _split(rows, window)
    _require_window_sizes(windows)
    with transaction.atomic():
        _require_backlog_room(family, len(windows))
        created = [
            _window_store(family, rows, start, end, indices, filename, window, user) for start, end, indices in windows
        ]
        for traffic_window in created:
            if traffic_window.run_id is None:
                traffic_window_score(window=traffic_window)
    return created


def _require_backlog_room(family: ModelFamily, new_windows: int) -> None:
    """Within the upload's transaction, the family's row locked so that two uploads count one after the other."""
    ModelFamily.objects.select_for_update().get(pk=family.pk)
    waiting = EvalRun.objects.filter(
        artifact__family=family,
        kind=EvalRun.Kind.TRAFFIC,
        status__in=[EvalRun.Status.PENDING, EvalRun.Status.DEFERRED, EvalRun.Status.QUEUED, EvalRun.Status.RUNNING],
    ).count()
    most = settings.DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS
    if waiting + new_windows > most:
        raise TrafficBacklogFull(
            f"{family.slug} has {waiting} traffic runs waiting or scoring and this log adds up to {new_windows}: "
            f"at most {most} may wait at once (DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS). Retry once they are scored."
        )


def _window_store(family, rows, start, end, indices, filename, window, user) -> TrafficWindow:
    samples = [rows.samples[i] for i in indices]
    recipe = {"source": Path(filename).name, "window": window or "", "rows": len(indices)}
    dataset = dataset_freeze(
        name=f"{family.slug}-traffic",
        samples=samples,
        source_name=filename,
        user=user,
        purpose=GoldenDataset.Purpose.TRAFFIC,
        recipe=recipe,
    )
    existing = TrafficWindow.objects.filter(dataset=dataset).first()
    if existing is not None:
        return existing
    number = (TrafficWindow.objects.filter(family=family).aggregate(n=Max("number"))["n"] or 0) + 1
    return TrafficWindow.objects.create(family=family, number=number, dataset=dataset, starts_at=start, ends_at=end)


def traffic_window_score(*, window: TrafficWindow) -> EvalRun | None:
    """Queue the production model on the window; a sample of it beyond DRIFTBOARD_TRAFFIC_SAMPLE_SIZE."""
    artifact = production_artifact(window.family)
    if artifact is None:
        TrafficWindow.objects.filter(pk=window.pk).update(reasons=["No production artifact to watch yet."])
        return None
    if window.family.kind == ModelFamily.Kind.EMBEDDING and window.dataset.samples.filter(reference="").exists():
        # Similarity compares each text with its reference (a query with the document it led to, say).
        TrafficWindow.objects.filter(pk=window.pk).update(
            outcome=TrafficWindow.Outcome.INCOMPARABLE,
            reasons=["An embedding family's window needs a `reference` for every text to be scored."],
        )
        return None
    dataset = window.dataset
    if dataset.sample_count < stats.MIN_WINDOW:
        # Scoring it would buy no verdict: the comparison needs MIN_WINDOW samples.
        _window_too_small(window, dataset.sample_count)
        return None
    sampling = _window_sampling(dataset)
    run = EvalRun.objects.create(
        artifact=artifact,
        dataset=dataset,
        kind=EvalRun.Kind.TRAFFIC,
        queue=budgets.non_gating_queue(family=artifact.family, queue=RUN_KINDS[EvalRun.Kind.TRAFFIC].queue),
        samples_total=len(sampling.positions) if sampling.positions else dataset.sample_count,
        sampling=sampling.to_json(),
    )
    TrafficWindow.objects.filter(pk=window.pk).update(run=run, artifact=artifact)
    window.run, window.artifact = run, artifact
    transaction.on_commit(eval_runs_dispatch)
    return run


def _window_too_small(window: TrafficWindow, samples: int) -> None:
    window.outcome = TrafficWindow.Outcome.INCOMPARABLE
    window.reasons = [f"Only {samples} samples: a window needs {stats.MIN_WINDOW} to be compared."]
    TrafficWindow.objects.filter(pk=window.pk).update(outcome=window.outcome, reasons=window.reasons)


def _window_sampling(dataset: GoldenDataset) -> Sampling:
    size = settings.DRIFTBOARD_TRAFFIC_SAMPLE_SIZE
    if dataset.sample_count <= size:
        return Sampling()
    seed = secrets.randbits(SEED_BITS)
    categories = list(dataset.samples.order_by("position").values_list("category", flat=True))
    chosen = stats.stratified_indices(categories, size=size, min_per_category=1, seed=seed)
    return Sampling(seed=seed, size=size, positions=chosen)


def score_traffic_run(*, run: EvalRun, progress: Callable[[int], None]) -> engine.RunResult:
    """The engine on the window's samples, or on the sample of them the run recorded."""
    sampling = run.sampling_record
    result = engine.score_samples_of_run(run, engine.dataset_samples(run.dataset, sampling.positions), progress)
    result.sampling = sampling
    return result


# Comparison


@dataclasses.dataclass(frozen=True)
class WindowMeasure:
    """A traffic window compared with its reference (or found incomparable), not yet recorded: `fields` are
    the window's outcome columns; only a compared window changes the production artifact's tag."""

    window: TrafficWindow
    metric: str
    fields: dict[str, object]
    compared: bool


def traffic_window_measure(*, run: EvalRun) -> WindowMeasure | None:
    """After a traffic run: the unpaired comparison with the reference (it may load the model, so it runs
    outside any transaction); nothing is written."""
    window = TrafficWindow.objects.select_related("family", "reference_window").filter(dataset=run.dataset).first()
    if window is None:
        return None
    metric = DEFAULT_METRIC[window.family.kind]
    current = MetricSnapshot.objects.filter(artifact=run.artifact, dataset=run.dataset, metric=metric).first()
    reference = _reference_snapshot(window, run.artifact, metric)
    if current is None or reference is None:
        return _incomparable(window, metric, "The production model has no reference scores to compare with.")
    try:
        comparison = stats.compare_traffic(
            _per_sample(reference),
            _per_sample(current),
            reference_categories=_categories(reference),
            window_categories=_categories(current),
            direction=METRICS[metric].direction,
            n_boot=settings.DRIFTBOARD_BOOTSTRAP_RESAMPLES,
            seed=window.pk,
        )
    except ValueError as exc:  # too few scored samples on one side, or values that are not finite
        return _incomparable(window, metric, f"Not comparable: {exc}.")
    comparison = _with_embedding_shift(comparison, window, run.artifact, reference, current)
    verdict = stats.classify_traffic(comparison, traffic_specs(window.family))
    fields = {
        "reference_dataset": reference.dataset,
        "statistics": _json_safe(dataclasses.asdict(comparison)),
        "outcome": verdict.outcome,
        "reasons": verdict.reasons,
    }
    return WindowMeasure(window=window, metric=metric, fields=fields, compared=True)


def _incomparable(window: TrafficWindow, metric: str, reason: str) -> WindowMeasure:
    fields = {"outcome": TrafficWindow.Outcome.INCOMPARABLE, "reasons": [reason]}
    return WindowMeasure(window=window, metric=metric, fields=fields, compared=False)


def traffic_window_record(*, run: EvalRun, prepared: WindowMeasure | None) -> RegistryChange | None:
    """Record the window's outcome, in the pipeline's transaction with the change it returns: the production
    artifact's traffic tag and, on red, an alert."""
    if prepared is None:
        return None
    window = prepared.window
    TrafficWindow.objects.filter(pk=window.pk).update(
        artifact=run.artifact, run=run, metric=prepared.metric, scored_at=timezone.now(), **prepared.fields
    )
    window.refresh_from_db()
    return _production_change(window, run.artifact) if prepared.compared else None


def _with_embedding_shift(
    comparison: stats.TrafficComparison,
    window: TrafficWindow,
    artifact: Artifact,
    reference: MetricSnapshot,
    current: MetricSnapshot,
) -> stats.TrafficComparison:
    """For an embedding family, the shift of the mean embedding of the window's texts from the reference's."""
    if window.family.kind != ModelFamily.Kind.EMBEDDING:
        return comparison
    try:
        lm = engine.load_model(artifact)
        max_length = evaluation_profile(window.family).max_length
        embedded = [embed_texts(lm, _texts(snapshot), max_length=max_length) for snapshot in (reference, current)]
    except (engine.PermanentScoringError, ScoringError) as exc:
        logger.warning("Window %s: no mean-embedding shift: %s", window.pk, exc)
        return comparison
    shift, p_value = stats.mean_embedding_shift(*embedded, seed=window.pk)
    return dataclasses.replace(comparison, embedding_shift=shift, embedding_p_value=p_value)


def _texts(snapshot: MetricSnapshot) -> list[str]:
    positions, _, _ = snapshot.arrays()
    texts = dict(snapshot.dataset.samples.filter(position__in=positions.tolist()).values_list("position", "text"))
    return [texts[int(p)] for p in positions]


def _reference_snapshot(window: TrafficWindow, artifact: Artifact, metric: str) -> MetricSnapshot | None:
    """The reference window's scores by this artifact, else its scores on the golden set it was promoted on."""
    snapshots = MetricSnapshot.objects.select_related("dataset").filter(artifact=artifact, metric=metric)
    if window.reference_window_id:
        return snapshots.filter(dataset_id=window.reference_window.dataset_id).first()
    golden = snapshots.filter(dataset__purpose=GoldenDataset.Purpose.GOLDEN, dataset__name__in=window.family.datasets)
    return golden.order_by("-dataset__version", "-id").first()


def _per_sample(snapshot: MetricSnapshot) -> np.ndarray:
    _, numerators, denominators = snapshot.arrays()
    return numerators / denominators


def _categories(snapshot: MetricSnapshot) -> list[str]:
    positions, _, _ = snapshot.arrays()
    by_position = dict(snapshot.dataset.samples.values_list("position", "category"))
    return [by_position.get(int(p), "") for p in positions]


def traffic_specs(family: ModelFamily) -> list[stats.TrafficSpec]:
    """Traffic thresholds in force for the family; a metric without a record keeps its defaults."""
    records = [
        t
        for t in Threshold.objects.filter(enabled=True, scope=Threshold.Scope.TRAFFIC).order_by("id")
        if t.family_id in (None, family.pk)
    ]
    specs = [stats.TrafficSpec(t.metric, t.limit, t.severity, id=t.pk, version=threshold_version(t)) for t in records]
    covered = {t.metric for t in records}
    return specs + [spec for spec in stats.DEFAULT_SPECS if spec.metric not in covered]


def _production_change(window: TrafficWindow, artifact: Artifact) -> RegistryChange:
    """The latest window's outcome as the production artifact's `traffic_drift` tag; an alert on red.

    Windows are compared in whatever order the workers finish them, so an earlier window compared last
    leaves the tag of a later one alone (its red alert is still raised).
    """
    later = TrafficWindow.objects.filter(
        family_id=window.family_id, starts_at__gt=window.starts_at, scored_at__isnull=False
    ).exclude(pk=window.pk)
    tags: dict[str, object] = {}
    if not later.exists():
        tags = {
            "traffic_drift": window.outcome,
            "traffic_drift.window": window.number,
            "traffic_drift.reason": window.reasons[0] if window.reasons else "",
        }
    if window.outcome != TrafficWindow.Outcome.RED:
        return RegistryChange(artifact=artifact, tags=tags)
    alert = AlertNotice(
        severity=Alert.Severity.CRITICAL,
        title=f"{window.family.slug} v{artifact.version}: traffic drift red on window {window.number}",
        message="; ".join(window.reasons),
        payload={
            "family": window.family.slug,
            "version": artifact.version,
            "window": window.number,
            "starts_at": window.starts_at.isoformat(),
            "flag": "traffic_drift",
        },
    )
    return RegistryChange(artifact=artifact, tags=tags, alerts=(alert,))


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# Golden subsets


@dataclasses.dataclass(frozen=True)
class GoldenRecipe:
    size: int = 1000
    stratify: str = "category"
    min_per_category: int = 20
    outliers: str = "0"
    seed: int | None = None


def golden_build(
    *,
    name: str,
    filename: str,
    source: BinaryIO | Path | str | bytes,
    recipe: GoldenRecipe,
    family: ModelFamily | None = None,
    user=None,
) -> GoldenDataset:
    """A stratified random sample of a log that keeps every category, plus the samples the family's
    production model finds most surprising, deduplicated and frozen with its recipe and seed."""
    content = (
        source.read()
        if hasattr(source, "read")
        else Path(source).read_bytes()
        if isinstance(source, (str, Path))
        else source
    )
    pool = _deduplicated(traffic_rows_read(content, filename).samples)
    seed = recipe.seed if recipe.seed is not None else secrets.randbits(SEED_BITS)
    strata = [s["category"] or "" for s in pool] if recipe.stratify == "category" else [""] * len(pool)
    chosen = stats.stratified_indices(strata, size=recipe.size, min_per_category=recipe.min_per_category, seed=seed)
    extra = stats.outlier_count(recipe.outliers, recipe.size)
    artifact = production_artifact(family) if family is not None else None
    if extra and artifact is None:
        raise GoldenFileError("outliers need --family with a production artifact to find the surprising samples")
    outliers = stats.most_surprising(pool_surprise(artifact, pool), extra, exclude=chosen) if extra else []
    samples = [pool[i] for i in sorted(set(chosen) | set(outliers))]
    recorded = {
        **dataclasses.asdict(recipe),
        "seed": seed,
        "source": Path(filename).name,
        "source_sha256": golden_io.dataset_sha256(pool),
        "source_rows": len(pool),
        "family": family.slug if family else "",
        "weights_sha256": artifact.sha256 if artifact else "",
        "outlier_ids": [pool[i]["id"] for i in outliers],
    }
    return dataset_freeze(name=name, samples=samples, source_name=filename, user=user, recipe=recorded)


def _deduplicated(samples: list[golden_io.Sample]) -> list[golden_io.Sample]:
    return [samples[i] for i in stats.unique_indices(golden_io.sample_hashes(samples))]


def pool_surprise(artifact: Artifact, samples: Sequence[golden_io.Sample]) -> np.ndarray:
    """Per-sample bits per byte of the artifact on `samples` (cached results reused)."""
    lm = engine.load_model(artifact)
    rows = [
        {"position": i, "text": s["text"], "reference": s["reference"] or "", "category": s["category"] or ""}
        for i, s in enumerate(samples)
    ]
    scored = score_samples(lm, rows, engine.DatabaseResultStore(), engine.scoring_config(artifact.family))
    indices, numerators, denominators = scored.arrays("bits_per_byte")
    values = np.full(len(samples), np.nan)
    values[indices] = numerators / denominators
    return values


def traffic_window_promote(*, window: TrafficWindow, outliers: str = "5%", user=None) -> GoldenDataset:
    """A new version of the family's golden set: the current one plus the window's most surprising
    samples (by the production model's per-sample values on it) that it does not hold yet."""
    name = window.family.datasets[0] if window.family.datasets else f"{window.family.slug}-golden"
    current = dataset_latest(name)
    base = (
        list(current.samples.order_by("position").values("sample_id", "text", "reference", "category", "sha256"))
        if current
        else []
    )
    snapshot = MetricSnapshot.objects.filter(
        artifact_id=window.artifact_id, dataset=window.dataset, metric=window.metric or "bits_per_byte"
    ).first()
    if snapshot is None:
        raise GoldenFileError("the window has not been scored by the production model yet")
    positions, numerators, denominators = snapshot.arrays()
    values = numerators / denominators
    worse_first = values if METRICS[snapshot.metric].direction == "lower" else -values
    picked = stats.most_surprising(worse_first, stats.outlier_count(outliers, len(positions)))
    held = {row["sha256"] for row in base}
    window_rows = {
        row["position"]: row
        for row in window.dataset.samples.values("position", "sample_id", "text", "reference", "category", "sha256")
    }
    added = [window_rows[int(positions[i])] for i in picked if window_rows[int(positions[i])]["sha256"] not in held]
    samples = [_golden_sample(row["sample_id"], row) for row in base] + [
        _golden_sample(f"traffic-{window.number}-{row['sample_id']}", row) for row in added
    ]
    recipe = {
        "promoted_from": f"{window.family.slug} traffic window {window.number}",
        "base": f"{name} v{current.version}" if current else "",
        "outliers": outliers,
        "added_ids": [s["id"] for s in samples[len(base) :]],
    }
    dataset = dataset_freeze(
        name=name, samples=samples, source_name=window.dataset.source_name, user=user, recipe=recipe
    )
    TrafficWindow.objects.filter(pk=window.pk).update(promoted_to=dataset)
    window.promoted_to = dataset
    return dataset


def _golden_sample(sample_id: str, row: Mapping) -> golden_io.Sample:
    return {
        "id": sample_id,
        "text": row["text"],
        "reference": row["reference"] or None,
        "category": row["category"] or None,
    }
