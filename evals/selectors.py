"""Reads shared by the pages, the API and the charts."""

import datetime

from django.db.models import Case, Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.functions import Coalesce

from evals.models import DriftVerdict, EvalRun, Experiment, ExperimentRun, GoldenDataset, Threshold
from registry.models import Artifact, ModelFamily


def dataset_latest(name: str) -> GoldenDataset | None:
    return GoldenDataset.objects.filter(name=name).order_by("-version").first()


def dataset_list() -> QuerySet[GoldenDataset]:
    return GoldenDataset.objects.all()


def artifact_queue_position(artifact: Artifact) -> int | None:
    """1 for the next run a worker will take; None when nothing of the artifact waits."""
    first_waiting = artifact.runs.filter(status__in=EvalRun.WAITING).order_by("created_at", "id").first()
    if first_waiting is None:
        return None
    ahead = EvalRun.objects.filter(status__in=EvalRun.WAITING, queue=first_waiting.queue, id__lt=first_waiting.id)
    return ahead.count() + 1


def thresholds_in_force(*, family: ModelFamily, metric: str, dataset_name: str) -> list[Threshold]:
    candidates = Threshold.objects.filter(enabled=True, metric=metric).filter(
        family__in=[family.pk]
    ) | Threshold.objects.filter(enabled=True, metric=metric, family__isnull=True)
    return [t for t in candidates.order_by("id") if t.dataset_name in ("", dataset_name)]


UNGATED = "ungated"


def verdict_gated(verdict) -> bool:
    """Whether any limit judged this verdict: a threshold in force, or the implicit k·σ band of past baselines.

    Takes a DriftVerdict or any row with its threshold_id, threshold_history_id and band_low.
    """
    return verdict.threshold_id is not None or verdict.threshold_history_id is not None or verdict.band_low is not None


def verdict_shown_outcome(verdict) -> str:
    """The outcome as pages, API readers and PR comments should read it: a green nothing judged is "ungated"."""
    if verdict.outcome == DriftVerdict.Outcome.GREEN and not verdict_gated(verdict):
        return UNGATED
    return verdict.outcome


def run_list() -> QuerySet[EvalRun]:
    return EvalRun.objects.select_related("artifact__family", "dataset")


def threshold_list() -> QuerySet[Threshold]:
    """Thresholds with the id of their latest history record (their version) in one query."""
    latest = Threshold.history.model.objects.filter(id=OuterRef("pk")).order_by("-history_id").values("history_id")[:1]
    return Threshold.objects.select_related("family").annotate(latest_version=Subquery(latest))


Status = ExperimentRun.Status
SECONDS_PER_DAY = 86400.0


def _best_kept_runs() -> QuerySet[ExperimentRun]:
    """The outer experiment's kept runs, best first in its direction; ties go to the earlier run."""
    signed = Case(
        When(experiment__direction=Experiment.Direction.HIGHER, then=-F("objective_value")),
        default=F("objective_value"),
    )
    return (
        ExperimentRun.objects.filter(experiment=OuterRef("pk"), status=Status.KEEP, objective_value__isnull=False)
        .annotate(signed_value=signed)
        .order_by("signed_value", "sequence")
    )


def experiment_list() -> QuerySet[Experiment]:
    """Experiments annotated with everything experiment_summary() reads, in one query."""
    best = _best_kept_runs()
    moment = Coalesce("runs__finished_at", "runs__started_at")
    return Experiment.objects.annotate(
        run_count=Count("runs"),
        kept_count=Count("runs", filter=Q(runs__status=Status.KEEP)),
        discarded_count=Count("runs", filter=Q(runs__status=Status.DISCARD)),
        crashed_count=Count("runs", filter=Q(runs__status=Status.CRASH)),
        timed_run_count=Count("runs", filter=Q(runs__finished_at__isnull=False) | Q(runs__started_at__isnull=False)),
        first_run_at=Min(moment),
        last_run_at=Max(moment),
        best_value=Subquery(best.values("objective_value")[:1]),
        best_commit=Subquery(best.values("commit")[:1]),
        best_sequence=Subquery(best.values("sequence")[:1]),
    ).order_by("-created_at", "-id")


def runs_per_day_rate(
    *, timed_runs: int, first: datetime.datetime | None, last: datetime.datetime | None
) -> float | None:
    """Runs per day from the gaps between timestamped runs; None until two of them are apart in time."""
    if timed_runs < 2 or first is None or last is None or last <= first:
        return None
    return (timed_runs - 1) / ((last - first).total_seconds() / SECONDS_PER_DAY)


def experiment_summary(experiment: Experiment) -> dict:
    """The summary of an experiment that came from experiment_list()."""
    runs = experiment.run_count
    return {
        "runs": runs,
        "kept": experiment.kept_count,
        "discarded": experiment.discarded_count,
        "crashed": experiment.crashed_count,
        "keep_rate": experiment.kept_count / runs if runs else None,
        "best_value": experiment.best_value,
        "best_commit": experiment.best_commit,
        "best_sequence": experiment.best_sequence,
        "runs_per_day": runs_per_day_rate(
            timed_runs=experiment.timed_run_count, first=experiment.first_run_at, last=experiment.last_run_at
        ),
    }


def experiment_runs(experiment: Experiment) -> QuerySet[ExperimentRun]:
    return experiment.runs.select_related("artifact__family").order_by("sequence")


def experiment_first_valued_sequence(experiment: Experiment) -> int | None:
    """The first run with an objective value: the loop's baseline."""
    first = (
        experiment.runs.filter(objective_value__isnull=False).order_by("sequence").values_list("sequence", flat=True)
    )
    return first.first()
