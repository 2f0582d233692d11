"""Judge modes against the local endpoint: strict parsing, the rubric, both orders asked, a
position-biased judge that prefers nothing, repeats and their disagreement, unparseable replies
retried once then counted as errors, and the judgement cache (calls counted)."""

import re

import numpy as np
import pytest

from evals.scoring.errors import ScoringError
from evals.scoring.judges import InMemoryJudgementStore, JudgedItem, JudgeSettings, judge_items
from evals.scoring.judges.preference import preference_interval, preference_outcome
from evals.scoring.judges.store import SqliteJudgementStore
from evals.scoring.judges.templates import DEFAULT_RUBRIC, parse_pair_verdict, parse_rating
from tests.judges.conftest import answers_in, ok

POINTWISE = JudgeSettings(mode="pointwise")
PAIRWISE = JudgeSettings(mode="pairwise")


def items(n: int = 6) -> list[JudgedItem]:
    return [
        JudgedItem(question=f"Question {i}?", answer=f"candidate answer {i}", baseline_answer=f"baseline answer {i}")
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "reply, rating",
    [
        ("The answer is fine.\nRating: [[7]]", 7),
        ("Rating: [[10]]", 10),
        ("Rating: [[7]] ... on reflection, Rating: [[7]]", 7),
        ("Rating: [[7]] or Rating: [[8]]", None),
        ("Rating: [[0]]", None),
        ("Rating: [[11]]", None),
        ("Rating: [[7.5]]", None),
        ("I give it a 7.", None),
        ("", None),
    ],
)
def test_it_parses_ratings_strictly(reply, rating):
    assert parse_rating(reply) == rating


@pytest.mark.parametrize(
    "reply, verdict",
    [("A is better. [[A]]", "A"), ("[[C]]", "C"), ("[[B]] ... [[B]]", "B"), ("[[A]] or [[B]]", None), ("A", None)],
)
def test_it_parses_pairwise_verdicts_strictly(reply, verdict):
    assert parse_pair_verdict(reply) == verdict


def test_pointwise_ratings_with_the_rubric_and_a_per_sample_override(judge_server):
    judge_server.replier = lambda body, n: ok(f"Rating: [[{1 + len(body['messages'][-1]['content']) % 10}]]")
    judged = [
        JudgedItem(question="What is 2+2?", answer="4", reference="4"),
        JudgedItem(question="Say hi", answer="hi", rubric="Judge only politeness."),
    ]
    settings = JudgeSettings(mode="pointwise", rubric="Judge only correctness.")
    result = judge_items(judge_server.judge(), judged, InMemoryJudgementStore(), settings)
    prompts = [body["messages"][-1]["content"] for body in judge_server.requests]
    by_question = {("2+2" in prompt): prompt for prompt in prompts}
    assert "Judge only correctness." in by_question[True] and "[The Start of Reference Answer]\n4" in by_question[True]
    assert "Judge only politeness." in by_question[False] and DEFAULT_RUBRIC not in by_question[False]
    expected = [1 + len(by_question[True]) % 10, 1 + len(by_question[False]) % 10]
    assert result.values.tolist() == expected
    assert result.calls == 2 and result.errors == [None, None]


def test_pairwise_asks_both_orders(judge_server):
    judge_server.replier = lambda body, n: ok("[[C]]")
    judge_items(judge_server.judge(), items(3), InMemoryJudgementStore(), PAIRWISE)
    shown = sorted((a["A"], a["B"]) for a in map(answers_in, judge_server.requests))
    expected = sorted(
        pair
        for i in range(3)
        for pair in [
            (f"candidate answer {i}", f"baseline answer {i}"),
            (f"baseline answer {i}", f"candidate answer {i}"),
        ]
    )
    assert shown == expected


def test_a_judge_that_always_prefers_the_first_position_prefers_nothing(judge_server):
    judge_server.replier = lambda body, n: ok("Assistant A is clearly better. [[A]]")
    result = judge_items(judge_server.judge(), items(40), InMemoryJudgementStore(), PAIRWISE)
    assert result.values.tolist() == [0.0] * 40
    assert result.order_disagreement == 1.0
    preference = preference_interval(result.values)
    assert preference.delta == 0.0
    assert preference_outcome(preference, limit=0.1) == "green"


def test_a_judge_that_prefers_the_baseline_in_both_orders_gives_minus_one(judge_server):
    def replier(body, n):
        shown = answers_in(body)
        return ok("[[A]]" if shown["A"].startswith("baseline") else "[[B]]")

    judge_server.replier = replier
    result = judge_items(judge_server.judge(), items(30), InMemoryJudgementStore(), PAIRWISE)
    assert result.values.tolist() == [-1.0] * 30 and result.order_disagreement == 0.0
    preference = preference_interval(result.values)
    assert preference.ci_high == -1.0
    assert preference_outcome(preference, limit=0.1) == "red"


def test_an_unparseable_reply_is_asked_again_once(judge_server):
    replies = {}

    def replier(body, n):
        question = body["messages"][-1]["content"]
        replies[question] = replies.get(question, 0) + 1
        if "Question 0?" in question:
            return ok("I cannot decide.")
        if "Question 1?" in question and replies[question] == 1:
            return ok("Seven out of ten")
        return ok("Rating: [[6]]")

    judge_server.replier = replier
    result = judge_items(judge_server.judge(), items(3), InMemoryJudgementStore(), POINTWISE)
    assert np.isnan(result.values[0]) and result.values[1:].tolist() == [6.0, 6.0]
    assert result.error_count == 1 and "unparseable" in result.errors[0]
    assert result.replies[0] == ["I cannot decide."]
    assert judge_server.calls == 3 + 2
    assert preference_interval(np.array([np.nan, 1.0, 0.0])).errors == 1


def test_a_failed_call_is_an_error_that_is_not_cached(judge_server):
    judge_server.replier = lambda body, n: (500, {"Retry-After": "0"}, {"error": "down"})
    store = InMemoryJudgementStore()
    result = judge_items(judge_server.judge(max_retries=1), items(2), store, POINTWISE)
    assert result.error_count == 2 and all("HTTP 500" in error for error in result.errors)
    assert store.judgements == {}
    judge_server.replier = lambda body, n: ok("Rating: [[8]]")
    again = judge_items(judge_server.judge(), items(2), store, POINTWISE)
    assert again.values.tolist() == [8.0, 8.0] and again.calls == 2


def test_repeats_are_averaged_and_their_disagreement_reported(judge_server):
    def replier(body, n):
        question = body["messages"][-1]["content"]
        return ok("Rating: [[4]]" if "Question 0?" in question or n % 2 else "Rating: [[8]]")

    judge_server.replier = replier
    result = judge_items(
        judge_server.judge(concurrency=1), items(4), InMemoryJudgementStore(), JudgeSettings(repeats=2)
    )
    assert result.calls == 8
    assert result.values[0] == 4.0 and result.values[1:].tolist() == [6.0, 6.0, 6.0]
    assert result.repeat_disagreement == 0.75


def test_a_rerun_makes_no_judge_calls_and_a_new_rubric_or_judge_asks_again(judge_server):
    judge_server.replier = lambda body, n: ok("[[B]]" if n % 3 else "[[A]]")
    store = InMemoryJudgementStore()
    first = judge_items(judge_server.judge(), items(5), store, PAIRWISE)
    assert first.calls == 10 and judge_server.calls == 10
    again = judge_items(judge_server.judge(), items(5), store, PAIRWISE)
    assert again.calls == 0 and again.reused == 10 and judge_server.calls == 10
    assert again.values.tolist() == first.values.tolist()
    judge_items(judge_server.judge(), items(5), store, JudgeSettings(mode="pairwise", rubric="Brevity."))
    assert judge_server.calls == 20
    other = judge_server.judge()
    other.identity = other.identity.replace("judge-test", "other-judge")
    judge_items(other, items(5), store, PAIRWISE)
    assert judge_server.calls == 30
    more_repeats = judge_items(judge_server.judge(), items(5), store, JudgeSettings(mode="pairwise", repeats=2))
    assert more_repeats.calls == 10 and more_repeats.reused == 10


def test_pairwise_needs_the_baseline_answer():
    with pytest.raises(ScoringError, match="baseline"):
        judge_items(None, [JudgedItem(question="q", answer="a")], InMemoryJudgementStore(), PAIRWISE)
    with pytest.raises(ScoringError, match="repeats"):
        JudgeSettings(repeats=0)


def test_chat_messages_are_shown_to_the_judge_as_turns(judge_server):
    judge_server.replier = lambda body, n: ok("Rating: [[5]]")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    judge_items(
        judge_server.judge(), [JudgedItem(question=messages, answer="Paris")], InMemoryJudgementStore(), POINTWISE
    )
    prompt = judge_server.requests[0]["messages"][-1]["content"]
    assert re.search(r"\[Question\]\nsystem: Be brief.\nuser: Capital of France\?", prompt)


def test_judgements_survive_in_the_sqlite_store_across_processes(judge_server, tmp_path):
    judge_server.replier = lambda body, n: ok("[[A]]" if n % 2 else "[[B]]")
    first = judge_items(judge_server.judge(), items(4), SqliteJudgementStore(tmp_path / "judgements.sqlite3"), PAIRWISE)
    reopened = SqliteJudgementStore(tmp_path / "judgements.sqlite3")
    again = judge_items(judge_server.judge(), items(4), reopened, PAIRWISE)
    assert (first.calls, again.calls, again.reused) == (8, 0, 8)
    assert again.values.tolist() == first.values.tolist() and again.replies == first.replies


def test_a_bounded_store_keeps_the_most_recently_used_judgements(judge_server):
    judge_server.replier = lambda body, n: ok("Rating: [[5]]")
    store = InMemoryJudgementStore(capacity=3)
    judge_items(judge_server.judge(), items(4), store, POINTWISE)
    assert len(store.judgements) == 3
    again = judge_items(judge_server.judge(), items(4), store, POINTWISE)
    assert again.calls == 1 and again.reused == 3
