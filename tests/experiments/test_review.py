"""The review of an experiment: running-best frontier, best run, keep rate, failure log, time budget, pace."""

import datetime

import numpy as np
import pytest

from evals import selectors
from evals.models import Experiment
from evals.services.experiments import (
    experiment_frontier,
    experiment_review,
    experiment_run_record,
)
from tests.experiments.conftest import minutes_after
from tests.factories import ExperimentFactory, ExperimentRunFactory

# Written by hand from data/results.tsv: (sequence, val_bpb) of each kept run that beat all earlier kept
# runs. Run 12 ties run 10 (0.987600) and run 22 (0.984900) is kept for simplicity though worse: neither
# moves the frontier; discarded runs never do.
EXPECTED_FRONTIER = [
    (1, 0.997900),
    (2, 0.993200),
    (5, 0.991800),
    (7, 0.989100),
    (10, 0.987600),
    (13, 0.986200),
    (16, 0.985400),
    (20, 0.984700),
    (23, 0.983900),
    (27, 0.983100),
    (29, 0.982600),
    (32, 0.982100),
    (34, 0.981800),
]


def review_of(experiment: Experiment):
    return experiment_review(experiment=experiment, runs=list(selectors.experiment_runs(experiment)))


def test_it_draws_the_frontier_through_kept_runs(imported):
    review = review_of(imported)
    assert [(p.sequence, p.value) for p in review.frontier] == EXPECTED_FRONTIER


def test_it_names_the_best_run_and_its_improvement_over_the_first(imported):
    review = review_of(imported)
    assert (review.best.sequence, review.best.commit) == (34, "cf2a3b4")
    assert review.baseline.sequence == 1
    assert review.improvement == pytest.approx(0.997900 - 0.981800)
    assert review.relative_improvement == pytest.approx((0.997900 - 0.981800) / 0.997900)
    assert review.keep_rate == pytest.approx(15 / 34)


def test_it_summarises_in_sql_what_the_review_computes(imported):
    summary = selectors.experiment_summary(selectors.experiment_list().get(pk=imported.pk))
    assert {k: summary[k] for k in ("runs", "kept", "discarded", "crashed")} == {
        "runs": 34,
        "kept": 15,
        "discarded": 13,
        "crashed": 6,
    }
    assert (summary["best_value"], summary["best_commit"], summary["best_sequence"]) == (0.9818, "cf2a3b4", 34)
    assert summary["runs_per_day"] is None  # results.tsv carries no times


def test_it_follows_the_direction_when_higher_is_better(db):
    experiment = ExperimentFactory(objective="accuracy", direction=Experiment.Direction.HIGHER)
    values = [(0.50, "keep"), (0.55, "keep"), (0.60, "discard"), (0.53, "keep"), (0.58, "keep")]
    for sequence, (value, status) in enumerate(values, start=1):
        ExperimentRunFactory(experiment=experiment, sequence=sequence, objective_value=value, status=status)
    assert [(p.sequence, p.value) for p in review_of(experiment).frontier] == [(1, 0.50), (2, 0.55), (5, 0.58)]
    summary = selectors.experiment_summary(selectors.experiment_list().get(pk=experiment.pk))
    assert (summary["best_value"], summary["best_sequence"]) == (0.58, 5)


def test_it_makes_every_frontier_point_the_best_kept_run_so_far(db):
    """A simulated loop: noisy proposals, kept when better than the current best, some kept anyway."""
    rng = np.random.default_rng(7)
    experiment = ExperimentFactory()
    best = 1.0
    runs = [ExperimentRunFactory.build(experiment=experiment, sequence=1, objective_value=best, status="keep")]
    for sequence in range(2, 201):
        value = best + rng.normal(0.002, 0.004)
        status = "keep" if value < best or rng.random() < 0.1 else "discard"
        best = min(best, value) if status == "keep" else best
        runs.append(
            ExperimentRunFactory.build(experiment=experiment, sequence=sequence, objective_value=value, status=status)
        )
    frontier = experiment_frontier(runs=runs, direction=experiment.direction)
    kept = [r for r in runs if r.status == "keep"]
    on_frontier = {p.sequence for p in frontier}
    for run in kept:
        best_so_far = min(k.objective_value for k in kept if k.sequence <= run.sequence)
        step = [p for p in frontier if p.sequence <= run.sequence][-1]
        assert step.value == best_so_far
        assert (run.sequence in on_frontier) == (run.objective_value == best_so_far and run.sequence == step.sequence)
    assert all(b.value < a.value for a, b in zip(frontier, frontier[1:], strict=False))
    assert frontier[-1].value == best
    assert len(frontier) < len(kept)  # some runs were kept without improving


def test_it_groups_crashes_by_reason(imported):
    groups = {g.reason: [r.sequence for r in g.runs] for g in review_of(imported).crash_groups}
    assert groups == {
        "out of memory": [4, 15],
        "RuntimeError": [9],
        "loss diverged (NaN)": [19],
        "shape mismatch": [25],
        "torch._dynamo.exc.BackendCompilerFailed": [31],
    }
    assert review_of(imported).crash_groups[0].reason == "out of memory"


def test_it_lists_runs_over_their_time_budget(experiment, train_log):
    start = datetime.datetime(2025, 3, 5, 2, 0, tzinfo=datetime.UTC)
    on_time = experiment_run_record(experiment=experiment, commit="aaaaaaa", status="keep", log=train_log)
    slow = experiment_run_record(
        experiment=experiment,
        commit="bbbbbbb",
        status="discard",
        objective_value=0.99,
        started_at=start,
        finished_at=minutes_after(start, 15),
    )
    long_training = experiment_run_record(
        experiment=experiment, commit="ccccccc", status="discard", log=train_log.replace("300.1", "421.7")
    )
    over = review_of(experiment).over_budget
    assert [(o.run.pk, o.seconds) for o in over] == [(slow.pk, 900.0), (long_training.pk, 421.7)]
    assert on_time.pk not in {o.run.pk for o in over}


def test_it_measures_the_pace_of_runs(experiment):
    start = datetime.datetime(2025, 3, 5, 21, 0, tzinfo=datetime.UTC)
    for i in range(10):
        experiment_run_record(
            experiment=experiment,
            commit=f"{i:07x}",
            status="discard",
            objective_value=1.0,
            finished_at=minutes_after(start, 12 * i),
        )
    summary = selectors.experiment_summary(selectors.experiment_list().get(pk=experiment.pk))
    assert summary["runs_per_day"] == pytest.approx(24 * 60 / 12)  # one run every 12 minutes, over 108
    per_day = review_of(experiment).per_day
    assert [(d.day.isoformat(), d.runs) for d in per_day] == [("2025-03-05", 10)]


def test_it_needs_two_timed_runs_apart_for_a_pace():
    moment = datetime.datetime(2025, 3, 5, tzinfo=datetime.UTC)
    assert selectors.runs_per_day_rate(timed_runs=1, first=moment, last=moment) is None
    assert selectors.runs_per_day_rate(timed_runs=3, first=moment, last=moment) is None
    assert selectors.runs_per_day_rate(timed_runs=3, first=moment, last=moment + datetime.timedelta(hours=12)) == 4.0
