"""The experiment pages give no pace extrapolated from minutes ("10623.2 runs per day" from two runs two
minutes apart) and no raw floats (1.9607943846870806) on the run comparison."""

import datetime

import pytest

from evals import selectors
from evals.services.experiments import experiment_run_record
from tests.experiments.conftest import minutes_after

START = datetime.datetime(2025, 3, 5, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
def reader(client, user):
    client.force_login(user)
    return client


def record(experiment, sequence_minutes: list[float], **fields) -> None:
    for i, minutes in enumerate(sequence_minutes):
        experiment_run_record(
            experiment=experiment,
            commit=f"{i:07x}",
            status="keep",
            objective_value=1.0 - i / 100,
            finished_at=minutes_after(START, minutes),
            **fields,
        )


def summary_of(experiment) -> dict:
    return selectors.experiment_summary(selectors.experiment_list().get(pk=experiment.pk))


def test_two_runs_minutes_apart_give_no_pace(experiment, reader):
    record(experiment, [0, 2])

    assert summary_of(experiment)["runs_per_day"] is None
    for url in (experiment.get_absolute_url(), "/experiments/"):
        content = reader.get(url).content.decode()
        assert "720.0" not in content  # what two minutes would extrapolate to
    assert "given once timed runs span an hour" in reader.get(experiment.get_absolute_url()).content.decode()


@pytest.mark.parametrize(("last", "pace"), [(59, None), (60, 24.0), (180, 8.0)])
def test_a_pace_is_given_from_an_hour_of_runs(experiment, last, pace):
    record(experiment, [0, last])

    assert summary_of(experiment)["runs_per_day"] == (pytest.approx(pace) if pace else None)


def test_the_run_comparison_rounds_its_numbers(experiment, reader, train_log):
    experiment_run_record(experiment=experiment, commit="aaaaaaa", status="keep", log=train_log)
    experiment_run_record(
        experiment=experiment,
        commit="bbbbbbb",
        status="keep",
        log=train_log.replace("0.981800", "1.9607943846870806"),
    )

    content = reader.get(f"{experiment.get_absolute_url()}compare/?a=1&b=2").content.decode()

    assert "1.9607943846870806" not in content
    assert "<td>1.96079</td>" in content and "<td>0.9818</td>" in content
    assert "+99.71 %" in content  # (1.96079 − 0.9818) / 0.9818, as percent
    assert "-0.00 %" not in content
