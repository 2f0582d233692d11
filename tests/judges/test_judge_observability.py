"""What judging cost, on /queues/ and /metrics (from the judge runs' `judging["stats"]`), and the judge's
replies under the answers on the review page of a judge_score verdict, judge output kept as text.

The replies are made by a scripted judge through the real judging code and stored in the Judgement
table as the judge worker stores them; the page finds them again from the samples, the stored answers
and the snapshots' fingerprints alone."""

import dataclasses
import re
from collections import Counter
from datetime import timedelta
from html import unescape

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from evals.models import EvalRun, Generation, GoldenDataset, GoldenSample, MetricSnapshot
from evals.scoring.generation import messages_of
from evals.scoring.hashing import prompt_sha256, sample_sha256
from evals.scoring.judges import Completion, InMemoryJudgementStore, JudgeSettings, JudgeStats, items_from_samples
from evals.scoring.judges.judging import judge_items, judgement_keys
from evals.selectors import answers_compared
from evals.services.engine import DatabaseJudgementStore
from registry.models import Artifact
from tests.factories import ArtifactFactory, DatasetFactory, EvalRunFactory, FamilyFactory, VerdictFactory, float_bytes
from tests.generation.answer_board import SETTINGS, build_answer_board

TOKEN = "judge-scrape-token"
JUDGING = JudgeSettings(mode="pointwise", repeats=2, rubric="Be strict about facts.")
HOSTILE_REPLY = "<script>alert('judge')</script> A weak answer. Rating: [[2]]"
LONG_REPLY = (
    " ".join(f"Point {i}: the answer leaves out a step of the procedure." for i in range(12)) + " Rating: [[4]]"
)
UNDECIDED, STILL_UNDECIDED = "I cannot decide on this one.", "Still undecided, sorry."
# position: (prompt, baseline's answer, candidate's answer)
PROMPTS = {
    0: ("Name the capital of France.", "Paris.", "Lyon, I believe."),
    1: ("What is 2 + 2?", "4", "Probably 5."),
    2: ("How do I reset my password?", "Use the reset link on the sign-in page.", "Call someone."),
    3: ("Say hello.", "Hello!", "Hello!"),
}
# The judge's replies to an answer, in the order it is asked about it (the last one repeats).
SCRIPT = {
    "Paris.": ["Correct. Rating: [[9]]"],
    "4": ["Right. Rating: [[8]]"],
    "Use the reset link on the sign-in page.": ["Helpful. Rating: [[8]]"],
    "Hello!": ["Fine. Rating: [[8]]"],
    "Lyon, I believe.": [HOSTILE_REPLY],
    # Repeat 0 is unparseable twice (asked, then asked again): a judge error; repeat 1 rates it 3.
    "Probably 5.": [UNDECIDED, "Wrong. Rating: [[3]]", STILL_UNDECIDED],
    "Call someone.": [LONG_REPLY],
}
_ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)


class ScriptedJudge:
    """A judge backend that replies from SCRIPT to the answer in each request."""

    identity = "openai:http://judge.internal/v1|judge-test"

    def __init__(self) -> None:
        self.stats = JudgeStats()
        self.asked: Counter[str] = Counter()

    def complete_many(self, requests):
        results = []
        for request in requests:
            answer = _ANSWER.search(request.messages[-1]["content"]).group(1)
            replies = SCRIPT[answer]
            results.append(Completion(replies[min(self.asked[answer], len(replies) - 1)], 100, 20))
            self.asked[answer] += 1
        self.stats.calls += len(requests)
        return results


# The judged board


@dataclasses.dataclass
class JudgedBoard:
    dataset: GoldenDataset
    baseline: Artifact
    candidate: Artifact

    @property
    def review_url(self) -> str:
        return f"{self.candidate.get_absolute_url()}?metric=judge_score&dataset={self.dataset.pk}"


def _samples(dataset: GoldenDataset) -> list[GoldenSample]:
    return GoldenSample.objects.bulk_create(
        GoldenSample(
            dataset=dataset,
            position=position,
            sample_id=f"q{position}",
            prompt=prompt,
            reference=baseline_answer,
            sha256=sample_sha256("", baseline_answer, prompt=prompt, messages=None),
        )
        for position, (prompt, baseline_answer, _) in PROMPTS.items()
    )


def _judged_snapshot(artifact: Artifact, dataset: GoldenDataset, samples: list[GoldenSample], side: int, judge):
    """The artifact's answers stored and judged as the scoring and judge runs do, and its judge_score snapshot."""
    answers = [PROMPTS[sample.position][side] for sample in samples]
    for sample, text in zip(samples, answers, strict=True):
        Generation.objects.create(
            weights_sha256=artifact.sha256,
            prompt_sha256=prompt_sha256(messages_of({"prompt": sample.prompt})),
            config_sha256=SETTINGS["generation"],
            chat_template_sha256=SETTINGS["chat_template"],
            engine_version=SETTINGS["engine"],
            text=text,
            tokens=len(text.split()),
            finish="eos",
        )
    asked = [{"prompt": s.prompt, "messages": None, "reference": s.reference} for s in samples]
    judged = judge_items(judge, items_from_samples(asked, answers), DatabaseJudgementStore(), JUDGING)
    columns = judged.columns("judge_score")
    numerators = [c["judge_score"] for c in columns]
    denominators = [c["judged"] for c in columns]
    value = sum(numerators) / sum(denominators)
    return MetricSnapshot.objects.create(
        artifact=artifact,
        dataset=dataset,
        metric="judge_score",
        scorer_version="judge-score@1",
        commit_sha=artifact.commit_sha,
        value=value,
        n=len(samples),
        std=1.0,
        ci_low=value - 0.5,
        ci_high=value + 0.5,
        positions=np.arange(len(samples), dtype=np.int32).tobytes(),
        numerators=float_bytes(numerators),
        denominators=float_bytes(denominators),
        fingerprint={
            "settings": SETTINGS | JUDGING.facts(judge),
            "weights_sha256": artifact.sha256,
            "dataset_sha256": dataset.sha256,
        },
    )


@pytest.fixture
def judged_board(db) -> JudgedBoard:
    family = FamilyFactory(slug="judged-qa")
    dataset = DatasetFactory(name="judged-golden")
    samples = _samples(dataset)
    GoldenDataset.objects.filter(pk=dataset.pk).update(sample_count=len(samples))
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    candidate = ArtifactFactory(family=family, parent=baseline, status=Artifact.Status.HALTED, drift_flag="red")
    judge = ScriptedJudge()
    theirs = _judged_snapshot(baseline, dataset, samples, 1, judge)
    mine = _judged_snapshot(candidate, dataset, samples, 2, judge)
    delta = (mine.value - theirs.value) / theirs.value
    VerdictFactory(
        artifact=candidate,
        baseline=baseline,
        dataset=dataset,
        metric="judge_score",
        candidate_value=mine.value,
        baseline_value=theirs.value,
        delta=delta,
        ci_low=delta - 0.05,
        ci_high=delta + 0.05,
    )
    return JudgedBoard(dataset, baseline, candidate)


@pytest.fixture
def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def answers_section(content: str) -> str:
    start = content.index('<section class="card" id="answers">')
    return content[start : content.index("</section>", start)]


def side_of(section: str, sample_id: str, side: str) -> str:
    start = section.index(f'data-sample-id="{sample_id}"')
    start = section.index(f'data-side="{side}"', start)
    end = section.find('<div class="answer-side"', start + 1)
    article_end = section.find("</article>", start)
    return section[start : min(end, article_end) if end != -1 else article_end]


# The pure keys


def test_it_recomputes_the_keys_the_judging_stores():
    store = InMemoryJudgementStore()
    item = items_from_samples([{"prompt": "What is 2 + 2?", "reference": "4"}], ["Probably 5."])[0]
    judge_items(ScriptedJudge(), [item], store, JUDGING)
    keys = judgement_keys(ScriptedJudge.identity, item, JUDGING)
    assert keys == list(store.judgements)
    assert [(key.order, key.repeat) for key in keys] == [(0, 0), (0, 1)]
    other_rubric = dataclasses.replace(JUDGING, rubric="Only brevity.")
    assert set(judgement_keys(ScriptedJudge.identity, item, other_rubric)).isdisjoint(keys)


# The review page


def test_it_shows_the_judges_replies_beside_the_answers_as_text(judged_board, page_client):
    content = page_client.get(judged_board.review_url).content.decode()
    section = answers_section(content)
    assert re.findall(r'data-sample-id="(q\d)"', section) == ["q0", "q1", "q2"]  # q3 did not regress

    hostile = side_of(section, "q0", "candidate")
    assert 'data-judged="candidate"' in hostile
    assert "&lt;script&gt;alert(&#x27;judge&#x27;)&lt;/script&gt; A weak answer." in hostile
    assert "<script>alert" not in content
    assert re.findall(r'data-part="judge-value">([^<]*)<', hostile) == ["2", "2"]
    assert re.findall(r'data-part="judge-value">([^<]*)<', side_of(section, "q0", "baseline")) == ["9", "9"]

    erred = side_of(section, "q1", "candidate")
    assert "Repeat 1: <span" in erred and "judge error: unparseable reply" in unescape(erred)
    assert STILL_UNDECIDED in erred and UNDECIDED not in erred  # the reply stored is the one asked again
    assert re.findall(r'data-part="judge-value">([^<]*)<', erred) == ["3"]

    long = side_of(section, "q2", "candidate")
    replies = long[long.index('data-judged="candidate"') :]
    assert '<details class="fold">' in replies and f"show all {len(LONG_REPLY):,} characters" in replies


def test_it_shows_no_baseline_replies_from_another_judge(judged_board):
    candidate = judged_board.candidate.snapshots.get(metric="judge_score")
    baseline = judged_board.baseline.snapshots.get(metric="judge_score")
    baseline.fingerprint["settings"]["judge"] = "openai:http://other-judge/v1|judge-other"
    rows = {row.sample_id: row for row in answers_compared(candidate, baseline, [0, 1])}
    assert rows["q0"].baseline_judged is None
    assert [reply.value for reply in rows["q0"].candidate_judged] == [2.0, 2.0]
    assert [(reply.repeat, reply.value, reply.reply) for reply in rows["q1"].candidate_judged] == [
        (0, None, STILL_UNDECIDED),
        (1, 3.0, "Wrong. Rating: [[3]]"),
    ]

    candidate.fingerprint["settings"]["template"] = 0  # an older template: its requests cannot be rebuilt
    assert all(row.candidate_judged is None for row in answers_compared(candidate, baseline, [0, 1]))


def test_it_leaves_the_judge_out_of_other_metrics_answers(db, page_client):
    board = build_answer_board()
    section = answers_section(page_client.get(board.review_url()).content.decode())
    assert "data-judged" not in section and "judge" not in section.lower()


# What judging cost


def judge_run(finished_ago: timedelta | None, **stats) -> EvalRun:
    judging = {"model": {"weights_sha256": "w"}, "scoring_run": 1}
    if stats:
        judging["stats"] = dataclasses.asdict(JudgeStats(**{k: v for k, v in stats.items() if k != "judge_errors"}))
        judging["stats"]["judge_errors"] = stats.get("judge_errors", 0)
    finished = timezone.now() - finished_ago if finished_ago is not None else None
    status = EvalRun.Status.SUCCEEDED if stats else EvalRun.Status.FAILED
    return EvalRunFactory(kind=EvalRun.Kind.JUDGE, queue="judge", status=status, finished_at=finished, judging=judging)


STAT_FIELDS = (
    "calls",
    "failures",
    "retries",
    "seconds",
    "slowest",
    "prompt_tokens",
    "completion_tokens",
    "judge_errors",
)
# Finished how long ago, and the run's judging stats in STAT_FIELDS order.
JUDGE_RUNS = [
    (timedelta(minutes=10), (1200, 1, 2, 300.0, 1.5, 120_000, 24_000, 1)),
    (timedelta(hours=2), (800, 0, 1, 900.0, 3.25, 80_000, 16_000, 0)),
    (timedelta(days=3), (400, 2, 0, 200.0, 9.0, 40_000, 8_000, 2)),
]


@pytest.fixture
def judge_runs(db):
    for finished_ago, stats in JUDGE_RUNS:
        judge_run(finished_ago, **dict(zip(STAT_FIELDS, stats, strict=True)))
    judge_run(timedelta(minutes=5))  # failed: no stats
    scoring = {"model": {"weights_sha256": "w"}}  # a scoring run's judging facts carry no stats
    EvalRunFactory(kind=EvalRun.Kind.FULL, status=EvalRun.Status.SUCCEEDED, finished_at=timezone.now(), judging=scoring)


def figures(content: str) -> dict[tuple[str, str], str]:
    card = content[content.index('id="judge-costs"') :]
    card = card[: card.index("</section>")]
    return {
        (figure, window): text
        for figure, row in re.findall(r'<tr data-judge-figure="([\w-]+)">(.*?)</tr>', card, re.S)
        for window, text in re.findall(r'data-window="(\w+)">([^<]*)</td>', row)
    }


def test_it_shows_what_judging_cost_today_and_ever(judge_runs, page_client):
    shown = figures(page_client.get(reverse("queues")).content.decode())
    expected = {
        "runs": ("2", "3"),
        "calls": ("2,000", "2,400"),
        "failures": ("1", "3"),
        "retries": ("3", "3"),
        "judge-errors": ("1", "3"),
        "mean-latency": ("0.60 s", "0.58 s"),  # 1200 s / 2000 calls; 1400 s / 2400 calls
        "slowest": ("3.25 s", "9.00 s"),
        "prompt-tokens": ("200,000", "240,000"),
        "completion-tokens": ("40,000", "48,000"),
        "tokens": ("240,000", "288,000"),
    }
    assert shown == {(f, w): v for f, (day, ever) in expected.items() for w, v in (("day", day), ("ever", ever))}


def test_it_shows_an_empty_judge_card_before_any_judging(db, page_client):
    shown = figures(page_client.get(reverse("queues")).content.decode())
    assert (
        shown[("calls", "ever")] == "0" and shown[("mean-latency", "day")] == "—" and shown[("slowest", "ever")] == "—"
    )


@pytest.fixture
def metrics_token(settings):
    settings.DRIFTBOARD_METRICS_TOKEN = TOKEN
    settings.DRIFTBOARD_METRICS_ALLOWED_IPS = []
    settings.DRIFTBOARD_METRICS_WINDOW_SECONDS = 3600


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if sample.name.startswith("driftboard_judge")
    }


def test_it_exports_what_judging_cost_to_prometheus(judge_runs, client, metrics_token):
    none = frozenset()
    assert scrape(client) == {
        ("driftboard_judge_calls_total", none): 2400,
        ("driftboard_judge_failures_total", none): 3,
        ("driftboard_judge_retries_total", none): 3,
        ("driftboard_judge_errors_total", none): 3,
        ("driftboard_judge_call_seconds_total", none): 1400.0,
        ("driftboard_judge_tokens_total", frozenset({("kind", "prompt")})): 240_000,
        ("driftboard_judge_tokens_total", frozenset({("kind", "completion")})): 48_000,
        # Over the window (the last hour): the run finished 10 minutes ago only.
        ("driftboard_judge_latency_seconds", none): pytest.approx(300.0 / 1200),
        ("driftboard_judge_slowest_call_seconds", none): 1.5,
    }


def test_it_exports_zero_judge_counters_and_no_latency_before_any_judging(db, client, metrics_token):
    samples = scrape(client)
    assert samples[("driftboard_judge_calls_total", frozenset())] == 0
    assert ("driftboard_judge_latency_seconds", frozenset()) not in samples


def test_the_generations_api_gives_the_judges_replies_as_stored(judged_board, api_client):
    candidate = judged_board.candidate
    body = api_client.get(f"/api/v1/artifacts/{candidate.pk}/generations/?metric=judge_score&order=position").json()
    items = {item["id"]: item for item in body["results"]}
    hostile = items["q0"]["candidate_judged"]
    assert [(r["repeat"], r["value"]) for r in hostile] == [(0, 2.0), (1, 2.0)]
    assert hostile[0]["reply"].startswith("<script>alert('judge')</script>")  # JSON carries it as typed
    assert [r["value"] for r in items["q0"]["baseline_judged"]] == [9.0, 9.0]
    assert [(r["repeat"], r["value"], r["reply"], bool(r["error"])) for r in items["q1"]["candidate_judged"]] == [
        (0, None, STILL_UNDECIDED, True),
        (1, 3.0, "Wrong. Rating: [[3]]", False),
    ]
