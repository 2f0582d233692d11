"""Every sample of an artifact with its per-sample values beside its verdicts' baselines, for the CSV and
JSONL downloads of the review page and of the API (one selector for both). Golden samples and answers
are read a chunk at a time, so a 100,000-sample set is streamed, never held whole."""

import csv
import io
import json
from collections.abc import Iterator
from itertools import groupby

from django.http import StreamingHttpResponse

from evals.models import DriftVerdict, GoldenSample, MetricSnapshot
from evals.scoring.drift import fingerprints_comparable
from evals.scoring.generation import messages_of
from evals.scoring.hashing import prompt_sha256
from evals.scoring.scorers import METRICS
from evals.selectors import Answer, _answers_of, _per_position, asked_text, generation_metric
from registry.models import Artifact

EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_CHUNK = 1000
SAMPLE_COLUMNS = (
    "dataset",
    "dataset_version",
    "position",
    "sample_id",
    "category",
    "text",
    "prompt",
    "reference",
    "baseline_answer",
    "candidate_answer",
)
VALUE_COLUMNS = ("baseline", "candidate", "change")
# A spreadsheet runs a cell that starts with one of these as a formula: model output must stay text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _export_snapshots(
    artifact: Artifact, against: Artifact | None = None
) -> list[tuple[MetricSnapshot, MetricSnapshot | None]]:
    """(candidate snapshot, its verdict's baseline snapshot or None) for every metric, by dataset then
    metric; with `against`, that artifact's snapshot instead wherever it was scored comparably (as the
    compare page pairs them)."""
    snapshots = list(
        MetricSnapshot.objects.filter(artifact=artifact)
        .select_related("dataset", "artifact")
        .order_by("dataset__name", "-dataset__version", "metric")
    )
    if against is not None:
        return _paired_with(snapshots, against)
    baselines = {
        (dataset_id, metric): baseline_id
        for dataset_id, metric, baseline_id in DriftVerdict.objects.filter(
            artifact=artifact, baseline__isnull=False
        ).values_list("dataset_id", "metric", "baseline_id")
    }
    theirs = {
        (s.artifact_id, s.dataset_id, s.metric): s
        for s in MetricSnapshot.objects.select_related("artifact").filter(
            artifact_id__in=set(baselines.values()), dataset_id__in={s.dataset_id for s in snapshots}
        )
    }
    return [(s, theirs.get((baselines.get((s.dataset_id, s.metric)), s.dataset_id, s.metric))) for s in snapshots]


def _paired_with(
    snapshots: list[MetricSnapshot], against: Artifact
) -> list[tuple[MetricSnapshot, MetricSnapshot | None]]:
    theirs = {
        (s.dataset_id, s.metric): s
        for s in MetricSnapshot.objects.select_related("artifact").filter(
            artifact=against, dataset_id__in={s.dataset_id for s in snapshots}
        )
    }
    pairs = []
    for mine in snapshots:
        other = theirs.get((mine.dataset_id, mine.metric))
        spec = METRICS.get(mine.metric)
        comparable = other is not None and spec is not None
        if comparable:
            comparable, _ = fingerprints_comparable(mine.fingerprint, other.fingerprint, spec=spec)
        pairs.append((mine, other if comparable else None))
    return pairs


def export_metrics(artifact: Artifact) -> list[str]:
    """The metrics the export has columns for: every metric the artifact was scored on."""
    return sorted(set(MetricSnapshot.objects.filter(artifact=artifact).values_list("metric", flat=True)))


def samples_export_rows(artifact: Artifact, against: Artifact | None = None) -> Iterator[dict]:
    """One row per golden sample the artifact was scored on: the sample, both answers where a metric was
    computed from generated answers, and per metric the baseline's and the candidate's values and the
    metric's own change (negative means worse; relative, or in its units when its deltas are absolute).
    The baseline is each verdict's, or `against` (another version) when given."""
    pairs = _export_snapshots(artifact, against)
    for _, dataset_pairs in groupby(pairs, key=lambda pair: pair[0].dataset_id):
        yield from _dataset_rows(list(dataset_pairs))


def _dataset_rows(pairs: list[tuple[MetricSnapshot, MetricSnapshot | None]]) -> Iterator[dict]:
    dataset = pairs[0][0].dataset
    values = {mine.metric: (_per_position(mine), _per_position(theirs) if theirs else {}) for mine, theirs in pairs}
    answered = next(((mine, theirs) for mine, theirs in pairs if generation_metric(mine)), None)
    samples = GoldenSample.objects.filter(dataset=dataset).order_by("position").iterator(chunk_size=EXPORT_CHUNK)
    chunk: list[GoldenSample] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == EXPORT_CHUNK:
            yield from _chunk_rows(dataset, chunk, values, answered)
            chunk = []
    yield from _chunk_rows(dataset, chunk, values, answered)


def _chunk_rows(dataset, chunk: list[GoldenSample], values: dict, answered) -> Iterator[dict]:
    candidate_answers: dict[int, Answer] = {}
    baseline_answers: dict[int, Answer] = {}
    if answered is not None:
        hashes = {
            s.position: prompt_sha256(messages_of({"prompt": s.prompt, "messages": s.messages}))
            for s in chunk
            if s.prompt or s.messages
        }
        candidate_answers = _answers_of(answered[0], hashes)
        baseline_answers = _answers_of(answered[1], hashes) if answered[1] else {}
    for sample in chunk:
        metrics = {metric: _values_at(metric, sample.position, *by) for metric, by in values.items()}
        if not any(v["candidate"] is not None for v in metrics.values()):
            continue
        baseline_answer, candidate_answer = (
            baseline_answers.get(sample.position),
            candidate_answers.get(sample.position),
        )
        yield {
            "dataset": dataset.name,
            "dataset_version": dataset.version,
            "position": sample.position,
            "sample_id": sample.sample_id,
            "category": sample.category,
            "text": sample.text,
            "prompt": asked_text(sample.prompt, sample.messages),
            "reference": sample.reference,
            "baseline_answer": baseline_answer.text if baseline_answer else None,
            "candidate_answer": candidate_answer.text if candidate_answer else None,
            "metrics": metrics,
        }


def _values_at(metric: str, position: int, mine: dict[int, float], theirs: dict[int, float]) -> dict:
    candidate, baseline = mine.get(position), theirs.get(position)
    spec = METRICS.get(metric)
    change = None
    if candidate is not None and baseline is not None and spec is not None and (spec.absolute or baseline != 0.0):
        change = float(spec.change(candidate, baseline))
    return {"baseline": baseline, "candidate": candidate, "change": change}


def samples_export_jsonl(artifact: Artifact, against: Artifact | None = None) -> Iterator[str]:
    for row in samples_export_rows(artifact, against):
        yield json.dumps(row, ensure_ascii=False) + "\n"


def samples_export_csv(artifact: Artifact, against: Artifact | None = None) -> Iterator[str]:
    """The rows flattened: the sample's columns, then `<metric>.baseline`, `.candidate`, `.change` per metric."""
    metrics = export_metrics(artifact)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*SAMPLE_COLUMNS, *(f"{m}.{c}" for m in metrics for c in VALUE_COLUMNS)])
    for row in samples_export_rows(artifact, against):
        cells = [_cell(row[column]) for column in SAMPLE_COLUMNS]
        cells += [_number(row["metrics"].get(m, {}).get(c)) for m in metrics for c in VALUE_COLUMNS]
        writer.writerow(cells)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if isinstance(value, str) and text.startswith(FORMULA_STARTS) else text


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def samples_export_response(
    artifact: Artifact, export_format: str, against: Artifact | None = None
) -> StreamingHttpResponse:
    """The download, streamed row by row, for the review and compare pages and the API alike."""
    if export_format == "csv":
        lines = samples_export_csv(artifact, against)
    else:
        lines = samples_export_jsonl(artifact, against)
    response = StreamingHttpResponse(lines, content_type=CONTENT_TYPES[export_format])
    compared = f"-against-v{against.version}" if against is not None else ""
    filename = f"{artifact.family.slug}-v{artifact.version}{compared}-samples.{export_format}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
