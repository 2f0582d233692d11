"""What every run and verdict costs: usage recorded by the worker's steps, priced by DRIFTBOARD_PRICES,
shown by the API, the review page, the PR comment and the family's charts."""

import pytest

from driftboard.prices import Prices, PricesError, prices_parse
from evals import comments, costs
from evals.models import EvalRun
from evals.run_records import JudgeRunStats, Usage
from evals.services import eval_runs_dispatch
from evals.services.costs import judge_tokens
from evals.services.pipeline import artifact_submit, eval_run_process
from tests.conftest import purge_broker

PRICES = Prices(
    currency="USD",
    gpu_hour={"NVIDIA H100*": 3.5, "cpu": 36.0},
    judge_1k_tokens={"gpt-4o-mini": {"prompt": 0.5, "completion": 2.0}},
)


@pytest.fixture
def priced(settings):
    settings.DRIFTBOARD_PRICES = PRICES


@pytest.fixture
def broker():
    purge_broker()
    yield
    purge_broker()


def scored(family, path, commit: str):
    artifact = artifact_submit(family=family, commit_sha=commit * 40, branch="main", path=str(path)).artifact
    eval_runs_dispatch()
    for run_id in EvalRun.objects.filter(artifact=artifact, status="queued").values_list("pk", flat=True):
        eval_run_process(run_id=run_id, worker="test-worker")
    artifact.refresh_from_db()
    return artifact


def test_it_records_what_a_run_used_and_prices_the_verdict(demo_family, demo_imports, broker, priced, api_client):
    artifact = scored(demo_family, demo_imports["base"], "a")

    run = artifact.runs.get()
    usage = run.usage
    assert (usage["device"], usage["device_kind"]) == ("cpu", "cpu")
    assert usage["worker_seconds"] > 0 and usage["forward_passes"] == run.forward_passes > 0
    assert usage["tokens_scored"] == run.tokens > 0
    assert (usage["samples_full"], usage["samples_scored"], usage["samples_cached"]) == (run.samples_total,) * 2 + (0,)
    cost = api_client.get(f"/api/v1/artifacts/{artifact.pk}/").json()["cost"]
    assert set(cost) == {
        "worker_seconds",
        "forward_passes",
        "tokens_generated",
        "judge_tokens",
        "amount",
        "currency",
        "saved_share",
    }
    assert cost["amount"] == pytest.approx(36.0 * usage["worker_seconds"] / 3600, rel=1e-3)
    assert (cost["currency"], cost["saved_share"], cost["forward_passes"]) == ("USD", 0.0, run.forward_passes)


def test_it_shows_what_the_cache_saved_on_the_page_the_comment_and_the_family_chart(
    demo_family, demo_imports, broker, priced, client, user
):
    scored(demo_family, demo_imports["base"], "a")
    again = scored(demo_family, demo_imports["base"], "b")  # the same weights: every sample is cached

    cost = costs.artifact_cost(again)
    assert (cost.saved_share, cost.forward_passes) == (1.0, 0)
    assert cost.text.startswith("cost $") and cost.text.endswith("· saved 100 %")
    client.force_login(user)
    page = client.get(again.get_absolute_url()).content.decode()
    assert cost.text in page
    body = comments.comment_render(artifact=again, marker="<!-- m -->", page_url="http://x/")
    assert f"Verdict {cost.text}" in body
    family_page = client.get(demo_family.get_absolute_url()).content.decode()
    assert 'id="cost-per-version"' in family_page and 'id="cost-per-week"' in family_page
    charted = costs.family_costs(demo_family)
    assert [version for version, _, _ in charted.per_version] == [1, 2] and charted.unit == "USD"
    assert charted.per_version[1][2] == 1.0 and len(charted.per_week) == 1


def test_it_shows_worker_seconds_when_no_prices_are_set(db):
    run = EvalRun(usage={"device_kind": "cpu", "worker_seconds": 12.0, "samples_full": 100, "samples_scored": 40})

    cost = costs.runs_cost([run])

    assert cost.text == "cost 12.0 worker-seconds · saved 60 %"
    assert cost.amount == 0.0


def test_it_prices_gpu_time_by_device_kind_and_judge_tokens_by_model(settings):
    stats = JudgeRunStats.from_json(
        {
            "by_judge": {
                "openai:http://judge.internal/v1|gpt-4o-mini": {
                    "calls": 4,
                    "prompt_tokens": 2000,
                    "completion_tokens": 500,
                },
                "local:" + "a" * 64: {"calls": 2, "prompt_tokens": 10, "completion_tokens": 10},
            }
        }
    )
    usage = Usage(device_kind="NVIDIA H100 80GB HBM3", worker_seconds=7200, judges=judge_tokens(stats))

    assert usage.to_json()["judges"] == {
        "gpt-4o-mini": {"calls": 4, "prompt_tokens": 2000, "completion_tokens": 500},
        "local": {"calls": 2, "prompt_tokens": 10, "completion_tokens": 10},
    }
    assert usage.amount(PRICES) == pytest.approx(2 * 3.5 + 2 * 0.5 + 0.5 * 2.0)
    assert Usage.from_json({"device_kind": "Tesla T4", "worker_seconds": 3600}).amount(PRICES) == 0.0


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("{not json", "not valid JSON"),
        ('{"gpu_hour": {"cpu": -1}}', "gpu_hour"),
        ('{"judge_1k_tokens": {"m": {"input": 1}}}', "judge_1k_tokens"),
        ('{"price": 1}', "currency"),
    ],
)
def test_it_refuses_prices_it_cannot_read_naming_the_part(raw, named):
    with pytest.raises(PricesError, match=named):
        prices_parse(raw)
