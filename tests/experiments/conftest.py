"""Experiment fixtures: the sample results.tsv and train.py logs in data/, and an experiment holding them."""

import datetime
from pathlib import Path

import pytest

from evals.services.experiments import results_import
from tests.factories import ExperimentFactory

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def results_bytes() -> bytes:
    return (DATA / "results.tsv").read_bytes()


@pytest.fixture(scope="session")
def train_log() -> str:
    return (DATA / "train.log").read_text()


@pytest.fixture(scope="session")
def crash_log() -> str:
    return (DATA / "train_crash.log").read_text()


@pytest.fixture
def experiment(db):
    return ExperimentFactory(slug="nanochat-h100", hardware="1× H100 80GB", time_budget_s=300)


@pytest.fixture
def imported(experiment, results_bytes):
    results_import(experiment=experiment, data=results_bytes)
    return experiment


def minutes_after(start: datetime.datetime, minutes: float) -> datetime.datetime:
    return start + datetime.timedelta(minutes=minutes)
