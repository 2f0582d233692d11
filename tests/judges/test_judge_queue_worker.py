"""The judge queue on real worker processes: the scoring worker generates and stores the answers, a
judge worker (listening on `judge` only, no model loaded) asks the family's judge about them.

The judge is the local OpenAI-compatible server: it rates an answer 10 when it equals the reference
and 2 otherwise. The references are the base model's own greedy answers, so the base is rated 10 and
the drifted model, which answers otherwise, falls well below: red on `judge_score`.
"""

import io
import json
import re
import time

import pytest

from driftboard.queue_names import Queue
from evals.models import EvalRun, Judgement, MetricSnapshot, Threshold
from evals.scoring.generation import GenerationSettings, generate
from evals.scoring.loading import load_model
from evals.services import dataset_import
from evals.services.pipeline import family_create
from evals.services.thresholds import threshold_save
from tests.conftest import wait_for
from tests.judges.conftest import ok, trusted
from tests.pipeline.test_worker_pipeline import register, settled

pytestmark = pytest.mark.worker

MAX_NEW_TOKENS = 8
PROMPTS = 12
API_KEY = "sk-never-stored-0123456789"
_ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)
_REFERENCE = re.compile(r"\[The Start of Reference Answer\]\n(.*?)\n\[The End of Reference Answer\]", re.S)


def rate_against_reference(body: dict, _number: int):
    prompt = body["messages"][-1]["content"]
    answer, reference = _ANSWER.search(prompt).group(1), _REFERENCE.search(prompt).group(1)
    return ok(f"Close to the reference. Rating: [[{10 if answer == reference else 2}]]")


@pytest.fixture
def judged_family(transactional_db, demo_build, judge_server):
    rows = [json.loads(line) for line in demo_build.golden.read_text().splitlines()]
    prompted = [row for row in rows if row.get("prompt")][:PROMPTS]
    base = load_model(demo_build.base, kind="causal-lm")
    answers = generate(base, [row["prompt"] for row in prompted], GenerationSettings(max_new_tokens=MAX_NEW_TOKENS))
    lines = [
        json.dumps({"id": row["id"], "prompt": row["prompt"], "reference": answer})
        for row, answer in zip(prompted, answers.texts, strict=True)
        if answer.strip()
    ]
    # Passages without a prompt: no judge applies to them, and the judge run does not count them.
    lines += [json.dumps({"id": row["id"], "text": row["text"]}) for row in rows if not row.get("prompt")][:3]
    dataset_import(name="judged-golden", filename="judged.jsonl", source=io.BytesIO("\n".join(lines).encode()))
    judge_server.replier = rate_against_reference
    settings = {
        "scorers": ["judge-score"],
        "generation": {"max_new_tokens": MAX_NEW_TOKENS},
        "judge": {"url": judge_server.url, "model": "judge-test", "concurrency": 4},
    }
    family = family_create(
        slug="judged", kind="causal-lm", base_path=str(demo_build.base), datasets=["judged-golden"], **settings
    )
    threshold_save(
        threshold=Threshold(
            family=family,
            metric="judge_score",
            rule=Threshold.Rule.RELATIVE,
            limit=0.1,
            severity=Threshold.Severity.BLOCK,
            owner="tests",
            rationale="The judge must not rate the answers much lower.",
        ),
        user=None,
        reason="test",
    )
    trusted(family, mode="pointwise", identity=f"openai:{judge_server.url}|judge-test")
    return family, len(lines) - 3, settings


def test_judge_runs_go_to_the_judge_queue_and_gate_the_artifact(
    celery_worker_factory, api_client, judged_family, judge_server, demo_imports
):
    family, prompts, family_settings = judged_family
    scoring = celery_worker_factory(queues=(Queue.SCORING, Queue.PUBLISH), DRIFTBOARD_JUDGE_API_KEY=API_KEY)

    base = register(api_client, family, demo_imports["base"], "d" * 40)
    wait_for(lambda: EvalRun.objects.filter(artifact=base, kind="judge").exists(), timeout=120, message="the judge run")
    scored = base.runs.get(kind="full")
    wait_for(lambda: EvalRun.objects.get(pk=scored.pk).status == "succeeded", timeout=30, message="the scoring run")
    judge_run = base.runs.get(kind="judge")
    wait_for(lambda: EvalRun.objects.get(pk=judge_run.pk).status == "queued", timeout=30, message="the judge run sent")
    time.sleep(1)  # a scoring worker listening would have claimed it by now
    judge_run.refresh_from_db()
    assert (judge_run.queue, judge_run.status) == ("judge", "queued")  # no scoring worker takes it
    assert judge_server.calls == 0

    celery_worker_factory(queues=(Queue.JUDGE,), DRIFTBOARD_JUDGE_API_KEY=API_KEY)
    base = settled(base)
    assert (base.status, base.stage) == ("promoted", "production")
    judge_run.refresh_from_db()
    assert (judge_run.status, judge_run.device, judge_run.forward_passes) == ("succeeded", "judge", 0)
    assert judge_run.judging["stats"]["calls"] == prompts and judge_run.judging["stats"]["judge_errors"] == 0
    assert (judge_run.samples_done, judge_run.samples_total) == (prompts, prompts)
    assert MetricSnapshot.objects.get(artifact=base, metric="judge_score").value == 10.0
    assert Judgement.objects.count() == prompts

    drifted = settled(register(api_client, family, demo_imports["drifted"], "e" * 40, branch="finetune"))
    verdict = drifted.verdicts.get(metric="judge_score")
    assert (verdict.outcome, drifted.status) == ("red", "halted"), verdict.reasons
    assert verdict.baseline_id == base.pk and verdict.ci_high < -0.1
    fingerprint = MetricSnapshot.objects.get(artifact=drifted, metric="judge_score").fingerprint
    assert fingerprint["settings"]["judge"] == f"openai:{judge_server.url}|judge-test"
    calls = judge_server.calls
    assert calls == 2 * prompts

    # The same weights judged again (another family, same judge and settings): zero judge calls.
    again = family_create(
        slug="judged-again",
        kind="causal-lm",
        base_path=family.base_path,
        datasets=["judged-golden"],
        **family_settings,
    )
    rescored = settled(register(api_client, again, demo_imports["drifted"], "f" * 40, branch="finetune"))
    assert rescored.runs.get(kind="judge").status == "succeeded"
    assert judge_server.calls == calls
    assert MetricSnapshot.objects.get(artifact=rescored, metric="judge_score").value == pytest.approx(
        MetricSnapshot.objects.get(artifact=drifted, metric="judge_score").value
    )

    # The key went to the judge, and nowhere else. (Every key the judge saw is this one; a request without
    # one can only come from a worker this test did not start, without the key in its environment.)
    sent = [headers.get("Authorization") for headers in judge_server.headers]
    assert f"Bearer {API_KEY}" in sent and set(sent) - {None} == {f"Bearer {API_KEY}"}
    stored = json.dumps(list(EvalRun.objects.values("judging", "error"))) + json.dumps(
        list(Judgement.objects.values("reply", "error", "judge"))
    )
    assert API_KEY not in stored
    assert API_KEY not in scoring.log_path.read_text()
