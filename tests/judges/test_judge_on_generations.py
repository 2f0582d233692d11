"""Judges over real generations of the demo models, with the judge played by the local endpoint:
a judge that prefers the reference-like answer turns the drifted model red, a position-biased judge
prefers nothing, the pointwise scorer plug-in rates answers and its config key follows the judge and
the rubric, and a re-run on the same cache makes no judge call."""

import json
import re

import pytest

from evals.scoring.generation import GenerationSettings, InMemoryGenerationStore, generate_cached, messages_of
from evals.scoring.judges import InMemoryJudgementStore, JudgeSettings, JudgeUnavailable
from evals.scoring.judges.reports import judge_report
from evals.scoring.loading import CAUSAL_LM, load_model
from evals.scoring.scorers.judge_score import JudgeScore
from tests.judges.conftest import answers_in, ok

SETTINGS = GenerationSettings(max_new_tokens=16)
# The family's limit on the mean preference in these tests (the tiny demo models differ modestly).
LIMIT = 0.1
CODE_CHARACTERS = frozenset("()[]{}=_<>+-*/\\'\"#")
_REFERENCE = re.compile(r"\[The Start of Reference Answer\]\n(.*?)\n\[The End of Reference Answer\]", re.S)


@pytest.fixture(scope="module")
def samples(demo_build) -> list[dict]:
    """Prompts cut from the golden passages; the reference is how the passage goes on."""
    texts = [json.loads(line)["text"] for line in demo_build.golden.read_text().splitlines()]
    cut = [text.split() for text in texts if len(text.split()) >= 24][:200]
    return [
        {"id": str(i), "prompt": " ".join(words[:12]), "reference": " ".join(words[12:24])}
        for i, words in enumerate(cut)
    ]


@pytest.fixture(scope="module")
def answers(demo_build, samples) -> dict[str, list[str]]:
    prompts = [messages_of(sample) for sample in samples]
    found = {}
    for name in ("base", "drifted"):
        lm = load_model(getattr(demo_build, name), kind=CAUSAL_LM, device="cpu")
        found[name] = generate_cached(lm, prompts, InMemoryGenerationStore(), SETTINGS).texts
    return found


def code_share(text: str) -> float:
    text = text.strip()
    return sum(char in CODE_CHARACTERS for char in text) / len(text) if text else 1.0


def unlikeness(answer: str, reference: str) -> float:
    """How far the answer's share of code characters is from the (prose) reference's."""
    return abs(code_share(answer) - code_share(reference))


def overlap(answer: str, reference: str) -> int:
    return len(set(answer.lower().split()) & set(reference.lower().split()))


def reference_liking(body, n):
    prompt = body["messages"][-1]["content"]
    reference = _REFERENCE.search(prompt).group(1)
    shown = answers_in(body)
    a, b = unlikeness(shown["A"], reference), unlikeness(shown["B"], reference)
    return ok("Closer to the reference. " + ("[[A]]" if a < b - 0.02 else "[[B]]" if b < a - 0.02 else "[[C]]"))


def test_a_judge_preferring_reference_like_answers_turns_the_drifted_model_red(judge_server, samples, answers):
    judge_server.replier = reference_liking
    store = InMemoryJudgementStore()
    settings = JudgeSettings(mode="pairwise")
    report = judge_report(
        judge_server.judge(), store, settings, samples, answers["drifted"], answers["base"], limit=LIMIT
    )
    preference = report["comparison"]["judge_preference"]
    assert preference["outcome"] == "red", preference
    assert preference["ci_high"] < -LIMIT and preference["samples"] == len(samples) and preference["errors"] == 0
    assert report["judge_calls"] == 2 * len(samples) == judge_server.calls
    again = judge_report(
        judge_server.judge(), store, settings, samples, answers["drifted"], answers["base"], limit=LIMIT
    )
    assert again["judge_calls"] == 0 and judge_server.calls == 2 * len(samples)
    assert again["comparison"] == report["comparison"]


def test_a_position_biased_judge_gives_no_preference_and_no_red(judge_server, samples, answers):
    judge_server.replier = lambda body, n: ok("The first one. [[A]]")
    report = judge_report(
        judge_server.judge(),
        InMemoryJudgementStore(),
        JudgeSettings(mode="pairwise"),
        samples,
        answers["drifted"],
        answers["base"],
    )
    preference = report["comparison"]["judge_preference"]
    assert preference["delta"] == 0.0 and preference["outcome"] == "green" and preference["ci_high"] == 0.0
    assert report["judge_order_disagreement"] == 1.0


def test_pointwise_scores_go_through_the_paired_bootstrap(judge_server, samples, answers):
    def rating(body, n):
        prompt = body["messages"][-1]["content"]
        answer = re.search(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End", prompt, re.S).group(1)
        return ok(f"Rating: [[{min(10, 1 + 3 * overlap(answer, _REFERENCE.search(prompt).group(1)))}]]")

    judge_server.replier = rating
    report = judge_report(
        judge_server.judge(), InMemoryJudgementStore(), JudgeSettings(), samples, answers["drifted"], answers["base"]
    )
    score = report["comparison"]["judge_score"]
    assert 1 <= report["metrics"]["judge_score"] <= 10
    assert score["candidate"] == pytest.approx(report["metrics"]["judge_score"])
    assert score["ci_low"] <= score["delta"] <= score["ci_high"] and score["delta"] < 0
    assert report["judge_calls"] == 2 * len(samples)


def test_the_pointwise_scorer_rates_answers_and_keys_on_the_judge_and_rubric(judge_server, demo_build, samples):
    judge_server.replier = lambda body, n: ok("Rating: [[6]]" if n % 4 else "no rating here")
    lm = load_model(demo_build.base, kind=CAUSAL_LM, device="cpu")
    scorer = JudgeScore().configured(
        judge=judge_server.judge(concurrency=1),
        generation=SETTINGS,
        store=InMemoryGenerationStore(),
        judgements=InMemoryJudgementStore(),
    )
    output = scorer.score(lm, samples[:8], max_length=None, token_budget=None, progress=None)
    assert {tuple(sorted(v)) for v in output.values} == {("judge_score", "judged")}
    assert all(v == {"judge_score": 6.0, "judged": 1.0} for v in output.values)
    assert output.forward_passes > 0
    key = scorer.config_key(lm)
    assert scorer.configured(judging=JudgeSettings(rubric="Only brevity.")).config_key(lm) != key
    other = judge_server.judge()
    other.identity = other.identity.replace("judge-test", "judge-2")
    assert scorer.configured(judge=other).config_key(lm) != key
    assert scorer.configured(judgements=InMemoryJudgementStore()).config_key(lm) == key


def test_the_scorer_raises_a_transient_error_while_the_judge_is_down(judge_server, demo_build, samples):
    judge_server.replier = lambda body, n: (503, {"Retry-After": "0"}, {"error": "overloaded"})
    lm = load_model(demo_build.base, kind=CAUSAL_LM, device="cpu")
    judgements = InMemoryJudgementStore()
    scorer = JudgeScore().configured(
        judge=judge_server.judge(max_retries=1),
        generation=SETTINGS,
        store=InMemoryGenerationStore(),
        judgements=judgements,
    )
    with pytest.raises(JudgeUnavailable, match="HTTP 503") as raised:
        scorer.score(lm, samples[:3], max_length=None, token_budget=None, progress=None)
    assert isinstance(raised.value, ConnectionError) and judgements.judgements == {}
    judge_server.replier = lambda body, n: ok("Rating: [[9]]")
    output = scorer.score(lm, samples[:3], max_length=None, token_budget=None, progress=None)
    assert [v["judge_score"] for v in output.values] == [9.0, 9.0, 9.0]
