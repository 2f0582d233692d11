"""A family's weekly budget: past the soft share its full runs sample and non-gating runs wait for
off-peak; past the budget new runs are deferred (budget) with an alert until staff lift it with a reason;
a registration answers with an estimate of what the evaluation will cost."""

import pytest
from django.utils import timezone

from driftboard.prices import Prices
from driftboard.queue_names import Queue
from evals.models import EvalRun
from evals.services import budgets, eval_runs_dispatch
from evals.services.pipeline import artifact_runs_create, eval_run_process
from registry.models import Alert
from tests.costs.test_verdict_cost import broker  # noqa: F401 - the fixture is used by name
from tests.factories import ArtifactFactory, DatasetFactory, EvalRunFactory, FamilyFactory

# One worker-second on a CPU costs one dollar.
PRICES = Prices(currency="USD", gpu_hour={"cpu": 3600.0})


@pytest.fixture
def family(db, settings):
    settings.DRIFTBOARD_PRICES = PRICES
    settings.DRIFTBOARD_BUDGET_SOFT_SHARE = 0.8
    dataset = DatasetFactory(samples=4)
    return FamilyFactory(datasets=[dataset.name], weekly_budget=10.0)


def spend(family, dollars: float, *, days_ago: int = 0) -> None:
    usage = {"device_kind": "cpu", "worker_seconds": dollars, "samples_full": 4, "samples_scored": 4}
    EvalRunFactory(
        artifact=ArtifactFactory(family=family),
        status=EvalRun.Status.SUCCEEDED,
        finished_at=timezone.now() - timezone.timedelta(days=days_ago),
        usage=usage,
    )


def new_runs(family) -> list[EvalRun]:
    artifact = ArtifactFactory(family=family)
    artifact_runs_create(artifact=artifact)
    return list(artifact.runs.all())


def test_it_runs_in_full_within_the_budget(family):
    spend(family, 7.0)
    spend(family, 50.0, days_ago=8)  # last week's spend counts for nothing
    [run] = new_runs(family)
    assert (run.kind, run.status) == ("full", "pending")
    assert budgets.non_gating_queue(family=family, queue=Queue.TRAFFIC) == Queue.TRAFFIC


def test_it_samples_and_sends_non_gating_runs_off_peak_past_the_soft_share(family):
    spend(family, 8.5)
    [run] = new_runs(family)
    assert (run.kind, run.status) == ("sequential", "pending")
    assert budgets.non_gating_queue(family=family, queue=Queue.TRAFFIC) == Queue.OFFPEAK


def test_it_defers_runs_past_the_budget_with_one_alert_until_staff_lift_it(
    family, api_client, staff_client, django_capture_on_commit_callbacks
):
    spend(family, 10.5)
    [held] = new_runs(family)
    [also_held] = new_runs(family)
    eval_runs_dispatch()

    assert {EvalRun.objects.get(pk=run.pk).status for run in (held, also_held)} == {"budget"}
    assert EvalRun.Status.BUDGET.label == "Deferred (budget)"
    [alert] = Alert.objects.filter(dedup_key=f"{family.slug}:budget")  # one, though two versions were held
    assert "spent $10.50 of its weekly budget of $10.00" in alert.message

    url = f"/api/v1/families/{family.slug}/budget-lift/"
    assert api_client.post(url, {"reason": "release"}, format="json").status_code == 403
    refused = staff_client.post(url, {}, format="json")
    assert (refused.status_code, list(refused.json())) == (400, ["reason"])
    with django_capture_on_commit_callbacks():
        lifted = staff_client.post(url, {"reason": "Release candidate for the launch."}, format="json")
    assert lifted.json() == {"released_runs": 2}

    assert {EvalRun.objects.get(pk=run.pk).status for run in (held, also_held)} == {"pending"}
    family.evaluation.refresh_from_db()
    assert family.evaluation.budget_lift_reason == "Release candidate for the launch."
    assert family.evaluation.budget_lifted_until > timezone.now()
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    [after] = new_runs(family)  # lifted for the week: runs go, sampled
    assert (after.kind, after.status) == ("sequential", "pending")


def test_it_takes_the_weekly_budget_through_the_families_api(family, staff_client):
    url = f"/api/v1/families/{family.slug}/"
    assert staff_client.get(url).json()["weekly_budget"] == 10.0
    refused = staff_client.patch(url, {"weekly_budget": -1}, format="json")
    assert refused.status_code == 400 and "weekly_budget" in refused.json()
    assert staff_client.patch(url, {"weekly_budget": 25}, format="json").json()["weekly_budget"] == 25.0
    assert staff_client.patch(url, {"weekly_budget": None}, format="json").json()["weekly_budget"] is None


def test_it_estimates_the_cost_at_registration(demo_family, demo_imports, broker, settings, api_client):  # noqa: F811
    settings.DRIFTBOARD_PRICES = PRICES
    first = api_client.post(
        "/api/v1/artifacts/",
        {"family": "demo", "commit": "a" * 40, "branch": "main", "path": str(demo_imports["base"])},
        format="json",
    )
    assert first.json()["estimated_cost"] is None  # nothing to go by yet
    scored_run = EvalRun.objects.get(artifact_id=first.json()["id"])
    eval_runs_dispatch()
    eval_run_process(run_id=scored_run.pk, worker="test-worker")
    usage = EvalRun.objects.get(pk=scored_run.pk).usage

    second = api_client.post(
        "/api/v1/artifacts/",
        {"family": "demo", "commit": "b" * 40, "branch": "main", "path": str(demo_imports["improved"])},
        format="json",
    )
    estimate = second.json()["estimated_cost"]
    assert estimate["currency"] == "USD" and estimate["based_on_artifacts"] == 1
    assert estimate["worker_seconds"] == pytest.approx(usage["worker_seconds"], rel=1e-3)
    assert estimate["amount"] == pytest.approx(usage["worker_seconds"], rel=1e-3)
    assert estimate["cache_hit_rate"] == 0.0
