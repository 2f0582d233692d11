"""/metrics exports what the finished runs cost and what caches and sampling saved, from the usage each run
recorded and priced as the pages price it, and each budgeted family's share of its weekly budget spent."""

import datetime

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from driftboard.prices import Prices
from evals import costs
from evals.models import EvalRun
from tests.factories import ArtifactFactory, EvalRunFactory, FamilyFactory

TOKEN = "scrape-token-for-tests"
PRICES = Prices(
    currency="EUR",
    gpu_hour={"cpu": 36.0, "NVIDIA H100*": 3.5},
    judge_1k_tokens={"gpt-4o-mini": {"prompt": 0.5, "completion": 2.0}},
)
H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def scraper(settings, client):
    settings.DRIFTBOARD_METRICS_TOKEN = TOKEN
    settings.DRIFTBOARD_METRICS_ALLOWED_IPS = []
    settings.DRIFTBOARD_PRICES = PRICES

    def scrape() -> dict[tuple[str, frozenset], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
        }

    return scrape


def finished(family=None, *, days_ago: float = 0, status=EvalRun.Status.SUCCEEDED, kind="full", **usage) -> EvalRun:
    artifact = ArtifactFactory(family=family) if family else ArtifactFactory()
    when = timezone.now() - datetime.timedelta(days=days_ago)
    return EvalRunFactory(artifact=artifact, status=status, kind=kind, finished_at=when, usage=usage)


@pytest.fixture
def runs(db) -> list[EvalRun]:
    """A sequential CPU run that stopped early, a GPU run whose results were all cached, a judge run."""
    return [
        finished(
            kind="sequential",
            device="cpu",
            device_kind="cpu",
            worker_seconds=100.0,
            forward_passes=10,
            tokens_scored=1000,
            tokens_generated=50,
            samples_full=100,
            samples_scored=40,
            samples_cached=10,
        ),
        finished(
            device="cuda",
            device_kind=H100,
            worker_seconds=3600.0,
            forward_passes=5,
            tokens_scored=700,
            samples_full=100,
            samples_scored=100,
            samples_cached=100,
        ),
        finished(
            kind="judge",
            device="judge",
            device_kind="",
            worker_seconds=20.0,
            judges={"gpt-4o-mini": {"calls": 4, "prompt_tokens": 2000, "completion_tokens": 500}},
            samples_full=10,
            samples_scored=10,
        ),
    ]


def test_it_exports_what_the_finished_runs_cost_and_saved(runs, scraper):
    finished(status=EvalRun.Status.FAILED, device_kind="cpu", worker_seconds=999.0, samples_full=5)  # not counted
    finished(kind="full")  # ran before usage was kept: no usage, not counted

    samples = scraper()

    # 100 CPU-seconds at 36/h, an H100-hour at 3.5, 2,000 prompt and 500 completion tokens at 0.5 and 2.0 per 1k.
    assert samples[("driftboard_cost_amount_total", frozenset({("currency", "EUR")}))] == pytest.approx(6.5)
    assert costs.runs_cost(runs).amount == pytest.approx(6.5)  # as the pages price them
    worker_seconds = {
        dict(labels)["device"]: value
        for (name, labels), value in samples.items()
        if name == "driftboard_worker_seconds_total"
    }
    assert worker_seconds == {"cpu": 100.0, H100: 3600.0, "judge": 20.0}
    expected = {
        "driftboard_forward_passes_total": 15,
        "driftboard_tokens_scored_total": 1700,
        "driftboard_tokens_generated_total": 50,
        "driftboard_samples_full_total": 210,
        "driftboard_samples_scored_total": 150,
        "driftboard_samples_cached_total": 110,
        "driftboard_samples_sampled_out": 60,  # the sequential run left 60 of its 100 samples out
    }
    assert {name: samples[(name, frozenset())] for name in expected} == expected
    # Computed: 30 of the CPU run's, none of the cached run's, the judge's 10: 40 of 210.
    assert samples[("driftboard_saved_share", frozenset())] == pytest.approx(1 - 40 / 210)
    assert samples[("driftboard_saved_share", frozenset())] == pytest.approx(costs.runs_cost(runs).saved_share)


def test_a_completion_run_takes_its_samples_off_the_sampled_out_gauge(runs, scraper):
    finished(kind="completion", device="cpu", device_kind="cpu", worker_seconds=50.0, samples_scored=60)

    samples = scraper()

    assert samples[("driftboard_samples_sampled_out", frozenset())] == 0
    assert samples[("driftboard_samples_scored_total", frozenset())] == 210
    assert samples[("driftboard_cost_amount_total", frozenset({("currency", "EUR")}))] == pytest.approx(7.0)


def test_it_exports_each_budgeted_family_s_share_of_its_weekly_budget(db, scraper, settings):
    budgeted = FamilyFactory(slug="support-gpt", weekly_budget=4.0)
    unbudgeted = FamilyFactory(slug="no-budget")
    monday = costs.week_start(timezone.now())
    days_this_week = (timezone.now() - monday).total_seconds() / 86400
    finished(budgeted, days_ago=days_this_week / 2, device_kind="cpu", worker_seconds=200.0)  # 2.0 EUR
    finished(budgeted, days_ago=days_this_week / 2, kind="judge", judges={"gpt-4o-mini": {"prompt_tokens": 1000}})
    finished(budgeted, days_ago=days_this_week + 1, device_kind="cpu", worker_seconds=3600.0)  # last week's
    finished(unbudgeted, device_kind="cpu", worker_seconds=3600.0)

    samples = scraper()

    family = frozenset({("family", "support-gpt")})
    priced = frozenset({("family", "support-gpt"), ("currency", "EUR")})
    assert samples[("driftboard_family_budget_used_ratio", family)] == pytest.approx(2.5 / 4.0)
    assert samples[("driftboard_family_budget_spent", priced)] == pytest.approx(2.5)
    assert samples[("driftboard_family_weekly_budget", priced)] == 4.0
    assert costs.family_week_spent(budgeted) == pytest.approx(2.5)  # as the budget rules read it
    assert not [key for key in samples if ("family", "no-budget") in key[1]]
