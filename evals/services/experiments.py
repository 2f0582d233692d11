"""Experiment loops: results.tsv import, live run records, train.py log parsing, and the review figures.

A loop in the autoresearch style runs fixed-budget experiments and marks each one keep, discard or
crash. Its `results.tsv` is append-only, so an import is idempotent: a row is identified by its
line content and how many identical lines came before it, and only rows not seen yet are added.
"""

import datetime
import hashlib
import math
import operator
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Max

from evals.models import Experiment, ExperimentRun
from evals.services import pipeline
from registry.models import ModelFamily
from registry.registration import Registration, RegistrationError

Status = ExperimentRun.Status

COMMIT_PATTERN = re.compile(r"^[\w.-]{1,64}$")
SUMMARY_LINE = re.compile(r"^([A-Za-z_][\w@./-]*):\s+(\S.*?)\s*$")
ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b|(?i:error|fatal|fail(?:ed|ure)?)\b)")
PARENTHETICAL = re.compile(r"\(([^()]+)\)\s*$")
EXCEPTION_NAME = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt))\b")
KNOWN_CRASHES = (
    ("out of memory", re.compile(r"out of memory|\boom\b", re.IGNORECASE)),
    ("loss diverged (NaN)", re.compile(r"\bnan\b|diverg|exploded", re.IGNORECASE)),
)
RESULTS_MAX_BYTES = 20 * 1024 * 1024
LOG_TAIL_LINES = 50
CRASH_REASON_LENGTH = 500
# Training loops stop at the first step past the budget, and a run timed end to end includes
# start-up and the final evaluation; only runs beyond this margin count as over budget.
BUDGET_TOLERANCE = 0.10


class ResultsFileError(ValueError):
    """The file as a whole cannot be read (encoding, header); nothing was imported."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class ExperimentRunError(ValueError):
    """A run record was refused; the message says why."""


@dataclass(frozen=True)
class ResultRow:
    line: int
    commit: str
    objective_value: float | None
    memory_gb: float | None
    status: str
    description: str
    row_hash: str


@dataclass(frozen=True)
class MalformedLine:
    line: int
    message: str


@dataclass(frozen=True)
class ParsedResults:
    rows: list[ResultRow]
    malformed: list[MalformedLine]


@dataclass(frozen=True)
class ImportReport:
    created: list[ExperimentRun]
    unchanged: int
    malformed: list[MalformedLine]


# --- creation -------------------------------------------------------------------------------------


def experiment_create(
    *,
    slug: str,
    objective: str = "val_bpb",
    direction: str = Experiment.Direction.LOWER,
    time_budget_s: int = 300,
    hardware: str = "",
    owner: str = "",
    branch_tag: str = "",
    description: str = "",
) -> Experiment:
    return Experiment.objects.create(
        slug=slug,
        objective=objective,
        direction=direction,
        time_budget_s=time_budget_s,
        hardware=hardware,
        owner=owner,
        branch_tag=branch_tag,
        description=description,
    )


# --- results.tsv ----------------------------------------------------------------------------------


def results_header(objective: str) -> list[str]:
    return ["commit", objective, "memory_gb", "status", "description"]


def results_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ResultsFileError(f"The file is not UTF-8 text (byte {exc.start}).") from exc


def results_parse(text: str, *, objective: str = "val_bpb") -> ParsedResults:
    """Parse a results.tsv; malformed lines are reported with their 1-based line numbers, not raised."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    header_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        raise ResultsFileError("The file is empty.")
    _check_header(lines[header_index], objective, header_index + 1)
    rows, malformed = [], []
    occurrences: Counter[str] = Counter()
    for number, content in enumerate(lines[header_index + 1 :], start=header_index + 2):
        if not content.strip():
            continue
        row_hash = results_row_hash(content, occurrences[content])
        occurrences[content] += 1
        try:
            rows.append(_parse_row(content, number, row_hash, objective))
        except ValueError as exc:
            malformed.append(MalformedLine(number, str(exc)))
    return ParsedResults(rows, malformed)


def results_row_hash(content: str, occurrence: int) -> str:
    return hashlib.sha256(f"{occurrence}\t{content}".encode()).hexdigest()


def _check_header(line: str, objective: str, number: int) -> None:
    expected = results_header(objective)
    if [name.strip() for name in line.split("\t")] != expected:
        raise ResultsFileError(
            f"Line {number}: the header must be the tab-separated columns {' '.join(expected)}; found {line.strip()!r}.",
            line=number,
        )


def _parse_row(content: str, number: int, row_hash: str, objective: str) -> ResultRow:
    if "\x00" in content:
        raise ValueError("the line contains a NUL byte")
    fields = content.split("\t", 4)
    if len(fields) < 5:
        raise ValueError(f"expected 5 tab-separated columns, found {len(fields)}")
    commit, value, memory, status, description = (f.strip() for f in fields)
    status = status.lower()
    if status not in Status.values:
        raise ValueError(f"status {status!r} is not keep, discard or crash")
    if not COMMIT_PATTERN.match(commit):
        raise ValueError(f"commit {commit!r} is not a short git sha")
    if status == Status.CRASH:
        # A crash row carries placeholders (0.000000 and 0.0): it has no objective value.
        return ResultRow(number, commit, None, _positive_or_none(memory), status, description, row_hash)
    return ResultRow(
        number,
        commit,
        _finite(value, objective),
        _finite(memory, "memory_gb", minimum=0.0),
        status,
        description,
        row_hash,
    )


def _finite(raw: str, name: str, minimum: float | None = None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} {raw!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} {raw!r} is negative")
    return value


def _positive_or_none(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def results_import(*, experiment: Experiment, data: bytes | str) -> ImportReport:
    """Add the rows of a results.tsv that this experiment has not seen yet, in file order."""
    text = results_decode(data) if isinstance(data, bytes) else data
    parsed = results_parse(text, objective=experiment.objective)
    with transaction.atomic():
        next_sequence = _lock_and_next_sequence(experiment)
        known = set(experiment.runs.exclude(row_hash="").values_list("row_hash", flat=True))
        fresh = [row for row in parsed.rows if row.row_hash not in known]
        created = ExperimentRun.objects.bulk_create(
            _run_from_row(experiment, row, next_sequence + offset) for offset, row in enumerate(fresh)
        )
    return ImportReport(created=created, unchanged=len(parsed.rows) - len(fresh), malformed=parsed.malformed)


def _lock_and_next_sequence(experiment: Experiment) -> int:
    """Serialise writers of one experiment, so that two imports cannot both add the same rows."""
    list(Experiment.objects.select_for_update().filter(pk=experiment.pk).values_list("pk", flat=True))
    return (experiment.runs.aggregate(last=Max("sequence"))["last"] or 0) + 1


def _run_from_row(experiment: Experiment, row: ResultRow, sequence: int) -> ExperimentRun:
    return ExperimentRun(
        experiment=experiment,
        sequence=sequence,
        commit=row.commit,
        objective_value=row.objective_value,
        memory_gb=row.memory_gb,
        status=row.status,
        description=row.description,
        crash_reason=row.description[:CRASH_REASON_LENGTH] if row.status == Status.CRASH else "",
        row_hash=row.row_hash,
    )


# --- train.py logs --------------------------------------------------------------------------------


def _log_lines(log: str) -> list[str]:
    # Progress lines are rewritten in place with carriage returns; each is a line of its own.
    return log.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def train_log_summary(log: str) -> dict[str, int | float | str]:
    """The `key: value` block that train.py prints after its last `---` line ({} when there is none)."""
    lines = _log_lines(log)
    starts = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not starts:
        return {}
    summary: dict[str, int | float | str] = {}
    for line in lines[starts[-1] + 1 :]:
        if not line.strip():
            continue
        match = SUMMARY_LINE.match(line.strip())
        if match is None:
            break
        summary[match[1]] = _scalar(match[2])
    return summary


def _scalar(raw: str) -> int | float | str:
    # Integers beyond a float's exact range stay text: nothing computes with a 300-digit "peak_vram_mb".
    if re.fullmatch(r"[+-]?\d{1,15}", raw):
        return int(raw)
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


def train_log_crash_reason(log: str) -> str:
    """The last exception or error line of a log, else its last non-empty line."""
    lines = [line.strip() for line in _log_lines(log) if line.strip()]
    if not lines:
        return ""
    reason = next((line for line in reversed(lines) if ERROR_LINE.match(line)), lines[-1])
    return reason[:CRASH_REASON_LENGTH]


def train_log_tail(log: str) -> str:
    lines = log.rstrip("\n").split("\n")
    return "\n".join(lines[-LOG_TAIL_LINES:])


# --- live runs ------------------------------------------------------------------------------------


def experiment_run_record(
    *,
    experiment: Experiment,
    commit: str,
    status: str,
    objective_value: float | None = None,
    memory_gb: float | None = None,
    description: str = "",
    started_at: datetime.datetime | None = None,
    finished_at: datetime.datetime | None = None,
    log: str = "",
) -> ExperimentRun:
    """Record one finished run as the next in sequence; what is missing is read from the train.py log."""
    summary = train_log_summary(log) if log else {}
    run = ExperimentRun(
        experiment=experiment,
        commit=commit,
        status=status,
        description=description,
        started_at=started_at,
        finished_at=finished_at,
        summary=summary,
        log_excerpt=train_log_tail(log) if log else "",
        memory_gb=_memory_gb(status, memory_gb, summary),
        duration_s=_duration_s(started_at, finished_at, summary),
    )
    if status == Status.CRASH:
        run.crash_reason = (train_log_crash_reason(log) if log else "") or description[:CRASH_REASON_LENGTH]
    else:
        run.objective_value = _objective_value(experiment.objective, objective_value, summary)
    with transaction.atomic():
        run.sequence = _lock_and_next_sequence(experiment)
        run.save()
    return run


def _objective_value(objective: str, given: float | None, summary: dict) -> float:
    value = given if given is not None else summary.get(objective)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ExperimentRunError(
            f"A kept or discarded run needs a finite {objective}: send it, or a log with its summary block."
        )
    return float(value)


def _memory_gb(status: str, given: float | None, summary: dict) -> float | None:
    if given is None and isinstance(summary.get("peak_vram_mb"), int | float):
        given = round(summary["peak_vram_mb"] / 1024, 1)
    if status == Status.CRASH and not given:
        return None
    return given


def _duration_s(
    started_at: datetime.datetime | None, finished_at: datetime.datetime | None, summary: dict
) -> float | None:
    if started_at and finished_at:
        return (finished_at - started_at).total_seconds()
    total = summary.get("total_seconds")
    return float(total) if isinstance(total, int | float) else None


# --- weights ----------------------------------------------------------------------------------------


def experiment_run_register_weights(
    *,
    run: ExperimentRun,
    family: ModelFamily,
    upload: UploadedFile | None = None,
    path: str | None = None,
    user: AbstractBaseUser | None = None,
) -> Registration:
    """Register a kept run's weights as an artifact of `family` and link the run to it."""
    if run.status != Status.KEEP:
        raise RegistrationError("Only the weights of a kept run can be registered.")
    registration = pipeline.artifact_submit(
        family=family, commit_sha=run.commit, branch=run.experiment.branch_tag, upload=upload, path=path, user=user
    )
    ExperimentRun.objects.filter(pk=run.pk).update(artifact=registration.artifact)
    run.artifact = registration.artifact
    return registration


# --- review -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierPoint:
    sequence: int
    value: float
    commit: str


@dataclass(frozen=True)
class CrashGroup:
    reason: str
    runs: list[ExperimentRun]


@dataclass(frozen=True)
class OverBudget:
    run: ExperimentRun
    seconds: float


@dataclass(frozen=True)
class DayCount:
    day: datetime.date
    runs: int
    kept: int
    crashed: int


@dataclass(frozen=True)
class ExperimentReview:
    runs: list[ExperimentRun]
    frontier: list[FrontierPoint]
    baseline: ExperimentRun | None
    best: ExperimentRun | None
    improvement: float | None
    relative_improvement: float | None
    keep_rate: float | None
    crash_groups: list[CrashGroup]
    over_budget: list[OverBudget]
    per_day: list[DayCount]
    chart: dict


def is_better(direction: str, candidate: float, reference: float) -> bool:
    better = operator.gt if direction == Experiment.Direction.HIGHER else operator.lt
    return better(candidate, reference)


def experiment_frontier(*, runs: Iterable[ExperimentRun], direction: str) -> list[FrontierPoint]:
    """The running best through kept runs: one point per kept run that beat every earlier kept run."""
    points: list[FrontierPoint] = []
    for run in sorted(runs, key=operator.attrgetter("sequence")):
        if run.status != Status.KEEP or run.objective_value is None:
            continue
        if not points or is_better(direction, run.objective_value, points[-1].value):
            points.append(FrontierPoint(run.sequence, run.objective_value, run.commit))
    return points


def crash_group_key(reason: str) -> str:
    """Crashes with the same cause under one name: a known failure, the exception type, or the note in brackets."""
    for name, pattern in KNOWN_CRASHES:
        if pattern.search(reason):
            return name
    bracketed = PARENTHETICAL.search(reason)
    key = bracketed[1].strip() if bracketed else reason.strip()
    exception = EXCEPTION_NAME.match(key)
    return exception[1] if exception else (key or "no reason given")


def experiment_crash_groups(runs: Iterable[ExperimentRun]) -> list[CrashGroup]:
    groups: dict[str, list[ExperimentRun]] = defaultdict(list)
    for run in runs:
        if run.status == Status.CRASH:
            groups[crash_group_key(run.crash_reason or run.description)].append(run)
    return sorted((CrashGroup(key, members) for key, members in groups.items()), key=lambda g: (-len(g.runs), g.reason))


def run_budget_seconds(run: ExperimentRun) -> float | None:
    """Training time when train.py reported it, else the run's measured duration."""
    training = run.summary.get("training_seconds") if run.summary else None
    return float(training) if isinstance(training, int | float) else run.duration_s


def experiment_over_budget(*, experiment: Experiment, runs: Iterable[ExperimentRun]) -> list[OverBudget]:
    limit = experiment.time_budget_s * (1 + BUDGET_TOLERANCE)
    timed = ((run, run_budget_seconds(run)) for run in runs)
    return [OverBudget(run, seconds) for run, seconds in timed if seconds is not None and seconds > limit]


def run_timestamp(run: ExperimentRun) -> datetime.datetime | None:
    return run.finished_at or run.started_at


def experiment_runs_per_day(runs: Iterable[ExperimentRun]) -> list[DayCount]:
    days: dict[datetime.date, Counter] = defaultdict(Counter)
    for run in runs:
        moment = run_timestamp(run)
        if moment is not None:
            days[moment.date()].update(["runs", run.status])
    return [DayCount(day, c["runs"], c[Status.KEEP], c[Status.CRASH]) for day, c in sorted(days.items())]


def experiment_review(*, experiment: Experiment, runs: list[ExperimentRun]) -> ExperimentReview:
    """Everything the experiment page shows, computed from its runs in sequence order."""
    frontier = experiment_frontier(runs=runs, direction=experiment.direction)
    by_sequence = {run.sequence: run for run in runs}
    baseline = next((run for run in runs if run.objective_value is not None), None)
    best = by_sequence[frontier[-1].sequence] if frontier else None
    improvement, relative_improvement = _improvement(experiment.direction, baseline, best)
    kept = sum(1 for run in runs if run.status == Status.KEEP)
    return ExperimentReview(
        runs=runs,
        frontier=frontier,
        baseline=baseline,
        best=best,
        improvement=improvement,
        relative_improvement=relative_improvement,
        keep_rate=kept / len(runs) if runs else None,
        crash_groups=experiment_crash_groups(runs),
        over_budget=experiment_over_budget(experiment=experiment, runs=runs),
        per_day=experiment_runs_per_day(runs),
        chart=experiment_chart_data(experiment=experiment, runs=runs, frontier=frontier),
    )


def _improvement(
    direction: str, baseline: ExperimentRun | None, best: ExperimentRun | None
) -> tuple[float | None, float | None]:
    """How much better the best kept run is than the first; positive means better in either direction."""
    if baseline is None or best is None:
        return None, None
    gain = best.objective_value - baseline.objective_value
    if direction != Experiment.Direction.HIGHER:
        gain = -gain
    return gain, (gain / abs(baseline.objective_value) if baseline.objective_value else None)


def experiment_chart_data(*, experiment: Experiment, runs: list[ExperimentRun], frontier: list[FrontierPoint]) -> dict:
    return {
        "objective": experiment.objective,
        "direction": experiment.direction,
        "last_sequence": runs[-1].sequence if runs else 0,
        "runs": [
            {
                "sequence": run.sequence,
                "commit": run.commit,
                "status": run.status,
                "value": run.objective_value,
                "memory_gb": run.memory_gb,
                "description": run.description,
                "crash_reason": run.crash_reason,
            }
            for run in runs
        ],
        "frontier": [{"sequence": p.sequence, "value": p.value, "commit": p.commit} for p in frontier],
    }


# --- comparison -------------------------------------------------------------------------------------


SUMMARY_ORDER = (
    "val_bpb",
    "training_seconds",
    "total_seconds",
    "peak_vram_mb",
    "mfu_percent",
    "total_tokens_M",
    "num_steps",
    "num_params_M",
    "depth",
)


@dataclass(frozen=True)
class ComparedField:
    label: str
    a: object
    b: object
    delta: float | None
    delta_percent: float | None
    verdict: str  # "better", "worse", "same" for the objective; "" where no direction applies

    @property
    def delta_text(self) -> str:
        if self.delta is not None:
            return f"{self.delta:+.6g}"
        both_given = self.a not in (None, "") and self.b not in (None, "")
        return "differs" if both_given and self.a != self.b else ""


def experiment_runs_compare(*, experiment: Experiment, a: ExperimentRun, b: ExperimentRun) -> list[ComparedField]:
    """Both runs' fields and summary metrics side by side; numeric deltas are b − a."""
    rows = [
        ("commit", a.commit, b.commit),
        ("status", a.status, b.status),
        (experiment.objective, a.objective_value, b.objective_value),
        ("memory_gb", a.memory_gb, b.memory_gb),
        ("duration_s", a.duration_s, b.duration_s),
        ("started_at", a.started_at, b.started_at),
        ("finished_at", a.finished_at, b.finished_at),
        ("description", a.description, b.description),
        ("crash_reason", a.crash_reason, b.crash_reason),
    ]
    keys = [k for k in SUMMARY_ORDER if k in a.summary or k in b.summary]
    keys += sorted((set(a.summary) | set(b.summary)) - set(keys))
    rows += [(f"summary: {key}", a.summary.get(key), b.summary.get(key)) for key in keys]
    return [_compared(label, va, vb, experiment if label == experiment.objective else None) for label, va, vb in rows]


def _compared(label: str, a: object, b: object, objective_of: Experiment | None) -> ComparedField:
    if not (_is_number(a) and _is_number(b)):
        return ComparedField(label, a, b, None, None, "")
    delta = b - a
    percent = 100 * delta / abs(a) if a else None
    verdict = ""
    if objective_of is not None:
        verdict = "same" if delta == 0 else ("better" if is_better(objective_of.direction, b, a) else "worse")
    return ComparedField(label, a, b, delta, percent, verdict)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
