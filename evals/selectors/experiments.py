"""Experiments: the list with each one's summary annotated in one query, and an experiment's runs."""

import datetime

from django.db.models import Case, Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.functions import Coalesce

from evals.models import Experiment, ExperimentRun

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


# A pace is given once the timed runs span this long: two runs two minutes apart are no "720 runs per day".
MIN_RATE_SPAN = datetime.timedelta(hours=1)


def runs_per_day_rate(
    *, timed_runs: int, first: datetime.datetime | None, last: datetime.datetime | None
) -> float | None:
    """Runs per day from the gaps between timestamped runs; None until they span an hour (MIN_RATE_SPAN),
    never extrapolated from a few minutes."""
    if timed_runs < 2 or first is None or last is None or last - first < MIN_RATE_SPAN:
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
